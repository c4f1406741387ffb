"""segmentation at run time: picture -> ImageNet normalization -> engine -> label PNG and colour overlay PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...kernels.reference import IMAGENET_MEAN, IMAGENET_STD
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


def _prepare(data: dict[str, Any], engine, options: RunOptions, model_input: bool = True) -> Prepared:
    picture = np.asarray(data["picture"])
    picture = as_channels(np.repeat(picture[..., None], 3, 2) if picture.ndim == 2 else picture, 3)
    meta = engine.metadata["input"]
    shape = (engine.channels, *picture.shape[:2])
    engine.check_shape(shape)
    if on_device(engine) or not model_input:
        return Prepared(None, None, {"picture": picture}, shape)
    out = np.empty((1, *shape), np.float32)
    options.kernels.rgb_normalize(picture, out, 0, meta.get("mean"), meta.get("std"))
    return Prepared(None, out[0], {"picture": picture})


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
    labels, colours = options.kernels.argmax_palette(output, PALETTE)
    return _overlaid(prepared.context["picture"], labels, colours)


def _overlaid(picture: np.ndarray, labels: np.ndarray, colours: np.ndarray) -> dict[str, np.ndarray]:
    overlay = ((picture.astype(np.uint16) + colours) // 2).astype(np.uint8)
    return {"_label.png": labels, "_overlay.png": overlay}


register_runtime(TaskRuntime("segmentation", _items, _prepare, _decode, _finish,
                             device=DeviceTask(_device_stage, _device_pre, _device_post, _device_results)))
