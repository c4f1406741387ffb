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
def _wrap(p):
    """The reference's wrap: values inside [-pi, pi] pass unchanged, others go to [-pi, pi)."""
    return (p + PI) % (2 * PI) - PI if abs(p) > PI else p


@njit(cache=True, inline="always")
def _phase_run(src, dst, start, stop, offset, a, b):
    """``dst[x] = a * wrap(src[x + offset]) + b`` for x in [start, stop).

    The common case (every value already in [-pi, pi], as np.angle gives) is one branch-free, vectorized loop;
    a run holding out-of-range values is redone with the exact wrap, so results never depend on the path.
    """
    outside = False
    for x in range(start, stop):
        p = np.float64(src[x + offset])
        outside |= abs(p) > PI
        dst[x] = p * a + b
    if outside:
        for x in range(start, stop):
            dst[x] = _wrap(np.float64(src[x + offset])) * a + b


@njit(cache=True, inline="always")
def _replicate_row(out, index, y, row, first):
    """Copy a computed row into planes ``first``.. of the slot (plane 0 may be where it was computed)."""
    for c in range(first, out.shape[1]):
        dst = out[index, c, y]
        for x in range(row.shape[0]):  # explicit loops: numba's slice assignment is ~30x slower than this
            dst[x] = row[x]


@njit(parallel=True, cache=True)
def _phase_kernel(phase, out, index, shift, a, b, rows, first):
    h, w = out.shape[2], out.shape[3]
    half = w // 2 if shift else 0
    for y in prange(h):
        sy = (y + h - h // 2) % h if shift else np.int64(y)
        src = phase[sy]
        row = rows[y]
        # fftshift of a row is two contiguous runs: src[w - half:] -> row[:half], src[:w - half] -> row[half:]
        _phase_run(src, row, 0, half, w - half, a, b)
        _phase_run(src, row, half, w, -half, a, b)
        _replicate_row(out, index, y, row, first)


@njit(parallel=True, cache=True)
def _spectrum_kernel(spectrum, out, index, shift, a, b, rows, first):
    h, w = out.shape[2], out.shape[3]
    half = w // 2 if shift else 0
    for y in prange(h):
        sy = (y + h - h // 2) % h if shift else np.int64(y)
        row = rows[y]
        for x in range(w):
            v = spectrum[sy, (x + w - half) % w]
            row[x] = math.atan2(float(v.imag), float(v.real)) * a + b  # atan2 is already in [-pi, pi]
        _replicate_row(out, index, y, row, first)


def phase_normalize(phase, out, index, *, scale="pm1", fftshift=False, mean=None, std=None) -> None:
    phase = np.asarray(phase)
    if phase.ndim != 2 or phase.shape != out.shape[2:]:
        raise ValueError(f"phase {phase.shape} does not fit a slot of {out.shape}")
    # v = ((p / pi [+ 1] [/ 2]) - mean) / std folded into v = a * p + b
    a, b = (1 / (2 * PI), 0.5) if scale == "01" else (1 / PI, 0.0)
    if mean is not None:
        a, b = a / float(std), (b - float(mean)) / float(std)
    # Rows are computed into plane 0 of the slot and copied to the other planes. numba has no float16 on the
    # CPU: an FP16 slot is computed in a float32 scratch plane and cast (and broadcast) by NumPy.
    target, slot = (out, index) if out.dtype == np.float32 else (np.empty((1, 1, *out.shape[2:]), np.float32), 0)
    kernel = _spectrum_kernel if np.iscomplexobj(phase) else _phase_kernel
    kernel(phase, target, slot, bool(fftshift), a, b, target[slot, 0], 1)
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


ROUND = np.float32(2.0 ** 23)  # adding and subtracting 2**23 rounds a float32 in [0, 2**23) half to even


@njit(parallel=True, cache=True)
def _composite_kernel(generated, picture, mask, alpha, pm1, blend, result):
    h, w, channels = picture.shape
    flat_picture, flat_result = picture.reshape(h, -1), result.reshape(h, -1)
    scale = np.float32(127.5) if pm1 else np.float32(255.0)
    offset = np.float32(1.0) if pm1 else np.float32(0.0)
    for y in prange(h):
        holes = False
        for x in range(w):
            holes |= mask[y, x] != 0
        if not holes:  # a row of known pixels: a straight copy, bit-exact
            for i in range(flat_picture.shape[1]):
                flat_result[y, i] = flat_picture[y, i]
            continue
        gen = np.empty(w, np.float32)
        for c in range(channels):
            src = generated[c, y]
            for x in range(w):  # branch-free and vectorized: clip, then round half to even
                v = (src[x] + offset) * scale
                v = v if v > np.float32(0.0) else np.float32(0.0)
                v = v if v < np.float32(255.0) else np.float32(255.0)
                gen[x] = (v + ROUND) - ROUND
            if blend:
                for x in range(w):
                    a = alpha[y, x]
                    gen[x] = np.rint(a * gen[x] + (np.float32(1.0) - a) * np.float32(picture[y, x, c]))
            for x in range(w):
                result[y, x, c] = np.uint8(gen[x]) if mask[y, x] != 0 else picture[y, x, c]


def composite(generated, picture, mask, *, feather=0, value_range="pm1", soft=False, out=None) -> np.ndarray:
    picture = np.ascontiguousarray(picture)
    mask = np.ascontiguousarray(mask)
    blend = bool(soft or feather > 0)
    if soft:
        alpha = mask.astype(np.float32) / np.float32(255.0)
    elif feather > 0:
        alpha = feather_alpha(mask, feather)
    else:
        alpha = np.zeros((1, 1), np.float32)
    result = np.empty_like(picture) if out is None else out
    if result.shape != picture.shape or result.dtype != np.uint8 or not result.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous uint8 array of shape {picture.shape}")
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
