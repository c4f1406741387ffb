"""CUDA graph capture as every GPU runner (and the pipeline graph of :mod:`regenrt.runtime.device`) does it.

Thread-local capture mode: under the default ("global") mode, a ``cudaMalloc``, a synchronize or any other
capture-unsafe call from *another* thread of the process — a second engine, a Ray or Triton worker, a data loader
— invalidates the capture in progress. With ``thread_local`` only this thread's own unsafe calls do.

Example::

    graph = capture(torch, runner.torch_stream, lambda: out.copy_(model(inp)))
    graph.replay()
"""
from __future__ import annotations

from typing import Callable

CAPTURE_MODE = "thread_local"


def capture(torch, stream, work: Callable[[], object]):
    """``work`` (stream operations only: no allocation outside torch's graph pool, no synchronize) recorded on
    ``stream`` as a ``torch.cuda.CUDAGraph``."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream, capture_error_mode=CAPTURE_MODE):
        work()
    return graph


def gpu_memory(torch) -> int | None:
    """Total bytes of the current CUDA device, or None without one."""
    try:
        return int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
    except Exception:  # noqa: BLE001 - no CUDA (CPU builds, stand-ins): the count bound alone applies
        return None


def reserved(torch) -> int:
    try:
        return int(torch.cuda.memory_reserved())
    except Exception:  # noqa: BLE001
        return 0
