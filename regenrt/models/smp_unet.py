"""U-Net with a ResNet encoder, state-dict compatible with segmentation_models_pytorch ``Unet`` (0.6).

Layout: ``encoder.*`` (the ResNet of :mod:`regenrt.models.resnet`, output stride 32), ``decoder.blocks.N.conv1/2``
(conv + batch norm + ReLU; with ``decoder_use_norm=False`` a biased conv + ReLU), ``segmentation_head.0``
(3x3 conv). Each decoder block upsamples (nearest) to the size of the next encoder feature map, concatenates it,
and convolves twice; the last block has no skip and ends at the input's size.

Example::

    model = create_model("unet_resnet34", in_channels=3, classes=5)
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import Architecture, Detection, register_architecture, task_from_head
from .resnet import RESNET_SPECS, ResNetEncoder, resnet_encoder_name


def _conv_relu(cin: int, cout: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UnetDecoderBlock(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int, norm: bool):
        super().__init__()
        self.conv1 = _conv_relu(cin + skip, cout, norm)
        self.conv2 = _conv_relu(cout, cout, norm)

    def forward(self, x: Tensor, size, skip: Tensor | None) -> Tensor:
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UnetDecoder(nn.Module):
    def __init__(self, encoder_channels: list[int], decoder_channels: list[int], norm: bool):
        super().__init__()
        channels = list(encoder_channels[1:])[::-1]  # deepest first, without the input itself
        ins = [channels[0]] + list(decoder_channels[:-1])
        skips = channels[1:] + [0]
        self.blocks = nn.ModuleList(UnetDecoderBlock(i, s, o, norm) for i, s, o in zip(ins, skips, decoder_channels))

    def forward(self, features: list[Tensor]) -> Tensor:
        sizes = [f.shape[2:] for f in features][::-1]
        feats = features[1:][::-1]
        x, skips = feats[0], feats[1:]
        for i, block in enumerate(self.blocks):
            x = block(x, sizes[i + 1], skips[i] if i < len(skips) else None)
        return x


class Unet(nn.Module):
    def __init__(self, encoder: str, in_channels: int, classes: int, decoder_channels: list[int],
                 decoder_use_norm: bool):
        super().__init__()
        self.encoder = ResNetEncoder(encoder, in_channels, output_stride=32)
        self.decoder = UnetDecoder(self.encoder.out_channels, list(decoder_channels), decoder_use_norm)
        self.segmentation_head = nn.Sequential(nn.Conv2d(decoder_channels[-1], classes, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.segmentation_head(self.decoder(self.encoder(x)))


DEFAULTS: dict[str, Any] = {"encoder": "resnet34", "in_channels": 3, "classes": 1,
                            "decoder_channels": [256, 128, 64, 32, 16], "decoder_use_norm": True}


def _build(config: dict[str, Any]) -> nn.Module:
    if config["encoder"] not in RESNET_SPECS:
        raise ValueError(f"encoder must be one of {sorted(RESNET_SPECS)}, got {config['encoder']!r}")
    if len(config["decoder_channels"]) != 5:
        raise ValueError(f"decoder_channels must have 5 entries (encoder depth 5), got {config['decoder_channels']}")
    return Unet(**config)


def _detect(sd: Mapping[str, Tensor]) -> Detection | None:
    needed = ("encoder.conv1.weight", "decoder.blocks.0.conv1.0.weight", "segmentation_head.0.weight")
    if not all(k in sd for k in needed) or "decoder.blocks.5.conv1.0.weight" in sd:
        return None
    blocks = [f"decoder.blocks.{i}.conv1.0.weight" for i in range(5)]
    if not all(b in sd for b in blocks):
        return None
    config = {
        "encoder": resnet_encoder_name(sd, "encoder.", "smp Unet"),
        "in_channels": int(sd["encoder.conv1.weight"].shape[1]),
        "classes": int(sd["segmentation_head.0.weight"].shape[0]),
        "decoder_channels": [int(sd[b].shape[0]) for b in blocks],
        "decoder_use_norm": "decoder.blocks.0.conv1.1.running_mean" in sd,
    }
    assumed = {"decoder_interpolation": "not stored in weights; smp default nearest upsampling",
               "decoder_attention_type": "none (an scse attention would add weights, and there are none)"}
    return Detection("smp_unet", config, assumed)


register_architecture(Architecture(
    name="smp_unet",
    build=_build,
    detect=_detect,
    defaults=DEFAULTS,
    default_task=task_from_head,
    spatial_multiple=lambda c: 32,
    dynamic_hw=lambda c: True,
    default_hw=lambda c: (256, 256),
    aliases={f"unet_{n}": {"encoder": n} for n in RESNET_SPECS} | {f"unet_r{n[6:]}": {"encoder": n} for n in RESNET_SPECS},
    option_aliases={"out_channels": "classes"},
))
