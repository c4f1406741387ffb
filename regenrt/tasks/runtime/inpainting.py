"""inpainting at run time: picture + mask -> holes filled per the model's convention -> engine -> compositing.

Masks: white/nonzero = hole. With ``--masks DIR`` the mask of ``<stem>.<ext>`` is ``DIR/<stem>_mask.<any picture
ext>``, else ``DIR/<stem>.<any picture ext>``; masks must be binary (0 and one other value) unless ``--soft-mask``.
With ``--boxes CSV`` (header ``file,x,y,width,height``; one row per box, boxes numbered per file in row order;
``file`` is the path relative to the input directory, or a bare name when only one input has it) the holes are
those rectangles. Known pixels are copied bit-exact; generated pixels land only inside holes.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError, MissingPathError, RegenrtError
from ...kernels.reference import feather_alpha
from ...runtime.device import NON_FINITE, DeviceTask, bad_items, cuda_kernels, on_device
from ...runtime.io import as_channels, decode_image
from .base import (Item, Prepared, RunOptions, TaskRuntime, list_files, picture_suffixes, register_runtime,
                   require, unique_items)

BOX_COLUMNS = ("file", "x", "y", "width", "height")


def read_boxes(path: Path) -> dict[str, list[tuple[int, int, int, int]]]:
    """Boxes CSV -> {file name: [(x, y, width, height), ...]} in row order."""
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in BOX_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path.name}: missing column(s) {missing}; expected header {','.join(BOX_COLUMNS)}.")
        for line, row in enumerate(reader, start=2):
            try:
                box = tuple(int(row[c]) for c in BOX_COLUMNS[1:])
            except (TypeError, ValueError):
                raise InputError(f"{path.name} line {line}: x, y, width and height must be integers.") from None
            if box[2] <= 0 or box[3] <= 0 or box[0] < 0 or box[1] < 0:
                raise InputError(f"{path.name} line {line}: box {box} must have x, y >= 0 and a positive size.")
            boxes.setdefault(row["file"], []).append(box)  # type: ignore[arg-type]
    return boxes


def _mask_for(stem: str, masks: Path) -> Path | None:
    for name in (f"{stem}_mask", stem):
        for suffix in picture_suffixes():
            for candidate in (masks / f"{name}{suffix}", masks / f"{name}{suffix.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def _items(directory: Path, options: RunOptions) -> list[Item]:
    is_mask = (lambda p: p.stem.endswith("_mask")) if options.masks and options.masks.resolve() == directory.resolve() \
        else (lambda p: False)
    pairs = list_files(directory, picture_suffixes(), exclude=is_mask)
    boxes = read_boxes(options.boxes) if options.boxes else {}

    names = [p.name for _, p in pairs]

    def make(item_id: str, path: Path) -> Item:
        unsafe = submission_id_problem(item_id) if options.submission else None
        if unsafe:
            return Item(item_id, (path,), error=f"its id {item_id!r} cannot be written in {options.submission.name} "
                                                f"as it is ({unsafe}); rename the file")
        if options.boxes:
            rel = path.relative_to(directory).as_posix()
            if rel in boxes:
                return Item(item_id, (path,), {"boxes": boxes[rel]})
            if path.name in boxes and rel != path.name and names.count(path.name) > 1:
                return Item(item_id, (path,), error=f"{options.boxes.name} names {path.name!r}, which matches several "
                                                    f"input files; write the path relative to the input directory "
                                                    f"({rel!r}) in its file column")
            if path.name not in boxes:
                return Item(item_id, (path,), error=f"no rows for {rel} in {options.boxes.name}")
            return Item(item_id, (path,), {"boxes": boxes[path.name]})
        mask = _mask_for(Path(item_id).name, options.masks / Path(item_id).parent)
        if mask is None:
            return Item(item_id, (path,), error=f"no mask found for {path.name} in {options.masks} "
                                                f"(looked for {Path(item_id).name}_mask.* and {Path(item_id).name}.*)")
        return Item(item_id, (path, mask))

    return unique_items(pairs, make)


def _decode(item: Item, options: RunOptions) -> dict[str, Any]:
    picture = decode_image(item.sources[0], options.max_pixels)
    if "boxes" in item.extra:
        h, w = picture.shape[:2]
        mask = np.zeros((h, w), np.uint8)
        for x, y, bw, bh in item.extra["boxes"]:
            require(x + bw <= w and y + bh <= h, f"box {(x, y, bw, bh)} lies outside the {w}x{h} picture.")
            mask[y:y + bh, x:x + bw] = 255
        return {"picture": picture, "mask": mask, "boxes": item.extra["boxes"]}
    mask = decode_image(item.sources[1], options.max_pixels)
    return {"picture": picture, "mask": mask}


def _prepare(data: dict[str, Any], engine, options: RunOptions, model_input: bool = True) -> Prepared:
    picture = as_channels(np.asarray(data["picture"]), engine.channels)
    mask = np.asarray(data["mask"])
    if mask.ndim == 3:
        require(mask.shape[2] == 1 or bool((mask == mask[..., :1]).all()), "the mask must be grayscale.")
        mask = mask[..., 0]
    require(mask.dtype in (np.uint8, np.bool_), f"the mask must be 8-bit, got {mask.dtype}.")
    mask = mask.astype(np.uint8) * (255 if mask.dtype == np.bool_ or mask.max() == 1 else 1)
    require(mask.shape == picture.shape[:2],
            f"mask is {mask.shape[1]}x{mask.shape[0]} but the picture is {picture.shape[1]}x{picture.shape[0]}.")
    if not options.soft_mask:
        lo, hi = mask.min(), mask.max()  # binary: 0 and one other value, or a single value (no np.unique: ~5x cost)
        if lo != hi and (lo != 0 or np.count_nonzero((mask != lo) & (mask != hi))):
            values = np.unique(mask)
            raise InputError(f"the mask is not binary (values {values[:6].tolist()}…); pass --soft-mask to blend by "
                             "its values.")
        mask = np.where(mask != 0, 255, 0).astype(np.uint8)
    shape = (engine.channels, *picture.shape[:2])
    engine.check_shape(shape)
    context = {"picture": picture, "mask": mask, "boxes": data.get("boxes")}
    if on_device(engine) or not model_input:
        return Prepared(None, None, context, shape)
    out = np.empty((1, *shape), np.float32)
    options.kernels.holes_fill(picture, mask, out, 0, float(engine.metadata["input"].get("hole_fill", 0.0)))
    return Prepared(None, out[0], context)


def _device_stage(batch: list[Prepared], engine, options: RunOptions) -> dict:
    staged = {"picture": ([p.context["picture"] for p in batch], np.uint8),
              "mask": ([p.context["mask"] for p in batch], np.uint8)}
    if options.soft_mask:
        staged["alpha"] = ([p.context["mask"].astype(np.float32) / np.float32(255.0) for p in batch], np.float32)
    elif options.feather > 0:
        staged["alpha"] = ([feather_alpha(p.context["mask"], options.feather) for p in batch], np.float32)
    return staged


def _device_pre(engine, inputs, inp, slot, stream) -> None:
    cuda_kernels().holes_fill_batch(inputs["picture"], inputs["mask"], inp,
                                    float(engine.metadata["input"].get("hole_fill", 0.0)), stream=stream)


def _device_post(engine, inputs, output, slot, options: RunOptions, stream) -> dict:
    kernels = cuda_kernels()
    n, h, w, c = inputs["picture"].shape
    results = slot.buffer("result", (n, h, w, c), np.uint8)
    bad = slot.buffer("bad", (n, kernels.blocks(h * w)), np.int32)
    kernels.composite_batch(output, inputs["picture"], inputs["mask"], results, alpha=inputs.get("alpha"),
                            value_range="pm1", bad=bad, stream=stream)
    return {"result": results, "bad": bad}


def _device_results(batch: list[Prepared], host: dict, options: RunOptions) -> list:
    bad = bad_items(host["bad"], len(batch))
    return [NON_FINITE if bad[i] else {".png": host["result"][i].copy()} for i in range(len(batch))]


def _finish(prepared: Prepared, output: np.ndarray, options: RunOptions) -> dict[str, np.ndarray]:
    ctx = prepared.context
    result = options.kernels.composite(output, ctx["picture"], ctx["mask"], feather=options.feather,
                                       value_range="pm1", soft=options.soft_mask)
    return {".png": result}


def _check(options: RunOptions) -> None:
    if bool(options.masks) == bool(options.boxes):
        raise RegenrtError("inpainting needs exactly one of --masks DIR or --boxes CSV.")  # usage: exit 2
    if options.boxes and not options.boxes.is_file():
        raise MissingPathError(f"--boxes {str(options.boxes)!r} does not exist or is not a file; give the CSV of boxes "
                               "(header file,x,y,width,height).")
    if options.masks and not options.masks.is_dir():
        raise MissingPathError(f"--masks {str(options.masks)!r} does not exist or is not a directory; give the folder "
                               "of masks (<stem>_mask.* or <stem>.*).")


SUBMISSION_UNSAFE_START = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets run as a formula (OWASP)
SUBMISSION_UNSAFE_CHARS = {",": "a comma", '"': "a quote", "\n": "a line break", "\r": "a line break"}


def submission_id_problem(item_id: str) -> str | None:
    """Why ``item_id`` cannot be a submission id written faithfully and safely (None: it can). Ids are written as
    they are — never quoted, escaped or prefixed — so that every id matches its picture."""
    if item_id.startswith(SUBMISSION_UNSAFE_START):
        return f"it starts with {item_id[0]!r}, which spreadsheets run as a formula"
    for char, what in SUBMISSION_UNSAFE_CHARS.items():
        if char in item_id:
            return f"it holds {what}, which the id,value format cannot hold unquoted"
    try:
        item_id.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8"
    return None


def submission_rows(item_id: str, picture: np.ndarray, boxes: list[tuple[int, int, int, int]]):
    """``(<item id>_<box>_<pixel>, value)`` rows; the id is the file's path relative to the input directory without
    its extension (the file stem for top-level files); pixels count row-major over (y, x, channel) in the box."""
    stem = item_id
    for b, (x, y, bw, bh) in enumerate(boxes):
        values = picture[y:y + bh, x:x + bw].reshape(-1)
        for p, v in enumerate(values):
            yield f"{stem}_{b}_{p}", int(v)


register_runtime(TaskRuntime("inpainting", _items, _prepare, _decode, _finish, _check,
                             device=DeviceTask(_device_stage, _device_pre, _device_post, _device_results),
                             inputs=("picture", "mask")))
