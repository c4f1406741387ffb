"""Shared by the serving tests: a small inpainting engine (unet_128, ngf 8, FP32 ONNX), exported once."""
import pytest
import torch

from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model


@pytest.fixture(scope="session")
def inpainting_engine(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("inpainting_engine")
    torch.save(create_model("unet_128", ngf=8).state_dict(), root / "g.pt")
    export_checkpoint(root / "g.pt", root / "engine", parity_samples=1, precision="fp32", cpu_engine="onnxruntime",
                      int8="off")
    return root / "engine"
