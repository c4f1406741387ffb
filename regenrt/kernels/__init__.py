"""Pre/post-processing kernels behind one interface.

``get_kernels("numpy")`` returns the NumPy reference set; faster sets (numba CPU/CUDA) register under their own
names with the same functions, so task code never changes when a kernel set is switched.

Example::

    k = get_kernels()
    k.phase_normalize(phase, batch, 3)       # writes batch[3]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import reference


@dataclass(frozen=True)
class KernelSet:
    name: str
    phase_normalize: Callable
    holes_fill: Callable
    rgb_normalize: Callable
    composite: Callable
    argmax_palette: Callable


_KERNELS: dict[str, KernelSet] = {}
# Sets whose module is imported (and registers itself) only when first asked for: numba is heavy.
_LAZY = {"numba": "regenrt.kernels.numba_cpu"}


def register_kernels(kernels: KernelSet) -> KernelSet:
    _KERNELS[kernels.name] = kernels
    return kernels


def get_kernels(name: str = "numpy") -> KernelSet:
    """The kernel set called ``name``; ``"auto"``: numba when it is installed, else the NumPy reference."""
    if name == "auto":
        from ..errors import MissingDependencyError

        try:
            return get_kernels("numba")
        except MissingDependencyError:
            return get_kernels("numpy")
    if name not in _KERNELS and name in _LAZY:
        import importlib

        importlib.import_module(_LAZY[name])
    if name not in _KERNELS:
        from ..errors import RegenrtError

        raise RegenrtError(f"unknown kernel set {name!r}; available: auto, {', '.join(sorted(set(_KERNELS) | set(_LAZY)))}.")
    return _KERNELS[name]


register_kernels(KernelSet("numpy", reference.phase_normalize, reference.holes_fill, reference.rgb_normalize,
                           reference.composite, reference.argmax_palette))
