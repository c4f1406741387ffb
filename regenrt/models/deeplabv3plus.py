"""DeepLabV3+ with a ResNet encoder, state-dict compatible with segmentation_models_pytorch ``DeepLabV3Plus``.

Layout: ``encoder.*``, ``decoder.aspp.*``, ``decoder.block1/2``, ``segmentation_head.*``. Upsampling mirrors smp
exactly: ASPP image pooling uses ``align_corners=False``, the decoder and head use ``UpsamplingBilinear2d``
(``align_corners=True``).

Example::

    model = create_model("deeplabv3plus_resnet50", in_channels=3, classes=21)
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ArchitectureError
from .registry import Architecture, Detection, register_architecture, task_from_head
from .resnet import RESNET_SPECS, ResNetEncoder, resnet_encoder_name


def _cbr(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU()]


class SeparableConv2d(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel_size: int, padding: int = 0, dilation: int = 1, bias: bool = True):
        super().__init__(
            nn.Conv2d(cin, cin, kernel_size, padding=padding, dilation=dilation, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=bias),
        )


class ASPPPooling(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), *_cbr(nn.Conv2d(cin, cout, 1, bias=False), cout))

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, cin: int, cout: int, rates: tuple[int, int, int], separable: bool, dropout: float):
        super().__init__()

        def atrous(rate: int) -> nn.Module:
            conv_cls = SeparableConv2d if separable else nn.Conv2d
            return nn.Sequential(*_cbr(conv_cls(cin, cout, 3, padding=rate, dilation=rate, bias=False), cout))

        self.convs = nn.ModuleList(
            [nn.Sequential(*_cbr(nn.Conv2d(cin, cout, 1, bias=False), cout))]
            + [atrous(r) for r in rates]
            + [ASPPPooling(cin, cout)]
        )
        self.project = nn.Sequential(*_cbr(nn.Conv2d(5 * cout, cout, 1, bias=False), cout), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    def __init__(self, encoder_channels: list[int], channels: int, rates: tuple[int, int, int],
                 output_stride: int, separable: bool, dropout: float):
        super().__init__()
        self.aspp = nn.Sequential(
            ASPP(encoder_channels[-1], channels, rates, separable, dropout),
            *_cbr(SeparableConv2d(channels, channels, 3, padding=1, bias=False), channels),
        )
        self.up = nn.UpsamplingBilinear2d(scale_factor=output_stride // 4)
        self.block1 = nn.Sequential(*_cbr(nn.Conv2d(encoder_channels[2], 48, 1, bias=False), 48))
        self.block2 = nn.Sequential(*_cbr(SeparableConv2d(48 + channels, channels, 3, padding=1, bias=False), channels))

    def forward(self, features: list[Tensor]) -> Tensor:
        aspp = self.up(self.aspp(features[-1]))
        return self.block2(torch.cat([aspp, self.block1(features[2])], dim=1))


class DeepLabV3Plus(nn.Module):
    def __init__(self, encoder: str, in_channels: int, classes: int, output_stride: int,
                 decoder_channels: int, atrous_rates: tuple[int, int, int], aspp_separable: bool,
                 aspp_dropout: float, upsampling: int):
        super().__init__()
        self.encoder = ResNetEncoder(encoder, in_channels, output_stride)
        self.decoder = DeepLabV3PlusDecoder(self.encoder.out_channels, decoder_channels, tuple(atrous_rates),
                                            output_stride, aspp_separable, aspp_dropout)
        self.segmentation_head = nn.Sequential(
            nn.Conv2d(decoder_channels, classes, 1),
            nn.UpsamplingBilinear2d(scale_factor=upsampling) if upsampling > 1 else nn.Identity(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.segmentation_head(self.decoder(self.encoder(x)))


DEFAULTS: dict[str, Any] = {
    "encoder": "resnet34", "in_channels": 3, "classes": 1, "output_stride": 16, "decoder_channels": 256,
    "atrous_rates": [12, 24, 36], "aspp_separable": True, "aspp_dropout": 0.5, "upsampling": 4,
}


def _build(config: dict[str, Any]) -> nn.Module:
    if config["encoder"] not in RESNET_SPECS:
        raise ValueError(f"encoder must be one of {sorted(RESNET_SPECS)}, got {config['encoder']!r}")
    if config["output_stride"] not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {config['output_stride']}")
    return DeepLabV3Plus(**config)


def _detect(sd: Mapping[str, Tensor]) -> Detection | None:
    needed = ("encoder.conv1.weight", "decoder.aspp.0.convs.0.0.weight", "segmentation_head.0.weight")
    missing = [k for k in needed if k not in sd]
    if len(missing) == 1 and any(k.startswith("decoder.aspp.") for k in sd):  # the rest is a DeepLabV3+
        raise ArchitectureError(f"the keys match DeepLabV3+ (encoder, ASPP decoder) except for the missing key "
                                f"{missing[0]} (and whatever else that layer holds): either the checkpoint was "
                                "saved incompletely (re-save the full model.state_dict()), or its encoder is not one "
                                "of regenrt's built-in ResNets (any smp encoder: pip install 'regenrt[smp]').")
    if missing:
        return None
    config = {
        "encoder": resnet_encoder_name(sd, "encoder.", "DeepLabV3+"),
        "in_channels": int(sd["encoder.conv1.weight"].shape[1]),
        "classes": int(sd["segmentation_head.0.weight"].shape[0]),
        "decoder_channels": int(sd["decoder.aspp.0.convs.0.0.weight"].shape[0]),
        "aspp_separable": "decoder.aspp.0.convs.1.0.0.weight" in sd,
    }
    assumed = {
        "output_stride": "not stored in weights; smp default 16 assumed (--output-stride 8 if trained so)",
        "atrous_rates": "not stored in weights; smp default 12,24,36 assumed (--set atrous_rates=6,12,18)",
    }
    return Detection("deeplabv3plus", config, assumed)


register_architecture(Architecture(
    name="deeplabv3plus",
    build=_build,
    detect=_detect,
    defaults=DEFAULTS,
    default_task=task_from_head,
    spatial_multiple=lambda c: int(c["output_stride"]),
    dynamic_hw=lambda c: True,
    default_hw=lambda c: (256, 256),
    aliases={f"deeplabv3plus_{n}": {"encoder": n} for n in RESNET_SPECS}
    | {f"deeplabv3plus_r{n[6:]}": {"encoder": n} for n in RESNET_SPECS},
    option_aliases={"out_channels": "classes"},
))
