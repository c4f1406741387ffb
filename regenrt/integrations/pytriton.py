"""Online serving with PyTriton: a regenrt ``Predictor`` behind Triton Inference Server's HTTP and gRPC endpoints.

``nvidia-pytriton`` (``regenrt[serve]``) bundles Triton's server; it runs here on CPU. Clients send what the
Python API takes and get the final pixels — the engine's own pre/post-processing runs in the server:

| task | inputs (per request, batch dim first) | outputs |
|---|---|---|
| phase-recovery | ``phase`` float32 H×W (radians) | ``image`` uint8 (uint16 with ``bit_depth=16``) H×W |
| inpainting | ``picture`` uint8 H×W×C, ``mask`` uint8 H×W (nonzero = hole) | ``image`` uint8 H×W×C |
| segmentation | ``picture`` uint8 H×W×C | ``label`` uint8 H×W, ``overlay`` uint8 H×W×3 |

Triton's dynamic batcher groups concurrent requests (``max_batch_size``, ``max_queue_delay_us``); the Predictor
runs each group as one engine batch. A bad request (a mask of another size, NaN phases) is answered with the
Predictor's error message and the server stays up.

Example::

    with serve("engine/", http_port=8000) as triton:   # returns when the model is loaded
        ...                                           # tritonclient / pytriton.client.ModelClient requests
"""
from __future__ import annotations

import os
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, RegenrtError

# task -> (inputs, outputs): (tensor name, dtype, dims without the batch dim; "C" = the engine's channels).
# Output names are the Predictor's suffixes ("_label.png" -> "label"; ".png" -> "image").
SIGNATURES: dict[str, tuple[list[tuple[str, Any, tuple]], list[tuple[str, Any, tuple]]]] = {
    "phase-recovery": ([("phase", np.float32, (-1, -1))], [(".png", np.uint8, (-1, -1))]),
    "inpainting": ([("picture", np.uint8, (-1, -1, "C")), ("mask", np.uint8, (-1, -1))],
                   [(".png", np.uint8, (-1, -1, "C"))]),
    "segmentation": ([("picture", np.uint8, (-1, -1, "C"))],
                     [("_label.png", np.uint8, (-1, -1)), ("_overlay.png", np.uint8, (-1, -1, 3))]),
}


def import_pytriton():
    try:
        from pytriton.triton import Triton  # noqa: F401
    except ImportError:
        raise MissingDependencyError("serving with PyTriton needs `pip install regenrt[serve]` "
                                     "(nvidia-pytriton; Linux x86-64 with glibc >= 2.35).") from None
    import pytriton

    return pytriton


def tensor_name(suffix: str) -> str:
    return suffix.lstrip("_").split(".")[0] or "image"


def signature(engine, options) -> tuple[list[tuple[str, Any, tuple]], list[tuple[str, Any, tuple]]]:
    """(inputs, outputs) of the served model: names, dtypes and dims for this engine and options."""
    if engine.task not in SIGNATURES:
        raise RegenrtError(f"no serving signature for task {engine.task!r}; known: {', '.join(SIGNATURES)}.")
    inputs, outputs = SIGNATURES[engine.task]

    def concrete(dims):
        return tuple(engine.channels if d == "C" else d for d in dims)

    ins = [(name, dtype, concrete(dims)) for name, dtype, dims in inputs]
    outs = [(tensor_name(suffix), np.uint16 if engine.task == "phase-recovery" and options.bit_depth == 16
             else dtype, concrete(dims)) for suffix, dtype, dims in outputs]
    return ins, outs


def infer_function(predictor):
    """The batched callable PyTriton calls: a dict of batched input arrays -> a dict of batched output arrays."""
    from pytriton.decorators import batch

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        results = predictor.predict_many([{name: arr[i] for name, arr in inputs.items()} for i in range(n)])
        return {tensor_name(suffix): np.stack([r[suffix] for r in results]) for suffix in results[0]}

    return infer


def _stub_finds_this_python() -> None:
    """Triton's Python-backend stub (which runs the bound function's proxy) links ``libpython3.X.so`` by name; on
    a machine whose system Python has the same minor version but another patch level, the dynamic linker picks
    the system's, and the stub dies on the first mismatch with this interpreter's standard library (seen here:
    ``'_thread.RLock' object has no attribute '_recursion_count'``). Put this interpreter's library first."""
    libdir, name = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY") or ""
    if libdir and name.endswith(".so") and Path(libdir, name).is_file():  # a shared-library build of Python
        paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
        if libdir not in paths:
            os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *paths])


def serve(engine, *, options=None, name: str | None = None, http_port: int = 8000, grpc_port: int = 8001,
          metrics_port: int = 8002, address: str = "127.0.0.1", max_batch_size: int = 8,
          max_queue_delay_us: int = 2000, instances: int | None = None, log_verbose: int = 0,
          log_file: str | os.PathLike | None = None):
    """Start Triton with the engine bound as model ``name`` (default: the task, ``-`` -> ``_``) and return the
    running ``pytriton.triton.Triton`` (a context manager: leaving it stops the server). ``engine``: an Engine,
    an artefact path or an export directory (loaded as run-infer loads it: its engine.json engine, in
    throughput mode). ``instances``: model instances taking batches at once (default: as
    many as the engine runs in flight, ``engine.requests`` — OpenVINO's throughput mode asks for 2 on 2 cores).
    ``log_file``: where Triton writes its log (each refused request's error among it); default: this process's
    console, as Triton does."""
    import_pytriton()
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from ..runtime import Engine, Predictor, RunOptions

    engine = engine if isinstance(engine, Engine) else Engine.load(engine, mode="throughput")  # batches in flight
    options = options or RunOptions(batch_size=max_batch_size)
    predictor = Predictor(engine, options)
    ins, outs = signature(engine, predictor.options)
    instances = instances or engine.requests
    _stub_finds_this_python()
    config = TritonConfig(http_address=address, http_port=http_port, grpc_address=address, grpc_port=grpc_port,
                          metrics_address=address, metrics_port=metrics_port, log_verbose=log_verbose,
                          log_file=None if log_file is None else Path(log_file))
    triton = Triton(config=config)
    try:
        triton.bind(model_name=name or engine.task.replace("-", "_"),
                    infer_func=[infer_function(predictor)] * instances,
                    inputs=[Tensor(name=n, dtype=d, shape=s) for n, d, s in ins],
                    outputs=[Tensor(name=n, dtype=d, shape=s) for n, d, s in outs],
                    config=ModelConfig(max_batch_size=max_batch_size,
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=max_queue_delay_us)),
                    strict=True)
        triton.run()
    except BaseException:
        triton.stop()
        raise
    return triton
