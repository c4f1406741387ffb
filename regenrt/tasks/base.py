"""Task registry: what a model's input and output mean, and how to make inputs that look like real ones.

A task is shared by export (representative inputs for calibration and the parity gate, the I/O contract written
into the artefact) and the runtime (decoding, pre/post-processing).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import RegenrtError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Task:
    name: str
    summary: str
    # "image" outputs are judged by PSNR, "segmentation" outputs by argmax agreement (FP16/BF16 gate).
    metric: str
    input_contract: Callable[[dict[str, Any]], dict[str, Any]]
    output_contract: Callable[[dict[str, Any]], dict[str, Any]]
    # (config, n, h, w, seed) -> NxCxHxW float32 model inputs that look like the task's real inputs.
    make_inputs: Callable[[dict[str, Any], int, int, int, int], np.ndarray]
    # (picture HxWxC uint8, config, seed) -> CxHxW float32 model input, preprocessed as the task does.
    from_picture: Callable[[np.ndarray, dict[str, Any], int], np.ndarray]


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    _TASKS[task.name] = task
    return task


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    if name not in _TASKS:
        close = difflib.get_close_matches(name, _TASKS, n=2)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise RegenrtError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(list_tasks())}.")
    return _TASKS[name]


def read_picture(path: Path) -> np.ndarray:
    """Decode a picture file to HxWxC uint8 (C = 1 or 3)."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("L") if img.mode in ("L", "I;16", "I", "F") else img.convert("RGB")
        arr = np.asarray(img)
    return arr[..., None] if arr.ndim == 2 else arr


def load_sample(path: Path, task: Task, config: dict[str, Any], seed: int) -> np.ndarray:
    """A user's sample file -> CxHxW float32 model input.

    ``.npy`` files hold model-ready inputs (HxW, CxHxW or 1xCxHxW); picture files go through the task's
    preprocessing (``Task.from_picture``).
    """
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False).astype(np.float32)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 3:
            raise RegenrtError(f"sample {path.name}: expected HxW, CxHxW or 1xCxHxW, got shape {arr.shape}.")
        return arr
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return task.from_picture(read_picture(path), config, seed)
    raise RegenrtError(f"sample {path.name}: unsupported file type; use .npy or one of {', '.join(IMAGE_SUFFIXES)}.")
