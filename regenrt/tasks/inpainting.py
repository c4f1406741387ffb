"""inpainting: fill masked holes of a picture (Pix2Pix U-Net), e.g. two 75x75 boxes in a 256x256 picture."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels.reference import holes_to_input
from .base import Task, register_task
from .synthetic import box_masks, synthetic_pictures

HOLE_FILL = 0.0  # the pix2pix convention of the fixtures: holes are zero in [-1, 1] space (mid-grey)


def _make_inputs(config: dict[str, Any], n: int, h: int, w: int, seed: int) -> np.ndarray:
    pictures = synthetic_pictures(n, h, w, channels=config["input_nc"], seed=seed)
    masks, _ = box_masks(n, h, w, seed=seed + 1)
    return np.stack([holes_to_input(p, m, HOLE_FILL) for p, m in zip(pictures, masks)])


def _from_picture(picture: np.ndarray, config: dict[str, Any], seed: int) -> np.ndarray:
    if picture.shape[2] != config["input_nc"]:
        picture = np.repeat(picture[..., :1], config["input_nc"], axis=2)
    masks, _ = box_masks(1, picture.shape[0], picture.shape[1], seed=seed)
    return holes_to_input(picture, masks[0], HOLE_FILL)


INPAINTING = register_task(Task(
    name="inpainting",
    summary="picture with holes -> filled picture (Pix2Pix U-Net generator)",
    metric="image",
    input_contract=lambda c: {
        "layout": "NCHW", "channels": c["input_nc"], "dtype": "float32", "range": [-1.0, 1.0],
        "normalization": "x / 127.5 - 1 for uint8 pictures", "hole_fill": HOLE_FILL,
    },
    output_contract=lambda c: {"layout": "NCHW", "channels": c["output_nc"], "dtype": "float32",
                               "range": [-1.0, 1.0], "meaning": "picture (tanh); (y + 1) * 127.5 for uint8"},
    make_inputs=_make_inputs,
    from_picture=_from_picture,
))
