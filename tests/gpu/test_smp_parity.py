"""Against the real library (issue 17 item 3; needs ``segmentation-models-pytorch``, which cannot be imported on the
CI machine): ``smp.DeepLabV3Plus`` with random weights and non-trivial BatchNorm statistics, saved the two ways smp
users save (``torch.save(model.state_dict())`` and ``model.save_pretrained``), loaded by regenrt unchanged:
FP32 outputs within 1e-4 of smp's (relative to the output range), for resnet18/34/50, 1 and 3 input channels,
output stride 16 and 8. Then regenrt's torch-CUDA FP16 engine against smp's FP32 output, within the FP16 gate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from regenrt.export.parity import Tolerances, compare, judge
from regenrt.export.pipeline import _build
from regenrt.models import load_checkpoint

smp = pytest.importorskip("segmentation_models_pytorch", reason="segmentation-models-pytorch is not installed")

CASES = [(enc, cin, os) for enc in ("resnet18", "resnet34", "resnet50") for cin in (1, 3) for os in (16, 8)]


def _smp_model(encoder: str, in_channels: int, output_stride: int) -> torch.nn.Module:
    torch.manual_seed(in_channels * 100 + output_stride)
    model = smp.DeepLabV3Plus(encoder_name=encoder, encoder_weights=None, in_channels=in_channels,
                              classes=1 if in_channels == 1 else 5, encoder_output_stride=output_stride)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _regenrt(path, output_stride: int, pretrained: bool) -> torch.nn.Module:
    ckpt = load_checkpoint(path)
    # a plain state_dict cannot tell the output stride: the user says it (export-engine --output-stride 8)
    overrides = None if pretrained or output_stride == 16 else {"output_stride": output_stride}
    return _build(ckpt, None if pretrained else "deeplabv3plus", overrides).model.eval()


@pytest.mark.parametrize("encoder,in_channels,output_stride", CASES)
def test_smp_deeplabv3plus_loads_unchanged_fp32(tmp_path, encoder, in_channels, output_stride):
    model = _smp_model(encoder, in_channels, output_stride)
    x = torch.randn(2, in_channels, 128, 160)
    with torch.no_grad():
        expected = model(x).numpy()
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    model.save_pretrained(str(tmp_path / "run"))
    for path, pretrained in ((tmp_path / "ckpt.pt", False), (tmp_path / "run", True)):
        ours = _regenrt(path, output_stride, pretrained)
        with torch.no_grad():
            got = ours(x).numpy()
        row = compare(expected, got)
        assert row["rel_max"] <= 1e-4, (path.name, row)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("encoder,in_channels,output_stride", [("resnet50", 1, 16), ("resnet34", 3, 8)])
def test_torch_cuda_fp16_engine_vs_smp_fp32(tmp_path, encoder, in_channels, output_stride):
    from regenrt.export.gpu import GpuOptions
    from regenrt.export.pipeline import export_checkpoint
    from regenrt.runtime import Engine

    model = _smp_model(encoder, in_channels, output_stride)
    model.save_pretrained(str(tmp_path / "run"))
    task = "phase-recovery" if in_channels == 1 else "segmentation"
    export_checkpoint(tmp_path / "run", tmp_path / "e", task=task, parity_samples=1, int8="off",
                      input_shape=f"1x{in_channels}x256x256", gpu=GpuOptions("torch"))
    engine = Engine.load(tmp_path / "e")
    assert engine.device == "cuda" and engine.runner.precision == "fp16"
    x = torch.randn(4, in_channels, 256, 256)
    if in_channels == 1:
        x = x.clamp(-1, 1)  # phase / pi
    with torch.no_grad():
        expected = model(x).numpy()
    row = compare(expected, engine.infer(x.numpy()))
    metric = "image" if in_channels == 1 else "segmentation"
    passed, criterion, _ = judge(row, "fp16", metric, Tolerances())
    assert passed, (criterion, row)
