"""Bounded caches for per-shape device resources (buffers, CUDA graphs, TensorRT contexts, pinned staging): inputs of
many sizes must not fill the GPU or pin host memory without end. Bounded by count *and* by bytes: 16 shapes of
1024x1024 batches with their graphs' memory pools or TensorRT activation memory can exceed a GPU's memory long before
16 entries.

Example::

    cache = Bounded(keep=16, budget=gpu_cache_budget(), size=lambda slot: slot.nbytes)
    slot = cache.get(shape, lambda: self._allocate(shape))
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Callable

MAX_SHAPES = 16  # input shapes whose buffers, CUDA graph (and TensorRT context) a GPU runner keeps
GPU_SHARE = 0.4  # of the GPU's memory, what one runner's per-shape resources may hold by default
PINNED_DEFAULT = 2 << 30  # bytes of page-locked host memory the staging buffers of one runner may hold by default


def _env_bytes(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        mib = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number of MiB, got {value!r}") from None
    return int(mib * (1 << 20))


def gpu_cache_budget(total_bytes: int | None = None) -> int | None:
    """Bytes a runner's per-shape GPU resources may hold: ``REGENRT_GPU_CACHE_MB``, else ``GPU_SHARE`` of the
    device's memory (``total_bytes``); None (count bound only) when neither is known."""
    given = _env_bytes("REGENRT_GPU_CACHE_MB")
    if given is not None:
        return given
    return int(total_bytes * GPU_SHARE) if total_bytes else None


def pinned_cache_budget() -> int:
    """Bytes of page-locked staging a runner may hold: ``REGENRT_PINNED_CACHE_MB``, else 2 GiB."""
    given = _env_bytes("REGENRT_PINNED_CACHE_MB")
    return PINNED_DEFAULT if given is None else given


class Bounded:
    """Least-recently-used entries go while more than ``keep`` entries or more than ``budget`` bytes (``size(value)``
    each) are held; the entry just made always stays (it is about to be used). Not locked: callers hold the lock that
    guards the resources. ``on_evict(value)`` runs for each entry that goes (e.g. to free it at once)."""

    def __init__(self, keep: int, budget: int | None = None, size: Callable[[Any], int] = lambda v: 0,
                 on_evict: Callable[[Any], None] = lambda v: None):
        self.keep, self.budget, self.size, self.on_evict = keep, budget, size, on_evict
        self._entries: OrderedDict = OrderedDict()

    def __contains__(self, key) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(list(self._entries))

    def __getitem__(self, key):
        return self._entries[key]

    def values(self):
        return self._entries.values()

    def keys(self):
        return self._entries.keys()

    def items(self):
        return self._entries.items()

    @property
    def nbytes(self) -> int:
        """Bytes held now (measured on demand: an entry may grow after it is made, e.g. buffers filled later)."""
        return sum(int(self.size(v)) for v in self._entries.values())

    def get(self, key, make: Callable[[], Any]):
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        while self._entries and len(self._entries) >= self.keep:
            self._evict()
        if self.budget is not None:  # room before making the new entry, as far as the others can give it
            while self._entries and self.nbytes >= self.budget:
                self._evict()
        value = make()
        self._entries[key] = value
        self.trim()
        return value

    def trim(self) -> None:
        """Least recently used entries go while over ``budget`` bytes; the most recent one always stays."""
        if self.budget is not None:
            while len(self._entries) > 1 and self.nbytes > self.budget:
                self._evict()

    def _evict(self) -> None:
        _, value = self._entries.popitem(last=False)
        self.on_evict(value)

