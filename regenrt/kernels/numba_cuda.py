"""numba CUDA kernels: private ``@cuda.jit`` kernels and public launchers.

A launcher validates on the host (shapes, dtypes, channels, that every array lives on the device: device code has no
bounds checks, so nothing it is given may be smaller than what it indexes), computes the grid and launches on an
explicit stream. Arrays may come from numba, CuPy or torch — anything with ``__cuda_array_interface__``; host
arrays are rejected, never copied behind the caller's back. The math is the reference's
(:mod:`regenrt.kernels.reference`); CI runs these kernels under ``NUMBA_ENABLE_CUDASIM=1``.

Written for the hardware: one thread per pixel, the pixel index running fastest across a warp's threads (``x``
across ``threadIdx.x``: a warp reads and writes neighbouring bytes), one launch per batch (grid ``y`` = item),
compiled once and cached on disk (``cache=True``), and no allocation in any launcher, so a launch can be captured in
a CUDA graph. The post-kernels (compositing, argmax) also report, per item and block, whether the engine's output
held a NaN/Inf (``bad``: a block-wide vote, written unconditionally, so it needs no zeroing between batches).

Example::

    stream = cuda.stream()
    phase_normalize_batch(d_phases, d_batch, stream=stream)     # writes d_batch[0:B] on the GPU
"""
from __future__ import annotations

import math
import threading

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
THREADS = 256  # threads per block: 8 warps, each over 32 neighbouring pixels of one row-major item


def _is_device(arr) -> bool:
    if isinstance(arr, np.ndarray):
        return False
    if hasattr(cuda, "is_cuda_array"):
        return cuda.is_cuda_array(arr)
    return type(arr).__name__ == "FakeCUDAArray"  # numba's simulator has no __cuda_array_interface__


def _device(name: str, arr, dtypes=None):
    if not _is_device(arr):
        raise InputError(f"{name} must be a device array (numba, CuPy or torch CUDA); got {type(arr).__name__}. "
                         "Copy it to the GPU first: these kernels never move data implicitly.")
    if hasattr(cuda, "as_cuda_array") and not cuda.devicearray.is_cuda_ndarray(arr):
        arr = cuda.as_cuda_array(arr)  # CuPy arrays, torch CUDA tensors: a zero-copy view
    if dtypes is not None and np.dtype(arr.dtype) not in [np.dtype(d) for d in dtypes]:
        raise InputError(f"{name} must be {' or '.join(np.dtype(d).name for d in dtypes)}; got {np.dtype(arr.dtype)}.")
    return arr


def blocks(pixels: int) -> int:
    """Blocks per item for ``pixels`` pixels (the second axis of a post-kernel's ``bad`` array)."""
    return (pixels + THREADS - 1) // THREADS


def _grid(items: int, pixels: int) -> tuple[tuple[int, int], int]:
    return (blocks(pixels), items), THREADS


def _stream(stream):
    return 0 if stream is None else stream  # 0: the default stream


_PLACEHOLDERS: dict = {}
_PLACEHOLDER_LOCK = threading.Lock()


def _placeholder(ndim: int, dtype) -> object:
    """A 1x..x1 device array standing in for an optional argument (no alpha, no ``bad``): made once per CUDA
    context, never per call (an allocation per call synchronizes the device when numba frees it and cannot be
    captured in a graph)."""
    try:
        context = cuda.current_context().handle.value
    except Exception:  # noqa: BLE001 - the simulator has no context handle
        context = 0
    key = (context, ndim, np.dtype(dtype).str)
    with _PLACEHOLDER_LOCK:
        if key not in _PLACEHOLDERS:
            _PLACEHOLDERS[key] = cuda.device_array((1,) * ndim, dtype)
        return _PLACEHOLDERS[key]


def _bad_array(bad, items: int, pixels: int):
    """``bad`` validated (items x blocks int32, device), or the placeholder when not asked for."""
    if bad is None:
        return _placeholder(2, np.int32), False
    bad = _device("bad", bad, (np.int32,))
    if tuple(bad.shape) != (items, blocks(pixels)):
        raise InputError(f"bad has shape {tuple(bad.shape)}; expected ({items}, {blocks(pixels)}): one int32 per "
                         f"item and block of {THREADS} pixels.")
    return bad, True


# --- per-pixel math: one device function each, shared by the per-item and the batched kernels ------------------
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


@cuda.jit(device=True)
def _pixel():
    """(item, pixel) of this thread: the pixel index runs fastest across the warp (coalesced)."""
    return cuda.blockIdx.y, cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x


@cuda.jit(device=True)
def _phase_px(phase, out, i, shift, to01, mean, inv_std):
    h, w = out.shape[1], out.shape[2]
    y, x = i // w, i % w
    r = _scaled(float(phase[_source(y, h, shift), _source(x, w, shift)]), to01, mean, inv_std)
    for c in range(out.shape[0]):
        out[c, y, x] = r


@cuda.jit(device=True)
def _planes_px(planes, out, i, shift, to01, mean, inv_std):
    h, w = out.shape[1], out.shape[2]
    y, x = i // w, i % w
    sy, sx = _source(y, h, shift), _source(x, w, shift)
    r = _scaled(math.atan2(float(planes[1, sy, sx]), float(planes[0, sy, sx])), to01, mean, inv_std)
    for c in range(out.shape[0]):
        out[c, y, x] = r


@cuda.jit(device=True)
def _holes_px(picture, mask, out, i, fill):
    w = picture.shape[1]
    y, x = i // w, i % w
    hole = mask[y, x] != 0
    for c in range(picture.shape[2]):
        out[c, y, x] = fill if hole else np.float32(picture[y, x, c]) / np.float32(127.5) - np.float32(1.0)


@cuda.jit(device=True)
def _rgb_px(picture, mean, std, out, i):
    w = picture.shape[1]
    y, x = i // w, i % w
    for c in range(out.shape[0]):
        k = c % 3  # channels repeated cyclically to the engine's C, as the reference's np.resize
        out[c, y, x] = (np.float32(picture[y, x, k]) / np.float32(255.0) - mean[k]) / std[k]


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
def _composite_px(generated, picture, mask, alpha, pm1, blend, result, i):
    """Writes one pixel's composite; True when the generated value there is NaN/Inf (holes and known pixels
    alike: a non-finite output is the engine's fault wherever it lands)."""
    w = picture.shape[1]
    y, x = i // w, i % w
    bad = False
    for c in range(picture.shape[2]):
        g = np.float32(generated[c, y, x])
        bad = bad or not math.isfinite(g)
        if mask[y, x] == 0:
            result[y, x, c] = picture[y, x, c]
        else:
            result[y, x, c] = _composited(g, picture[y, x, c], alpha[y, x] if blend else np.float32(0.0), pm1, blend)
    return bad


@cuda.jit(device=True)
def _argmax_px(logits, palette, labels, colours, i):
    """Writes the class at pixel ``i`` of CxHxW logits (one channel: 1 where the logit is positive) and its
    colour; True when a logit there is NaN/Inf."""
    w = labels.shape[1]
    y, x = i // w, i % w
    top = logits[0, y, x]
    bad = not math.isfinite(top)
    best = 1 if logits.shape[0] == 1 and top > 0 else 0
    for c in range(1, logits.shape[0]):
        v = logits[c, y, x]
        bad = bad or not math.isfinite(v)
        if v > top:
            best, top = c, v
    labels[y, x] = best
    for k in range(3):
        colours[y, x, k] = palette[best, k]
    return bad


@cuda.jit(device=True)
def _vote(bad, b, flag, track):
    """Block-wide OR of ``flag`` into ``bad[b, block]`` (every thread of the block must call it)."""
    any_bad = cuda.syncthreads_or(np.int32(1) if flag else np.int32(0))
    if track and cuda.threadIdx.x == 0:
        bad[b, cuda.blockIdx.x] = 1 if any_bad else 0


# --- kernels: item ``b`` of the batch is blockIdx.y (per-item kernels write item ``index``) -------------------------
@cuda.jit(cache=True)
def _phase_kernel(phase, out, index, shift, to01, mean, inv_std):
    _, i = _pixel()
    if i < out.shape[2] * out.shape[3]:
        _phase_px(phase, out[index], i, shift, to01, mean, inv_std)


@cuda.jit(cache=True)
def _planes_kernel(planes, out, index, shift, to01, mean, inv_std):
    _, i = _pixel()
    if i < out.shape[2] * out.shape[3]:
        _planes_px(planes, out[index], i, shift, to01, mean, inv_std)


@cuda.jit(cache=True)
def _phase_batch_kernel(phases, out, shift, to01, mean, inv_std):
    b, i = _pixel()
    if i < out.shape[2] * out.shape[3]:
        _phase_px(phases[b], out[b], i, shift, to01, mean, inv_std)


@cuda.jit(cache=True)
def _holes_batch_kernel(pictures, masks, out, offset, fill):
    b, i = _pixel()
    if i < pictures.shape[1] * pictures.shape[2]:
        _holes_px(pictures[b], masks[b], out[offset + b], i, fill)


@cuda.jit(cache=True)
def _rgb_batch_kernel(pictures, mean, std, out, offset):
    b, i = _pixel()
    if i < pictures.shape[1] * pictures.shape[2]:
        _rgb_px(pictures[b], mean, std, out[offset + b], i)


@cuda.jit(cache=True)
def _composite_batch_kernel(generated, pictures, masks, alpha, pm1, blend, results, bad, track):
    b, i = _pixel()
    flag = False
    if i < pictures.shape[1] * pictures.shape[2]:
        flag = _composite_px(generated[b], pictures[b], masks[b], alpha[b if blend else 0], pm1, blend, results[b],
                              i)
    _vote(bad, b, flag, track)


@cuda.jit(cache=True)
def _argmax_batch_kernel(logits, palette, labels, colours, bad, track):
    b, i = _pixel()
    flag = False
    if i < labels.shape[1] * labels.shape[2]:
        flag = _argmax_px(logits[b], palette, labels[b], colours[b], i)
    _vote(bad, b, flag, track)


@cuda.jit(device=True)
def _block_stats(low, high, clipped, bad):
    """Tree reduction of a block's shared arrays (THREADS long each) in one pass: min of ``low``, max of ``high``,
    sums of ``clipped`` and ``bad``, into element 0. Every thread of the block must call it."""
    t = cuda.threadIdx.x
    step = THREADS // 2
    while step > 0:
        if t < step:
            low[t] = min(low[t], low[t + step])
            high[t] = max(high[t], high[t + step])
            clipped[t] += clipped[t + step]
            bad[t] += bad[t + step]
        cuda.syncthreads()
        step //= 2


@cuda.jit(cache=True)
def _phase_finish_batch_kernel(outputs, lo, hi, top, quantized, stats):
    """Model outputs (N x 1 x H x W) -> ``quantized[b]`` = rint(clip((y - lo) / (hi - lo), 0, 1) * top) (float64
    math, as the host's ``finish``); ``stats[b, block]`` = (min, max, values outside [lo, hi], non-finite count) of
    the block's pixels, written unconditionally (no zeroing between batches)."""
    b, i = _pixel()
    h, w = quantized.shape[1], quantized.shape[2]
    low = cuda.shared.array(THREADS, np.float64)
    high = cuda.shared.array(THREADS, np.float64)
    clipped = cuda.shared.array(THREADS, np.float64)
    bad = cuda.shared.array(THREADS, np.float64)
    t = cuda.threadIdx.x
    low[t], high[t], clipped[t], bad[t] = np.inf, -np.inf, 0.0, 0.0
    if i < h * w:
        y, x = i // w, i % w
        v = np.float64(outputs[b, 0, y, x])
        if math.isfinite(v):
            low[t], high[t] = v, v
            clipped[t] = 1.0 if (v < lo or v > hi) else 0.0
            s = min(max((v - lo) / (hi - lo), 0.0), 1.0) * top
            quantized[b, y, x] = round(s)
        else:
            bad[t] = 1.0
            quantized[b, y, x] = 0
    cuda.syncthreads()
    _block_stats(low, high, clipped, bad)
    if t == 0:
        stats[b, cuda.blockIdx.x, 0] = low[0]
        stats[b, cuda.blockIdx.x, 1] = high[0]
        stats[b, cuda.blockIdx.x, 2] = clipped[0]
        stats[b, cuda.blockIdx.x, 3] = bad[0]


def phase_finish_batch(outputs, quantized, stats, output_range, *, stream=None) -> None:
    """The phase task's finish on the device: N x 1 x H x W float32 model outputs -> ``quantized`` (B x H x W, uint8
    or uint16: the PNG's values for ``output_range`` (lo, hi)) and ``stats`` (B x ``blocks(H*W)`` x 4 float64: per
    block min, max, values outside the range, non-finite values) for the run's report and the NaN/Inf check."""
    quantized = _device("quantized", quantized, (np.uint8, np.uint16))
    if quantized.ndim != 3:
        raise InputError(f"quantized has shape {tuple(quantized.shape)}; expected BxHxW uint8 or uint16.")
    n, h, w = quantized.shape
    outputs = _nchw("outputs", outputs, n, h, w, 1)
    stats = _device("stats", stats, (np.float64,))
    if tuple(stats.shape) != (n, blocks(h * w), 4):
        raise InputError(f"stats has shape {tuple(stats.shape)}; expected ({n}, {blocks(h * w)}, 4).")
    lo, hi = (float(v) for v in output_range)
    if not hi > lo:
        raise InputError(f"output_range must be (low, high) with low < high, got {output_range}.")
    top = 65535.0 if np.dtype(quantized.dtype) == np.uint16 else 255.0
    grid, block = _grid(n, h * w)
    _phase_finish_batch_kernel[grid, block, _stream(stream)](outputs, lo, hi, top, quantized, stats)


# --- launchers ------------------------------------------------------------------------------------------------
def _nchw(name: str, out, items: int, h: int, w: int, channels: int | None = None):
    out = _device(name, out, (np.float32,))
    if out.ndim != 4 or out.shape[0] < items or tuple(out.shape[2:]) != (h, w) \
            or (channels is not None and out.shape[1] != channels):
        want = f"{channels}" if channels is not None else "C"
        raise InputError(f"{name} has shape {tuple(out.shape)}; expected N x {want} x {h} x {w} with N >= {items}.")
    return out


def phase_normalize(phase, out, index, *, scale="pm1", fftshift=False, mean=None, std=None, stream=None) -> None:
    """Raw phase (HxW float) or a spectrum as real+imag planes (2xHxW float) -> ``out[index]`` on the device."""
    phase = _device("phase", phase, (np.float32, np.float64))
    out = _device("out", out, (np.float32,))
    if out.ndim != 4 or not 0 <= index < out.shape[0]:
        raise InputError(f"out must be NCHW with index < N; got shape {tuple(out.shape)} and index {index}.")
    planes = phase.ndim == 3
    if tuple(phase.shape[-2:]) != tuple(out.shape[2:]) or (planes and phase.shape[0] != 2) or phase.ndim not in (2, 3):
        raise InputError(f"phase {tuple(phase.shape)} must be HxW or 2xHxW (real, imag) matching out "
                         f"{tuple(out.shape)}.")
    kernel = _planes_kernel if planes else _phase_kernel
    grid, block = _grid(1, out.shape[2] * out.shape[3])
    kernel[grid, block, _stream(stream)](phase, out, index, fftshift, scale == "01",
                                         0.0 if mean is None else float(mean), 1.0 if std is None else 1.0 / float(std))


def phase_normalize_batch(phases, out, *, scale="pm1", fftshift=False, mean=None, std=None, stream=None) -> None:
    """B raw phase maps (BxHxW float, device) -> ``out[0:B]`` (NCHW, N >= B), as :func:`phase_normalize`."""
    phases = _device("phases", phases, (np.float32, np.float64))
    if phases.ndim != 3:
        raise InputError(f"phases has shape {tuple(phases.shape)}; expected BxHxW.")
    out = _nchw("out", out, phases.shape[0], *phases.shape[1:])
    grid, block = _grid(phases.shape[0], phases.shape[1] * phases.shape[2])
    _phase_batch_kernel[grid, block, _stream(stream)](phases, out, fftshift, scale == "01",
                                                      0.0 if mean is None else float(mean),
                                                      1.0 if std is None else 1.0 / float(std))


def _pictures(name: str, pictures, channels: int | None = None):
    pictures = _device(name, pictures, (np.uint8,))
    if pictures.ndim != 4 or (channels is not None and pictures.shape[3] != channels):
        raise InputError(f"{name} has shape {tuple(pictures.shape)}; expected BxHxWx{channels or 'C'} uint8.")
    return pictures


def _masks(name: str, masks, pictures, dtypes=(np.uint8,)):
    masks = _device(name, masks, dtypes)
    if tuple(masks.shape) != tuple(pictures.shape[:3]):
        raise InputError(f"{name} has shape {tuple(masks.shape)}; expected {tuple(pictures.shape[:3])} like the "
                         "pictures (BxHxW).")
    return masks


def holes_fill_batch(pictures, masks, out, fill=0.0, stream=None, *, offset: int = 0) -> None:
    """BxHxWxC uint8 pictures + BxHxW masks -> ``out[offset:offset+B]`` in [-1, 1], holes set to ``fill``."""
    pictures = _pictures("pictures", pictures)
    masks = _masks("masks", masks, pictures)
    n, h, w, c = pictures.shape
    out = _nchw("out", out, offset + n, h, w, c)
    grid, block = _grid(n, h * w)
    _holes_batch_kernel[grid, block, _stream(stream)](pictures, masks, out, offset, np.float32(fill))


def holes_fill(picture, mask, out, index, fill=0.0, stream=None) -> None:
    """HxWxC uint8 picture + HxW mask -> ``out[index]`` in [-1, 1], holes set to ``fill``, on the device."""
    holes_fill_batch(_item(picture), _item(mask), out, fill, stream, offset=index)


def rgb_normalize_batch(pictures, mean, std, out, stream=None, *, offset: int = 0) -> None:
    """BxHxWx3 uint8 pictures -> ``out[offset:offset+B]`` = (x / 255 - mean) / std (``mean``/``std``: 3 float32,
    device); the engine's C channels repeat the three cyclically."""
    pictures = _pictures("pictures", pictures, 3)
    mean, std = _device("mean", mean, (np.float32,)), _device("std", std, (np.float32,))
    if tuple(mean.shape) != (3,) or tuple(std.shape) != (3,):
        raise InputError(f"mean {tuple(mean.shape)} and std {tuple(std.shape)} must hold 3 float32 each.")
    n, h, w, _ = pictures.shape
    out = _nchw("out", out, offset + n, h, w)
    grid, block = _grid(n, h * w)
    _rgb_batch_kernel[grid, block, _stream(stream)](pictures, mean, std, out, offset)


def rgb_normalize(picture, mean, std, out, index, stream=None) -> None:
    """HxWx3 uint8 picture -> ``out[index]`` = (x / 255 - mean) / std (``mean``/``std``: 3 float32, device)."""
    rgb_normalize_batch(_item(picture), mean, std, out, stream, offset=index)


def composite_batch(generated, pictures, masks, results, *, alpha=None, value_range="pm1", bad=None,
                    stream=None) -> None:
    """As :func:`composite` for B items: generated (NxCxHxW float32, N >= B, C = the pictures' channels) + pictures
    (BxHxWxC) + masks (BxHxW) [+ alpha (BxHxW float32)] -> results (BxHxWxC uint8). Known pixels are copied
    bit-exact. ``bad`` (B x ``blocks(H*W)`` int32): set to 1 where a block's generated values hold a NaN/Inf."""
    pictures = _pictures("pictures", pictures)
    n, h, w, c = pictures.shape
    generated = _nchw("generated", generated, n, h, w, c)  # fewer output channels than the picture: refused here
    masks = _masks("masks", masks, pictures)
    results = _device("results", results, (np.uint8,))
    if tuple(results.shape) != tuple(pictures.shape):
        raise InputError(f"results has shape {tuple(results.shape)}; expected {tuple(pictures.shape)} like the "
                         "pictures.")
    blend = alpha is not None
    alpha = _masks("alpha", alpha, pictures, (np.float32,)) if blend else _placeholder(3, np.float32)
    bad, track = _bad_array(bad, n, h * w)
    grid, block = _grid(n, h * w)
    _composite_batch_kernel[grid, block, _stream(stream)](generated, pictures, masks, alpha, value_range == "pm1",
                                                          blend, results, bad, track)


def composite(generated, picture, mask, result, *, alpha=None, value_range="pm1", stream=None) -> None:
    """Generator output (CxHxW float32, device) + picture + mask -> ``result`` (HxWxC uint8, device).

    Known pixels are copied bit-exact. ``alpha`` (HxW float32 on the device, e.g. the reference's
    ``feather_alpha`` or ``mask / 255`` for soft masks) blends inside holes; without it holes take the
    generated value.
    """
    composite_batch(_item(generated), _item(picture), _item(mask), _item(result),
                    alpha=None if alpha is None else _item(alpha), value_range=value_range, stream=stream)


def argmax_palette_batch(logits, palette, labels, colours, *, bad=None, stream=None) -> None:
    """NxKxHxW logits -> labels (BxHxW uint8) and colours (BxHxWx3 uint8) for items 0..B-1 (B = labels' first
    axis, N >= B); ``palette``: at least K rows of 3 uint8. ``bad`` as in :func:`composite_batch`."""
    labels = _device("labels", labels, (np.uint8,))
    if labels.ndim != 3:
        raise InputError(f"labels has shape {tuple(labels.shape)}; expected BxHxW uint8.")
    n, h, w = labels.shape
    logits = _nchw("logits", logits, n, h, w)
    palette = _device("palette", palette, (np.uint8,))
    if palette.ndim != 2 or palette.shape[1] != 3 or palette.shape[0] < max(2, logits.shape[1]):
        raise InputError(f"palette has shape {tuple(palette.shape)}; {logits.shape[1]} classes need at least "
                         f"{max(2, logits.shape[1])} rows of 3 uint8 (labels are uint8: at most 256 classes).")
    colours = _device("colours", colours, (np.uint8,))
    if tuple(colours.shape) != (n, h, w, 3):
        raise InputError(f"colours has shape {tuple(colours.shape)}; expected {(n, h, w, 3)}.")
    bad, track = _bad_array(bad, n, h * w)
    grid, block = _grid(n, h * w)
    _argmax_batch_kernel[grid, block, _stream(stream)](logits, palette, labels, colours, bad, track)


def argmax_palette(logits, palette, labels, colours, stream=None) -> None:
    """CxHxW logits -> labels (HxW uint8) and colours (HxWx3 uint8), all on the device."""
    argmax_palette_batch(_item(logits), palette, _item(labels), _item(colours), stream=stream)


def _item(arr):
    """One item as a batch of one: a zero-copy view with a leading axis of 1 (numba, CuPy, torch, simulator)."""
    if not _is_device(arr):
        return arr  # the batched launcher names it and refuses it
    arr = _device("array", arr)
    try:
        return arr.reshape((1, *arr.shape))
    except Exception:  # noqa: BLE001 - numba reshapes contiguous arrays only
        raise InputError(f"a {tuple(arr.shape)} strided view cannot be given to the per-item launchers; pass a "
                         "contiguous array, or use the batched launcher on the whole batch.") from None
