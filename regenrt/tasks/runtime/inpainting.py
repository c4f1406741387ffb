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
from ...runtime import sizes
from ...wording import option
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
    require(mask.shape == picture.shape[:2],
            f"mask is {mask.shape[1]}x{mask.shape[0]} but the picture is {picture.shape[1]}x{picture.shape[0]}.")
    if mask.dtype == np.bool_:
        mask = mask.view(np.uint8) * np.uint8(255)
    lo, hi = (int(mask.min()), int(mask.max())) if mask.size else (0, 0)
    if not (lo == 0 and hi in (0, 255)):  # 0/255 already (the usual mask of a large picture): no more passes
        if hi == 1 and lo == 0:
            mask = mask * np.uint8(255)
        elif not options.soft_mask:
            # binary: 0 and one other value, or a single value (no np.unique: ~5x cost)
            if lo != hi and (lo != 0 or np.count_nonzero((mask != lo) & (mask != hi))):
                values = np.unique(mask)
                raise InputError(f"the mask is not binary (values {values[:6].tolist()}…); pass "
                                 f"{option('soft_mask')} to blend by its values.")
            mask = np.where(mask != 0, 255, 0).astype(np.uint8)
    require(min(picture.shape[:2]) >= 1, "the picture is empty: nothing to run the engine on.")
    layout = plan(mask, engine, options)
    context = {"picture": picture, "mask": mask, "boxes": data.get("boxes"), "plan": layout}
    if layout.kind == "crops":
        return Prepared(None, None, context, ("plan", id(context)))  # a batch of its own: it runs its crops
    shape = (engine.channels, *layout.padded)
    if (on_device(engine) and layout.kind == "exact") or not model_input:
        return Prepared(None, None, context, shape)
    out = np.empty((1, *shape), np.float32)
    options.kernels.holes_fill(sizes.pad_hw(picture, layout.padded), _pad_mask(mask, layout.padded), out, 0,
                               float(engine.metadata["input"].get("hole_fill", 0.0)))
    context["host"] = layout.kind != "exact"  # a padded picture runs through the host path, also on a GPU engine
    return Prepared(None, out[0], context)


def _pad_mask(mask: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    """Padding is known picture, never hole."""
    h, w = mask.shape
    return mask if (h, w) == tuple(target) else np.pad(mask, ((0, target[0] - h), (0, target[1] - w)))


def plan(mask: np.ndarray, engine, options: RunOptions) -> sizes.Plan:
    """The whole picture (padded to the model's multiple, or to its fixed size when smaller) when it is small
    enough; else a crop of the model's size around each hole (merged where holes are close)."""
    multiple, fixed, example = sizes.engine_geometry(engine)
    size = mask.shape[:2]
    if fixed:
        if size[0] <= fixed[0] and size[1] <= fixed[1]:
            return sizes.padded_plan(size, multiple, fixed)
        return sizes.crops_plan(mask, fixed, True, multiple)
    whole = sizes.padded_plan(size, multiple, None)
    area = whole.padded[0] * whole.padded[1]
    if area <= min(4 * example[0] * example[1], options.batch_pixels()):
        return whole
    return sizes.crops_plan(mask, example, False, multiple)


def _run_plan(prepared: Prepared, engine, options: RunOptions) -> list[np.ndarray]:
    """The generator's output for each crop window (CxHxW), windows of one size run in batches."""
    ctx, layout = prepared.context, prepared.context["plan"]
    if not layout.windows:
        return []
    bottom = max(y + h for y, x, h, w, _ in layout.windows)
    right = max(x + w for y, x, h, w, _ in layout.windows)
    target = (max(bottom, layout.size[0]), max(right, layout.size[1]))
    picture, mask = sizes.pad_hw(ctx["picture"], target), _pad_mask(ctx["mask"], target)
    fill = float(engine.metadata["input"].get("hole_fill", 0.0))
    inputs = []
    for y, x, h, w, _ in layout.windows:
        out = np.empty((1, engine.channels, h, w), np.float32)
        options.kernels.holes_fill(np.ascontiguousarray(picture[y:y + h, x:x + w]),
                                   np.ascontiguousarray(mask[y:y + h, x:x + w]), out, 0, fill)
        inputs.append(out[0])
    outputs: list = [None] * len(inputs)
    by_shape: dict = {}
    for i, x in enumerate(inputs):
        by_shape.setdefault(x.shape, []).append(i)
    for indices in by_shape.values():
        for start in range(0, len(indices), options.batch_size):
            chunk = indices[start:start + options.batch_size]
            for i, out in zip(chunk, engine.infer(np.stack([inputs[i] for i in chunk]))):
                if not np.isfinite(out).all():  # an engine failure on this item: said at inference, not at writing
                    raise FloatingPointError(NON_FINITE)
                outputs[i] = out
    return outputs


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


def _finish(prepared: Prepared, output, options: RunOptions) -> dict[str, np.ndarray]:
    ctx = prepared.context
    layout = ctx.get("plan")
    if layout is not None and layout.kind == "crops":
        return {".png": _pasted(ctx, layout, output, options)}
    if layout is not None and layout.kind == "padded":
        output = np.ascontiguousarray(output[:, :layout.size[0], :layout.size[1]])
    result = options.kernels.composite(output, ctx["picture"], ctx["mask"], feather=options.feather,
                                       value_range="pm1", soft=options.soft_mask)
    return {".png": result}


def _pasted(ctx: dict, layout: sizes.Plan, outputs: list, options: RunOptions) -> np.ndarray:
    """Each window's generated pixels composited into the picture on its own holes only; every other pixel is the
    picture's, bit for bit."""
    picture, mask = ctx["picture"], ctx["mask"]
    result = picture.copy()
    for (y, x, h, w, group), generated in zip(layout.windows, outputs):
        if not np.isfinite(generated).all():
            raise FloatingPointError(NON_FINITE)
        vh, vw = min(h, picture.shape[0] - y), min(w, picture.shape[1] - x)  # the window inside the picture
        own = np.zeros((vh, vw), np.uint8)
        for y0, x0, y1, x1 in group:
            own[y0 - y:y1 - y, x0 - x:x1 - x] = mask[y0:y1, x0:x1]
        region = np.ascontiguousarray(result[y:y + vh, x:x + vw])
        result[y:y + vh, x:x + vw] = options.kernels.composite(
            np.ascontiguousarray(generated[:, :vh, :vw]), region, own, feather=options.feather, value_range="pm1",
            soft=options.soft_mask)
    return result


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
                             run_plan=_run_plan, inputs=("picture", "mask")))
