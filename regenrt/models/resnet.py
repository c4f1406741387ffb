"""ResNet encoder laid out like segmentation_models_pytorch's ``ResNetEncoder`` (torchvision ResNet, no fc).

State-dict keys match torchvision/smp (``conv1``, ``bn1``, ``layer1.0.conv1`` …, ``downsample.0/1``).
Dilation follows smp's ``replace_strides_with_dilation``: every conv of a dilated stage gets stride 1,
dilation ``d`` and padding ``(k // 2) * d`` — not torchvision's ``replace_stride_with_dilation``, whose first
block keeps the previous dilation. That difference changes outputs, so it is reproduced exactly.
"""
from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

from ..errors import ArchitectureError

# encoder name -> (block kind, blocks per stage)
RESNET_SPECS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}


def _conv(cin: int, cout: int, k: int, stride: int, dilation: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=(k // 2) * dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = _conv(cin, planes, 3, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(planes, planes, 3, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None):
        super().__init__()
        width = planes
        self.conv1 = _conv(cin, width, 1, 1, dilation)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, planes * 4, 1, 1, dilation)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """Returns the six smp feature maps: input, stride 2, 4, 8, 16 and 32 (or dilated equivalents)."""

    def __init__(self, name: str, in_channels: int = 3, output_stride: int = 32, torchvision_dilation: bool = False):
        """``torchvision_dilation``: the first block of a dilated stage keeps the previous stage's dilation, as
        torchvision's ``replace_stride_with_dilation`` builds it (its FCN and DeepLabV3); else smp's rule."""
        super().__init__()
        kind, layers = RESNET_SPECS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        expansion = EXPANSION[kind]
        # smp dilates the stages whose nominal stride exceeds output_stride: rate = stage stride // output_stride.
        dilations = [1, 1, max(1, 16 // output_stride), max(1, 32 // output_stride)]
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        self.out_channels = [in_channels, 64]
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            dilation = dilations[i]
            if dilation > 1:
                stride = 1
            downsample = None
            if stride != 1 or cin != planes * expansion:
                downsample = nn.Sequential(_conv(cin, planes * expansion, 1, stride, dilation),
                                           nn.BatchNorm2d(planes * expansion))
            first = dilations[i - 1] if torchvision_dilation and i > 0 and dilation > 1 else dilation
            stage = [block(cin, planes, stride, first, downsample)]
            cin = planes * expansion
            stage += [block(cin, planes, 1, dilation, None) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            self.out_channels.append(cin)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = [x]
        x = self.relu(self.bn1(self.conv1(x)))
        features.append(x)
        x = self.layer1(self.maxpool(x))
        features.append(x)
        for layer in (self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


def resnet_encoder_name(sd: Mapping[str, Tensor], prefix: str, what: str) -> str:
    """Which supported ResNet the weights under ``prefix`` are (block kind and blocks per stage)."""
    kind = "bottleneck" if f"{prefix}layer1.0.conv3.weight" in sd else "basic"
    layers = tuple(len({k[len(f"{prefix}layer{s}."):].split(".")[0] for k in sd if k.startswith(f"{prefix}layer{s}.")})
                   for s in (1, 2, 3, 4))
    name = next((n for n, spec in RESNET_SPECS.items() if spec == (kind, layers)), None)
    if name is None:
        known = "; ".join(f"{n}: {k} {list(v)}" for n, (k, v) in RESNET_SPECS.items())
        raise ArchitectureError(f"found {what} weights with a ResNet of {kind} blocks {list(layers)} per stage, "
                                f"which is no supported encoder ({known}).")
    return name
