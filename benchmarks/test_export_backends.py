"""PyTorch eager vs ONNX Runtime FP32 vs the FP16 graph on an exported model, with parity recorded."""
import numpy as np
import pytest
import torch

from regenrt.demo import make_demo_checkpoint
from regenrt.export.parity import compare
from regenrt.export.pipeline import export_checkpoint
from regenrt.models import build_from_state_dict, load_checkpoint
from regenrt.runtime.backends.onnxruntime import OnnxRuntimeRunner
from regenrt.tasks import get_task


@pytest.fixture(scope="module", params=["phase-recovery", "inpainting"])
def exported(request, bench_dir):
    ckpt = make_demo_checkpoint(request.param, bench_dir / request.param)
    result = export_checkpoint(ckpt, bench_dir / request.param / "engine", parity_samples=1)
    loaded = build_from_state_dict(load_checkpoint(ckpt).state_dict)
    c, h, w = result.metadata["input"]["example_shape"][1:]
    x = get_task(request.param).make_inputs(loaded.config, 1, h, w, seed=5)
    with torch.no_grad():
        ref = loaded.model(torch.from_numpy(x)).numpy()
    return request.param, loaded.model, result, x, ref


@pytest.mark.parametrize("backend", ["torch-eager", "onnxruntime-fp32", "onnxruntime-fp16"])
def test_backend_latency(benchmark, exported, backend):
    task, model, result, x, ref = exported
    benchmark.group = f"{task} 1x{x.shape[1]}x{x.shape[2]}x{x.shape[3]}"
    if backend == "torch-eager":
        def run():
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()
    else:
        runner = OnnxRuntimeRunner(result.artefacts["fp32" if backend.endswith("fp32") else "fp16"])
        runner.activate()

        def run():
            return runner.infer({"input": x})["output"]
    out = benchmark(run)
    metrics = compare(ref, out)
    benchmark.extra_info.update({"backend": backend, "max_abs": metrics["max_abs"], "psnr_db": metrics["psnr_db"]})
    assert metrics["nonfinite"] == 0 and (metrics["psnr_db"] >= 40 or np.isinf(metrics["psnr_db"]))
