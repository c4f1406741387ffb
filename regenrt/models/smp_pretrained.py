"""segmentation_models_pytorch ``save_pretrained`` directories: ``config.json`` (every constructor argument and
``_model_class``) beside ``model.safetensors`` (or the ``pytorch_model.bin`` older versions write). The config
decides what weights cannot tell (output stride, atrous rates, upsampling), so nothing is assumed.

Example::

    found = find_pretrained(Path("runs/best"))      # a directory, or a weights file beside its config.json
    found.weights, found.arch, found.overrides      # Path, "deeplabv3plus", {"output_stride": 8, ...}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ArchitectureError, CheckpointError

CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


def _deeplabv3plus(c: dict[str, Any]) -> dict[str, Any]:
    return {"encoder": c.get("encoder_name"), "in_channels": c.get("in_channels"), "classes": c.get("classes"),
            "output_stride": c.get("encoder_output_stride"), "decoder_channels": c.get("decoder_channels"),
            "atrous_rates": c.get("decoder_atrous_rates"), "aspp_separable": c.get("decoder_aspp_separable"),
            "aspp_dropout": c.get("decoder_aspp_dropout"), "upsampling": c.get("upsampling")}


def _unet(c: dict[str, Any]) -> dict[str, Any]:
    if c.get("decoder_attention_type") not in (None, "null"):
        raise ArchitectureError(f"smp Unet with decoder_attention_type={c['decoder_attention_type']!r} is not "
                                "supported (regenrt builds the plain decoder).")
    if c.get("decoder_interpolation", "nearest") != "nearest":
        raise ArchitectureError(f"smp Unet with decoder_interpolation={c['decoder_interpolation']!r} is not "
                                "supported (regenrt builds nearest upsampling).")
    norm = c.get("decoder_use_norm", c.get("decoder_use_batchnorm", True))
    return {"encoder": c.get("encoder_name"), "in_channels": c.get("in_channels"), "classes": c.get("classes"),
            "decoder_channels": c.get("decoder_channels"),
            "decoder_use_norm": norm not in (False, None, "none") if norm is not True else True}


CLASSES: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "DeepLabV3Plus": ("deeplabv3plus", _deeplabv3plus),
    "Unet": ("smp_unet", _unet),
}


@dataclass
class Pretrained:
    config_path: Path
    weights: Path
    arch: str
    overrides: dict[str, Any] = field(default_factory=dict)


def find_pretrained(path: Path) -> Pretrained | None:
    """The save_pretrained layout at ``path`` (a directory, or a weights file beside its config.json); None when
    there is none."""
    directory = path if path.is_dir() else path.parent
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"{config_path} is not readable JSON ({exc}).") from None
    if not isinstance(config, dict) or "_model_class" not in config:
        return None  # some other tool's config.json
    name = config["_model_class"]
    for key, unsupported in (("activation", None), ("aux_params", None)):
        if config.get(key) not in (unsupported,):
            raise ArchitectureError(f"{config_path}: {key}={config[key]!r} is not supported (regenrt exports the "
                                    "logits of the segmentation head); re-save the model without it.")
    builtin = name in CLASSES and config.get("encoder_depth", 5) == 5 and \
        str(config.get("encoder_name", "")).startswith("resnet") and config.get("encoder_name") in _RESNETS
    if path.is_dir():
        weights = next((directory / n for n in WEIGHT_NAMES if (directory / n).is_file()), None)
        if weights is None:
            raise CheckpointError(f"{directory} has {CONFIG_NAME} but no weights ({' or '.join(WEIGHT_NAMES)}).")
    else:
        weights = path
    if builtin:
        try:
            arch, convert = CLASSES[name]
            overrides = {k: v for k, v in convert(config).items() if v is not None}
            return Pretrained(config_path, weights, arch, overrides)
        except ArchitectureError:
            pass  # an option the built-in does not have: smp builds it
    return Pretrained(config_path, weights, "smp", _smp_options(name, config))


_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")


def _smp_options(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Any smp class: the constructor arguments its config.json states, for the smp-built architecture."""
    from .smp_any import OPTIONS

    options = {"smp_arch": name.lower(), "encoder_name": config.get("encoder_name"),
               "in_channels": config.get("in_channels"), "classes": config.get("classes"),
               "encoder_depth": config.get("encoder_depth")}
    options.update({k: v for k, v in config.items() if k in OPTIONS})
    return {k: v for k, v in options.items() if v is not None}
