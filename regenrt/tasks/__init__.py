"""Tasks (one module each, registered on import): phase-recovery, inpainting, segmentation."""
from . import inpainting, phase, segmentation  # noqa: F401  (registration side effect)
from .base import Task, get_task, list_tasks, load_sample, read_picture

__all__ = ["Task", "get_task", "list_tasks", "load_sample", "read_picture"]
