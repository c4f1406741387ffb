"""NumPy reference implementations of the per-pixel pre/post steps.

These are the definitions of record: faster kernels (numba CPU/CUDA) are tested against them.

Example::

    phase = fourier_phase(gray)                      # HxW radians in [-pi, pi)
    batch[i] = phase_to_input(phase, channels=1)     # 1xHxW phase / pi
"""
from __future__ import annotations

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_gray(picture: np.ndarray) -> np.ndarray:
    """HxW or HxWxC picture (any dtype) -> HxW float64 luminance (ITU-R BT.601 weights for RGB)."""
    pic = np.asarray(picture, dtype=np.float64)
    if pic.ndim == 2:
        return pic
    if pic.shape[2] == 1:
        return pic[..., 0]
    return pic[..., :3] @ np.array([0.299, 0.587, 0.114])


def fourier_phase(picture: np.ndarray) -> np.ndarray:
    """Phase of the 2-D Fourier transform of a picture's luminance, float32 radians wrapped to [-pi, pi)."""
    phase = np.angle(np.fft.fft2(to_gray(picture)))
    return wrap_phase(phase).astype(np.float32)


def wrap_phase(phase: np.ndarray) -> np.ndarray:
    """Wrap radians to [-pi, pi)."""
    return (np.asarray(phase) + np.pi) % (2 * np.pi) - np.pi


def phase_to_input(phase: np.ndarray, channels: int = 1) -> np.ndarray:
    """HxW radians (any range) -> CxHxW float32 phase / pi in [-1, 1), replicated over ``channels``."""
    scaled = (wrap_phase(phase.astype(np.float64)) / np.pi).astype(np.float32)
    return np.repeat(scaled[None], channels, axis=0)


def holes_to_input(picture: np.ndarray, mask: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """HxWxC uint8 picture + HxW mask (nonzero = hole) -> CxHxW float32 in [-1, 1] with holes set to ``fill``."""
    x = picture.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    x[:, np.asarray(mask) != 0] = fill
    return x


def normalize_rgb(picture: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """HxWx3 uint8 picture -> 3xHxW float32 ``(x / 255 - mean) / std`` (smp's ImageNet preprocessing)."""
    x = picture.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))
