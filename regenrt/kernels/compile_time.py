"""Seconds numba spent compiling during a block of work: a first run compiles the kernels (seconds), later runs
load them from numba's cache. run-infer says so beside its speed, so that a first run's items/s is not read as the
engine's.

Example::

    with compile_time() as compiled:
        run_the_pipeline()
    compiled.seconds   # 0.0 when everything came from the cache (or numba is not installed)
"""
from __future__ import annotations

import importlib.util
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class CompileTime:
    seconds: float = 0.0


@contextmanager
def compile_time():
    """Measure numba's compilations (its ``numba:compile`` events, from any thread) while the block runs; a
    compilation inside another (an inlined helper) counts once, with the outer one."""
    result = CompileTime()
    if importlib.util.find_spec("numba") is None:
        yield result
        return
    from numba.core import event

    lock = threading.Lock()
    starts: dict[int, list[float]] = {}

    class _Timer(event.Listener):
        def on_start(self, ev) -> None:
            with lock:
                starts.setdefault(threading.get_ident(), []).append(time.perf_counter())

        def on_end(self, ev) -> None:
            with lock:
                stack = starts.get(threading.get_ident())
                if stack:
                    begun = stack.pop()
                    if not stack:
                        result.seconds += time.perf_counter() - begun

    with event.install_listener("numba:compile", _Timer()):
        yield result
