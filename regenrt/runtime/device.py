"""The GPU path of the runtime: CUDA pre-kernels write the engine's input buffer, the engine runs, CUDA
post-kernels read its output buffer — no host round-trip in between.

The runtime picks this path by where the engine's buffers live: a runner on ``cuda`` that offers the device
interface below (the torch-CUDA and TensorRT runners do) gets it; every other engine runs the CPU kernels on host
arrays. Each task supplies ``device_pre`` / ``device_post`` (see :class:`regenrt.tasks.runtime.TaskRuntime`),
built on the batched numba CUDA launchers of :mod:`regenrt.kernels.numba_cuda`, which take the runner's tensors
as they are (``__cuda_array_interface__``) on the runner's stream. Per batch: one host -> device copy per raw
input (stacked into a reused pinned host buffer, copied into a reused device buffer: no allocation per batch),
one pre-kernel launch, the engine, one post-kernel launch, one device -> host copy per output, one synchronize.
(Per item, as first written, an H200 spent ~0.1-0.4 ms of Python-side launch per kernel and an allocation per
upload; run-infer reached 0.22-0.25 of the engine's speed.) One batch at a time per runner: the buffers are
shared.

Device interface of a runner::

    runner.stream                 # numba stream the kernels are launched on (the runner's own CUDA stream)
    runner.buffers(shape)         # (input, output) device arrays for an NCHW input shape, reused across batches
    runner.execute(shape)         # run input -> output on that stream, asynchronously

Example::

    if on_device(engine):
        outputs = run_batch(engine, runtime, prepared_items, options)   # [{suffix: host array}, ...]
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..errors import RegenrtError
from .lru import cached


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


class Staging:
    """Device buffers, and pinned host buffers beside them, reused batch after batch: one set per (name, shape,
    dtype) for a runner. ``upload`` and ``download`` are asynchronous on the stream; a batch ends with
    ``stream.synchronize()`` (``finish``) before its host buffers are read or refilled. At most ``keep`` buffers of
    each kind stay (the least recently used go first): inputs of many sizes must not pin host memory without end."""

    def __init__(self, keep: int = 32):
        self.keep = keep
        self._device: dict[tuple, Any] = {}
        self._host: dict[tuple, np.ndarray] = {}
        self._constants: dict[str, Any] = {}

    def device(self, name: str, shape: tuple, dtype, stream) -> Any:
        from numba import cuda

        return cached(self._device, (name, tuple(shape), np.dtype(dtype).str),
                      lambda: cuda.device_array(tuple(shape), dtype, stream=stream), self.keep)

    def _pinned(self, name: str, shape: tuple, dtype) -> np.ndarray:
        from numba import cuda

        return cached(self._host, (name, tuple(shape), np.dtype(dtype).str),
                      lambda: cuda.pinned_array(tuple(shape), dtype), self.keep)

    def upload(self, name: str, items: list[np.ndarray], dtype, stream) -> Any:
        """The items stacked into ``name``'s pinned buffer, copied to its device buffer (B x item shape)."""
        shape = (len(items), *np.shape(items[0]))
        host = self._pinned(name, shape, dtype)
        for i, item in enumerate(items):
            host[i] = item
        dev = self.device(name, shape, dtype, stream)
        dev.copy_to_device(host, stream=stream)
        return dev

    def constant(self, name: str, value: np.ndarray, stream) -> Any:
        """A small array uploaded once (mean, std, palette): the same values every batch."""
        if name not in self._constants:
            self._constants[name] = upload(value, stream)
        return self._constants[name]

    def download(self, name: str, dev: Any, stream) -> np.ndarray:
        """``dev`` (numba, CuPy or torch) copied into ``name``'s pinned buffer; valid after ``finish`` until the next
        batch: copy items out of it."""
        from numba import cuda

        if not hasattr(dev, "copy_to_host"):
            dev = cuda.as_cuda_array(dev)
        host = self._pinned(name, tuple(dev.shape), dev.dtype)
        dev.copy_to_host(host, stream=stream)
        return host

    @staticmethod
    def finish(stream) -> None:
        stream.synchronize()


_ATTACH = threading.Lock()


def staging(runner) -> tuple[Staging, threading.Lock]:
    """The runner's staging buffers and the lock that gives one batch at a time the runner's buffers: the runner's
    own lock where it has one (its host ``infer`` takes it too), so the two paths never interleave."""
    with _ATTACH:
        if not hasattr(runner, "_regenrt_staging"):
            runner._regenrt_staging = (Staging(), getattr(runner, "_lock", None) or threading.Lock())
        return runner._regenrt_staging


def run_batch(engine, runtime, batch: list, options) -> list[dict[str, np.ndarray]]:
    """One batch of same-shaped prepared items through the pre-kernel, the engine and the post-kernel on the device
    (one launch each, buffers reused); returns each item's outputs as host arrays."""
    if runtime.device_pre is None or runtime.device_post is None:
        raise RegenrtError(f"the {runtime.name} task has no GPU kernels; load the engine with device='cpu'.")
    runner = engine.runner
    shape = (len(batch), *batch[0].shape)
    stage, lock = staging(runner)
    with lock:
        inp, out = runner.buffers(shape)
        runtime.device_pre(batch, engine, stage, inp, runner.stream)
        runner.execute(shape)
        return runtime.device_post(batch, engine, stage, out, options, runner.stream)
