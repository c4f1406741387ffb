"""phase-recovery at run time: phase maps (.npy radians, 16-bit PNG/TIFF encodings) or pictures with
``--from-image`` -> normalized phase -> engine -> grayscale PNG (8- or 16-bit) and optionally the raw .npy.

16-bit encoding of a phase map: ``value = round((phase + pi) / (2 pi) * 65535)``, decoded as
``phase = value / 65535 * 2 pi - pi``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...kernels.reference import fourier_phase
from ..device import cuda_kernels, download, on_device, upload
from ..io import decode_image, load_npy_checked, native_float
from .base import (Item, Prepared, RunOptions, TaskRuntime, list_files, picture_suffixes, register_runtime,
                   require, unique_items)

PHASE_SUFFIXES = (".npy", ".png", ".tif", ".tiff")


def _items(directory: Path, options: RunOptions) -> list[Item]:
    suffixes = picture_suffixes() if options.from_image else PHASE_SUFFIXES
    return unique_items(list_files(directory, suffixes), lambda i, p: Item(i, (p,)))


def _decode(item: Item, options: RunOptions) -> dict[str, Any]:
    path = item.sources[0]
    if path.suffix.lower() == ".npy":
        require(path.stat().st_size > 0, "the file is empty (0 bytes).")
        arr = load_npy_checked(path, options.max_pixels)  # any float dtype or byte order, header checked first
        if np.iscomplexobj(arr):
            arr = np.angle(arr)
        require(np.issubdtype(arr.dtype, np.floating), f"a phase map must hold radians as floats, got {arr.dtype}.")
        return {"phase": arr}
    pic = decode_image(path, options.max_pixels)
    if options.from_image:
        require(pic.ndim == 2 or pic.shape[2] in (1, 3, 4), f"unexpected picture shape {pic.shape}.")
        return {"phase": fourier_phase(pic if pic.ndim == 2 else pic[..., :3])}
    require(pic.dtype == np.uint16 and pic.ndim == 2,
            "an 8-bit or colour picture is not a phase encoding: pass --from-image to use its Fourier phase, or "
            "give 16-bit grayscale phase encodings or .npy phase maps.")
    return {"phase": pic.astype(np.float64) / 65535.0 * 2 * np.pi - np.pi}


def _prepare(data: dict[str, Any], engine, options: RunOptions) -> Prepared:
    phase = np.asarray(data["phase"])
    if np.iscomplexobj(phase):
        phase = np.angle(phase)
    require(np.issubdtype(phase.dtype, np.floating), f"a phase map must hold radians as floats, got {phase.dtype}.")
    phase = native_float(phase)  # any float width and byte order: the kernels take native float32/64
    if phase.ndim == 3 and phase.shape[0] == 1:
        phase = phase[0]
    require(phase.ndim == 2, f"a phase map must be HxW (one channel), got shape {phase.shape}.")
    require(bool(np.isfinite(phase).all()), "the phase map holds NaN or Inf values.")
    shape = (engine.channels, *phase.shape)
    engine.check_shape(shape)
    if on_device(engine):
        return Prepared(None, None, {"phase": phase}, shape)
    out = np.empty((1, *shape), np.float32)
    options.kernels.phase_normalize(phase, out, 0, scale="pm1")
    return Prepared(None, out[0], {})


def _device_pre(prepared: Prepared, engine, inp, index: int, stream) -> None:
    phase = upload(prepared.context.pop("phase").astype(np.float32, copy=False), stream)
    cuda_kernels().phase_normalize(phase, inp, index, scale="pm1", stream=stream)


def _device_post(prepared: Prepared, output, options: RunOptions, stream) -> dict[str, np.ndarray]:
    # The float map is needed on the host anyway (the PNG quantization and --save-npy); one copy of it.
    return _finish(prepared, download(output, stream), options)


def _finish(prepared: Prepared, output: np.ndarray, options: RunOptions) -> dict[str, np.ndarray]:
    lo, hi = options.output_range
    top = 65535 if options.bit_depth == 16 else 255
    scaled = np.clip((output[0].astype(np.float64) - lo) / (hi - lo), 0.0, 1.0) * top
    outputs = {".png": np.rint(scaled).astype(np.uint16 if top == 65535 else np.uint8)}
    if options.save_npy:
        outputs[".npy"] = output.astype(np.float32)
    return outputs


def _check(options: RunOptions) -> None:
    if options.bit_depth not in (8, 16):
        raise InputError(f"--bit-depth must be 8 or 16, got {options.bit_depth}.")
    if options.output_range[1] <= options.output_range[0]:
        raise InputError(f"--output-range must be LOW,HIGH with LOW < HIGH, got {options.output_range}.")


register_runtime(TaskRuntime("phase-recovery", _items, _prepare, _decode, _finish, _check, _device_pre, _device_post))
