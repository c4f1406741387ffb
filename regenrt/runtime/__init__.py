"""Runtime: engines (backends selected by artefact kind) and the pipeline; the tasks' I/O and pre/post-processing
live with the tasks (:mod:`regenrt.tasks.runtime`).

Example::

    from regenrt.runtime import Engine, Predictor, RunOptions, run_directory
    engine = Engine.load("engine/model.onnx", device="cpu")

The names are resolved on first use (PEP 562), so that a task's I/O module can import :mod:`regenrt.runtime.io`
or :mod:`regenrt.runtime.device` without importing the pipeline, which imports the tasks.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"Engine": ".engine", "list_backends": ".engine", "register_backend": ".engine",
            "Summary": ".pipeline", "run_directory": ".pipeline", "Predictor": ".predictor",
            "RunOptions": "..tasks.runtime"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'regenrt.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
