"""Detect the architecture of a state_dict, build it and load the weights strictly.

Example::

    ckpt = load_checkpoint("ckpt.pt")
    loaded = build_from_state_dict(ckpt.state_dict)          # architecture and config detected
    loaded = build_from_state_dict(ckpt.state_dict, "unet_256", {"norm": "instance"})  # flags override
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ArchitectureError, MissingDependencyError
from .registry import Architecture, Detection, all_architectures, resolve_architecture


@dataclass
class LoadedModel:
    model: nn.Module
    arch: Architecture
    config: dict[str, Any]
    assumed: dict[str, str] = field(default_factory=dict)
    stripped_prefix: str | None = None
    # a model that came as a program (.pt2, .onnx): how its FP32 ONNX graph is made (None: export ``model``), and
    # that its mode is fixed (eval as exported: no batch-statistics variant, no rebuild from weights)
    onnx_export: Callable[..., Any] | None = None
    fixed_mode: bool = False


def _candidates(sd: dict[str, torch.Tensor]) -> list[tuple[str | None, dict[str, torch.Tensor]]]:
    """The state_dict as is, then without a first key component all keys share (e.g. Lightning's ``model.``)."""
    out: list[tuple[str | None, dict[str, torch.Tensor]]] = [(None, sd)]
    heads = {k.split(".", 1)[0] for k in sd}
    if len(heads) == 1 and all("." in k for k in sd):
        prefix = next(iter(heads)) + "."
        out.append((prefix, {k[len(prefix):]: v for k, v in sd.items()}))
    return out


def _hits(sd, archs) -> tuple[list, list[ArchitectureError]]:
    hits, errors = [], []
    for prefix, candidate in _candidates(sd):
        for arch in archs:
            try:
                detection = arch.detect(candidate)
            except ArchitectureError as exc:  # recognised, but not loadable as this architecture: say so if
                errors.append(exc)            # nothing else takes the weights
                continue
            if detection is not None:
                hits.append((arch, detection, prefix, candidate))
        if hits:
            break
    return hits, errors


def detect_architecture(sd: dict[str, torch.Tensor], arch_name: str | None = None
                        ) -> tuple[Architecture, Detection, str | None, dict[str, torch.Tensor]]:
    """Find which registered architecture the keys belong to: the specific ones first, then the generic matchers
    (any smp model); explain what was found when none or several fit."""
    if arch_name:
        hits, errors = _hits(sd, [resolve_architecture(arch_name)[0]])
    else:
        hits, errors = _hits(sd, [a for a in all_architectures() if not a.fallback])
        if not hits:
            try:
                hits, more = _hits(sd, [a for a in all_architectures() if a.fallback])
            except MissingDependencyError as exc:  # an smp model regenrt would build with smp, not installed
                if not errors:
                    raise
                raise ArchitectureError(f"{errors[0]}\nIf it is another segmentation_models_pytorch model: "
                                        f"{exc}") from None
            errors = errors + more  # a built-in's reason names the key it missed: it goes first
    if len(hits) == 1:
        return hits[0]
    if hits:
        names = ", ".join(f"{a.name} (prefix {p!r})" for a, _, p, _ in hits)
        raise ArchitectureError(f"the weights match several architectures: {names}. Pass --arch to choose one.")
    if errors:
        raise errors[0]
    sample = ", ".join(sorted(sd)[:6])
    wanted = f"a {arch_name} checkpoint" if arch_name else "any architecture regenrt builds"
    known = ", ".join(a.name for a in all_architectures())
    raise ArchitectureError(
        f"the weights ({len(sd)} tensors; first keys: {sample} …) do not look like {wanted} (it builds: {known}). "
        "For any other network, export it yourself and give export-engine the file: "
        "torch.export.save(torch.export.export(model.eval(), (x,)), 'model.pt2') or "
        "torch.onnx.export(model.eval(), (x,), 'model.onnx'), then export-engine model.pt2 --task TASK.")


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


def _generic_fallback(sd, arch: Architecture, arch_name: str | None) -> LoadedModel | None:
    """The weights a specific architecture recognised but cannot load, built by a generic matcher instead (an smp
    DeepLabV3+ with a ResNeXt encoder: the built-in ResNet DeepLabV3+ takes its keys, not its grouped convs)."""
    if arch_name or arch.fallback:
        return None
    for generic in (a for a in all_architectures() if a.fallback):
        try:
            if generic.detect(sd) is not None:
                return build_from_state_dict(sd, generic.name)
        except (ArchitectureError, MissingDependencyError):
            continue
    return None


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
        generic = _generic_fallback(sd, arch, arch_name)
        if generic is not None:
            return generic
        detected = ", ".join(f"{k}={v}" for k, v in detection.config.items())
        raise ArchitectureError(
            f"the checkpoint's keys match regenrt's built-in {arch.name} ({detected}; overrides "
            f"{overrides or 'none'}) except:\n  {problems}\nIf the model is that architecture with "
            "other options, give them (--arch and the architecture flags, --set KEY=VALUE: see --help). Otherwise "
            "export it yourself: torch.export.save(torch.export.export(model.eval(), (x,)), 'model.pt2'), then "
            "export-engine model.pt2 --task TASK.")
    model.load_state_dict(sd, strict=True)
    model.eval()
    return LoadedModel(model, arch, config, assumed, prefix)
