"""TensorRT runtime backend (``.engine`` files with their ``.engine.json`` fingerprint).

The fingerprint is checked before anything else (see :func:`regenrt.export.tensorrt.check_fingerprint`); the
runner uses TensorRT >= 10's named-tensor API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) on an explicit CUDA stream with device buffers reused per input shape.
NOT yet run on TensorRT (it could not be installed where this was written). The fingerprint checks are tested on CPU.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...errors import InputError, RegenrtError
from .. import lru
from ..cuda_graph import capture, gpu_memory
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
        # the optimization profile's (min, opt, max) input shapes: a larger batch is split, other shapes refused
        self.profile = tuple(tuple(int(d) for d in dims)
                             for dims in self.engine.get_tensor_profile_shape(self.input_name, 0))
        self.max_batch = self.profile[2][0]
        self.torch_stream = torch.cuda.Stream()
        self.stream = cuda.external_stream(self.torch_stream.cuda_stream)  # numba kernels on the same stream
        self.cuda_graphs = cuda_graphs
        # shape -> (context, input, output, graph or None, bytes): each context holds its own activation memory, so
        # the bound is by bytes too
        self._slots = lru.Bounded(lru.MAX_SHAPES, lru.gpu_cache_budget(gpu_memory(torch)), size=lambda s: s[4])
        self._lock = threading.Lock()  # the buffers are shared: one batch at a time

    def _context(self, shape: tuple, inp, out):
        context = self.engine.create_execution_context()
        if not context.set_input_shape(self.input_name, shape):  # False: outside the profile (TensorRT logs why)
            lo, _, hi = self.profile
            raise InputError(f"{self.path.name} takes inputs from {lo} to {hi} (its optimization profile); got "
                             f"{tuple(shape)}. Rebuild the engine with export-engine for this size.")
        if inp is not None:
            context.set_tensor_address(self.input_name, inp.data_ptr())
            context.set_tensor_address(self.output_name, out.data_ptr())
        return context

    def buffers(self, shape: tuple) -> tuple:
        """(input, output) for ``shape`` with its execution context (and graph), made on first use; the
        ``lru.MAX_SHAPES`` most recently used shapes keep theirs. Callers hold ``_lock``."""
        shape = tuple(int(d) for d in shape)
        if shape[0] > self.max_batch:
            raise InputError(f"a batch of {shape[0]} exceeds {self.path.name}'s largest ({self.max_batch}); split it "
                             "(the runtime does).")
        _, inp, out, _, _ = self._slots.get(shape, lambda: self._allocate(shape))
        return inp, out

    def _allocate(self, shape: tuple) -> tuple:
        torch = self.torch
        probe = self._context(shape, None, None)
        out_shape = tuple(int(d) for d in probe.get_tensor_shape(self.output_name))
        if len(out_shape) != 4 or min(out_shape) < 1 or out_shape[0] != shape[0] or out_shape[2:] != tuple(shape[2:]):
            raise RegenrtError(f"{self.path.name} gives an output of shape {out_shape} for an input of {tuple(shape)}; "
                               "expected the same batch and size (N x C x H x W). Rebuild it with export-engine.")
        with torch.cuda.stream(self.torch_stream):  # zeroed on the stream the pre-kernels write on
            inp = torch.zeros(shape, dtype=torch.float32, device="cuda")
            out = torch.empty(out_shape, dtype=torch.float32, device="cuda")
        context = probe  # the shape is set; bind the buffers (a second context would hold a second activation memory)
        context.set_tensor_address(self.input_name, inp.data_ptr())
        context.set_tensor_address(self.output_name, out.data_ptr())
        graph = self._capture(shape, context, inp, out) if self.cuda_graphs else None
        self.torch_stream.synchronize()
        held = getattr(self.engine, "device_memory_size_v2", None) or getattr(self.engine, "device_memory_size", 0)
        return context, inp, out, graph, int(held or 0) + 4 * (int(np.prod(shape)) + int(np.prod(out_shape)))

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
            graph = capture(torch, self.torch_stream, lambda: self._enqueue(context, shape))
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
        context, _, _, graph, _ = self._slots[shape]
        with self.torch.cuda.stream(self.torch_stream):
            if graph is not None:
                graph.replay()
            else:
                self._enqueue(context, shape)

    def enqueue(self, shape: tuple) -> None:
        """The engine as plain stream work (``execute_async_v3``, no graph replay): what the pipeline graph
        captures."""
        shape = tuple(int(d) for d in shape)
        with self.torch.cuda.stream(self.torch_stream):
            self._enqueue(self._slots[shape][0], shape)

    def capture(self, work):
        return capture(self.torch, self.torch_stream, work)

    def synchronize(self) -> None:
        self.torch_stream.synchronize()

    def infer(self, x: np.ndarray) -> np.ndarray:
        if len(x) > self.max_batch:  # beyond the profile: in parts of at most its largest batch
            return np.concatenate([self.infer(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)])
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
