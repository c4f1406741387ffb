"""phase-recovery: a grayscale picture is recovered from the phase of its Fourier transform (dense regression)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels.reference import fourier_phase, phase_to_input
from .base import Task, register_task
from .synthetic import synthetic_pictures


def _make_inputs(config: dict[str, Any], n: int, h: int, w: int, seed: int) -> np.ndarray:
    pictures = synthetic_pictures(n, h, w, channels=1, seed=seed)
    return np.stack([_from_picture(p, config, seed) for p in pictures])


def _from_picture(picture: np.ndarray, config: dict[str, Any], seed: int) -> np.ndarray:
    return phase_to_input(fourier_phase(picture), config["in_channels"])


PHASE_RECOVERY = register_task(Task(
    name="phase-recovery",
    summary="Fourier phase map -> grayscale picture (DeepLabV3+ regression)",
    metric="image",
    input_contract=lambda c: {
        "layout": "NCHW", "channels": c["in_channels"], "dtype": "float32", "range": [-1.0, 1.0],
        "normalization": "phase / pi, phase = angle(fft2(gray)) wrapped to [-pi, pi), no fftshift, "
                         "replicated over channels",
    },
    output_contract=lambda c: {"layout": "NCHW", "channels": c["classes"], "dtype": "float32",
                               "meaning": "grayscale intensity (regression; range as trained)"},
    make_inputs=_make_inputs,
    from_picture=_from_picture,
))
