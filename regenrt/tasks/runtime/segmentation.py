"""segmentation at run time: picture -> ImageNet normalization -> engine -> label PNG and colour overlay PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...kernels.reference import IMAGENET_MEAN, IMAGENET_STD
from ...runtime import sizes
from ...runtime.device import NON_FINITE, DeviceTask, bad_items, cuda_kernels, on_device
from ...runtime.io import as_channels, decode_image
from .base import Item, Prepared, RunOptions, TaskRuntime, list_files, picture_suffixes, register_runtime, unique_items


def palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: distinct colours for labels 0..n-1 (0 is black)."""
    colours = np.zeros((n, 3), np.uint8)
    for label in range(n):
        c, value = label, [0, 0, 0]
        for shift in range(7, -1, -1):
            for ch in range(3):
                value[ch] |= ((c >> ch) & 1) << shift
            c >>= 3
        colours[label] = value
    return colours


PALETTE = palette()


def _items(directory: Path, options: RunOptions) -> list[Item]:
    return unique_items(list_files(directory, picture_suffixes()), lambda i, p: Item(i, (p,)))


def _decode(item: Item, options: RunOptions) -> dict[str, Any]:
    return {"picture": decode_image(item.sources[0], options.max_pixels)}


def plan(size: tuple[int, int], engine, options: RunOptions) -> sizes.Plan:
    """Tiles when asked (--tile N), when the picture is over one call's pixel budget or the engine takes one size
    smaller than the picture; else the whole picture padded to the model's multiple (--tile 0: always whole)."""
    multiple, fixed, example = sizes.engine_geometry(engine)
    h, w = size
    too_big = h * w > options.batch_pixels() or (fixed is not None and (h > fixed[0] or w > fixed[1]))
    if options.tile or (options.tile is None and too_big):
        tile = options.tile or (fixed if fixed else max(sizes.DEFAULT_TILE, example[0]))
        if fixed and options.tile and (options.tile, options.tile) != tuple(fixed):
            raise InputError(f"--tile {options.tile}: the engine takes {fixed[1]}x{fixed[0]} inputs only; its tiles "
                             "are that size (leave --tile out)")
        return sizes.tiled_plan(size, tile, options.overlap, multiple)
    return sizes.padded_plan(size, multiple, fixed)


def _prepare(data: dict[str, Any], engine, options: RunOptions, model_input: bool = True) -> Prepared:
    picture = np.asarray(data["picture"])
    picture = as_channels(np.repeat(picture[..., None], 3, 2) if picture.ndim == 2 else picture, 3)
    meta = engine.metadata["input"]
    shape = (engine.channels, *picture.shape[:2])
    if shape[1] < 1 or shape[2] < 1:
        engine.check_shape(shape)  # says the picture is empty
    layout = plan(picture.shape[:2], engine, options)
    context = {"picture": picture, "plan": layout}
    if layout.kind == "tiled":
        return Prepared(None, None, context, ("plan", id(context)))  # a batch of its own: it runs its tiles
    shape = (engine.channels, *layout.padded)
    if (on_device(engine) and layout.kind == "exact") or not model_input:
        return Prepared(None, None, context, shape)
    out = np.empty((1, *shape), np.float32)
    options.kernels.rgb_normalize(sizes.pad_hw(picture, layout.padded), out, 0, meta.get("mean"), meta.get("std"))
    context["host"] = layout.kind != "exact"  # a padded picture runs through the host path, also on a GPU engine
    return Prepared(None, out[0], context)


def _run_plan(prepared: Prepared, engine, options: RunOptions) -> np.ndarray:
    """The tiled picture's labels (HxW uint8): the engine run over its tiles, logits blended, argmax."""
    meta = engine.metadata["input"]
    layout = prepared.context["plan"]

    def make_tile(region: np.ndarray) -> np.ndarray:
        out = np.empty((1, engine.channels, *region.shape[:2]), np.float32)
        options.kernels.rgb_normalize(np.ascontiguousarray(region), out, 0, meta.get("mean"), meta.get("std"))
        return out[0]

    batch = max(1, min(options.batch_size, options.batch_pixels() // (layout.tile[0] * layout.tile[1])))
    return sizes.run_tiled(layout, prepared.context["picture"], make_tile, engine.infer, batch)


def _device_stage(batch: list[Prepared], engine, options: RunOptions) -> dict:
    return {"picture": ([p.context["picture"] for p in batch], np.uint8)}


def _device_pre(engine, inputs, inp, slot, stream) -> None:
    meta = engine.metadata["input"]
    mean = slot.constant("mean", np.float32(meta.get("mean") or IMAGENET_MEAN))
    std = slot.constant("std", np.float32(meta.get("std") or IMAGENET_STD))
    cuda_kernels().rgb_normalize_batch(inputs["picture"], mean, std, inp, stream=stream)


def _device_post(engine, inputs, output, slot, options: RunOptions, stream) -> dict:
    kernels = cuda_kernels()
    n, h, w, _ = inputs["picture"].shape
    labels = slot.buffer("labels", (n, h, w), np.uint8)
    colours = slot.buffer("colours", (n, h, w, 3), np.uint8)
    bad = slot.buffer("bad", (n, kernels.blocks(h * w)), np.int32)
    kernels.argmax_palette_batch(output, slot.constant("palette", PALETTE), labels, colours, bad=bad, stream=stream)
    return {"labels": labels, "colours": colours, "bad": bad}


def _device_results(batch: list[Prepared], host: dict, options: RunOptions) -> list:
    bad = bad_items(host["bad"], len(batch))
    # the labels leave as they are (a copy: the pinned buffer is refilled next batch); the overlay is a new array
    return [NON_FINITE if bad[i] else _overlaid(p.context["picture"], host["labels"][i].copy(), host["colours"][i])
            for i, p in enumerate(batch)]


def _finish(prepared: Prepared, output: np.ndarray, options: RunOptions) -> dict[str, np.ndarray]:
    layout = prepared.context.get("plan")
    if layout is not None and layout.kind == "tiled":  # _run_plan gave the labels
        return _overlaid(prepared.context["picture"], output, PALETTE[output])
    if layout is not None and layout.kind == "padded":
        h, w = layout.size
        output = np.ascontiguousarray(output[:, :h, :w])
    labels, colours = options.kernels.argmax_palette(output, PALETTE)
    return _overlaid(prepared.context["picture"], labels, colours)


def _overlaid(picture: np.ndarray, labels: np.ndarray, colours: np.ndarray) -> dict[str, np.ndarray]:
    """The label map, and the picture with each labelled pixel blended half with its class colour; background
    (label 0) is left as it is, so the picture keeps its brightness where nothing was found."""
    overlay = ((picture.astype(np.uint16) + colours) // 2).astype(np.uint8)
    background = labels == 0
    overlay[background] = picture[background]
    return {"_label.png": labels, "_overlay.png": overlay}


register_runtime(TaskRuntime("segmentation", _items, _prepare, _decode, _finish,
                             device=DeviceTask(_device_stage, _device_pre, _device_post, _device_results),
                             run_plan=_run_plan))
