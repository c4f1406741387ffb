"""Inference semantics of normalization layers: ``eval`` (running statistics) or ``batch-stats``.

The pix2pix reference test script runs the generator without ``.eval()`` unless ``--eval`` is given, so its
BatchNorm layers normalize with the statistics of the batch at hand. ``batch-stats`` reproduces that
deterministically: BatchNorm uses batch statistics, dropout stays off (its random noise is not reproducible and
is not exported). In this mode an item's output depends on the other items of its batch.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

MODES = ("eval", "batch-stats")


class BatchStatNorm2d(nn.Module):
    """BatchNorm2d that always normalizes with the current batch's mean and biased variance."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.eps = bn.eps
        self.weight = bn.weight
        self.bias = bn.bias

    def forward(self, x: Tensor) -> Tensor:
        # statistics in FP32 whatever the input's dtype: in FP16 the squared deviations overflow beyond 256
        xf = x.float()
        mean = xf.mean(dim=(0, 2, 3), keepdim=True)
        centred = xf - mean
        var = (centred * centred).mean(dim=(0, 2, 3), keepdim=True)
        out = centred / torch.sqrt(var + self.eps)
        if self.weight is not None:
            out = out * self.weight.float().view(1, -1, 1, 1) + self.bias.float().view(1, -1, 1, 1)
        return out.to(x.dtype)


def with_mode(model: nn.Module, mode: str) -> nn.Module:
    """An eval-mode copy of ``model`` with the normalization semantics of ``mode`` (the input is not changed)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    model = model.eval()
    if mode == "eval":
        return model
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, BatchStatNorm2d(child))
            elif isinstance(child, nn.InstanceNorm2d) and child.track_running_stats:
                child.track_running_stats = False  # train-mode semantics: each instance's own statistics
    return model.eval()
