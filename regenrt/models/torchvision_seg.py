"""torchvision's FCN and DeepLabV3 (``fcn_resnet50/101``, ``deeplabv3_resnet50/101``), state-dict compatible.

Layout: ``backbone.*`` (torchvision ResNet without fc, layer3/layer4 dilated 2/4 by ``replace_stride_with_dilation``:
the first block of a dilated stage keeps the previous dilation), ``classifier.*`` (FCNHead: 3x3 conv 512 + BN + ReLU
+ dropout + 1x1 conv; DeepLabHead: ASPP with rates 12, 24, 36 + 3x3 conv 256 + BN + ReLU + 1x1 conv), and, when
the checkpoint has it, ``aux_classifier.*`` (an FCNHead on layer3). The model computes torchvision's
``model(x)["out"]``: the head on layer4, upsampled bilinearly (align_corners=False) to the input size; the
auxiliary head is loaded (the checkpoint loads unchanged) but is not part of the exported graph.

Example::

    model = create_model("fcn_resnet50", classes=21, aux=True)
"""
from __future__ import annotations

from typing import Any, Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from .deeplabv3plus import ASPP
from .registry import Architecture, Detection, register_architecture, task_from_head
from .resnet import ResNetEncoder, resnet_encoder_name

HEADS = ("fcn", "deeplabv3")
ENCODERS = ("resnet50", "resnet101")


def _fcn_head(cin: int, classes: int) -> nn.Sequential:
    inter = cin // 4
    return nn.Sequential(nn.Conv2d(cin, inter, 3, padding=1, bias=False), nn.BatchNorm2d(inter), nn.ReLU(),
                         nn.Dropout(0.1), nn.Conv2d(inter, classes, 1))


def _deeplab_head(cin: int, classes: int) -> nn.Sequential:
    return nn.Sequential(ASPP(cin, 256, (12, 24, 36), separable=False, dropout=0.5),
                         nn.Conv2d(256, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(),
                         nn.Conv2d(256, classes, 1))


class TorchvisionSegmentation(nn.Module):
    def __init__(self, head: str, encoder: str, in_channels: int, classes: int, aux: bool):
        super().__init__()
        self.backbone = ResNetEncoder(encoder, in_channels, output_stride=8, torchvision_dilation=True)
        channels = self.backbone.out_channels
        self.classifier = (_fcn_head if head == "fcn" else _deeplab_head)(channels[-1], classes)
        self.aux_classifier = _fcn_head(channels[-2], classes) if aux else None

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        out = self.classifier(self.backbone(x)[-1])
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


DEFAULTS: dict[str, Any] = {"head": "fcn", "encoder": "resnet50", "in_channels": 3, "classes": 21, "aux": False}


def _build(config: dict[str, Any]) -> nn.Module:
    if config["head"] not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {config['head']!r}")
    if config["encoder"] not in ENCODERS:
        raise ValueError(f"torchvision builds these heads on {ENCODERS}, got {config['encoder']!r}")
    return TorchvisionSegmentation(**config)


def _detect(sd: Mapping[str, Tensor]) -> Detection | None:
    if "backbone.conv1.weight" not in sd or not any(k.startswith("classifier.") for k in sd):
        return None
    if "classifier.0.convs.0.0.weight" in sd:
        head, last = "deeplabv3", "classifier.4.weight"
    elif "classifier.0.weight" in sd:
        head, last = "fcn", "classifier.4.weight"
    else:
        return None
    if last not in sd:
        return None
    config = {"head": head, "encoder": resnet_encoder_name(sd, "backbone.", f"torchvision {head}"),
              "in_channels": int(sd["backbone.conv1.weight"].shape[1]), "classes": int(sd[last].shape[0]),
              "aux": any(k.startswith("aux_classifier.") for k in sd)}
    assumed = {"output": "torchvision's model(x)['out'] (the auxiliary head is loaded but not exported)"} \
        if config["aux"] else {}
    return Detection("torchvision_segmentation", config, assumed)


register_architecture(Architecture(
    name="torchvision_segmentation",
    build=_build,
    detect=_detect,
    defaults=DEFAULTS,
    default_task=task_from_head,
    spatial_multiple=lambda c: 8,
    dynamic_hw=lambda c: True,
    default_hw=lambda c: (256, 256),
    aliases={f"{h}_{e}": {"head": h, "encoder": e} for h in HEADS for e in ENCODERS},
    option_aliases={"out_channels": "classes", "num_classes": "classes", "aux_loss": "aux"},
))
