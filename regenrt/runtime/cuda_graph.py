"""CUDA graph capture as every GPU runner (and the pipeline graph of :mod:`regenrt.runtime.device`) does it.

Thread-local capture mode: under the default ("global") mode, a ``cudaMalloc`` or any other capture-unsafe call
from *another* thread of the process — a second engine, a Ray or Triton worker, a data loader — invalidates the
capture in progress. With ``thread_local`` only this thread's own unsafe calls do. A *device-wide* synchronize
(``torch.cuda.synchronize()``) from any thread still breaks a capture, and ``torch.cuda.graph`` itself starts with
one: regenrt's own captures therefore take one process-wide lock, so two runners never capture at once.

A graph is replayed on the stream it was captured on (``Graph.replay``): ``CUDAGraph.replay`` launches on the
thread's *current* stream, and a replay on another stream is not ordered with the copies and kernels around it.

Example::

    graph = capture(torch, runner.torch_stream, lambda: out.copy_(model(inp)))
    graph.replay()
"""
from __future__ import annotations

import threading
from typing import Callable

CAPTURE_MODE = "thread_local"


_CAPTURING = threading.Lock()


class Graph:
    """A captured ``torch.cuda.CUDAGraph`` that replays on its own stream."""

    def __init__(self, torch, graph, stream):
        self.torch, self.graph, self.stream = torch, graph, stream

    def replay(self) -> None:
        with self.torch.cuda.stream(self.stream):
            self.graph.replay()


def capture(torch, stream, work: Callable[[], object]) -> Graph:
    """``work`` (stream operations only: no allocation outside torch's graph pool, no synchronize) recorded on
    ``stream`` as a CUDA graph, replayed on ``stream``."""
    graph = torch.cuda.CUDAGraph()
    with _CAPTURING, torch.cuda.graph(graph, stream=stream, capture_error_mode=CAPTURE_MODE):
        work()
    return Graph(torch, graph, stream)


def gpu_memory(torch) -> int | None:
    """Total bytes of the current CUDA device, or None without one."""
    try:
        return int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
    except Exception:  # noqa: BLE001 - no CUDA (CPU builds, stand-ins): the count bound alone applies
        return None


def start_measuring(torch) -> int:
    """Allocated bytes now, with the peak counter reset: :func:`held_since` then estimates what a shape's buffers
    and graph keep (the graph's private pool holds about the eager forward's peak activations)."""
    try:
        torch.cuda.reset_peak_memory_stats()
        return int(torch.cuda.memory_allocated())
    except Exception:  # noqa: BLE001 - no CUDA
        return 0


def held_since(torch, before: int) -> int:
    try:
        return max(0, int(torch.cuda.max_memory_allocated()) - before)
    except Exception:  # noqa: BLE001
        return 0
