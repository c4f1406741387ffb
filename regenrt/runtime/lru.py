"""A bounded cache for per-shape device resources (buffers, CUDA graphs, TensorRT contexts): inputs of many sizes
must not fill the GPU or pin host memory without end.

Example::

    slot = cached(self._slots, shape, lambda: self._allocate(shape), keep=16)
"""
from __future__ import annotations

from typing import Any, Callable

MAX_SHAPES = 16  # input shapes whose buffers, CUDA graph (and TensorRT context) a GPU runner keeps


def cached(cache: dict, key: Any, make: Callable[[], Any], keep: int) -> Any:
    """``cache[key]``, made on first use and marked most recently used; at most ``keep`` entries stay (the least
    recently used go, with whatever they hold). Not locked: callers hold the lock that guards ``cache``."""
    if key in cache:
        cache[key] = cache.pop(key)
        return cache[key]
    while cache and len(cache) >= keep:
        cache.pop(next(iter(cache)))
    cache[key] = make()
    return cache[key]
