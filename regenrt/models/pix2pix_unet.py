"""Pix2Pix U-Net generator, state-dict compatible with the pix2pix reference repo's ``UnetGenerator``.

Keys nest as ``model.model.1.model.3.model.…`` exactly as ``UnetSkipConnectionBlock`` builds them. Batch norm is
``BatchNorm2d(affine, running stats)`` with bias-free convs; instance norm is ``InstanceNorm2d(affine=False)`` with
biased convs. InstanceNorm running statistics in a checkpoint are decided from the checkpoint itself
(``instance_stats``): saved with ``num_batches_tracked`` (PyTorch >= 0.4.1, layers built with
``track_running_stats=True``) they are the model's eval-mode statistics and are kept; without it (PyTorch < 0.4,
which always normalized per instance) they are dropped, as the reference repo's
``__patch_instance_norm_state_dict`` does. ``--set instance_stats=instance|running`` overrides.

Example::

    model = create_model("unet_256", ngf=64, norm="instance")
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import ArchitectureError
from .registry import Architecture, Detection, register_architecture


class RunningInstanceNorm2d(nn.InstanceNorm2d):
    """``InstanceNorm2d(track_running_stats=True)``, computing its eval mode (the running statistics) with
    ``batch_norm``, which is the same arithmetic and which ONNX exporters take (torch's exporter refuses
    ``instance_norm`` with running statistics for a dynamic batch). Same state-dict keys."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training or not self.track_running_stats:
            return super().forward(x)
        return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                                        self.eps)


def _norm(norm: str, channels: int, running: bool = False) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if running:
        return RunningInstanceNorm2d(channels, affine=False, track_running_stats=True)
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class UnetSkipConnectionBlock(nn.Module):
    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False,
                 norm: str = "batch", use_dropout: bool = False, running: bool = False):
        super().__init__()
        self.outermost = outermost
        use_bias = norm == "instance"
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, uprelu, upconv, _norm(norm, outer_nc, running)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, _norm(norm, inner_nc, running), submodule, uprelu, upconv,
                      _norm(norm, outer_nc, running)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int, norm: str, use_dropout: bool,
                 instance_stats: str = "instance"):
        super().__init__()
        run = norm == "instance" and instance_stats == "running"
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm=norm, innermost=True, running=run)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout,
                                            running=run)
        for mult in (4, 2, 1):
            block = UnetSkipConnectionBlock(ngf * mult, ngf * mult * 2, submodule=block, norm=norm, running=run)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block,
                                             outermost=True, norm=norm, running=run)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


DEFAULTS: dict[str, Any] = {
    "input_nc": 3, "output_nc": 3, "num_downs": 8, "ngf": 64, "norm": "batch", "use_dropout": False,
    "instance_stats": "instance",
}
INSTANCE_STATS = ("instance", "running")


def _build(config: dict[str, Any]) -> nn.Module:
    if config["num_downs"] < 5:
        raise ValueError(f"num_downs must be at least 5, got {config['num_downs']}")
    if config["norm"] not in ("batch", "instance"):
        raise ValueError(f"norm must be 'batch' or 'instance', got {config['norm']!r}")
    if config.get("instance_stats", "instance") not in INSTANCE_STATS:
        raise ValueError(f"instance_stats must be one of {INSTANCE_STATS}, got {config['instance_stats']!r}")
    return UnetGenerator(**config)


def _block_prefixes(sd: Mapping[str, Tensor]) -> list[str]:
    """Prefixes of the nested blocks below the outermost one, outer to inner."""
    prefixes, prefix = [], "model.model.1"
    while f"{prefix}.model.1.weight" in sd:
        prefixes.append(prefix)
        prefix += ".model.3"
    return prefixes


def _detect(sd: Mapping[str, Tensor]) -> Detection | None:
    if "model.model.0.weight" not in sd or "model.model.3.weight" not in sd:
        return None
    blocks = _block_prefixes(sd)
    if not blocks:
        return None
    # BatchNorm has affine weights (the reference's InstanceNorm has none) and no conv biases; InstanceNorm convs
    # have biases. Any block's norm decides, so that a checkpoint missing one layer's weights or statistics is
    # still recognised and the strict load names exactly what is missing.
    norms = [f"{b}.model.2" for b in blocks]
    if any(f"{n}.weight" in sd for n in norms):
        norm = "batch"
    elif any(f"{b}.model.1.bias" in sd for b in blocks):
        norm = "instance"
    else:
        raise ArchitectureError(
            "the keys match a pix2pix U-Net generator, but its norm layer cannot be told: no BatchNorm weights "
            f"({', '.join(n + '.weight' for n in norms[:2])}, …) and no conv biases ({blocks[0]}.model.1.bias, …) "
            "are in the checkpoint. If it was saved incompletely, re-save the full state_dict; otherwise pass "
            "--norm batch or --norm instance."
        )
    head = sd["model.model.0.weight"]
    config = {
        "input_nc": int(head.shape[1]),
        "output_nc": int(sd["model.model.3.weight"].shape[1]),
        "num_downs": len(blocks) + 1,
        "ngf": int(head.shape[0]),
        "norm": norm,
    }
    assumed = {"use_dropout": "dropout leaves no weights; it only acts in train mode, which export never uses"}
    if norm == "instance":
        config["instance_stats"], assumed["instance_stats"] = _instance_stats(sd)
    return Detection("pix2pix_unet", config, assumed)


def _instance_stats(sd: Mapping[str, Tensor]) -> tuple[str, str]:
    """Running statistics of InstanceNorm layers: kept when PyTorch >= 0.4.1 tracked them (num_batches_tracked
    saved beside them: the model's eval mode uses them), dropped when an older PyTorch saved them (it always used
    each instance's statistics)."""
    has_stats = any(k.endswith(".running_mean") for k in sd)
    tracked = any(k.endswith(".num_batches_tracked") for k in sd)
    if has_stats and tracked:
        return "running", ("decided from the checkpoint: its InstanceNorm layers tracked running statistics "
                           "(num_batches_tracked saved, PyTorch >= 0.4.1), which eval mode uses: kept "
                           "(--set instance_stats=instance to normalize per instance instead)")
    if has_stats:
        return "instance", ("decided from the checkpoint: InstanceNorm running statistics without "
                            "num_batches_tracked (saved by PyTorch < 0.4, which normalized per instance): dropped, "
                            "as the pix2pix repo does (--set instance_stats=running to use them)")
    return "instance", "the checkpoint has no InstanceNorm running statistics: each instance's own are used"


def _patch(sd: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
    """Drop InstanceNorm running stats unless ``instance_stats`` is ``running`` (see :func:`_instance_stats`)."""
    if config["norm"] != "instance" or config.get("instance_stats") == "running":
        return sd
    stale = (".running_mean", ".running_var", ".num_batches_tracked")
    return {k: v for k, v in sd.items() if not k.endswith(stale)}


register_architecture(Architecture(
    name="pix2pix_unet",
    build=_build,
    detect=_detect,
    defaults=DEFAULTS,
    default_task=lambda c: "inpainting",
    spatial_multiple=lambda c: 2 ** int(c["num_downs"]),
    dynamic_hw=lambda c: False,
    default_hw=lambda c: (2 ** int(c["num_downs"]),) * 2,
    aliases={"unet_128": {"num_downs": 7}, "unet_256": {"num_downs": 8}, "pix2pix": {}},
    patch_state_dict=_patch,
    option_aliases={"in_channels": "input_nc", "classes": "output_nc", "out_channels": "output_nc"},
))
