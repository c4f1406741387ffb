"""Runtime: engines (backends selected by artefact kind), tasks' pre/post-processing and the pipeline.

Example::

    from regenrt.runtime import Engine, Predictor, RunOptions, run_directory
    engine = Engine.load("engine/model.onnx", device="cpu")
"""
from .engine import Engine, list_backends, register_backend
from .pipeline import Summary, run_directory
from .predictor import Predictor
from .tasks import RunOptions

__all__ = ["Engine", "Predictor", "RunOptions", "Summary", "list_backends", "register_backend", "run_directory"]
