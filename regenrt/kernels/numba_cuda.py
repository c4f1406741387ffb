"""numba CUDA kernels: private ``@cuda.jit`` kernels and public launchers.

A launcher validates on the host (shapes, dtypes, that every array lives on the device), computes the grid and
launches on an explicit stream. Arrays may come from numba, CuPy or torch — anything with
``__cuda_array_interface__``; host arrays are rejected, never copied behind the caller's back. The math is the
reference's (:mod:`regenrt.kernels.reference`); CI runs these kernels under ``NUMBA_ENABLE_CUDASIM=1``.

Example::

    stream = cuda.stream()
    phase_normalize(d_phase, d_batch, 3, stream=stream)     # writes d_batch[3] on the GPU
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError, MissingDependencyError


def numpy_compat(module=np) -> bool:
    """numba-cuda (0.30, in maintenance mode) registers an overload of ``np.row_stack`` when its CUDA target first
    compiles, and NumPy 2.5 removed that alias of ``np.vstack``: every kernel launch then fails with
    "module 'numpy' has no attribute 'row_stack'" (NVIDIA/numba-cuda#907, closed as won't fix; seen on an H200
    with numpy 2.5.2 + numba-cuda 0.30.4). Put the alias back — it is exactly ``vstack`` — only where it is
    missing. True when it was added."""
    if hasattr(module, "row_stack"):
        return False
    module.row_stack = module.vstack
    return True


numpy_compat()

try:
    from numba import cuda
except ImportError:  # pragma: no cover - exercised only without numba
    raise MissingDependencyError("CUDA kernels need `pip install regenrt[cuda]` (numba with CUDA support).") from None

PI = math.pi
BLOCK = (16, 16)


def _is_device(arr) -> bool:
    if isinstance(arr, np.ndarray):
        return False
    if hasattr(cuda, "is_cuda_array"):
        return cuda.is_cuda_array(arr)
    return type(arr).__name__ == "FakeCUDAArray"  # numba's simulator has no __cuda_array_interface__


def _device(name: str, arr):
    if not _is_device(arr):
        raise InputError(f"{name} must be a device array (numba, CuPy or torch CUDA); got {type(arr).__name__}. "
                         "Copy it to the GPU first: these kernels never move data implicitly.")
    if hasattr(cuda, "as_cuda_array") and not cuda.devicearray.is_cuda_ndarray(arr):
        return cuda.as_cuda_array(arr)  # CuPy arrays, torch CUDA tensors: a zero-copy view
    return arr


def _grid(h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return ((h + BLOCK[0] - 1) // BLOCK[0], (w + BLOCK[1] - 1) // BLOCK[1]), BLOCK


def _stream(stream):
    return 0 if stream is None else stream  # 0: the default stream


@cuda.jit(device=True)
def _scaled(p, to01, mean, inv_std):
    if abs(p) > PI:
        p = (p + PI) % (2 * PI) - PI
    r = p / PI
    if to01:
        r = (r + 1.0) / 2.0
    return (r - mean) * inv_std


@cuda.jit(device=True)
def _source(i, n, shift):
    """Index that np.fft.fftshift moves to position ``i`` (identity without shift)."""
    return (i + n - n // 2) % n if shift else i


@cuda.jit
def _phase_kernel(phase, out, index, shift, to01, mean, inv_std):
    y, x = cuda.grid(2)
    h, w = out.shape[2], out.shape[3]
    if y >= h or x >= w:
        return
    r = _scaled(float(phase[_source(y, h, shift), _source(x, w, shift)]), to01, mean, inv_std)
    for c in range(out.shape[1]):
        out[index, c, y, x] = r


@cuda.jit
def _planes_kernel(planes, out, index, shift, to01, mean, inv_std):
    y, x = cuda.grid(2)
    h, w = out.shape[2], out.shape[3]
    if y >= h or x >= w:
        return
    sy, sx = _source(y, h, shift), _source(x, w, shift)
    r = _scaled(math.atan2(float(planes[1, sy, sx]), float(planes[0, sy, sx])), to01, mean, inv_std)
    for c in range(out.shape[1]):
        out[index, c, y, x] = r


def phase_normalize(phase, out, index, *, scale="pm1", fftshift=False, mean=None, std=None, stream=None) -> None:
    """Raw phase (HxW float) or a spectrum as real+imag planes (2xHxW float) -> ``out[index]`` on the device."""
    phase, out = _device("phase", phase), _device("out", out)
    if out.ndim != 4 or not 0 <= index < out.shape[0]:
        raise InputError(f"out must be NCHW with index < N; got shape {out.shape} and index {index}.")
    planes = phase.ndim == 3
    if phase.shape[-2:] != out.shape[2:] or (planes and phase.shape[0] != 2) or phase.ndim not in (2, 3):
        raise InputError(f"phase {phase.shape} must be HxW or 2xHxW (real, imag) matching out {out.shape}.")
    kernel = _planes_kernel if planes else _phase_kernel
    grid, block = _grid(out.shape[2], out.shape[3])
    kernel[grid, block, _stream(stream)](phase, out, index, fftshift, scale == "01",
                                         0.0 if mean is None else float(mean), 1.0 if std is None else 1.0 / float(std))


# per-pixel math, one device function each, shared by the per-item kernels and the batched ones below
@cuda.jit(device=True)
def _holes_value(value, hole, fill):
    return fill if hole else np.float32(value) / np.float32(127.5) - np.float32(1.0)


@cuda.jit(device=True)
def _rgb_value(value, mean, std):
    return (np.float32(value) / np.float32(255.0) - mean) / std


@cuda.jit(device=True)
def _composited(g, known, a, pm1, blend):
    """A hole pixel: the generated value ``g`` in 0..255 (rounded half to even, as np.rint), blended with the
    known value by ``a`` when ``blend``."""
    s = (g + np.float32(1.0)) * np.float32(127.5) if pm1 else g * np.float32(255.0)
    s = min(max(s, np.float32(0.0)), np.float32(255.0))
    gen = np.float32(round(s))
    if blend:
        gen = np.float32(round(a * gen + (np.float32(1.0) - a) * np.float32(known)))
    return np.uint8(gen)


@cuda.jit(device=True)
def _argmax(logits, y, x):
    """The class at (y, x) of CxHxW logits; one channel: 1 where the logit is positive."""
    if logits.shape[0] == 1:
        return 1 if logits[0, y, x] > 0 else 0
    best, top = 0, logits[0, y, x]
    for c in range(1, logits.shape[0]):
        if logits[c, y, x] > top:
            best, top = c, logits[c, y, x]
    return best


@cuda.jit
def _holes_kernel(picture, mask, out, index, fill):
    y, x = cuda.grid(2)
    if y >= picture.shape[0] or x >= picture.shape[1]:
        return
    hole = mask[y, x] != 0
    for c in range(picture.shape[2]):
        out[index, c, y, x] = _holes_value(picture[y, x, c], hole, fill)


def holes_fill(picture, mask, out, index, fill=0.0, stream=None) -> None:
    """HxWxC uint8 picture + HxW mask -> ``out[index]`` in [-1, 1], holes set to ``fill``, on the device."""
    picture, mask, out = _device("picture", picture), _device("mask", mask), _device("out", out)
    if mask.shape != picture.shape[:2] or out.shape[1:] != (picture.shape[2], *picture.shape[:2]):
        raise InputError(f"picture {picture.shape}, mask {mask.shape} and out {out.shape} do not fit together.")
    grid, block = _grid(*picture.shape[:2])
    _holes_kernel[grid, block, _stream(stream)](picture, mask, out, index, np.float32(fill))


@cuda.jit
def _rgb_kernel(picture, mean, std, out, index):
    y, x = cuda.grid(2)
    if y >= picture.shape[0] or x >= picture.shape[1]:
        return
    for c in range(out.shape[1]):
        k = c % 3  # channels repeated cyclically to the engine's C, as the reference's np.resize
        out[index, c, y, x] = _rgb_value(picture[y, x, k], mean[k], std[k])


def rgb_normalize(picture, mean, std, out, index, stream=None) -> None:
    """HxWx3 uint8 picture -> ``out[index]`` = (x / 255 - mean) / std (``mean``/``std``: 3 float32, device)."""
    picture, out = _device("picture", picture), _device("out", out)
    mean, std = _device("mean", mean), _device("std", std)
    if picture.ndim != 3 or picture.shape[2] != 3 or out.shape[2:] != picture.shape[:2] or mean.shape != (3,) \
            or std.shape != (3,):
        raise InputError(f"picture {picture.shape} (HxWx3), mean {mean.shape}, std {std.shape} (3) and out "
                         f"{out.shape} do not fit together.")
    grid, block = _grid(*picture.shape[:2])
    _rgb_kernel[grid, block, _stream(stream)](picture, mean, std, out, index)


@cuda.jit
def _composite_kernel(generated, picture, mask, alpha, pm1, blend, result):
    y, x = cuda.grid(2)
    if y >= picture.shape[0] or x >= picture.shape[1]:
        return
    for c in range(picture.shape[2]):
        if mask[y, x] == 0:
            result[y, x, c] = picture[y, x, c]
        else:
            result[y, x, c] = _composited(np.float32(generated[c, y, x]), picture[y, x, c],
                                          alpha[y, x] if blend else np.float32(0.0), pm1, blend)


def composite(generated, picture, mask, result, *, alpha=None, value_range="pm1", stream=None) -> None:
    """Generator output (CxHxW float, device) + picture + mask -> ``result`` (HxWxC uint8, device).

    Known pixels are copied bit-exact. ``alpha`` (HxW float32 on the device, e.g. the reference's
    ``feather_alpha`` or ``mask / 255`` for soft masks) blends inside holes; without it holes take the
    generated value.
    """
    generated, picture = _device("generated", generated), _device("picture", picture)
    mask, result = _device("mask", mask), _device("result", result)
    if result.shape != picture.shape or mask.shape != picture.shape[:2] or generated.shape[1:] != picture.shape[:2]:
        raise InputError(f"generated {generated.shape}, picture {picture.shape}, mask {mask.shape} and result "
                         f"{result.shape} do not fit together.")
    blend = alpha is not None
    alpha = _device("alpha", alpha) if blend else cuda.device_array((1, 1), np.float32)
    grid, block = _grid(*picture.shape[:2])
    _composite_kernel[grid, block, _stream(stream)](generated, picture, mask, alpha, value_range == "pm1", blend,
                                                    result)


@cuda.jit
def _argmax_kernel(logits, palette, labels, colours):
    y, x = cuda.grid(2)
    if y >= logits.shape[1] or x >= logits.shape[2]:
        return
    best = _argmax(logits, y, x)
    labels[y, x] = best
    for k in range(3):
        colours[y, x, k] = palette[best, k]


def argmax_palette(logits, palette, labels, colours, stream=None) -> None:
    """CxHxW logits -> labels (HxW uint8) and colours (HxWx3 uint8), all on the device."""
    logits, palette = _device("logits", logits), _device("palette", palette)
    labels, colours = _device("labels", labels), _device("colours", colours)
    if labels.shape != logits.shape[1:] or colours.shape != (*logits.shape[1:], 3):
        raise InputError(f"labels {labels.shape} / colours {colours.shape} do not fit logits {logits.shape}.")
    grid, block = _grid(*logits.shape[1:])
    _argmax_kernel[grid, block, _stream(stream)](logits, palette, labels, colours)


# --- batched launchers: one launch for a whole batch (grid z = item), for the runtime's GPU path -------------------
# On an H200 a launch from Python costs ~0.1 ms (more with several arrays) while the work of one 256x256 item is a
# few microseconds: the per-item launchers above left the GPU pipeline bound by launches. These take the batch's
# arrays stacked on a first axis and write items 0..B-1 of ``out`` in one launch.

def _batch_grid(b: int, h: int, w: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    (gy, gx), (by, bx) = _grid(h, w)
    return (gy, gx, b), (by, bx, 1)


def _check_batch(name: str, arr, first_dims: tuple, what: str) -> None:
    if tuple(arr.shape[:len(first_dims)]) != first_dims:
        raise InputError(f"{name} has shape {tuple(arr.shape)}; expected {what}.")


@cuda.jit
def _phase_batch_kernel(phases, out, shift, to01, mean, inv_std):
    y, x = cuda.grid(2)
    b = cuda.blockIdx.z
    h, w = out.shape[2], out.shape[3]
    if y >= h or x >= w:
        return
    r = _scaled(float(phases[b, _source(y, h, shift), _source(x, w, shift)]), to01, mean, inv_std)
    for c in range(out.shape[1]):
        out[b, c, y, x] = r


def phase_normalize_batch(phases, out, *, scale="pm1", fftshift=False, mean=None, std=None, stream=None) -> None:
    """B raw phase maps (BxHxW float, device) -> ``out[0:B]`` (NCHW, N >= B), as :func:`phase_normalize`."""
    phases, out = _device("phases", phases), _device("out", out)
    if phases.ndim != 3 or out.ndim != 4 or phases.shape[0] > out.shape[0] or phases.shape[1:] != out.shape[2:]:
        raise InputError(f"phases {tuple(phases.shape)} must be BxHxW matching out {tuple(out.shape)} (NCHW, N >= B).")
    grid, block = _batch_grid(phases.shape[0], *phases.shape[1:])
    _phase_batch_kernel[grid, block, _stream(stream)](phases, out, fftshift, scale == "01",
                                                      0.0 if mean is None else float(mean),
                                                      1.0 if std is None else 1.0 / float(std))


@cuda.jit
def _holes_batch_kernel(pictures, masks, out, fill):
    y, x = cuda.grid(2)
    b = cuda.blockIdx.z
    if y >= pictures.shape[1] or x >= pictures.shape[2]:
        return
    hole = masks[b, y, x] != 0
    for c in range(pictures.shape[3]):
        out[b, c, y, x] = _holes_value(pictures[b, y, x, c], hole, fill)


def holes_fill_batch(pictures, masks, out, fill=0.0, stream=None) -> None:
    """BxHxWxC uint8 pictures + BxHxW masks -> ``out[0:B]`` in [-1, 1], holes set to ``fill``."""
    pictures, masks, out = _device("pictures", pictures), _device("masks", masks), _device("out", out)
    if pictures.ndim != 4 or tuple(masks.shape) != tuple(pictures.shape[:3]) or out.ndim != 4 \
            or out.shape[0] < pictures.shape[0] or tuple(out.shape[1:]) != (pictures.shape[3], *pictures.shape[1:3]):
        raise InputError(f"pictures {tuple(pictures.shape)}, masks {tuple(masks.shape)} and out {tuple(out.shape)} "
                         "do not fit together.")
    grid, block = _batch_grid(*pictures.shape[:3])
    _holes_batch_kernel[grid, block, _stream(stream)](pictures, masks, out, np.float32(fill))


@cuda.jit
def _rgb_batch_kernel(pictures, mean, std, out):
    y, x = cuda.grid(2)
    b = cuda.blockIdx.z
    if y >= pictures.shape[1] or x >= pictures.shape[2]:
        return
    for c in range(out.shape[1]):
        k = c % 3
        out[b, c, y, x] = _rgb_value(pictures[b, y, x, k], mean[k], std[k])


def rgb_normalize_batch(pictures, mean, std, out, stream=None) -> None:
    """BxHxWx3 uint8 pictures -> ``out[0:B]`` = (x / 255 - mean) / std, as :func:`rgb_normalize`."""
    pictures, out = _device("pictures", pictures), _device("out", out)
    mean, std = _device("mean", mean), _device("std", std)
    if pictures.ndim != 4 or pictures.shape[3] != 3 or out.ndim != 4 or out.shape[0] < pictures.shape[0] \
            or tuple(out.shape[2:]) != tuple(pictures.shape[1:3]) or mean.shape != (3,) or std.shape != (3,):
        raise InputError(f"pictures {tuple(pictures.shape)} (BxHxWx3), mean {mean.shape}, std {std.shape} (3) and "
                         f"out {tuple(out.shape)} do not fit together.")
    grid, block = _batch_grid(*pictures.shape[:3])
    _rgb_batch_kernel[grid, block, _stream(stream)](pictures, mean, std, out)


@cuda.jit
def _composite_batch_kernel(generated, pictures, masks, alpha, pm1, blend, results):
    y, x = cuda.grid(2)
    b = cuda.blockIdx.z
    if y >= pictures.shape[1] or x >= pictures.shape[2]:
        return
    for c in range(pictures.shape[3]):
        if masks[b, y, x] == 0:
            results[b, y, x, c] = pictures[b, y, x, c]
        else:
            results[b, y, x, c] = _composited(np.float32(generated[b, c, y, x]), pictures[b, y, x, c],
                                              alpha[b, y, x] if blend else np.float32(0.0), pm1, blend)


def composite_batch(generated, pictures, masks, results, *, alpha=None, value_range="pm1", stream=None) -> None:
    """As :func:`composite` for B items: generated (NxCxHxW, N >= B) + pictures (BxHxWxC) + masks (BxHxW)
    [+ alpha (BxHxW float32)] -> results (BxHxWxC uint8). Known pixels are copied bit-exact."""
    generated, pictures = _device("generated", generated), _device("pictures", pictures)
    masks, results = _device("masks", masks), _device("results", results)
    n = pictures.shape[0] if pictures.ndim == 4 else -1
    if n < 0 or tuple(results.shape) != tuple(pictures.shape) or tuple(masks.shape) != tuple(pictures.shape[:3]) \
            or generated.ndim != 4 or generated.shape[0] < n or tuple(generated.shape[2:]) != tuple(pictures.shape[1:3]):
        raise InputError(f"generated {tuple(generated.shape)}, pictures {tuple(pictures.shape)}, masks "
                         f"{tuple(masks.shape)} and results {tuple(results.shape)} do not fit together.")
    blend = alpha is not None
    if blend:
        alpha = _device("alpha", alpha)
        _check_batch("alpha", alpha, tuple(masks.shape), f"{tuple(masks.shape)} like the masks")
    else:
        alpha = cuda.device_array((1, 1, 1), np.float32)
    grid, block = _batch_grid(*pictures.shape[:3])
    _composite_batch_kernel[grid, block, _stream(stream)](generated, pictures, masks, alpha, value_range == "pm1",
                                                          blend, results)


@cuda.jit
def _argmax_batch_kernel(logits, palette, labels, colours):
    y, x = cuda.grid(2)
    b = cuda.blockIdx.z
    if y >= labels.shape[1] or x >= labels.shape[2]:
        return
    best = _argmax(logits[b], y, x)
    labels[b, y, x] = best
    for k in range(3):
        colours[b, y, x, k] = palette[best, k]


def argmax_palette_batch(logits, palette, labels, colours, stream=None) -> None:
    """NxKxHxW logits -> labels (BxHxW uint8) and colours (BxHxWx3 uint8) for items 0..B-1 (B = labels' first
    axis, N >= B), as :func:`argmax_palette`."""
    logits, palette = _device("logits", logits), _device("palette", palette)
    labels, colours = _device("labels", labels), _device("colours", colours)
    if labels.ndim != 3 or logits.ndim != 4 or logits.shape[0] < labels.shape[0] \
            or tuple(labels.shape[1:]) != tuple(logits.shape[2:]) or tuple(colours.shape) != (*labels.shape, 3):
        raise InputError(f"labels {tuple(labels.shape)} / colours {tuple(colours.shape)} do not fit logits "
                         f"{tuple(logits.shape)}.")
    grid, block = _batch_grid(*labels.shape)
    _argmax_batch_kernel[grid, block, _stream(stream)](logits, palette, labels, colours)
