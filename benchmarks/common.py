"""Shared pieces of the benchmark suite: the benchmarked models, their exports, MAC counts, percentiles."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from regenrt.models import create_model
from regenrt.tasks import get_task


@dataclass(frozen=True)
class BenchModel:
    key: str
    arch: str
    config: dict
    task: str
    fixed_hw: tuple[int, int] | None = None  # models exported at one size only

    def build(self) -> nn.Module:
        """The model with random weights and non-trivial BatchNorm statistics (seeded: identical every run)."""
        torch.manual_seed(0)
        model = create_model(self.arch, **self.config).eval()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.2, 0.2)
                    module.running_var.uniform_(0.5, 2.0)
        return model

    def inputs(self, batch: int, size: int, seed: int = 0) -> np.ndarray:
        """Task-realistic NxCxHxW inputs (the same the parity gate uses)."""
        from regenrt.models.registry import resolve_architecture

        arch, implied = resolve_architecture(self.arch)
        config = {**arch.defaults, **implied, **arch.canonical_options(self.config)}
        return get_task(self.task).make_inputs(config, batch, size, size, seed).astype(np.float32)


MODELS = {
    "deeplabv3plus_r50_1ch": BenchModel("deeplabv3plus_r50_1ch", "deeplabv3plus",
                                        {"encoder": "resnet50", "in_channels": 1, "classes": 1}, "phase-recovery"),
    "deeplabv3plus_r50_3ch": BenchModel("deeplabv3plus_r50_3ch", "deeplabv3plus",
                                        {"encoder": "resnet50", "in_channels": 3, "classes": 1}, "phase-recovery"),
    "deeplabv3plus_r50_seg6": BenchModel("deeplabv3plus_r50_seg6", "deeplabv3plus",
                                         {"encoder": "resnet50", "in_channels": 3, "classes": 6}, "segmentation"),
    "unet_256_ngf64": BenchModel("unet_256_ngf64", "unet_256", {"ngf": 64}, "inpainting", fixed_hw=(256, 256)),
    # a light encoder chosen for deployment (depthwise convolutions, hard-swish, squeeze-excitation), built with smp
    "deeplabv3plus_mbv3_seg6": BenchModel("deeplabv3plus_mbv3_seg6", "smp_deeplabv3plus",
                                          {"encoder_name": "tu-mobilenetv3_large_100", "in_channels": 3,
                                           "classes": 6}, "segmentation"),
}


def export_model(m: BenchModel, directory: Path, smoke: bool = False) -> Path:
    """Save the model as a checkpoint and export it with export-engine's defaults (every artefact, gated); a smoke
    run (plain pytest: the benchmark code run once, untimed) leaves the INT8 candidates out (a minute of NNCF
    quantization and repair per model; tests/export/test_int8.py covers them)."""
    from regenrt.export.pipeline import export_checkpoint

    directory.mkdir(parents=True, exist_ok=True)
    ckpt = directory / f"{m.key}.pt"
    torch.save(m.build().state_dict(), ckpt)
    overrides = {k: v for k, v in m.config.items() if k in ("encoder", "encoder_name")}
    export_checkpoint(ckpt, directory / "engine", arch=m.arch, overrides=overrides or None, task=m.task,
                      parity_samples=1, calibration_samples=4, int8="off" if smoke else "auto")
    return directory / "engine"


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on ``x``: convolutions, transposed convolutions, linear layers
    (counted from the shapes the layers see; elementwise work is not counted)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.ConvTranspose2d):
            kh, kw = module.kernel_size
            total += inputs[0].numel() * (module.out_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [mod.register_forward_hook(hook) for mod in model.modules()
               if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def percentiles(benchmark) -> dict:
    """p50/p90/p99 (ms) of the timed rounds; {} when benchmarking is disabled (smoke runs)."""
    stats = getattr(benchmark, "stats", None)
    data = getattr(getattr(stats, "stats", None), "data", None)
    if not data:
        return {}
    p50, p90, p99 = np.percentile(np.asarray(data) * 1e3, [50, 90, 99])
    return {"p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3), "p99_ms": round(float(p99), 3)}
