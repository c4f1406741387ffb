"""The GPU path of the runtime: upload -> pre-kernel -> engine -> post-kernel -> download, a batch at a time, on the
runner's stream, from fixed buffers — so that after one eager run a shape's whole pipeline is captured in **one CUDA
graph** and replayed (one launch per batch from the host; the kernels and copies queued on the capturing stream, no
synchronize inside).

The runtime picks this path by where the engine's buffers live: a runner on ``cuda`` that offers the device
interface below (the torch-CUDA and TensorRT runners do) gets it; every other engine runs the CPU kernels on host
arrays. Each task supplies a :class:`DeviceTask` (host staging, pre-kernel, post-kernel, host results) built on the
batched numba CUDA launchers of :mod:`regenrt.kernels.numba_cuda`.

Per batch and shape: the raw inputs are stacked into the shape's pinned host buffers (the only per-item host work
before the GPU), then either the captured graph is replayed or the same steps run eagerly, then one synchronize,
then the task reads its results out of the pinned output buffers. The graph is captured (thread-local capture mode,
one capture at a time in the process) on a shape's second batch, checked once (replayed over two different poisons
of the outputs: every output byte must be rewritten, and equal the eager result), replayed on the runner's stream,
and dropped when the runner's buffers for the shape change. A capture that fails or does not pass the check is
reported once (a RuntimeWarning) and that shape runs its steps eagerly — same results, never a failed item. Off switch: ``RunOptions(pipeline_graph=False)``,
``run-infer --no-pipeline-graph`` or ``REGENRT_PIPELINE_GRAPH=0``.

Device interface of a runner::

    runner.stream                 # numba stream the kernels are launched on (the runner's own CUDA stream)
    runner.buffers(shape)         # (input, output) device arrays for an NCHW input shape, reused across batches
    runner.execute(shape)         # run input -> output on that stream, asynchronously (may replay its own graph)
    runner.enqueue(shape)         # optional: the same work as plain stream operations (capturable)
    runner.capture(work)          # optional: ``work`` captured as a CUDA graph on the stream -> object with replay()

Example::

    if on_device(engine):
        outputs = run_batch(engine, runtime, prepared_items, options)   # [{suffix: host array} or a reason]
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import RegenrtError
from .lru import MAX_SHAPES, Bounded, pinned_cache_budget

NON_FINITE = "the engine's output holds NaN/Inf value(s): nothing written for this item"


def on_device(engine) -> bool:
    """True when the engine's buffers live on the GPU and its runner lets kernels use them in place."""
    return engine.device == "cuda" and all(hasattr(engine.runner, a) for a in ("buffers", "execute", "stream"))


def cuda_kernels():
    from ..kernels import numba_cuda

    return numba_cuda


def upload(arr: np.ndarray, stream) -> Any:
    """A host array copied to a new device array on ``stream`` (constants only: never per batch)."""
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(arr), stream=stream)


def graphs_enabled(options) -> bool:
    return bool(getattr(options, "pipeline_graph", True)) and os.environ.get("REGENRT_PIPELINE_GRAPH", "1") != "0"


@dataclass(frozen=True)
class DeviceTask:
    """A task's GPU path, split so that everything between the host steps can be captured in one graph.

    - ``stage(batch, engine, options)`` -> ``{name: (host arrays, dtype)}``: what each item uploads (host side).
    - ``pre(engine, inputs, model_input, slot, stream)``: queue the pre-kernel (``inputs``: name -> device batch).
    - ``post(engine, inputs, model_output, slot, options, stream)`` -> ``{name: device array}``: queue the
      post-kernel; what it returns is downloaded (``slot.buffer``/``slot.constant`` give fixed device arrays).
    - ``results(batch, host, options)`` -> per item ``{suffix: array}`` or a string (why that item failed, e.g.
      :data:`NON_FINITE`); reads the pinned ``host`` arrays and must copy what it keeps.
    """

    stage: Callable[..., dict[str, tuple[list, Any]]]
    pre: Callable[..., None]
    post: Callable[..., dict[str, Any]]
    results: Callable[..., list]


def bad_items(flags: np.ndarray, n: int) -> np.ndarray:
    """Items whose post-kernel voted NaN/Inf in any block (``flags``: items x blocks from the kernels)."""
    return np.asarray(flags[:n]).any(axis=1)


class Slot:
    """One shape's fixed buffers — pinned host inputs and outputs, their device twins, the post-kernel's outputs —
    and its captured pipeline graph. Fixed: the graph replays these addresses."""

    def __init__(self, staging: "Staging", stream):
        self.staging, self.stream = staging, stream
        self.host_in: dict[str, np.ndarray] = {}
        self.dev_in: dict[str, Any] = {}
        self.dev_out: dict[str, Any] = {}
        self.host_out: dict[str, np.ndarray] = {}
        self._buffers: dict[tuple, Any] = {}
        self.graph = None
        self.engine_buffers: tuple = (None, None)  # the runner's (input, output) the graph was captured with
        self.capture_failed: str | None = None
        self.runs = 0

    @property
    def nbytes(self) -> int:
        host = sum(a.nbytes for a in (*self.host_in.values(), *self.host_out.values()))
        return 2 * host  # and their device twins, about as large

    def buffer(self, name: str, shape: tuple, dtype) -> Any:
        """A device array of this slot, made once (a post-kernel's outputs)."""
        from numba import cuda

        key = (name, tuple(shape), np.dtype(dtype).str)
        if key not in self._buffers:
            self._buffers[key] = cuda.device_array(tuple(shape), dtype, stream=self.stream)
        return self._buffers[key]

    def constant(self, name: str, value: np.ndarray) -> Any:
        return self.staging.constant(name, value, self.stream)

    def fill(self, staged: dict[str, tuple[list, Any]]) -> None:
        """The items stacked into the pinned input buffers (made on first use)."""
        from numba import cuda

        for name, (items, dtype) in staged.items():
            if name not in self.host_in:
                shape = (len(items), *np.shape(items[0]))
                self.host_in[name] = cuda.pinned_array(shape, dtype)
                self.dev_in[name] = cuda.device_array(shape, dtype, stream=self.stream)
            host = self.host_in[name]
            for i, item in enumerate(items):
                host[i] = item

    def enqueue(self, hooks: DeviceTask, engine, options, run_engine: Callable[[], None], inp, out) -> None:
        """Every step of the batch as stream operations: the copies up, pre, engine, post, the copies down."""
        for name, dev in self.dev_in.items():
            dev.copy_to_device(self.host_in[name], stream=self.stream)
        hooks.pre(engine, self.dev_in, inp, self, self.stream)
        run_engine()
        self.dev_out = hooks.post(engine, self.dev_in, out, self, options, self.stream)
        from numba import cuda

        for name, dev in self.dev_out.items():
            if not hasattr(dev, "copy_to_host"):
                dev = cuda.as_cuda_array(dev)  # the runner's torch output tensor: a zero-copy view
            if name not in self.host_out:
                self.host_out[name] = cuda.pinned_array(tuple(dev.shape), np.dtype(dev.dtype))
            dev.copy_to_host(self.host_out[name], stream=self.stream)


class Staging:
    """A runner's slots (one per batch shape and staged layout; the least recently used go beyond ``keep`` slots or
    ``budget`` bytes of pinned memory, with their graphs) and the constants uploaded once (mean, std, palette)."""

    def __init__(self, keep: int = MAX_SHAPES, budget: int | None = None):
        self.slots = Bounded(keep, pinned_cache_budget() if budget is None else budget, size=lambda s: s.nbytes)
        self._constants: dict[str, Any] = {}

    def slot(self, key, stream) -> Slot:
        return self.slots.get(key, lambda: Slot(self, stream))

    def constant(self, name: str, value: np.ndarray, stream) -> Any:
        """A small array uploaded once: the same values every batch."""
        if name not in self._constants:
            self._constants[name] = upload(value, stream)
        return self._constants[name]


_ATTACH = threading.Lock()


def staging(runner) -> tuple[Staging, threading.Lock]:
    """The runner's staging buffers and the lock that gives one batch at a time the runner's buffers: the runner's
    own lock where it has one (its host ``infer`` takes it too), so the two paths never interleave."""
    with _ATTACH:
        if not hasattr(runner, "_regenrt_staging"):
            runner._regenrt_staging = (Staging(), getattr(runner, "_lock", None) or threading.Lock())
        return runner._regenrt_staging


def _layout(staged: dict) -> tuple:
    return tuple((name, (len(items), *np.shape(items[0])), np.dtype(dtype).str)
                 for name, (items, dtype) in sorted(staged.items()))


def run_batch(engine, runtime, batch: list, options) -> list:
    """One batch of same-shaped prepared items through upload, pre-kernel, engine, post-kernel and download on the
    device (one graph replay once the shape's graph is captured); returns per item its outputs as host arrays, or a
    string saying why that item failed (its engine output held NaN/Inf)."""
    hooks = runtime.device
    if hooks is None:
        raise RegenrtError(f"the {runtime.name} task has no GPU kernels; load the engine with device='cpu'.")
    runner = engine.runner
    limit = getattr(runner, "max_batch", None)  # a TensorRT profile's largest batch: larger ones go in parts
    if limit and len(batch) > limit:
        return [r for i in range(0, len(batch), limit) for r in run_batch(engine, runtime, batch[i:i + limit], options)]
    shape = (len(batch), *batch[0].shape)
    staged = hooks.stage(batch, engine, options)
    stage, lock = staging(runner)
    with lock:
        inp, out = runner.buffers(shape)
        slot = stage.slot((shape, _layout(staged), options.key()), runner.stream)
        slot.fill(staged)
        _run(slot, hooks, engine, options, shape, inp, out)
        slot.runs += 1
        stage.slots.trim()  # the new slot's pinned bytes (made on its first run) now count
        return hooks.results(batch, slot.host_out, options)


def _run(slot: Slot, hooks: DeviceTask, engine, options, shape, inp, out) -> None:
    runner = engine.runner
    use_graph = graphs_enabled(options)
    if slot.graph is not None and not (slot.engine_buffers[0] is inp and slot.engine_buffers[1] is out):
        slot.graph = None  # the runner's buffers for this shape were made anew: the graph points at the old ones
    capturable = use_graph and hasattr(runner, "capture") and hasattr(runner, "enqueue") and not slot.capture_failed
    if slot.graph is None and capturable and slot.runs >= 1:  # after one eager batch: kernels compiled, engine warm
        try:
            slot.graph = _capture(slot, hooks, engine, options, shape, inp, out)
            slot.engine_buffers = (inp, out)  # kept (compared by identity): a new buffer means a new graph
            return  # the check's replays computed this batch already
        except Exception as exc:  # noqa: BLE001 - this shape runs eagerly from now on, and the user is told
            slot.capture_failed = f"{type(exc).__name__}: {exc}"
            import warnings

            warnings.warn(f"the pipeline's CUDA graph for a {shape} batch could not be used ({slot.capture_failed}); "
                          "this shape runs its steps eagerly (slower, same results). Report this; "
                          "--no-pipeline-graph silences it.", RuntimeWarning, stacklevel=2)
    if slot.graph is not None and use_graph:
        slot.graph.replay()  # on the runner's stream (cuda_graph.Graph)
    else:
        slot.enqueue(hooks, engine, options, lambda: runner.execute(shape), inp, out)
    runner.stream.synchronize()


def _capture(slot: Slot, hooks: DeviceTask, engine, options, shape, inp, out):
    """The pipeline captured, then replayed over two poisons of the outputs and compared with an eager run."""
    runner = engine.runner
    slot.enqueue(hooks, engine, options, lambda: runner.execute(shape), inp, out)
    runner.stream.synchronize()
    eager = {name: host.copy() for name, host in slot.host_out.items()}
    from numba import cuda

    with cuda.defer_cleanup():  # numba frees nothing (a cuMemFree invalidates a capture) while the work is captured
        graph = runner.capture(lambda: slot.enqueue(hooks, engine, options, lambda: runner.enqueue(shape), inp, out))
    replays = []
    for poison in (0x00, 0xFF):
        for host in slot.host_out.values():
            host.view(np.uint8)[...] = poison
        graph.replay()
        runner.stream.synchronize()
        replays.append({name: host.copy() for name, host in slot.host_out.items()})
    for name, want in eager.items():
        a, b = replays[0][name], replays[1][name]
        if not np.array_equal(a.view(np.uint8), b.view(np.uint8)) or not _close(want, a):
            raise RegenrtError(f"its replay did not rewrite {name!r} as the eager pipeline does")
    return graph


def _close(want: np.ndarray, got: np.ndarray) -> bool:
    """The graph's result against the eager one: floats within 1e-3 of the range, integers (labels, pixels) equal
    but for rare rounding ties of a not bit-identical engine replay."""
    if np.issubdtype(want.dtype, np.floating):
        finite = np.isfinite(want)
        span = float(np.ptp(want[finite])) if finite.any() else 0.0
        return bool(np.array_equal(finite, np.isfinite(got))
                    and np.allclose(want[finite], got[finite], rtol=0, atol=1e-3 * max(span, 1.0)))
    return float(np.mean(want != got)) <= 1e-3
