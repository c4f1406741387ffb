"""Any segmentation_models_pytorch checkpoint — every architecture and encoder smp has — built with smp itself.

A bare state_dict says neither the architecture nor the encoder nor the constructor arguments. They are found by
instantiating smp's own constructors on the **meta device** (structure only: no memory for weights, ~20 ms a
model) and comparing their keys and shapes with the checkpoint's:

1. the encoder (``encoder.*`` keys): smp's native encoders grouped by class, narrowed by their top-level module
   names; ``tu-`` (timm universal) encoders by the timm module family whose top-level names match (the family
   index is cached under ``~/.cache/regenrt``, per timm version), then every model of the matching families;
   the input channels read off the first convolution;
2. the decoder: every smp architecture with that encoder whose decoder keys equal the checkpoint's, at encoder
   depth 5, 4 or 3; then its width arguments (``decoder_channels`` and the like, and the few choices that change
   keys or shapes: normalization, attention, ASPP separability, FPN merge policy) fitted to the shapes.

What weights cannot tell (output stride, atrous rates, upsampling, interpolation) stays smp's default and is
listed as assumed, with the ``--set`` that changes it. Two encoders with identical weights (timm's ``tf_``
variants) are reported as the match and its runner-up.

Example::

    loaded = build_from_state_dict(torch.load("deeplab_mobilenet.pt"))   # arch "smp", config["smp_arch"] ...
"""
from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from torch import Tensor, nn

from ..errors import ArchitectureError, MissingDependencyError
from .registry import Architecture, Detection, register_architecture, task_from_head

ARCHS = ("deeplabv3plus", "unet", "fpn", "pspnet", "linknet", "unetplusplus", "manet", "deeplabv3", "pan", "upernet",
         "segformer", "dpt")
NOT_IN_WEIGHTS = ("encoder_output_stride", "decoder_atrous_rates", "upsampling", "decoder_interpolation")
DEFAULT = "smp-default"  # a constructor argument left at smp's own default
# smp 0.6's constructor arguments beyond the encoder's (the options --set may give)
OPTIONS = ("encoder_output_stride", "decoder_use_norm", "decoder_channels", "decoder_attention_type",
           "decoder_interpolation", "decoder_pab_channels", "decoder_pyramid_channels",
           "decoder_segmentation_channels", "decoder_merge_policy", "decoder_atrous_rates", "decoder_aspp_separable",
           "upsampling", "psp_out_channels", "decoder_readout", "decoder_intermediate_channels",
           "decoder_fusion_channels", "output_indices", "dynamic_img_size", "dynamic_img_pad")
CHOICES = {"decoder_use_norm": ("batchnorm", "identity"), "decoder_attention_type": (None, "scse"),
           "decoder_aspp_separable": (True, False), "decoder_merge_policy": ("add", "cat")}
# adaptive pooling to several bins (PSPNet's and UPerNet's pyramid pooling) exports for one input size only (the
# ONNX exporters' pooling windows are computed for the traced size), DPT's ViT position embeddings too
FIXED_SIZE = ("pspnet", "upernet", "dpt")
INSTALL = "pip install 'regenrt[smp]' (segmentation-models-pytorch and timm)"


def import_smp():
    try:
        import segmentation_models_pytorch as smp
    except ImportError as exc:
        raise MissingDependencyError(f"this checkpoint is a segmentation_models_pytorch model that regenrt builds "
                                     f"with smp itself, which is not installed here ({exc}): {INSTALL}.") from None
    return smp


def have_smp() -> bool:
    import importlib.util

    return importlib.util.find_spec("segmentation_models_pytorch") is not None


def looks_like_smp(sd: Mapping[str, Tensor]) -> bool:
    heads = {k.split(".", 1)[0] for k in sd}
    return {"encoder", "decoder", "segmentation_head"} <= heads


def _meta_state(build) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in _structure(build).state_dict().items()}


def _structure(build) -> nn.Module:
    """The model ``build`` makes, on the meta device (no memory for weights), or for real on the CPU where its
    constructor computes on its tensors (MiT's drop-path schedule calls .item())."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # smp's deprecation notes for encoders the user did not choose
        try:
            with torch.device("meta"):
                model = build()
        except Exception as exc:  # noqa: BLE001 - a constructor that computes on its tensors (MiT's drop-path
            if "meta" not in str(exc).lower():  # schedule calls .item()): built for real, on the CPU, instead
                raise
            with torch.no_grad():
                model = build()
    return model


def _shapes(sd: Mapping[str, Tensor], prefix: str) -> dict[str, tuple]:
    return {k[len(prefix):]: tuple(v.shape) for k, v in sd.items() if k.startswith(prefix)}


def _distance(want: dict[str, tuple], got: dict[str, tuple]) -> int:
    """Keys missing, keys extra and shapes that differ: 0 is a match."""
    return len(want.keys() ^ got.keys()) + sum(want[k] != got[k] for k in want.keys() & got.keys())


def _tops(keys) -> set[str]:
    return {k.split(".", 1)[0] for k in keys}


# --- 1. the encoder ---------------------------------------------------------------------------------------------

def _first_conv_in(shapes: dict[str, tuple]) -> int | None:
    return next((s[1] for s in shapes.values() if len(s) == 4), None)


def _try_encoder(smp, name: str, want: dict[str, tuple]) -> tuple[int, int] | None:
    """(distance, in_channels) of smp's encoder ``name`` against the checkpoint's encoder shapes."""
    in_channels = _first_conv_in(want) or 3
    try:
        got = _meta_state(lambda: smp.encoders.get_encoder(name, in_channels=in_channels, depth=5, weights=None))
    except Exception:  # noqa: BLE001 - an encoder smp cannot build here (or not on the meta device): not this one
        return None
    return _distance(want, got), in_channels


def _native_candidates(smp, want: dict[str, tuple]) -> list[str]:
    groups: dict[Any, list[str]] = {}
    for name, entry in smp.encoders.encoders.items():
        groups.setdefault(entry["encoder"], []).append(name)
    tops = _tops(want)
    out = []
    for names in groups.values():
        probe = next((n for n in names if _try_encoder(smp, n, want) is not None), None)
        if probe is None:
            continue
        got = _meta_state(lambda: smp.encoders.get_encoder(probe, in_channels=_first_conv_in(want) or 3, depth=5,
                                                           weights=None))
        if _tops(got) == tops:
            out += names
    return out


def _cache_file(name: str) -> Path:
    from ..runtime.disk_cache import cache_root

    return cache_root() / name


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: matching is slower next time, not wrong


def _timm_families() -> dict[str, dict]:
    """timm module -> {"models": [names], "tops": [top-level names of a features_only model]}: cached per timm
    version (building it instantiates one model per family, ~10 s once)."""
    import timm

    cache = _cache_file(f"timm-families-{timm.__version__}.json")
    families = _read_json(cache)
    if families:
        return families
    from timm.models._registry import model_entrypoint

    for name in timm.list_models():
        families.setdefault(model_entrypoint(name).__module__, {"models": [], "tops": None})["models"].append(name)
    for family in families.values():
        for name in family["models"][:3]:
            try:
                family["tops"] = sorted(_tops(_meta_state(
                    lambda: timm.create_model(name, features_only=True, pretrained=False))))
                break
            except Exception:  # noqa: BLE001 - a model that cannot be a features_only encoder
                continue
    _write_json(cache, families)
    return families


def _signature(shapes: dict[str, tuple]) -> str:
    """A digest of keys and shapes, the first convolution's input channels set to 3 (they follow in_channels)."""
    import hashlib

    first = next((k for k, s in shapes.items() if len(s) == 4), None)
    items = sorted((k, list(s[:1] + (3,) + s[2:]) if k == first else list(s)) for k, s in shapes.items())
    return hashlib.sha1(json.dumps(items).encode()).hexdigest()


def _timm_matches(want: dict[str, tuple]) -> tuple[list[str], int]:
    """The tu- encoders whose timm features_only model has exactly the checkpoint's encoder keys and shapes, and
    how many were compared. Each model's signature is computed once per machine (cached per timm version)."""
    import timm

    inner = {k[len("model."):]: s for k, s in want.items() if k.startswith("model.")}
    tops = sorted(_tops(inner))
    names = [n for family in _timm_families().values() if family["tops"] == tops for n in family["models"]]
    cache = _cache_file(f"timm-signatures-{timm.__version__}.json")
    known = _read_json(cache)
    fresh = [n for n in names if n not in known]
    for name in fresh:
        try:
            known[name] = _signature(_meta_state(lambda: timm.create_model(name, features_only=True,
                                                                           pretrained=False)))
        except Exception:  # noqa: BLE001 - not buildable as an encoder
            known[name] = None
    if fresh:
        _write_json(cache, known)
    wanted = _signature(inner)
    return [f"tu-{n}" for n in names if known.get(n) == wanted], len(names)


@dataclass
class EncoderMatch:
    name: str
    in_channels: int
    runner_up: str | None = None


def match_encoder(smp, sd: Mapping[str, Tensor]) -> EncoderMatch:
    want = _shapes(sd, "encoder.")
    timm_like = any(k.startswith("model.") for k in want)
    in_channels = _first_conv_in(want) or 3
    if timm_like:
        names, compared = _timm_matches(want)
        exact = [(n, in_channels) for n in names]
    else:
        names = _native_candidates(smp, want)
        compared, exact = len(names), []
        for name in names:
            found = _try_encoder(smp, name, want)
            if found is not None and found[0] == 0:
                exact.append((name, found[1]))
    if not exact:
        kind = "a timm (tu-) encoder" if timm_like else "an smp encoder"
        first = ", ".join(list(want)[:4])
        raise ArchitectureError(
            f"the weights are an smp model (encoder, decoder, segmentation_head) whose encoder matches no encoder "
            f"of smp {smp.__version__} (looked for {kind} among {compared} with the same layout; first encoder "
            f"keys: {first}). If it was trained with another smp or timm version, install that version; otherwise "
            "export the model yourself: torch.export.save(torch.export.export(model.eval(), (x,)), 'model.pt2') "
            "or torch.onnx.export(...), then export-engine model.pt2 --task ...")
    exact.sort(key=lambda e: (e[0].startswith("tu-tf_") or e[0].startswith("timm-"), len(e[0]), e[0]))
    return EncoderMatch(exact[0][0], exact[0][1], exact[1][0] if len(exact) > 1 else None)


# --- 2. the architecture and its arguments ----------------------------------------------------------------------

def _defaults(smp, arch: str) -> dict[str, Any]:
    cls = smp.MODEL_ARCHITECTURES_MAPPING[arch]
    return {k: p.default for k, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _build_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    keep = {k: v for k, v in config.items() if v != DEFAULT and k in OPTIONS + ("encoder_depth",)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in keep.items()}


def _smp_model(smp, config: dict[str, Any]) -> nn.Module:
    return smp.create_model(config["smp_arch"], encoder_name=config["encoder_name"], encoder_weights=None,
                            in_channels=config["in_channels"], classes=config["classes"], **_build_kwargs(config))


def _fit(smp, want: dict[str, tuple], base: dict[str, Any], defaults: dict[str, Any]) -> tuple[int, dict]:
    """Coordinate search of the arguments that change shapes or keys, starting from smp's defaults."""
    sizes = sorted({s[0] for k, s in want.items() if not k.startswith("encoder.") and len(s) >= 1})

    def score(config) -> int:
        try:
            return _distance(want, _meta_state(lambda: _smp_model(smp, config)))
        except Exception:  # noqa: BLE001 - an argument combination smp refuses
            return 1 << 30

    config = dict(base)
    best = score(config)
    axes: list[tuple[str, Any]] = []
    for name, default in defaults.items():
        if name in CHOICES:
            axes += [(name, CHOICES[name])]
        elif "channels" in name and isinstance(default, int):
            axes += [(name, sizes)]
        elif "channels" in name and isinstance(default, (tuple, list)):
            axes += [((name, i), sizes) for i in range(config.get("encoder_depth", 5))]
    for _ in range(2):  # two sweeps: a later argument can make an earlier one fit
        for axis, values in axes:
            if best == 0:
                return best, config
            for value in values:
                trial = dict(config)
                if isinstance(axis, tuple):
                    name, i = axis
                    given = trial.get(name, DEFAULT)
                    current = list(defaults[name] if given == DEFAULT else given)
                    current = (current + [current[-1]] * 8)[:trial.get("encoder_depth", 5)]
                    current[i] = value
                    trial[name] = current
                else:
                    trial[axis] = value
                s = score(trial)
                if s < best:
                    best, config = s, trial
    return best, config


def match_model(sd: Mapping[str, Tensor]) -> Detection:
    """The smp architecture, encoder and arguments whose structure equals the checkpoint's (see module doc)."""
    smp = import_smp()
    encoder = match_encoder(smp, sd)
    want = {k: tuple(v.shape) for k, v in sd.items()}
    decoder_keys = {k for k in want if k.startswith("decoder.")}
    classes = int(sd["segmentation_head.0.weight"].shape[0]) if "segmentation_head.0.weight" in sd else 1
    results = []
    for arch in ARCHS:
        defaults = _defaults(smp, arch)
        for depth in dict.fromkeys((defaults.get("encoder_depth", 5), 5, 4, 3)):
            base = {"smp_arch": arch, "encoder_name": encoder.name, "in_channels": encoder.in_channels,
                    "classes": classes, "encoder_depth": depth}
            for name, default in defaults.items():  # one width per decoder block: as many blocks as stages
                if "channels" in name and isinstance(default, (tuple, list)) and len(default) != depth:
                    base[name] = list(default[:depth]) + [default[-1]] * (depth - len(default))
            try:
                got = _meta_state(lambda: _smp_model(smp, base))
            except Exception:  # noqa: BLE001 - e.g. DPT with a non-ViT encoder, a depth the decoder refuses
                continue
            if _tops(k[len("decoder."):] for k in got if k.startswith("decoder.")) != \
                    _tops(k[len("decoder."):] for k in decoder_keys):
                continue
            distance, config = _fit(smp, want, base, defaults)
            results.append((distance, arch, depth, config))
            if distance == 0:
                break
    results.sort(key=lambda r: r[0])
    if not results or results[0][0]:
        near = f" The nearest is smp {results[0][1]} ({results[0][0]} keys or shapes differ)." if results else ""
        raise ArchitectureError(
            f"the weights are an smp model with the {encoder.name} encoder, but no smp {smp.__version__} "
            f"architecture has exactly its decoder ({len(decoder_keys)} decoder tensors).{near} If it was trained "
            "with another smp version, install that version; otherwise export it yourself: "
            "torch.export.save(torch.export.export(model.eval(), (x,)), 'model.pt2'), then export-engine model.pt2 "
            "--task segmentation.")
    _, arch, depth, config = results[0]
    assumed = {k: f"not stored in weights; smp's default {_defaults(smp, arch)[k]!r} assumed (--set {k}=...)"
               for k in NOT_IN_WEIGHTS if k in _defaults(smp, arch)}
    if encoder.runner_up:
        assumed["encoder_name"] = (f"{encoder.name} and {encoder.runner_up} have identical weights; "
                                   f"{encoder.name} chosen (--set encoder_name={encoder.runner_up} for the other)")
    exact_archs = [r[1] for r in results if r[0] == 0 and r[1] != arch]
    if exact_archs:
        assumed["smp_arch"] = f"{arch} chosen; {', '.join(exact_archs)} also fit (--set smp_arch=NAME)"
    return Detection("smp", {**config, "encoder_depth": depth}, assumed)


# --- the registered architecture --------------------------------------------------------------------------------

def _detect(sd: Mapping[str, Tensor]) -> Detection | None:
    if not looks_like_smp(sd):
        return None
    if not have_smp():
        raise MissingDependencyError(
            f"the weights are a segmentation_models_pytorch model (encoder, decoder, segmentation_head) that is not "
            f"one of regenrt's built-in architectures; regenrt builds it with smp itself: {INSTALL}, then run "
            "export-engine again.")
    signature = tuple(sorted((k, tuple(v.shape)) for k, v in sd.items()))
    if signature not in _MATCHED:  # detection runs again when loading falls back to it: match once
        _MATCHED.clear()
        _MATCHED[signature] = match_model(sd)
    found = _MATCHED[signature]
    return Detection(found.arch, dict(found.config), dict(found.assumed))


_MATCHED: dict[tuple, Detection] = {}


def _build(config: dict[str, Any]) -> nn.Module:
    return _smp_model(import_smp(), config)


def _multiple(config: dict[str, Any]) -> int:
    smp = import_smp()
    model = _structure(lambda: _smp_model(smp, config))
    stride = getattr(model.encoder, "output_stride", None) or 2 ** int(config.get("encoder_depth") or 5)
    return int(stride)


register_architecture(Architecture(
    name="smp",
    build=_build,
    detect=_detect,
    defaults={"smp_arch": "unet", "encoder_name": "resnet34", "in_channels": 3, "classes": 1, "encoder_depth": 5,
              **{k: DEFAULT for k in OPTIONS}},
    default_task=task_from_head,
    spatial_multiple=_multiple,
    dynamic_hw=lambda c: c.get("smp_arch") not in FIXED_SIZE,
    default_hw=lambda c: (224, 224) if c.get("smp_arch") == "dpt" else (256, 256),
    aliases={f"smp_{a}": {"smp_arch": a} for a in ARCHS},
    option_aliases={"encoder": "encoder_name", "arch": "smp_arch"},
    fallback=True,
))
