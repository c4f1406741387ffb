"""Tasks: phase-recovery, inpainting, segmentation — everything about a task lives here.

``regenrt/tasks/<task>.py``: the contract (input/output, metric, representative inputs), what export needs.
``regenrt/tasks/runtime/<task>.py``: the run-time side (file I/O, pre/post-processing, GPU hooks), what run-infer
and the Predictor need; imported on its own (``regenrt.tasks.runtime``) so export never loads the runtime.
"""
from . import inpainting, phase, segmentation  # noqa: F401  (registration side effect)
from .base import Task, get_task, list_tasks, load_sample, read_picture

__all__ = ["Task", "get_task", "list_tasks", "load_sample", "read_picture"]
