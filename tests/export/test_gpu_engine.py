"""The GPU engine's CPU-verifiable parts: choosing it, refusing what this machine cannot build, the torch
artefact (rebuilt model, metadata, modes) run on CPU, engine.json with a GPU engine, loud provider failures."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from regenrt.errors import MissingDependencyError, RegenrtError
from regenrt.export.gpu import GpuOptions, resolve_gpu_engine
from regenrt.export.pipeline import _rebuild_command, export_checkpoint
from regenrt.models import create_model
from regenrt.models.modes import with_mode
from regenrt.runtime import Engine
from regenrt.runtime.backends.onnxruntime import OnnxRuntimeRunner, check_providers
from regenrt.runtime.backends.pytorch import save_artefact

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without a GPU")


@no_gpu
def test_gpu_engine_choice_without_gpu():
    assert resolve_gpu_engine("auto") is None and resolve_gpu_engine("none") is None
    for kind in ("torch", "tensorrt"):
        with pytest.raises(MissingDependencyError, match="needs an NVIDIA GPU.*--gpu-engine none"):
            resolve_gpu_engine(kind)


@no_gpu
def test_explicit_gpu_engine_fails_before_any_work(tmp_path):
    torch.save(create_model("unet_128", ngf=4).state_dict(), tmp_path / "g.pth")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "regenrt.cli.export_engine", str(tmp_path / "g.pth"), "-o",
                             str(out), "--gpu-engine", "tensorrt"], capture_output=True, text=True)
    assert result.returncode == 6 and "needs an NVIDIA GPU" in result.stderr, result.stderr  # README: 6
    assert "Traceback" not in result.stderr and not out.exists()


@pytest.mark.parametrize("mode", ["eval", "batch-stats"])
def test_torch_artefact_rebuilds_the_model_on_cpu(tmp_path, mode):
    torch.manual_seed(0)
    model = create_model("unet_128", ngf=4, norm="batch").eval()
    for m in model.modules():  # non-trivial running statistics, so eval and batch-stats differ
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    metadata = {"task": "inpainting", "arch": "pix2pix_unet", "mode": mode, "precision": "fp16",
                "input": {"channels": 3, "shape": ["batch", 3, 128, 128]}}
    from regenrt.models import build_from_state_dict

    loaded = build_from_state_dict(model.state_dict())
    path = save_artefact(tmp_path / "model.torch.pt", model.state_dict(), loaded.arch.name, loaded.config, metadata)
    engine = Engine.load(path, device="cpu")
    assert engine.backend.name == "torch" and engine.metadata == metadata and engine.runner.precision == "fp32"
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 128, 128)).astype(np.float32)
    with torch.no_grad():
        expected = with_mode(model, mode)(torch.from_numpy(x)).numpy()
    assert np.abs(engine.infer(x) - expected).max() <= 1e-5
    if not torch.cuda.is_available():
        with pytest.raises(MissingDependencyError, match="no NVIDIA GPU is visible"):
            Engine.load(path, device="cuda")


def test_a_training_checkpoint_is_not_an_engine(tmp_path):
    torch.save(create_model("unet_128", ngf=4).state_dict(), tmp_path / "ckpt.torch.pt")
    with pytest.raises(RegenrtError, match="not a regenrt-torch/1 artefact.*export-engine"):
        Engine.load(tmp_path / "ckpt.torch.pt")


def test_engine_record_with_a_gpu_engine(pix2pix_engine_dir, tmp_path):
    """engine.json naming a GPU engine: --device cpu takes the CPU engine beside it; auto without a GPU says so."""
    export = tmp_path / "export"
    shutil.copytree(pix2pix_engine_dir, export)
    cpu_record = json.loads((export / "engine.json").read_text())
    (export / "engine.json").write_text(json.dumps({"engine": "model.torch.pt", "backend": "torch", "device": "cuda",
                                                   "precision": "fp16", "cpu_engine": cpu_record}))
    engine = Engine.load(export, device="cpu", mode="throughput")
    assert engine.path.name == cpu_record["engine"]
    batch_one = cpu_record["latency_engine"]["engine"]  # one request at a time: the CPU record's batch-1 engine
    assert Engine.load(export, device="cpu").path.name == batch_one
    if not torch.cuda.is_available():
        with pytest.raises(MissingDependencyError, match="built for an NVIDIA GPU.*--device cpu.*" + batch_one):
            Engine.load(export)


def test_rebuild_command_reproduces_the_export_options():
    command = _rebuild_command("ck.pt", "out dir", "unet_256", {"ngf": 32}, "inpainting", "1x3x256x256", "batch-stats",
                               "tensorrt", GpuOptions("tensorrt", max_batch=4, version_compatible=True))
    assert command == ("export-engine ck.pt -o 'out dir' --arch unet_256 --set=ngf=32 --task inpainting "
                       "--input-shape 1x3x256x256 --mode batch-stats --gpu-engine tensorrt --max-batch 4 "
                       "--version-compatible")


def test_onnxruntime_gpu_provider_missing_or_dropped_is_loud(pix2pix_engine_dir):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(MissingDependencyError, match="regenrt\\[onnx-gpu\\]"):
            OnnxRuntimeRunner(pix2pix_engine_dir / "model.onnx", ("CUDAExecutionProvider",)).activate()
        with pytest.raises(MissingDependencyError, match="no NVIDIA GPU is visible|offers only"):
            Engine.load(pix2pix_engine_dir / "model.onnx", device="cuda")
        with pytest.raises(MissingDependencyError, match="TensorrtExecutionProvider.*not available"):
            OnnxRuntimeRunner(pix2pix_engine_dir / "model.onnx",
                              ("TensorrtExecutionProvider", "CUDAExecutionProvider")).activate()
    # what ONNX Runtime does when CUDA libraries fail to load: the session silently runs on the CPU provider
    with pytest.raises(MissingDependencyError, match="could not start \\['CUDAExecutionProvider'\\].*Not falling back"):
        check_providers(("CUDAExecutionProvider", "CPUExecutionProvider"), ["CPUExecutionProvider"], "model.onnx")
    check_providers(("CPUExecutionProvider",), ["CPUExecutionProvider"], "model.onnx")


@no_gpu
def test_auto_export_without_gpu_records_a_cpu_engine(pix2pix_engine_dir):
    record = json.loads((pix2pix_engine_dir / "engine.json").read_text())
    assert record["device"] == "cpu" and "cpu_engine" not in record
    assert not (pix2pix_engine_dir / "model.torch.pt").exists() and not (pix2pix_engine_dir / "model.engine").exists()


def test_tensorrt_export_needs_the_fp16_graph(tmp_path, monkeypatch):
    """Checked before any GPU work: TensorRT builds from model.fp16.onnx, so --precision fp32 cannot make one."""
    import regenrt.export.pipeline as pipeline

    monkeypatch.setattr(pipeline, "resolve_gpu_engine", lambda choice: "tensorrt")  # as on a GPU machine with TRT
    torch.save(create_model("unet_128", ngf=4).state_dict(), tmp_path / "g.pth")
    with pytest.raises(RegenrtError, match="--precision fp16"):
        export_checkpoint(tmp_path / "g.pth", tmp_path / "out", precision="fp32", gpu=GpuOptions("tensorrt"))
