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
from ...export.tensorrt import check_fingerprint, current_environment, import_tensorrt


def read_metadata(path: Path) -> dict:
    """The engine's regenrt metadata, from its fingerprint, after checking the engine bytes against it."""
    return check_fingerprint(path, None).get("metadata", {})


class TensorRTRunner:
    """An engine on its own CUDA stream; one (input, output) device buffer pair per input shape, reused; the
    device interface of :mod:`regenrt.runtime.device` (``stream``, ``buffers``, ``execute``) on top of it."""

    def __init__(self, path: str | Path, allow_unverified: bool = False, cuda_graphs: bool = False):
        trt = import_tensorrt()
        import torch
        from numba import cuda

        self.path = Path(path)
        check_fingerprint(self.path, current_environment(), allow_unverified=allow_unverified)
        self.torch = torch
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RegenrtError(f"TensorRT could not deserialize {self.path.name}; rebuild it with export-engine.")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        modes = {n: self.engine.get_tensor_mode(n) for n in names}
        self.input_name = next(n for n in names if modes[n] == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if modes[n] == trt.TensorIOMode.OUTPUT)
        self.torch_stream = torch.cuda.Stream()
        self.stream = cuda.external_stream(self.torch_stream.cuda_stream)  # numba kernels on the same stream
        self.cuda_graphs = cuda_graphs
        self._slots: dict[tuple, tuple] = {}  # shape -> (input, output, graph or None)
        self._lock = threading.Lock()  # one execution context: calls are serialized

    def buffers(self, shape: tuple) -> tuple:
        shape = tuple(int(d) for d in shape)
        if shape not in self._slots:
            self.context.set_input_shape(self.input_name, shape)
            out_shape = tuple(self.context.get_tensor_shape(self.output_name))
            inp = self.torch.zeros(shape, dtype=self.torch.float32, device="cuda")
            out = self.torch.empty(out_shape, dtype=self.torch.float32, device="cuda")
            graph = self._capture(shape, inp, out) if self.cuda_graphs else None
            self._slots[shape] = (inp, out, graph)
        inp, out, _ = self._slots[shape]
        return inp, out

    def _enqueue(self, shape: tuple, inp, out) -> None:
        self.context.set_input_shape(self.input_name, shape)
        self.context.set_tensor_address(self.input_name, inp.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        if not self.context.execute_async_v3(self.torch_stream.cuda_stream):
            raise RegenrtError(f"TensorRT failed to run {self.path.name} on a {shape} batch.")

    def _capture(self, shape: tuple, inp, out):
        # TensorRT's documented rule: one enqueue after a shape change before capturing the stream.
        from .pytorch import _check_replay

        torch = self.torch
        self._enqueue(shape, inp, out)
        self.torch_stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.torch_stream):
            self._enqueue(shape, inp, out)

        def eager(x):
            self._enqueue(shape, x, out_eager)
            return out_eager

        out_eager = torch.empty_like(out)
        _check_replay(torch, graph, inp, out, eager, self.torch_stream)
        return graph

    def execute(self, shape: tuple) -> None:
        shape = tuple(int(d) for d in shape)
        inp, out, graph = self._slots[shape]
        if graph is not None:
            with self.torch.cuda.stream(self.torch_stream):
                graph.replay()
        else:
            self._enqueue(shape, inp, out)

    def infer(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            inp, out = self.buffers(x.shape)
            with self.torch.cuda.stream(self.torch_stream):
                inp.copy_(self.torch.from_numpy(np.ascontiguousarray(x, np.float32)), non_blocking=False)
            self.execute(x.shape)
            with self.torch.cuda.stream(self.torch_stream):
                result = out.cpu()
            self.torch_stream.synchronize()
            return result.numpy()
