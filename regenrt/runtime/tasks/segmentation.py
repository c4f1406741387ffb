"""segmentation at run time: picture -> ImageNet normalization -> engine -> label PNG and colour overlay PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io import as_channels, decode_image
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


def _prepare(data: dict[str, Any], engine, options: RunOptions) -> Prepared:
    picture = np.asarray(data["picture"])
    picture = as_channels(np.repeat(picture[..., None], 3, 2) if picture.ndim == 2 else picture, 3)
    meta = engine.metadata["input"]
    out = np.empty((1, engine.channels, *picture.shape[:2]), np.float32)
    options.kernels.rgb_normalize(picture, out, 0, meta.get("mean"), meta.get("std"))
    engine.check_item(out[0])
    return Prepared(None, out[0], {"picture": picture})


def _finish(prepared: Prepared, output: np.ndarray, options: RunOptions) -> dict[str, np.ndarray]:
    labels, colours = options.kernels.argmax_palette(output, PALETTE)
    picture = prepared.context["picture"]
    overlay = ((picture.astype(np.uint16) + colours) // 2).astype(np.uint8)
    return {"_label.png": labels, "_overlay.png": overlay}


register_runtime(TaskRuntime("segmentation", _items, _prepare, _decode, _finish))
