"""regenrt: PyTorch image-to-image networks to verified inference engines.

Heavy dependencies (torch, onnx, onnxruntime) are imported only when a function that needs them is called.
"""
__version__ = "0.1.0"

from .errors import (ArchitectureError, BusyError, CheckpointError, ExportError, MissingDependencyError,  # noqa: E402
                     InputError, ParityError, RegenrtError, UnsafeCheckpointError)


def export_engine(*args, **kwargs):
    """What ``export-engine`` does, from Python: a checkpoint to parity-checked artefacts and the chosen engine;
    the arguments of :func:`regenrt.export.pipeline.export_checkpoint`. (Not named ``export``: that is the
    subpackage, which any ``import regenrt.export...`` binds to the same attribute.)"""
    from .export.pipeline import export_checkpoint

    return export_checkpoint(*args, **kwargs)


__all__ = ["ArchitectureError", "BusyError", "CheckpointError", "ExportError", "InputError", "MissingDependencyError", "ParityError",
           "RegenrtError", "UnsafeCheckpointError", "__version__", "export_engine"]
