"""On a real NVIDIA GPU: --gpu-engine aoti compiles the AOTInductor FP16 package, gates it on the GPU as FP16 and
records it as the engine; it reproduces the authors' outputs within the FP16 gate, splits batches above its
compiled maximum, and is refused on another compute capability before any input is read."""
import json

import numpy as np
import pytest
import torch

from regenrt.errors import RegenrtError
from regenrt.export.aoti import sidecar_path
from regenrt.export.gpu import GpuOptions
from regenrt.export.parity import compare
from regenrt.export.pipeline import export_checkpoint
from regenrt.runtime import Engine

def _toolchain() -> str | None:
    from regenrt.export.aoti import missing_toolchain

    return missing_toolchain("cuda") if torch.cuda.is_available() else None


pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU visible to torch"),
              # checked before the module's export: a missing compiler or toolkit skips in a second, with the reason
              pytest.mark.skipif(_toolchain() is not None, reason=f"AOTInductor cannot compile here: {_toolchain()}")]


@pytest.fixture(scope="module")
def aoti_export(pix2pix_fixture, tmp_path_factory):
    out = tmp_path_factory.mktemp("aoti_gpu")
    export_checkpoint(pix2pix_fixture[0], out, parity_samples=2, int8="off", gpu=GpuOptions("aoti", max_batch=4))
    return out


def test_the_package_is_gated_recorded_and_reproduces_the_authors_outputs(aoti_export, pix2pix_fixture):
    report = json.loads((aoti_export / "parity.json").read_text())
    entry = report["candidates"]["aoti"]
    assert entry["passed"] and entry["precision"] == "fp16" and entry["executes"] == "fp16", entry
    record = json.loads((aoti_export / "engine.json").read_text())
    assert record["engine"] == "model.aoti.pt2" and record["device"] == "cuda" and "model.aoti.pt2" in record["latency_ms"]
    engine = Engine.load(aoti_export)
    assert engine.device == "cuda" and engine.runner.runs_on == "cuda" and engine.runner.max_batch == 4
    _, ref_data = pix2pix_fixture
    x = ref_data["x"].astype(np.float32)
    assert compare(ref_data["y"], engine.infer(x))["psnr_db"] >= 40
    many = np.concatenate([x] * 6)[:6]  # above the compiled maximum of 4: split, same answers
    got = engine.infer(many)
    assert got.flags["C_CONTIGUOUS"] and compare(ref_data["y"], got[:len(x)])["psnr_db"] >= 40


def test_the_gpu_package_is_refused_on_another_compute_capability(aoti_export, tmp_path):
    package = tmp_path / "model.aoti.pt2"
    package.write_bytes((aoti_export / "model.aoti.pt2").read_bytes())
    record = json.loads(sidecar_path(aoti_export / "model.aoti.pt2").read_text())
    record["environment"]["compute_capability"] = "7.5"
    sidecar_path(package).write_text(json.dumps(record))
    with pytest.raises(RegenrtError, match="compute_capability 7.5"):
        Engine.load(package, device="cuda")
