"""Task runtimes (registered on import): phase-recovery, inpainting, segmentation."""
from . import inpainting, phase, segmentation  # noqa: F401  (registration side effect)
from .base import Item, Prepared, RunOptions, TaskRuntime, get_runtime

__all__ = ["Item", "Prepared", "RunOptions", "TaskRuntime", "get_runtime"]
