"""The runtime side of a task: find items in a directory, decode + preprocess them, turn outputs into files.

Each task registers a :class:`TaskRuntime`; the pipeline and the Python API only talk to this interface, and the
per-pixel math goes through the kernel set in ``options.kernels`` (NumPy reference or a faster one).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...errors import InputError, MissingPathError, RegenrtError
from ...kernels import KernelSet, get_kernels
from ..base import IMAGE_SUFFIXES


@dataclass
class RunOptions:
    """Everything a task needs to know besides the engine (all have working defaults)."""

    batch_size: int = 8
    workers: int = 2  # decode/encode threads
    kernels: KernelSet = field(default_factory=lambda: get_kernels("auto"))
    max_pixels: int = 64_000_000
    # pictures of any size (regenrt.runtime.sizes): pixels one inference call may take (None: from the memory
    # available), segmentation tiles (None: when a picture is over the budget or the engine has a fixed size; 0:
    # never — the whole picture, padded) and their overlap
    max_batch_pixels: int | None = None
    tile: int | None = None
    overlap: int = 64
    # set by sized(): the largest picture one call may take alone (a phase map: half the available memory, or
    # max_batch_pixels when it was given)
    alone_pixels: int | None = None
    # phase-recovery
    from_image: bool = False
    output_range: tuple[float, float] | None = None  # None: the range export observed (engine metadata), else 0,1
    output_range_source: str = "given"
    bit_depth: int = 8
    save_npy: bool = False
    # inpainting
    masks: Path | None = None
    boxes: Path | None = None
    feather: int = 0
    soft_mask: bool = False
    submission: Path | None = None
    # GPU engines: the whole device pipeline of a batch shape captured in one CUDA graph (off: eager steps)
    pipeline_graph: bool = True

    def key(self) -> str:
        """The options that change output bytes; a completed item is redone when they change."""
        return repr((self.kernels.name, self.from_image, self.output_range, self.bit_depth, self.save_npy,
                     self.feather, self.soft_mask, self.tile, self.overlap))

    def batch_pixels(self) -> int:
        from ...runtime.sizes import default_max_batch_pixels

        return self.max_batch_pixels or default_max_batch_pixels()

    def sized(self) -> "RunOptions":
        """These options with the size settings checked and the pixel budget fixed for a whole run (the memory
        available changes as the run goes; a picture near the threshold must not flip between whole and tiled)."""
        from dataclasses import replace

        if self.overlap < 0:
            raise InputError(f"--overlap must be 0 or more pixels (RunOptions(overlap=...)), got {self.overlap}.")
        if self.tile is not None and self.tile < 0:
            raise InputError(f"--tile must be a size, or 0 for the whole picture (RunOptions(tile=...)), got "
                             f"{self.tile}.")
        if self.max_batch_pixels is not None and self.max_batch_pixels <= 0:
            raise InputError(f"--max-batch-pixels must be positive (RunOptions(max_batch_pixels=...)), got "
                             f"{self.max_batch_pixels}.")
        from ...runtime.sizes import single_item_pixels

        if self.alone_pixels is not None:
            return self  # sized already
        alone = self.max_batch_pixels if self.max_batch_pixels else single_item_pixels()
        return replace(self, max_batch_pixels=self.batch_pixels(), alone_pixels=alone)


@dataclass
class Item:
    id: str                       # relative path without suffix: names outputs and manifest entries
    sources: tuple[Path, ...]     # files whose bytes define the item (hashed into the manifest)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None      # set when the item is known bad before decoding (e.g. missing mask)


@dataclass
class Prepared:
    item: Item | None
    model_input: np.ndarray | None  # CxHxW float32; None when the engine's pre-kernel runs on the GPU
    context: dict[str, Any]
    shape: tuple[int, int, int] = (0, 0, 0)  # the model input's CxHxW

    def __post_init__(self) -> None:
        if self.model_input is not None:
            self.shape = tuple(self.model_input.shape)  # type: ignore[assignment]


@dataclass(frozen=True)
class TaskRuntime:
    name: str
    items: Callable[[Path, RunOptions], list[Item]]
    # decoded data (dict of arrays, as the Python API takes them) -> Prepared; validates. ``model_input=False``:
    # validated, the context ``finish`` needs, no model input computed (the GPU path's pre-kernel makes it, or a
    # Triton post step only finishes)
    prepare: Callable[..., Prepared]
    decode: Callable[[Item, RunOptions], dict[str, Any]]
    # (Prepared, CxHxW output, options) -> {suffix: array}; suffix ".png"/".npy" picks the encoding.
    finish: Callable[[Prepared, np.ndarray, RunOptions], dict[str, np.ndarray]]
    check_options: Callable[[RunOptions], None] = lambda options: None
    # GPU path, a batch at a time: a regenrt.runtime.device.DeviceTask (staging, pre-kernel, post-kernel, results)
    device: Any = None
    # (options, engine) -> options with engine-dependent defaults filled in (e.g. phase's output range)
    resolve_options: Callable[[RunOptions, Any], RunOptions] = lambda options, engine: options
    # the ``report`` entries finish left in finished items' context -> lines for the run summary
    report: Callable[[list[dict[str, Any]], RunOptions], list[str]] = lambda contexts, options: []
    # pictures of another size than the engine's: (Prepared, engine, options) -> what ``finish`` takes, running the
    # engine itself over the item's tiles or crops (regenrt.runtime.sizes); None: the task has no such plan
    run_plan: Callable[..., Any] | None = None
    # the arrays one item takes in the Python API (Predictor.predict(**item)), and the files a directory run reads
    inputs: tuple[str, ...] = ("picture",)
    expects: Callable[[RunOptions], str] = lambda options: "pictures (" + ", ".join(IMAGE_SUFFIXES) + ")"


_RUNTIMES: dict[str, TaskRuntime] = {}


def register_runtime(runtime: TaskRuntime) -> TaskRuntime:
    _RUNTIMES[runtime.name] = runtime
    return runtime


def get_runtime(name: str) -> TaskRuntime:
    if name not in _RUNTIMES:
        close = difflib.get_close_matches(name, _RUNTIMES, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise RegenrtError(f"no runtime for task {name!r}.{hint} Known: {', '.join(sorted(_RUNTIMES))}.")
    return _RUNTIMES[name]


def list_files(directory: Path, suffixes: tuple[str, ...], exclude: Callable[[Path], bool] = lambda p: False
               ) -> list[tuple[str, Path]]:
    """(id, path) of files under ``directory`` with one of ``suffixes``, sorted; hidden files skipped."""
    if not directory.is_dir():
        raise MissingPathError(f"--input {str(directory)!r} does not exist or is not a directory; give the folder of "
                               "inputs.")
    found = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts):
            continue
        broken_link = path.is_symlink() and not path.exists()  # dangling or looping: an item that fails, counted
        if not (path.is_file() or broken_link):
            continue
        if path.suffix.lower() in suffixes and not exclude(path):
            found.append((rel.with_suffix("").as_posix(), path))
    return found


def unique_items(pairs: list[tuple[str, Path]], make: Callable[[str, Path], Item]) -> list[Item]:
    """Items from (id, path) pairs; a second file with the same id (a.png beside a.jpg) becomes an error item."""
    seen: dict[str, Path] = {}
    items = []
    for item_id, path in pairs:
        if item_id in seen:
            items.append(Item(f"{item_id}{path.suffix}", (path,),
                              error=f"same name as {seen[item_id].name}; outputs would collide — rename one"))
            continue
        seen[item_id] = path
        if path.is_symlink() and not path.exists():
            items.append(Item(item_id, (path,), error="a symbolic link whose target is missing or loops back to "
                                                      "itself: nothing to read"))
            continue
        items.append(make(item_id, path))
    return items


def picture_suffixes() -> tuple[str, ...]:
    return IMAGE_SUFFIXES


def require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)
