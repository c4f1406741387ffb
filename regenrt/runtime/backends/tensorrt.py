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
    def __init__(self, path: str | Path):
        trt = import_tensorrt()
        import torch

        self.path = Path(path)
        check_fingerprint(self.path, current_environment())
        self.torch = torch
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RegenrtError(f"TensorRT could not deserialize {self.path.name}; rebuild it with export-engine.")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        modes = {n: self.engine.get_tensor_mode(n) for n in names}
        self.input_name = next(n for n in names if modes[n] == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if modes[n] == trt.TensorIOMode.OUTPUT)
        self.stream = torch.cuda.Stream()
        self._buffers: dict[tuple, tuple] = {}
        self._lock = threading.Lock()  # one execution context: calls are serialized

    def _buffers_for(self, shape: tuple) -> tuple:
        if shape not in self._buffers:
            self.context.set_input_shape(self.input_name, shape)
            out_shape = tuple(self.context.get_tensor_shape(self.output_name))
            self._buffers[shape] = (self.torch.empty(shape, dtype=self.torch.float32, device="cuda"),
                                    self.torch.empty(out_shape, dtype=self.torch.float32, device="cuda"))
        return self._buffers[shape]

    def infer(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            shape = tuple(x.shape)
            inp, out = self._buffers_for(shape)
            with self.torch.cuda.stream(self.stream):
                inp.copy_(self.torch.from_numpy(np.ascontiguousarray(x, np.float32)), non_blocking=False)
                self.context.set_input_shape(self.input_name, shape)
                self.context.set_tensor_address(self.input_name, inp.data_ptr())
                self.context.set_tensor_address(self.output_name, out.data_ptr())
                if not self.context.execute_async_v3(self.stream.cuda_stream):
                    raise RegenrtError(f"TensorRT failed to run {self.path.name} on a {shape} batch.")
                result = out.cpu()
            self.stream.synchronize()
            return result.numpy()
