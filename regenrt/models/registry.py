"""Architecture registry: one architecture is one module that registers an :class:`Architecture`.

Example::

    from regenrt.models import create_model, list_architectures
    model = create_model("deeplabv3plus", encoder="resnet18", in_channels=1, classes=1)
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..errors import ArchitectureError


@dataclass
class Detection:
    """What an architecture read from a state_dict: its config and notes on values it had to assume."""

    arch: str
    config: dict[str, Any]
    assumed: dict[str, str] = field(default_factory=dict)  # config key -> why it was assumed, which flag sets it


@dataclass(frozen=True)
class Architecture:
    """How to build, recognise and describe one architecture family."""

    name: str
    build: Callable[[dict[str, Any]], nn.Module]
    # Returns a Detection when the keys look like this architecture, None when they clearly do not.
    detect: Callable[[Mapping[str, torch.Tensor]], Detection | None]
    defaults: dict[str, Any]
    # Which tasks the architecture serves; the first that `default_task` names is used unless overridden.
    default_task: Callable[[dict[str, Any]], str]
    # Spatial size must be a multiple of this; dynamic H/W is exported only when `dynamic_hw` says so.
    spatial_multiple: Callable[[dict[str, Any]], int]
    dynamic_hw: Callable[[dict[str, Any]], bool]
    default_hw: Callable[[dict[str, Any]], tuple[int, int]]
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Rewrites of keys saved by older releases (e.g. InstanceNorm running stats) before loading.
    patch_state_dict: Callable[[dict[str, torch.Tensor], dict[str, Any]], dict[str, torch.Tensor]] | None = None
    # Generic option names (as the CLI flags use them) -> this architecture's own names.
    option_aliases: dict[str, str] = field(default_factory=dict)
    # A generic matcher (e.g. any smp model, found by instantiating smp): tried only when no specific
    # architecture recognises the weights, or when the one that did cannot load them.
    fallback: bool = False

    def canonical_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {self.option_aliases.get(k, k): v for k, v in options.items()}


_REGISTRY: dict[str, Architecture] = {}
_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {}


def register_architecture(arch: Architecture) -> Architecture:
    _REGISTRY[arch.name] = arch
    _ALIASES[arch.name] = (arch.name, {})
    for alias, overrides in arch.aliases.items():
        _ALIASES[alias] = (arch.name, overrides)
    return arch


def list_architectures() -> list[str]:
    """Registered names and aliases, sorted (e.g. ``deeplabv3plus``, ``unet_256``)."""
    return sorted(_ALIASES)


def resolve_architecture(name: str) -> tuple[Architecture, dict[str, Any]]:
    """Return the architecture behind a name or alias and the config the alias implies."""
    key = name.lower().replace("-", "_")
    if key not in _ALIASES:
        close = difflib.get_close_matches(key, _ALIASES, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ArchitectureError(
            f"unknown architecture {name!r}.{hint} Known: {', '.join(list_architectures())}."
        )
    arch_name, overrides = _ALIASES[key]
    return _REGISTRY[arch_name], dict(overrides)


def all_architectures() -> list[Architecture]:
    return list(_REGISTRY.values())


def create_model(name: str, **config: Any) -> nn.Module:
    """Build an architecture (by name or alias) with its defaults updated by ``config``."""
    arch, implied = resolve_architecture(name)
    full = {**arch.defaults, **implied, **arch.canonical_options(config)}
    unknown = set(full) - set(arch.defaults)
    if unknown:
        raise ArchitectureError(
            f"{arch.name} has no option(s) {sorted(unknown)}; its options are {sorted(arch.defaults)}."
        )
    return arch.build(full)


def task_from_head(config: dict[str, Any]) -> str:
    """The task an encoder-decoder's head implies: several classes -> segmentation; one output from one input
    channel -> phase-recovery; one output from 3 channels -> "" (binary segmentation or regression: the caller
    must say, --task)."""
    if config["classes"] > 1:
        return "segmentation"
    return "phase-recovery" if config["in_channels"] == 1 else ""
