"""Detect the architecture of a state_dict, build it and load the weights strictly.

Example::

    ckpt = load_checkpoint("ckpt.pt")
    loaded = build_from_state_dict(ckpt.state_dict)          # architecture and config detected
    loaded = build_from_state_dict(ckpt.state_dict, "unet_256", {"norm": "instance"})  # flags override
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ArchitectureError
from .registry import Architecture, Detection, all_architectures, resolve_architecture


@dataclass
class LoadedModel:
    model: nn.Module
    arch: Architecture
    config: dict[str, Any]
    assumed: dict[str, str] = field(default_factory=dict)
    stripped_prefix: str | None = None


def _candidates(sd: dict[str, torch.Tensor]) -> list[tuple[str | None, dict[str, torch.Tensor]]]:
    """The state_dict as is, then without a first key component all keys share (e.g. Lightning's ``model.``)."""
    out: list[tuple[str | None, dict[str, torch.Tensor]]] = [(None, sd)]
    heads = {k.split(".", 1)[0] for k in sd}
    if len(heads) == 1 and all("." in k for k in sd):
        prefix = next(iter(heads)) + "."
        out.append((prefix, {k[len(prefix):]: v for k, v in sd.items()}))
    return out


def detect_architecture(sd: dict[str, torch.Tensor], arch_name: str | None = None
                        ) -> tuple[Architecture, Detection, str | None, dict[str, torch.Tensor]]:
    """Find which registered architecture the keys belong to; explain what was found when none or several fit."""
    archs = [resolve_architecture(arch_name)[0]] if arch_name else all_architectures()
    hits = []
    for prefix, candidate in _candidates(sd):
        for arch in archs:
            detection = arch.detect(candidate)
            if detection is not None:
                hits.append((arch, detection, prefix, candidate))
        if hits:
            break
    if len(hits) == 1:
        return hits[0]
    sample = ", ".join(sorted(sd)[:6])
    if not hits:
        wanted = f"a {arch_name} checkpoint" if arch_name else "any known architecture"
        known = ", ".join(a.name for a in all_architectures())
        raise ArchitectureError(
            f"the weights do not look like {wanted} (supported: {known}); first keys: {sample} … "
            "If this is a supported model saved with extra key prefixes, pass --state-key or re-save the "
            "bare model.state_dict()."
        )
    names = ", ".join(f"{a.name} (prefix {p!r})" for a, _, p, _ in hits)
    raise ArchitectureError(f"the weights match several architectures: {names}. Pass --arch to choose one.")


def _shape_report(model: nn.Module, sd: dict[str, torch.Tensor]) -> str:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    conflicts = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
                 for k in sorted(set(sd) & set(expected)) if sd[k].shape != expected[k].shape]
    parts = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape conflicts", conflicts)):
        if items:
            more = f" … and {len(items) - 10} more" if len(items) > 10 else ""
            title = title[:-1] if len(items) == 1 else title  # "1 missing key"
            parts.append(f"{len(items)} {title}: " + "; ".join(items[:10]) + more)
    return "\n  ".join(parts)


def build_from_state_dict(sd: dict[str, torch.Tensor], arch_name: str | None = None,
                          overrides: dict[str, Any] | None = None) -> LoadedModel:
    """Build the detected (or named) architecture, apply explicit overrides and load the weights strictly."""
    arch, detection, prefix, sd = detect_architecture(sd, arch_name)
    implied = resolve_architecture(arch_name)[1] if arch_name else {}
    overrides = arch.canonical_options(dict(overrides or {}))
    unknown = set(overrides) - set(arch.defaults)
    if unknown:
        raise ArchitectureError(f"{arch.name} has no option(s) {sorted(unknown)}; its options are {sorted(arch.defaults)}.")
    config = {**arch.defaults, **detection.config, **implied, **overrides}
    assumed = {k: v for k, v in detection.assumed.items() if k not in overrides and k not in implied}
    if arch.patch_state_dict is not None:
        sd = arch.patch_state_dict(sd, config)
    try:
        model = arch.build(config)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchitectureError(f"cannot build {arch.name} with {config}: {exc}") from None
    problems = _shape_report(model, sd)
    if problems:
        detected = ", ".join(f"{k}={v}" for k, v in detection.config.items())
        raise ArchitectureError(
            f"the checkpoint's keys match {arch.name} ({detected}; overrides {overrides or 'none'}) except:\n  "
            f"{problems}\nA missing key means the checkpoint was saved incompletely (re-save the full "
            "model.state_dict()); a shape conflict, a different variant of the architecture (see --arch and the "
            "architecture flags in --help)."
        )
    model.load_state_dict(sd, strict=True)
    model.eval()
    return LoadedModel(model, arch, config, assumed, prefix)
