"""TensorRT runtime backend (``.engine`` files with their ``.engine.json`` fingerprint).

The fingerprint is checked before anything else (see :func:`regenrt.export.tensorrt.check_fingerprint`); the
runner uses TensorRT >= 10's named-tensor API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) on an explicit CUDA stream with device buffers reused per input shape.
NOT run in this workplace: TensorRT cannot be installed here. The fingerprint checks are tested on CPU.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...errors import RegenrtError
from .. import lru
from ...export.tensorrt import check_fingerprint, current_environment, import_tensorrt


def read_metadata(path: Path) -> dict:
    """The engine's regenrt metadata, from its fingerprint, after checking the engine bytes against it."""
    return check_fingerprint(path, None).get("metadata", {})


class TensorRTRunner:
    """An engine on its own CUDA stream, with one execution context per input shape (its shape, its buffer
    addresses and, with ``cuda_graphs``, its captured graph: TensorRT requires a context per concurrent
    execution, and a graph replays the addresses it was captured with); the device interface of
    :mod:`regenrt.runtime.device` (``stream``, ``buffers``, ``execute``) on top of it. Every CUDA operation the
    runner issues -- buffer zeroing, copies, enqueues, capture, the replay check -- is queued on that one stream,
    the stream the pipeline's numba kernels use."""

    def __init__(self, path: str | Path, allow_unverified: bool = False, cuda_graphs: bool = False):
        trt = import_tensorrt()
        import torch
        from numba import cuda

        from ...export.tensorrt import deserialize

        self.path = Path(path)
        fingerprint = check_fingerprint(self.path, current_environment(), allow_unverified=allow_unverified)
        self.torch = torch
        version_compatible = bool(fingerprint.get("compatibility", {}).get("version_compatible"))
        self._runtime, self.engine = deserialize(trt, trt.Logger(trt.Logger.WARNING), self.path.read_bytes(),
                                                 version_compatible)
        if self.engine is None:
            raise RegenrtError(f"TensorRT could not deserialize {self.path.name}; rebuild it with export-engine.")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        modes = {n: self.engine.get_tensor_mode(n) for n in names}
        self.input_name = next(n for n in names if modes[n] == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if modes[n] == trt.TensorIOMode.OUTPUT)
        self.torch_stream = torch.cuda.Stream()
        self.stream = cuda.external_stream(self.torch_stream.cuda_stream)  # numba kernels on the same stream
        self.cuda_graphs = cuda_graphs
        self._slots: dict[tuple, tuple] = {}  # shape -> (context, input, output, graph or None)
        self._lock = threading.Lock()  # the buffers are shared: one batch at a time

    def _context(self, shape: tuple, inp, out):
        context = self.engine.create_execution_context()
        context.set_input_shape(self.input_name, shape)
        if inp is not None:
            context.set_tensor_address(self.input_name, inp.data_ptr())
            context.set_tensor_address(self.output_name, out.data_ptr())
        return context

    def buffers(self, shape: tuple) -> tuple:
        """(input, output) for ``shape`` with its execution context (and graph), made on first use; the
        ``lru.MAX_SHAPES`` most recently used shapes keep theirs. Callers hold ``_lock``."""
        shape = tuple(int(d) for d in shape)
        _, inp, out, _ = lru.cached(self._slots, shape, lambda: self._allocate(shape), lru.MAX_SHAPES)
        return inp, out

    def _allocate(self, shape: tuple) -> tuple:
        torch = self.torch
        probe = self._context(shape, None, None)
        out_shape = tuple(probe.get_tensor_shape(self.output_name))
        with torch.cuda.stream(self.torch_stream):  # zeroed on the stream the pre-kernels write on
            inp = torch.zeros(shape, dtype=torch.float32, device="cuda")
            out = torch.empty(out_shape, dtype=torch.float32, device="cuda")
        del probe
        context = self._context(shape, inp, out)
        graph = self._capture(shape, context, inp, out) if self.cuda_graphs else None
        self.torch_stream.synchronize()
        return context, inp, out, graph

    def _enqueue(self, context, shape: tuple) -> None:
        if not context.execute_async_v3(self.torch_stream.cuda_stream):
            raise RegenrtError(f"TensorRT failed to run {self.path.name} on a {shape} batch.")

    def _capture(self, shape: tuple, context, inp, out):
        from .pytorch import _check_replay

        torch = self.torch
        with torch.cuda.stream(self.torch_stream):
            # TensorRT's documented rule: one enqueue after a shape change before capturing the stream
            self._enqueue(context, shape)
            self.torch_stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.torch_stream):
                self._enqueue(context, shape)
            # the eager reference of the replay check runs in a context of its own: the captured context keeps
            # the addresses its graph replays
            out_eager = torch.empty_like(out)
            check = self._context(shape, inp, out_eager)

            def eager(x):
                check.set_tensor_address(self.input_name, x.data_ptr())
                self._enqueue(check, shape)
                return out_eager

            _check_replay(torch, graph, inp, out, eager, self.torch_stream)
            self.torch_stream.synchronize()
        return graph

    def execute(self, shape: tuple) -> None:
        shape = tuple(int(d) for d in shape)
        context, _, _, graph = self._slots[shape]
        with self.torch.cuda.stream(self.torch_stream):
            if graph is not None:
                graph.replay()
            else:
                self._enqueue(context, shape)

    def synchronize(self) -> None:
        self.torch_stream.synchronize()

    def infer(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        with self._lock:
            inp, out = self.buffers(x.shape)
            with torch.cuda.stream(self.torch_stream):
                inp.copy_(torch.from_numpy(np.ascontiguousarray(x, np.float32)).pin_memory(), non_blocking=True)
            self.execute(x.shape)
            with torch.cuda.stream(self.torch_stream):
                result = out.to("cpu", copy=True)
            self.torch_stream.synchronize()
            return result.numpy()
