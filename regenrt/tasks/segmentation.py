"""segmentation: picture -> per-pixel class logits (DeepLabV3+ with classes > 1)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels.reference import IMAGENET_MEAN, IMAGENET_STD, rgb_normalize
from .base import Task, register_task
from .synthetic import synthetic_pictures


def _from_picture(picture: np.ndarray, config: dict[str, Any], seed: int) -> np.ndarray:
    if picture.shape[2] == 1:
        picture = np.repeat(picture, 3, axis=2)
    out = np.empty((1, config["in_channels"], *picture.shape[:2]), np.float32)
    rgb_normalize(picture, out, 0)  # the runtime's own preprocessing, so export and run-infer agree
    return out[0]


def _make_inputs(config: dict[str, Any], n: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.stack([_from_picture(p, config, seed) for p in synthetic_pictures(n, h, w, 3, seed)])


SEGMENTATION = register_task(Task(
    name="segmentation",
    summary="picture -> class logits per pixel (DeepLabV3+)",
    metric="segmentation",
    input_contract=lambda c: {
        "layout": "NCHW", "channels": c["in_channels"], "dtype": "float32",
        "normalization": "(x / 255 - mean) / std", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
    },
    output_contract=lambda c: {"layout": "NCHW", "channels": c["classes"], "dtype": "float32",
                               "meaning": "class logits; argmax over channels is the label"},
    make_inputs=_make_inputs,
    from_picture=_from_picture,
))
