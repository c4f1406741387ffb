"""Pictures of any size: what runs through the engine, and how its outputs become one output of the picture's size.

Three strategies, chosen per item by the task (:func:`plan_for`) from the picture's size, the engine's contract
(a spatial multiple, or one fixed size) and the pixel budget of one inference call:

- **padded** — the whole picture, reflect-padded on the bottom and right to the model's multiple (or to its
  fixed size), the output cropped back. Identity when the size already fits (``exact``).
- **tiled** (segmentation) — overlapping tiles of the engine's size; each tile's logits are weighted by a window
  that falls off linearly across the overlap and the weighted sums normalised, so no seam shows, then the argmax.
  Tiles are run a row at a time and the label rows no later tile touches are finished at once: memory holds one
  band of logits (tile height x picture width x classes), never the whole picture's.
- **crops** (inpainting) — each hole (a group of mask pixels with empty rows or columns around it) gets a window
  of the model's size centred on it with a margin of context; windows whose holes are close are merged; only the
  hole pixels of each window are pasted back, so every known pixel stays bit-exact.

Example::

    plan = plan_for(picture.shape[:2], engine, options, task="segmentation")
    plan.kind, plan.describe()          # "tiled", "tiled 3x4 (512² tiles, 64 px overlap)"
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import InputError

DEFAULT_OVERLAP = 64
DEFAULT_TILE = 512
CROP_MARGIN = 32  # context around a hole (pixels on each side) before the window is fitted


@dataclass
class Plan:
    kind: str                                   # exact | padded | tiled | crops
    size: tuple[int, int]                       # the picture's H, W
    padded: tuple[int, int] = (0, 0)            # the model input's H, W (exact/padded)
    tile: tuple[int, int] = (0, 0)                # tiled: the tiles' H, W
    overlap: int = 0
    grid: tuple[int, int] = (0, 0)
    windows: list[tuple[int, int, int, int, list]] = field(default_factory=list)  # crops: y, x, h, w, boxes

    def describe(self) -> str:
        h, w = self.size
        if self.kind == "exact":
            return "whole"
        if self.kind == "padded":
            return f"padded {w}x{h} -> {self.padded[1]}x{self.padded[0]}"
        if self.kind == "tiled":
            th, tw = self.tile
            return f"tiled {self.grid[0]}x{self.grid[1]} ({th}x{tw} tiles, {self.overlap} px overlap)"
        return f"{len(self.windows)} crop(s) of {self.windows[0][2]}x{self.windows[0][3]}" if self.windows else \
            "no holes: picture kept"


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def engine_geometry(engine) -> tuple[int, tuple[int, int] | None, tuple[int, int]]:
    """(spatial multiple, fixed H/W or None, the size the engine was exported and verified at)."""
    meta = engine.metadata["input"]
    multiple = int(meta.get("spatial_multiple", 1) or 1)
    example = tuple(meta.get("example_shape", [1, 1, DEFAULT_TILE, DEFAULT_TILE])[2:])
    return multiple, engine.static_hw, (int(example[0]), int(example[1]))


def available_memory() -> int:
    """Bytes this process may still use: MemAvailable (Linux), else a quarter of the physical memory."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 8 << 30


# what one pixel of a whole-picture call costs: the float input and output, the picture and result, and above all
# the engine's intermediate tensors (DeepLabV3+ R50: 256 channels at a quarter of the resolution, ~64 bytes a
# pixel each, several alive at once)
BYTES_PER_PIXEL = 256


def default_max_batch_pixels() -> int:
    """Pixels one inference call may take: a tenth of the available memory at ~256 bytes a pixel, between 1 and
    8 megapixels (a 24 GB machine: 8 MP — eight 1-MP pictures, or a 2800x2800 picture whole, in one call)."""
    return int(min(8_000_000, max(1_000_000, available_memory() // 10 // BYTES_PER_PIXEL)))


def single_item_pixels() -> int:
    """The largest picture one call may take alone: half the available memory at ~256 bytes a pixel (a 24 GB
    machine: ~40 MP, a 6000x4000 phase map whole)."""
    return int(max(default_max_batch_pixels(), available_memory() // 2 // BYTES_PER_PIXEL))


def estimate_pixels(path) -> int:
    """The pixels of a picture or .npy map from its header (no decoding); 0 when it cannot be read."""
    try:
        if str(path).lower().endswith(".npy"):
            shape = np.load(path, mmap_mode="r").shape
            return int(np.prod(shape[-2:])) if len(shape) >= 2 else 0
        from PIL import Image

        with Image.open(path) as img:
            return int(img.size[0] * img.size[1])
    except Exception:  # noqa: BLE001 - the item's own decode reports what is wrong with it
        return 0


def padded_plan(size: tuple[int, int], multiple: int, fixed: tuple[int, int] | None) -> Plan:
    h, w = size
    target = fixed if fixed else (_round_up(h, multiple), _round_up(w, multiple))
    if fixed and (h > fixed[0] or w > fixed[1]):
        raise InputError(f"the picture is {w}x{h}; the engine takes {fixed[1]}x{fixed[0]} only")
    return Plan("exact" if target == (h, w) else "padded", size, padded=target)


def pad_chw(x: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    """A CxHxW array reflect-padded at the bottom and right to ``target`` (repeated reflection where the pad is
    larger than the array)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(target):
        return x
    return np.pad(x, ((0, 0), (0, target[0] - h), (0, target[1] - w)), mode="symmetric")


def pad_hw(x: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    """An HxW or HxWxC array padded the same way."""
    h, w = x.shape[:2]
    if (h, w) == tuple(target):
        return x
    pads = ((0, target[0] - h), (0, target[1] - w)) + ((0, 0),) * (x.ndim - 2)
    return np.pad(x, pads, mode="symmetric")


# --- tiles ------------------------------------------------------------------------------------------------------

def starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering ``length`` with at least ``overlap`` between neighbours; the last ends at the end."""
    if length <= tile:
        return [0]
    step = tile - overlap
    out = list(range(0, length - tile, step))
    out.append(length - tile)
    return out


def ramp(tile: int, overlap: int) -> np.ndarray:
    """1 in the middle, falling linearly to 1/(overlap+1) at the edges over ``overlap`` pixels."""
    i = np.arange(tile, dtype=np.float32)
    return np.minimum(1.0, np.minimum(i + 1, tile - i) / np.float32(overlap + 1)).astype(np.float32)


def tiled_plan(size: tuple[int, int], tile, overlap: int, multiple: int) -> Plan:
    """``tile``: a side, or (H, W) (a fixed-size engine's, which may not be square)."""
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    th, tw = max(multiple, th // multiple * multiple), max(multiple, tw // multiple * multiple)
    overlap = min(overlap, th // 2, tw // 2)
    h, w = max(size[0], th), max(size[1], tw)
    return Plan("tiled", size, tile=(th, tw), overlap=overlap,
                grid=(len(starts(h, th, overlap)), len(starts(w, tw, overlap))))


def _argmax(logits: np.ndarray) -> np.ndarray:
    return np.argmax(logits, axis=0).astype(np.uint8)


def run_tiled(plan: Plan, picture: np.ndarray, make_tile: Callable[[np.ndarray], np.ndarray],
              infer: Callable[[np.ndarray], np.ndarray], batch: int,
              reduce: Callable[[np.ndarray], np.ndarray] = _argmax) -> np.ndarray:
    """Blended logits of the engine over the plan's tiles, ``reduce``d a finished band at a time (default: the
    per-pixel argmax -> HxW uint8 labels; ``lambda x: x`` keeps the KxHxW logits, for small pictures).

    ``make_tile``: an HxWx3 uint8 region -> CxHxW model input; ``infer``: NxCxTxT -> NxKxTxT logits."""
    h, w = plan.size
    (th, tw), overlap = plan.tile, plan.overlap
    source = pad_hw(picture, (max(h, th), max(w, tw)))
    ph, pw = source.shape[:2]
    ys, xs = starts(ph, th, overlap), starts(pw, tw, overlap)
    weight = np.outer(ramp(th, overlap), ramp(tw, overlap))
    labels = None
    band_top, acc, norm = 0, None, np.zeros((th, pw), np.float32)
    for row, y in enumerate(ys):
        if acc is not None and y > band_top:  # rows above this tile row are final: finish them, slide the band
            done = y - band_top
            band = reduce(acc[:, :done] / norm[:done])
            if labels is None:
                labels = np.empty((*band.shape[:-2], ph, pw), band.dtype)
            labels[..., band_top:y, :] = band
            acc = np.concatenate([acc[:, done:], np.zeros((acc.shape[0], done, pw), np.float32)], axis=1)
            norm = np.concatenate([norm[done:], np.zeros((done, pw), np.float32)], axis=0)
            band_top = y
        for i in range(0, len(xs), batch):
            chunk = xs[i:i + batch]
            logits = infer(np.stack([make_tile(source[y:y + th, x:x + tw]) for x in chunk]))
            if acc is None:
                acc = np.zeros((logits.shape[1], th, pw), np.float32)
            if not np.isfinite(logits).all():
                raise FloatingPointError("the engine's output holds NaN/Inf value(s)")
            for x, out in zip(chunk, logits):
                acc[:, :, x:x + tw] += out * weight
                norm[:, x:x + tw] += weight
    band = reduce(acc / norm)
    if labels is None:
        labels = np.empty((*band.shape[:-2], ph, pw), band.dtype)
    labels[..., band_top:band_top + th, :] = band
    return labels[..., :h, :w]


# --- crops around holes -----------------------------------------------------------------------------------------

def hole_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes (y0, x0, y1, x1) of the groups of hole pixels: the mask is cut along empty rows, then empty columns,
    recursively (an XY cut) — each box holds holes with no empty line between them."""
    boxes: list[tuple[int, int, int, int]] = []
    stack = [(0, 0, mask.shape[0], mask.shape[1], 0)]
    while stack:
        y0, x0, y1, x1, axis = stack.pop()
        region = mask[y0:y1, x0:x1]
        lines = region.any(axis=1 - axis)
        if not lines.any():
            continue
        idx = np.flatnonzero(lines)
        breaks = np.flatnonzero(np.diff(idx) > 1)
        runs = np.split(idx, breaks + 1)
        if len(runs) == 1:
            a, b = int(idx[0]), int(idx[-1]) + 1
            sub = (y0 + a, x0, y0 + b, x1) if axis == 0 else (y0, x0 + a, y1, x0 + b)
            other = region[a:b] if axis == 0 else region[:, a:b]
            across = np.flatnonzero(other.any(axis=axis))
            if len(np.split(across, np.flatnonzero(np.diff(across) > 1) + 1)) == 1:
                ys, xs = np.nonzero(mask[sub[0]:sub[2], sub[1]:sub[3]])
                boxes.append((sub[0] + int(ys.min()), sub[1] + int(xs.min()), sub[0] + int(ys.max()) + 1,
                              sub[1] + int(xs.max()) + 1))
            else:
                stack.append((*sub, 1 - axis))
            continue
        for run in runs:
            a, b = int(run[0]), int(run[-1]) + 1
            stack.append(((y0 + a, x0, y0 + b, x1) if axis == 0 else (y0, x0 + a, y1, x0 + b)) + (1 - axis,))
    return sorted(boxes)


def _window(box, size, picture_hw, multiple) -> tuple[int, int, int, int]:
    """A window of at least ``size`` around ``box`` plus its margin (grown to the multiple), inside the picture."""
    y0, x0, y1, x1 = box
    need_h, need_w = y1 - y0 + 2 * CROP_MARGIN, x1 - x0 + 2 * CROP_MARGIN
    wh = max(size[0], _round_up(need_h, multiple)), max(size[1], _round_up(need_w, multiple))
    top = min(max(0, (y0 + y1) // 2 - wh[0] // 2), max(0, picture_hw[0] - wh[0]))
    left = min(max(0, (x0 + x1) // 2 - wh[1] // 2), max(0, picture_hw[1] - wh[1]))
    return top, left, wh[0], wh[1]


def crops_plan(mask: np.ndarray, size: tuple[int, int], fixed: bool, multiple: int) -> Plan:
    """Windows of the model's ``size`` (grown for a big hole where the engine takes any size) around the holes,
    merged while two holes' needs fit one window."""
    hw = mask.shape[:2]
    cap = size[0] * size[1] * (1 if fixed else 4)  # a merged window is the model's size (fixed) or at most 4x it
    groups: list[list] = []
    for box in hole_boxes(mask):  # one pass, in reading order, against the last few groups: linear in holes
        own = _window(box, size, hw, multiple)
        for group in groups[-8:]:
            union = _window(_union(group + [box]), size, hw, multiple)
            if union[2] * union[3] <= cap and _overlap(_window(_union(group), size, hw, multiple), own):
                group.append(box)
                break
        else:
            groups.append([box])
    windows = []
    for group in groups:
        y, x, h, w = _window(_union(group), size, hw, multiple)
        if fixed and (h, w) != tuple(size):
            u = _union(group)
            raise InputError(f"a hole of {u[3] - u[1]}x{u[2] - u[0]} pixels (with {CROP_MARGIN} px of context) is "
                             f"larger than the {size[1]}x{size[0]} the engine takes; split the mask, or export a "
                             "model that takes larger inputs")
        windows.append((y, x, h, w, group))
    return Plan("crops", hw, windows=windows)


def _union(boxes) -> tuple[int, int, int, int]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
