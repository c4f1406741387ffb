"""PyTorch backend (``model.torch.pt``): the model itself, FP16 with CUDA graphs on an NVIDIA GPU, FP32 on CPU.

The GPU path a machine without TensorRT can run and verify. The artefact is a plain ``torch.save`` dict (weights,
architecture, config, regenrt metadata) loaded with ``weights_only=True``; the network is rebuilt from
``regenrt.models``, so no pickled code runs.

On CUDA the runner owns one input and one output buffer per input shape (float32 NCHW; the cast to FP16 and
back happens inside the captured graph) and a private stream. ``buffers``/``execute`` let the pipeline's CUDA
kernels write the input buffer and read the output buffer in place (see :mod:`regenrt.runtime.device`).

Example::

    runner = TorchRunner("engine/model.torch.pt", "cuda")
    y = runner.infer(x)                       # host in, host out
    inp, out = runner.buffers(x.shape)        # or: fill inp on the device, runner.execute(x.shape), read out
"""
from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

import numpy as np

from ...errors import RegenrtError
from .. import lru
from ..cuda_graph import capture, gpu_memory, held_since, start_measuring

FORMAT = "regenrt-torch/1"
WARMUP = 3  # eager iterations on the capture stream before a CUDA graph is recorded (cuDNN autotuning, allocator)


def save_artefact(path: Path, state_dict: dict, arch: str, config: dict, metadata: dict) -> Path:
    import torch

    torch.save({"format": FORMAT, "arch": arch, "config": json.dumps(config), "metadata": json.dumps(metadata),
                "state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}}, path)
    return path


def _load(path: Path) -> dict:
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise RegenrtError(f"{path.name} is not a readable regenrt torch artefact ({type(exc).__name__}: {exc}); "
                           "re-export with export-engine --gpu-engine torch.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RegenrtError(f"{path.name} is not a {FORMAT} artefact (a training checkpoint goes to export-engine, "
                           "not to --engine).")
    return payload


def read_metadata(path: Path) -> dict:
    return json.loads(_load(path)["metadata"])


def torch_devices() -> list[str]:
    try:
        import torch
    except ImportError:
        return []
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def prepare_model(model, mode: str, dtype, device: str):
    """The model with ``mode``'s normalization semantics, cast to ``dtype`` on ``device``; in FP16 the batch
    statistics of ``batch-stats`` stay FP32 (the squared deviations overflow FP16 beyond 256)."""
    from ...models.modes import BatchStatNorm2d, with_mode

    prepared = with_mode(model, mode).to(device=device, dtype=dtype)
    for module in prepared.modules():
        if isinstance(module, BatchStatNorm2d):
            module.float()  # its forward computes in FP32 and returns the input's dtype
    return prepared


class TorchRunner:
    """Runs the rebuilt model: FP16 (the artefact's precision) on CUDA, FP32 on CPU.

    On CUDA the host interface always goes through per-shape buffers (the device interface); ``buffered=True``
    runs that same path on CPU tensors (no stream, no graph), which is how it is tested without a GPU."""

    def __init__(self, path: str | Path, device: str = "cpu", cuda_graphs: bool = True, buffered: bool = False,
                 channels_last: bool = False):
        import torch

        from ...models import build_from_state_dict

        self.torch, self.path, self.device = torch, Path(path), device
        self.buffered = buffered or device == "cuda"
        payload = _load(self.path)
        self.metadata = json.loads(payload["metadata"])
        loaded = build_from_state_dict(payload["state_dict"], payload["arch"], json.loads(payload["config"]))
        half = device == "cuda" and self.metadata.get("precision") == "fp16"
        self.dtype = torch.float16 if half else torch.float32
        self.precision = "fp16" if half else "fp32"
        self.model = prepare_model(loaded.model, self.metadata.get("mode", "eval"), self.dtype, device)
        # NHWC weights and activations (tensor-core friendly for FP16 convolutions); an option, off by default until
        # a GPU run measures it (benchmarks/test_models.py times it as torch-cuda-fp16-nhwc)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.cuda_graphs = cuda_graphs and device == "cuda"
        self._lock = threading.Lock()  # buffers are shared: one batch at a time
        # shape -> (input, output, graph or None, bytes): bounded by count and by bytes (graphs keep memory pools)
        self._slots = lru.Bounded(lru.MAX_SHAPES, lru.gpu_cache_budget(gpu_memory(torch) if device == "cuda" else None),
                                  size=lambda slot: slot[3])
        if device == "cuda":
            from numba import cuda

            self.torch_stream = torch.cuda.Stream()
            self.stream = cuda.external_stream(self.torch_stream.cuda_stream)  # the same stream, for numba kernels

    def _forward(self, x):
        return self.model(x.to(self.dtype, memory_format=self.memory_format)).float()

    # -- device interface (CUDA) ------------------------------------------------------------------------------
    def buffers(self, shape: tuple) -> tuple:
        """(input, output) CUDA tensors for ``shape``, allocated (and the graph captured) on first use. At most
        ``lru.MAX_SHAPES`` shapes, and ``lru.gpu_cache_budget()`` bytes of buffers and graph memory, stay (the least
        recently used go): inputs of many sizes must not fill the GPU. Callers hold ``_lock`` (``infer`` and the
        runtime's device path do)."""
        shape = tuple(int(d) for d in shape)
        inp, out, _, _ = self._slots.get(shape, lambda: self._allocate(shape))
        return inp, out

    def _on_stream(self):
        """Work queued inside this context runs on the runner's stream (CUDA); a no-op on CPU."""
        return self.torch.cuda.stream(self.torch_stream) if self.device == "cuda" else contextlib.nullcontext()

    def _allocate(self, shape: tuple) -> tuple:
        torch = self.torch
        before = start_measuring(torch) if self.device == "cuda" else 0
        # inference tensors: every later write to them (infer's copy, the pipeline's kernels via the device
        # interface, the replay check) happens under inference mode too
        with torch.inference_mode(), self._on_stream():
            inp = torch.zeros(shape, dtype=torch.float32, device=self.device)  # zeroed on the runner's stream
            for _ in range(WARMUP):
                eager = self._forward(inp)
            out = torch.empty_like(eager, memory_format=torch.contiguous_format)  # NCHW for the post-kernels
            graph = None
            if self.cuda_graphs:
                graph = capture(torch, self.torch_stream, lambda: out.copy_(self._forward(inp)))
                _check_replay(torch, graph, inp, out, self._forward, self.torch_stream)
        self.synchronize()
        held = held_since(torch, before) if self.device == "cuda" else 0  # buffers + the forward's peak (graph pool)
        return inp, out, graph, max(held, inp.numel() * 4 + out.numel() * 4)

    def execute(self, shape: tuple) -> None:
        """Run the model on the input buffer of ``shape`` into its output buffer, asynchronously on ``stream``."""
        inp, out, graph, _ = self._slots[tuple(int(d) for d in shape)]
        with self.torch.inference_mode(), self._on_stream():
            if graph is not None:
                graph.replay()
            else:
                out.copy_(self._forward(inp))

    def enqueue(self, shape: tuple) -> None:
        """The model as plain stream work (no graph replay): what the pipeline graph captures."""
        inp, out, _, _ = self._slots[tuple(int(d) for d in shape)]
        with self.torch.inference_mode(), self._on_stream():
            out.copy_(self._forward(inp))

    def capture(self, work):
        """``work`` (the pipeline's copies, kernels and :meth:`enqueue`) captured as one CUDA graph on the stream."""
        if self.device != "cuda":
            raise RegenrtError("CUDA graphs need a CUDA device.")
        with self.torch.inference_mode():
            return capture(self.torch, self.torch_stream, work)

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch_stream.synchronize()

    # -- host interface ---------------------------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        host = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        if not self.buffered:
            with torch.inference_mode():
                return self._forward(host).numpy()
        cuda = self.device == "cuda"
        with self._lock, torch.inference_mode():  # the buffers are inference tensors: write them in that mode
            inp, out = self.buffers(x.shape)
            with self._on_stream():
                inp.copy_(host.pin_memory() if cuda else host, non_blocking=cuda)
            self.execute(x.shape)
            with self._on_stream():
                result = out.to("cpu", copy=True)  # never the reused buffer itself (on CPU .to would alias it)
            self.synchronize()
            return result.numpy()


def _check_replay(torch, graph, inp, out, forward, stream) -> None:
    """Replay must overwrite the output: poison it with NaN, replay on a fresh input, compare with eager."""
    probe = torch.randn(inp.shape, device="cuda", generator=torch.Generator(device="cuda").manual_seed(0))
    inp.copy_(probe)
    out.fill_(float("nan"))
    graph.replay()
    expected = forward(inp)
    stream.synchronize()
    if not torch.isfinite(out).all() or not torch.allclose(out, expected, rtol=1e-3, atol=1e-3):
        raise RegenrtError(f"CUDA graph replay did not reproduce the eager result for shape {tuple(inp.shape)}; "
                           "run without CUDA graphs (REGENRT_CUDA_GRAPHS=0) and report this.")
    inp.zero_()
