"""The GPU path of the runtime: CUDA pre-kernels write the engine's input buffer, the engine runs, CUDA
post-kernels read its output buffer — no host round-trip in between.

The runtime picks this path by where the engine's buffers live: a runner on ``cuda`` that offers the device
interface below (the torch-CUDA and TensorRT runners do) gets it; every other engine runs the CPU kernels on host
arrays. Each task supplies ``device_pre`` / ``device_post`` (see :class:`regenrt.tasks.runtime.TaskRuntime`),
built on the numba CUDA launchers of :mod:`regenrt.kernels.numba_cuda`, which take the runner's tensors as
they are (``__cuda_array_interface__``) on the runner's stream.

Device interface of a runner::

    runner.stream                 # numba stream the kernels are launched on (the runner's own CUDA stream)
    runner.buffers(shape)         # (input, output) device arrays for an NCHW input shape, reused across batches
    runner.execute(shape)         # run input -> output on that stream, asynchronously

Example::

    if on_device(engine):
        outputs = run_batch(engine, runtime, prepared_items, options)   # [{suffix: host array}, ...]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import RegenrtError


def on_device(engine) -> bool:
    """True when the engine's buffers live on the GPU and its runner lets kernels use them in place."""
    return engine.device == "cuda" and all(hasattr(engine.runner, a) for a in ("buffers", "execute", "stream"))


def cuda_kernels():
    from ..kernels import numba_cuda

    return numba_cuda


def upload(arr: np.ndarray, stream) -> Any:
    """A host array copied to a new device array on ``stream`` (the only host -> device copies of the path)."""
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(arr), stream=stream)


def download(arr: Any, stream) -> np.ndarray:
    """A device array (numba, CuPy, torch) copied to the host after the work queued on ``stream``."""
    from numba import cuda

    if not hasattr(arr, "copy_to_host"):
        arr = cuda.as_cuda_array(arr)
    host = arr.copy_to_host(stream=stream)
    stream.synchronize()
    return host


def run_batch(engine, runtime, batch: list, options) -> list[dict[str, np.ndarray]]:
    """One batch of same-shaped prepared items through pre-kernels, the engine and post-kernels on the device."""
    if runtime.device_pre is None or runtime.device_post is None:
        raise RegenrtError(f"the {runtime.name} task has no GPU kernels; load the engine with device='cpu'.")
    runner = engine.runner
    shape = (len(batch), *batch[0].shape)
    inp, out = runner.buffers(shape)
    for index, prepared in enumerate(batch):
        runtime.device_pre(prepared, engine, inp, index, runner.stream)
    runner.execute(shape)
    return [runtime.device_post(prepared, out[index], options, runner.stream) for index, prepared in enumerate(batch)]
