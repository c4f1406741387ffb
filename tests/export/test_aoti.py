"""AOTInductor packages, for real on the CPU (the GPU package is the same code with device="cuda", FP16): built at
export with a dynamic batch, gated against PyTorch like every artefact, fingerprinted, refused before any input
is read when the bytes, the torch version or the CPU's vector ISA differ or the gate refused it; and an export on
a machine without a GPU says how the GPU engine is built instead of building nothing silently."""
import json

import numpy as np
import pytest
import torch

from regenrt.errors import RegenrtError
from regenrt.export.aoti import sidecar_path
from regenrt.export.gpu import GpuOptions
from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model
from regenrt.runtime import Engine

pytestmark = pytest.mark.skipif(not hasattr(torch._inductor, "aoti_compile_and_package"),
                                reason="this torch has no AOTInductor packaging (torch >= 2.6)")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("aoti")
    torch.manual_seed(0)
    model = create_model("unet_128", ngf=8).eval()
    torch.save(model.state_dict(), root / "g.pt")
    lines = []
    result = export_checkpoint(root / "g.pt", root / "e", parity_samples=2, precision="fp32", cpu_aoti=True,
                               cpu_engine="onnxruntime", gpu=GpuOptions(max_batch=4), log=lines.append)
    return root, model, result, lines


@pytest.mark.full
def test_the_package_is_built_gated_and_fingerprinted(exported):
    root, model, result, lines = exported
    package = root / "e" / "model.aoti-cpu.pt2"
    assert package.exists() and sidecar_path(package).exists()
    entry = result.report["candidates"]["aoti-cpu"]
    assert entry["passed"] and entry["precision"] == "fp32" and entry["executes"] == "fp32"
    assert entry["proof"]["heavy_layers"] >= 10  # every convolution of the compiled program, read from it
    record = json.loads(sidecar_path(package).read_text())
    assert record["verified"] is True and record["parity"]["passed"] is True
    assert record["environment"]["torch"] == torch.__version__
    assert record["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "--cpu-aoti" in record["rebuild"] and record["rebuild"].startswith("export-engine ")
    timed = result.engine.get("latency_ms", {})
    assert "model.aoti-cpu.pt2" in timed  # timed by the same selection as every CPU candidate


@pytest.mark.full
def test_the_loaded_package_matches_pytorch_at_any_batch(exported):
    root, model, _, _ = exported
    engine = Engine.load(root / "e" / "model.aoti-cpu.pt2", device="cpu")
    assert engine.runner.runs_on == "cpu"  # read back from the package
    for n in (1, 3):
        x = np.random.default_rng(n).uniform(-1, 1, (n, 3, 128, 128)).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        got = engine.infer(x)
        assert got.shape == want.shape and np.abs(got - want).max() / (want.max() - want.min()) < 1e-4


@pytest.mark.full
@pytest.mark.parametrize("damage", ["bytes", "torch", "cpu_capability", "unverified", "no fingerprint"])
def test_a_package_is_refused_before_any_input_is_read(exported, tmp_path, damage):
    root, _, _, _ = exported
    package = tmp_path / "model.aoti-cpu.pt2"
    package.write_bytes((root / "e" / "model.aoti-cpu.pt2").read_bytes())
    record = json.loads(sidecar_path(root / "e" / "model.aoti-cpu.pt2").read_text())
    if damage == "bytes":
        package.write_bytes(package.read_bytes() + b"\0")
    elif damage == "torch":
        record["environment"]["torch"] = "2.6.0"
    elif damage == "cpu_capability":
        record["environment"]["cpu_capability"] = "NO AVX"
    elif damage == "unverified":
        record["verified"] = False
    if damage != "no fingerprint":
        sidecar_path(package).write_text(json.dumps(record))
    expected = {"bytes": "sha256 differs", "torch": "torch 2.6.0", "cpu_capability": "cpu_capability NO AVX",
                "unverified": "did not pass the parity gate", "no fingerprint": "has no fingerprint"}[damage]
    with pytest.raises(RegenrtError, match=expected) as err:
        Engine.load(package, device="cpu")
    if damage != "no fingerprint":
        assert "export-engine" in str(err.value)  # the command that rebuilds it


@pytest.mark.full
def test_an_export_without_a_gpu_says_how_the_gpu_engine_is_built(exported):
    root, _, result, lines = exported
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the GPU engine is built, not described")
    record = json.loads((root / "e" / "engine.json").read_text())
    gpu = record["gpu_engine"]
    assert gpu["built"] is False and "no NVIDIA GPU" in gpu["reason"]
    # the default GPU engine (what has run on a GPU), not the opt-in AOTInductor package
    assert "--gpu-engine aoti" not in gpu["how"] and "export-engine" in gpu["how"] and "torch-CUDA" in gpu["how"]
    assert any("GPU engine: none built here" in line for line in lines)


@pytest.mark.full
def test_sizes_outside_the_compiled_range_are_refused_and_large_batches_split(exported):
    """The compiled code checks no shapes itself: the runner refuses a size it was not compiled for, and splits a
    batch above the compiled maximum (4 here) into parts with the same answers."""
    from regenrt.errors import InputError

    root, model, _, _ = exported
    engine = Engine.load(root / "e" / "model.aoti-cpu.pt2", device="auto")  # the package's own device: cpu
    assert engine.device == "cpu" and engine.runner.max_batch == 4
    with pytest.raises(InputError, match="compiled for NxCxHxW inputs with H in \\[128, 128\\]"):
        engine.runner.infer(np.zeros((1, 3, 256, 256), np.float32))
    x = np.random.default_rng(7).uniform(-1, 1, (6, 3, 128, 128)).astype(np.float32)
    got = engine.infer(x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert got.shape == (6, 3, 128, 128) and np.abs(got - want).max() / (want.max() - want.min()) < 1e-4


def test_a_missing_compiler_or_toolkit_is_said_before_any_work(monkeypatch, tmp_path):
    """missing_toolchain: the compiler Inductor would use (CXX pointing at nothing: named), and for CUDA the
    toolkit (no CUDA_HOME here: named) — so that --gpu-engine aoti and the GPU tests refuse or skip in a second."""
    from regenrt.export.aoti import missing_toolchain

    assert missing_toolchain("cpu") is None  # this machine has g++
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"cpp.cxx": (str(tmp_path / "no-such-compiler"),)}):
        reason = missing_toolchain("cpu")
    assert reason and "no C++ compiler" in reason and "g++" in reason
    import torch.utils.cpp_extension as ext

    monkeypatch.setattr(ext, "CUDA_HOME", None)
    assert "CUDA toolkit is not found" in missing_toolchain("cuda")
    monkeypatch.setattr(ext, "CUDA_HOME", str(tmp_path))
    assert "has no headers" in missing_toolchain("cuda")
