"""numba CPU kernels: the reference functions' math in one parallel pass each, compiled once and cached on disk.

Each public function has the reference's signature (see :mod:`regenrt.kernels.reference`) and is registered as
the ``numba`` kernel set. Rounding matches the reference exactly (``np.rint``: half to even).

Example::

    k = get_kernels("numba")
    k.phase_normalize(phase, batch, 3, scale="pm1")
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import MissingDependencyError
from . import KernelSet, register_kernels
from .reference import IMAGENET_MEAN, IMAGENET_STD, feather_alpha

try:
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only without numba
    raise MissingDependencyError("numba kernels need `pip install regenrt[numba]`.") from None

PI = math.pi


@njit(cache=True, inline="always")
def _scaled(p, to01, mean, inv_std):
    if abs(p) > PI:  # same wrap as the reference: values inside [-pi, pi] pass unchanged
        p = (p + PI) % (2 * PI) - PI
    r = p / PI
    if to01:
        r = (r + 1.0) / 2.0
    return (r - mean) * inv_std


@njit(cache=True, inline="always")
def _source(i, n, shift):
    """Index that np.fft.fftshift moves to position ``i`` (identity without shift)."""
    return (i + n - n // 2) % n if shift else i


@njit(parallel=True, cache=True)
def _phase_kernel(phase, out, index, shift, to01, mean, inv_std):
    channels, h, w = out.shape[1], out.shape[2], out.shape[3]
    for y in prange(h):
        sy = _source(np.int64(y), h, shift)
        for x in range(w):
            r = _scaled(float(phase[sy, _source(x, w, shift)]), to01, mean, inv_std)
            for c in range(channels):
                out[index, c, y, x] = r


@njit(parallel=True, cache=True)
def _spectrum_kernel(spectrum, out, index, shift, to01, mean, inv_std):
    channels, h, w = out.shape[1], out.shape[2], out.shape[3]
    for y in prange(h):
        sy = _source(np.int64(y), h, shift)
        for x in range(w):
            v = spectrum[sy, _source(x, w, shift)]
            r = _scaled(math.atan2(float(v.imag), float(v.real)), to01, mean, inv_std)
            for c in range(channels):
                out[index, c, y, x] = r


def phase_normalize(phase, out, index, *, scale="pm1", fftshift=False, mean=None, std=None) -> None:
    phase = np.asarray(phase)
    if phase.ndim != 2 or phase.shape != out.shape[2:]:
        raise ValueError(f"phase {phase.shape} does not fit a slot of {out.shape}")
    kernel = _spectrum_kernel if np.iscomplexobj(phase) else _phase_kernel
    # numba has no float16 arithmetic on the CPU: an FP16 slot is filled through a float32 scratch slot.
    target, slot = (out, index) if out.dtype != np.float16 else (np.empty((1, *out.shape[1:]), np.float32), 0)
    kernel(phase, target, slot, fftshift, scale == "01", 0.0 if mean is None else float(mean),
           1.0 if std is None else 1.0 / float(std))
    if target is not out:
        out[index] = target[0]


@njit(parallel=True, cache=True)
def _holes_kernel(picture, mask, out, index, fill):
    h, w, channels = picture.shape
    for y in prange(h):
        for x in range(w):
            hole = mask[y, x] != 0
            for c in range(channels):
                out[index, c, y, x] = fill if hole else np.float32(picture[y, x, c]) / np.float32(127.5) - 1.0


def holes_fill(picture, mask, out, index, fill=0.0) -> None:
    _holes_kernel(np.ascontiguousarray(picture), np.ascontiguousarray(mask), out, index, np.float32(fill))


@njit(parallel=True, cache=True)
def _rgb_kernel(picture, out, index, mean, std):
    h, w = picture.shape[0], picture.shape[1]
    channels = out.shape[1]
    for y in prange(h):
        for x in range(w):
            for c in range(channels):
                k = c % 3
                v = np.float32(picture[y, x, k]) / np.float32(255.0)
                out[index, c, y, x] = (v - mean[k]) / std[k]


def rgb_normalize(picture, out, index, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
    _rgb_kernel(np.ascontiguousarray(picture), out, index, np.asarray(mean, np.float32), np.asarray(std, np.float32))


@njit(parallel=True, cache=True)
def _composite_kernel(generated, picture, mask, alpha, pm1, blend, result):
    h, w, channels = picture.shape
    for y in prange(h):
        for x in range(w):
            for c in range(channels):
                if mask[y, x] == 0:
                    result[y, x, c] = picture[y, x, c]
                    continue
                g = np.float32(generated[c, y, x])
                s = (g + np.float32(1.0)) * np.float32(127.5) if pm1 else g * np.float32(255.0)
                s = min(max(s, np.float32(0.0)), np.float32(255.0))
                gen = np.rint(s)
                if blend:
                    a = alpha[y, x]
                    gen = np.rint(a * gen + (np.float32(1.0) - a) * np.float32(picture[y, x, c]))
                result[y, x, c] = np.uint8(gen)


def composite(generated, picture, mask, *, feather=0, value_range="pm1", soft=False) -> np.ndarray:
    picture = np.ascontiguousarray(picture)
    mask = np.ascontiguousarray(mask)
    blend = bool(soft or feather > 0)
    if soft:
        alpha = mask.astype(np.float32) / np.float32(255.0)
    elif feather > 0:
        alpha = feather_alpha(mask, feather)
    else:
        alpha = np.zeros((1, 1), np.float32)
    result = np.empty_like(picture)
    _composite_kernel(np.asarray(generated), picture, mask, alpha, value_range == "pm1", blend, result)
    return result


@njit(parallel=True, cache=True)
def _argmax_kernel(logits, palette, labels, colours):
    channels, h, w = logits.shape
    for y in prange(h):
        for x in range(w):
            if channels == 1:
                best = 1 if logits[0, y, x] > 0 else 0
            else:
                best, top = 0, logits[0, y, x]
                for c in range(1, channels):
                    if logits[c, y, x] > top:  # first maximum wins, as np.argmax
                        best, top = c, logits[c, y, x]
            labels[y, x] = best
            for k in range(3):
                colours[y, x, k] = palette[best, k]


def argmax_palette(logits, palette):
    logits = np.ascontiguousarray(logits)
    labels = np.empty(logits.shape[1:], np.uint8)
    colours = np.empty((*logits.shape[1:], 3), np.uint8)
    _argmax_kernel(logits, np.ascontiguousarray(palette), labels, colours)
    return labels, colours


register_kernels(KernelSet("numba", phase_normalize, holes_fill, rgb_normalize, composite, argmax_palette))
