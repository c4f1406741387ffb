"""Pix2Pix / CycleGAN ResNet generator, state-dict compatible with the pix2pix reference repo's
``ResnetGenerator`` (``--netG resnet_6blocks`` / ``resnet_9blocks``, the default of the repo's CycleGAN).

Layout (``model.N``): reflection pad, 7x7 conv, norm, ReLU; two stride-2 3x3 convs (norm, ReLU); ``n_blocks``
residual blocks (``model.10.conv_block.*``: pad, 3x3 conv, norm, ReLU, [dropout], pad, 3x3 conv, norm; with
``padding_type='zero'`` no pad layers and padded convs); two stride-2 transposed convs (norm, ReLU); reflection
pad, 7x7 conv, tanh. The repo's norms: ``batch`` (affine BatchNorm, bias-free convs), ``instance``
(InstanceNorm, affine=False by default; biased convs), ``none`` (no layer, and — as the repo computes ``use_bias``
— bias-free convs). Everything is read from the keys except the padding kind of a padded block (reflect or
replicate: no weights differ; the repo's default reflect is assumed) and dropout (eval mode never uses it).
Fully convolutional: any size that is a multiple of 4.

Example::

    model = create_model("resnet_9blocks", ngf=64, norm="instance")
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor, nn

from ..errors import ArchitectureError
from .pix2pix_unet import RunningInstanceNorm2d, _instance_stats, _patch  # the repo's instance-norm rules
from .registry import Architecture, Detection, register_architecture

PADDINGS = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d}
NORMS = ("batch", "instance", "none")


def _norm(config: dict[str, Any], channels: int) -> nn.Module:
    norm = config["norm"]
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "none":
        return nn.Identity()
    affine = bool(config.get("instance_affine"))
    if config.get("instance_stats") == "running":
        return RunningInstanceNorm2d(channels, affine=affine, track_running_stats=True)
    return nn.InstanceNorm2d(channels, affine=affine, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, config: dict[str, Any], use_bias: bool):
        super().__init__()
        layers: list[nn.Module] = []
        for second in (False, True):
            pad = 1 if config["padding_type"] == "zero" else 0
            if not pad:
                layers.append(PADDINGS[config["padding_type"]](1))
            layers += [nn.Conv2d(dim, dim, kernel_size=3, padding=pad, bias=use_bias), _norm(config, dim)]
            if not second:
                layers.append(nn.ReLU(True))
                if config["use_dropout"]:
                    layers.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, config: dict[str, Any]):
        super().__init__()
        ngf, use_bias = config["ngf"], config["norm"] == "instance"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(config["input_nc"], ngf, 7, bias=use_bias),
                                   _norm(config, ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                       _norm(config, ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, config, use_bias) for _ in range(config["n_blocks"])]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=use_bias), _norm(config, ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, config["output_nc"], 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


DEFAULTS: dict[str, Any] = {"input_nc": 3, "output_nc": 3, "ngf": 64, "n_blocks": 9, "norm": "batch",
                            "use_dropout": False, "padding_type": "reflect", "instance_affine": False,
                            "instance_stats": "instance"}


def _build(config: dict[str, Any]) -> nn.Module:
    if config["norm"] not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {config['norm']!r}")
    if config["padding_type"] not in (*PADDINGS, "zero"):
        raise ValueError(f"padding_type must be reflect, replicate or zero, got {config['padding_type']!r}")
    return ResnetGenerator(config)


def _detect(sd: Mapping[str, Tensor]) -> Detection | None:
    if "model.1.weight" not in sd or sd["model.1.weight"].dim() != 4 or sd["model.1.weight"].shape[-1] != 7:
        return None
    blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("model.") and ".conv_block." in k})
    if not blocks or blocks != list(range(10, 10 + len(blocks))):
        return None
    n = len(blocks)
    tail = f"model.{10 + n + 7}.weight"
    if tail not in sd:
        raise ArchitectureError(f"the keys match a pix2pix ResNet generator with {n} blocks except for its output "
                                f"convolution {tail} (and its bias): the checkpoint is incomplete; re-save the full "
                                "netG state_dict.")
    first = "model.10.conv_block"
    zero = f"{first}.0.weight" in sd
    conv_bias = "model.1.bias" in sd
    has_norm = any(k.startswith(("model.2.", "model.5.", "model.8.")) for k in sd)
    norm = "instance" if conv_bias else ("batch" if has_norm else "none")
    second = [i for i in range(3, 8) if f"{first}.{i}.weight" in sd and sd[f"{first}.{i}.weight"].dim() == 4]
    config = {"input_nc": int(sd["model.1.weight"].shape[1]), "output_nc": int(sd[tail].shape[0]),
              "ngf": int(sd["model.1.weight"].shape[0]), "n_blocks": n, "norm": norm,
              "padding_type": "zero" if zero else "reflect",
              "use_dropout": bool(second) and second[0] == (4 if zero else 6)}
    assumed = {"use_dropout": "dropout has no weights and acts in train mode only (export uses eval mode)"}
    if not zero:
        assumed["padding_type"] = ("reflect or replicate leave the same weights: the repo's default reflect "
                                   "assumed (--set padding_type=replicate if trained so)")
    if norm == "instance":
        config["instance_affine"] = "model.2.weight" in sd
        config["instance_stats"], assumed["instance_stats"] = _instance_stats(sd)
    return Detection("pix2pix_resnet", config, assumed)


register_architecture(Architecture(
    name="pix2pix_resnet",
    build=_build,
    detect=_detect,
    defaults=DEFAULTS,
    default_task=lambda c: "inpainting",
    spatial_multiple=lambda c: 4,
    dynamic_hw=lambda c: True,
    default_hw=lambda c: (256, 256),
    aliases={"resnet_9blocks": {"n_blocks": 9}, "resnet_6blocks": {"n_blocks": 6}, "cyclegan": {}},
    patch_state_dict=_patch,
    option_aliases={"in_channels": "input_nc", "classes": "output_nc", "out_channels": "output_nc"},
))
