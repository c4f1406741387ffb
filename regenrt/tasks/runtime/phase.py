"""phase-recovery at run time: phase maps (.npy radians, 16-bit PNG/TIFF encodings) or pictures with
``--from-image`` -> normalized phase -> engine -> grayscale PNG (8- or 16-bit) and optionally the raw .npy.

16-bit encoding of a phase map: ``value = round((phase + pi) / (2 pi) * 65535)``, decoded as
``phase = value / 65535 * 2 pi - pi``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...kernels.reference import fourier_phase
from ...runtime import sizes
from ...wording import option
from ...runtime.device import NON_FINITE, DeviceTask, cuda_kernels, on_device
from ...runtime.io import decode_image, load_npy_checked, native_float
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
            f"an 8-bit or colour picture is not a phase encoding: pass {option('from_image')} to use its "
            "Fourier phase, or give 16-bit grayscale phase encodings or .npy phase maps.")
    return {"phase": pic.astype(np.float64) / 65535.0 * 2 * np.pi - np.pi}


def _prepare(data: dict[str, Any], engine, options: RunOptions, model_input: bool = True) -> Prepared:
    phase = np.asarray(data["phase"])
    if np.iscomplexobj(phase):
        phase = np.angle(phase)
    require(np.issubdtype(phase.dtype, np.floating), f"a phase map must hold radians as floats, got {phase.dtype}.")
    phase = native_float(phase)  # any float width and byte order: the kernels take native float32/64
    if phase.ndim == 3 and phase.shape[0] == 1:
        phase = phase[0]
    require(phase.ndim == 2, f"a phase map must be HxW (one channel), got shape {phase.shape}.")
    require(bool(np.isfinite(phase).all()), "the phase map holds NaN or Inf values.")
    layout = plan(phase.shape, engine, options)
    shape = (engine.channels, *layout.padded)
    if (on_device(engine) and layout.kind == "exact") or not model_input:
        return Prepared(None, None, {"phase": phase, "plan": layout}, shape)
    out = np.empty((1, *shape), np.float32)
    options.kernels.phase_normalize(sizes.pad_hw(phase, layout.padded), out, 0, scale="pm1")
    return Prepared(None, out[0], {"plan": layout, "host": layout.kind != "exact"})


def plan(size: tuple[int, int], engine, options: RunOptions) -> sizes.Plan:
    """A phase map is one whole (its Fourier phase is global): padded to the model's multiple, cropped back; never
    tiled. Over one call's pixel budget it runs alone in its call; over what one call can hold on this machine
    (half the available memory) it is refused with the flag that allows it."""
    multiple, fixed, _ = sizes.engine_geometry(engine)
    h, w = size
    require(h >= 1 and w >= 1, f"the phase map is empty ({h}x{w}): nothing to run the engine on.")
    if fixed and (h > fixed[0] or w > fixed[1]):
        raise InputError(f"the phase map is {w}x{h}; the engine takes {fixed[1]}x{fixed[0]} maps only, and a phase "
                         "map cannot be tiled (its Fourier phase is global): export the model for this size "
                         f"(export-engine --input-shape 1x{engine.channels}x{h}x{w})")
    layout = sizes.padded_plan(size, multiple, fixed)
    budget = options.alone_pixels or options.max_batch_pixels or sizes.single_item_pixels()
    need = layout.padded[0] * layout.padded[1]
    if need > budget:  # over one call's budget it runs alone (its batch fills up); over this it cannot run at all
        raise InputError(f"the phase map has {need / 1e6:.1f} MP (padded), more than this machine can run in one "
                         f"call ({budget / 1e6:.1f} MP{'' if budget == options.max_batch_pixels else ', from the memory available'}"
                         f"); a phase map cannot be tiled: pass {option('max_batch_pixels', need)} to run it anyway (about "
                         f"{need * sizes.BYTES_PER_PIXEL / 2**30:.1f} GB)")
    return layout


def _device_stage(batch: list[Prepared], engine, options: RunOptions) -> dict:
    return {"phase": ([p.context["phase"] for p in batch], np.float32)}  # kept: a failed batch is retried per item


def _device_pre(engine, inputs, inp, slot, stream) -> None:
    cuda_kernels().phase_normalize_batch(inputs["phase"], inp, scale="pm1", stream=stream)


def _device_post(engine, inputs, output, slot, options: RunOptions, stream) -> dict:
    """The PNG's values and each block's statistics computed on the device: only those come back (and the float
    maps with --save-npy)."""
    kernels = cuda_kernels()
    n, h, w = inputs["phase"].shape
    quantized = slot.buffer("quantized", (n, h, w), np.uint16 if options.bit_depth == 16 else np.uint8)
    stats = slot.buffer("stats", (n, kernels.blocks(h * w), 4), np.float64)
    kernels.phase_finish_batch(output, quantized, stats, options.output_range, stream=stream)
    return {"quantized": quantized, "stats": stats, **({"output": output} if options.save_npy else {})}


def _device_results(batch: list[Prepared], host: dict, options: RunOptions) -> list:
    results = []
    for i, p in enumerate(batch):
        stats = host["stats"][i]
        if stats[:, 3].any():
            results.append(NON_FINITE)
            continue
        pixels = host["quantized"][i].size
        p.context["report"] = {"span": (float(stats[:, 0].min()), float(stats[:, 1].max())),
                               "clipped": float(stats[:, 2].sum()) / pixels}
        outputs = {".png": host["quantized"][i].copy()}
        if options.save_npy:
            outputs[".npy"] = host["output"][i].astype(np.float32)  # a new array
        results.append(outputs)
    return results


CLIP_WARN_SHARE = 0.01  # a picture with more of its pixels outside --output-range than this is reported


def _resolve(options: RunOptions, engine) -> RunOptions:
    """The output range: the one given, else the one export observed on task-realistic inputs, else 0,1."""
    if options.output_range is not None:
        return replace(options, output_range_source="given (--output-range)")
    observed = engine.metadata.get("output", {}).get("observed_range")
    if observed and observed[1] > observed[0]:
        return replace(options, output_range=(float(observed[0]), float(observed[1])),
                       output_range_source="observed at export on task-realistic inputs (--output-range LOW,HIGH "
                                           "to map the range the model was trained to produce)")
    return replace(options, output_range=(0.0, 1.0), output_range_source="default 0,1 (the engine records no range)")


def _finish(prepared: Prepared, output: np.ndarray, options: RunOptions) -> dict[str, np.ndarray]:
    layout = prepared.context.get("plan")
    if layout is not None and layout.kind == "padded":
        output = np.ascontiguousarray(output[:, :layout.size[0], :layout.size[1]])
    lo, hi = options.output_range
    top = 65535 if options.bit_depth == 16 else 255
    raw = output[0].astype(np.float64)
    prepared.context["report"] = {"span": (float(raw.min()), float(raw.max())),
                                  "clipped": float(np.mean((raw < lo) | (raw > hi)))}
    scaled = np.clip((raw - lo) / (hi - lo), 0.0, 1.0) * top
    outputs = {".png": np.rint(scaled).astype(np.uint16 if top == 65535 else np.uint8)}
    if options.save_npy:
        outputs[".npy"] = output.astype(np.float32)
    return outputs


def _report(contexts: list[dict[str, Any]], options: RunOptions) -> list[str]:
    lo, hi = options.output_range
    lines = [f"output range {lo:g},{hi:g}: {options.output_range_source}"]
    clipped = [c for c in contexts if c.get("clipped", 0.0) > CLIP_WARN_SHARE]
    if clipped:
        a = min(c["span"][0] for c in clipped)
        b = max(c["span"][1] for c in clipped)
        lines.append(f"WARNING: {len(clipped)} of {len(contexts)} picture(s) have more than {CLIP_WARN_SHARE:.0%} of "
                     f"their pixels outside the output range {lo:g},{hi:g} (clipped to black/white); their outputs "
                     f"span {a:.4g}..{b:.4g}. Pass --output-range={a:.4g},{b:.4g} (or the range the model was "
                     "trained to produce).")
    return lines


def _expects(options: RunOptions) -> str:
    if options.from_image:
        return "pictures (" + ", ".join(picture_suffixes()) + ") with --from-image"
    return ("phase maps: .npy radians, or 16-bit grayscale .png/.tif encodings (pictures need --from-image)")


def _check(options: RunOptions) -> None:
    if options.bit_depth not in (8, 16):
        raise InputError(f"--bit-depth must be 8 or 16, got {options.bit_depth}.")
    if options.output_range is not None and options.output_range[1] <= options.output_range[0]:
        raise InputError(f"--output-range must be LOW,HIGH with LOW < HIGH, got {options.output_range}.")


register_runtime(TaskRuntime("phase-recovery", _items, _prepare, _decode, _finish, _check,
                             device=DeviceTask(_device_stage, _device_pre, _device_post, _device_results),
                             resolve_options=_resolve, report=_report, inputs=("phase",), expects=_expects))
