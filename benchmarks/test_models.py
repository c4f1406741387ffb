"""Model benchmarks: speed and parity side by side, in one run.

model (DeepLabV3+ R50 with 1 and 3 input channels, Pix2Pix unet_256 ngf 64) x backend x batch (1, 8) x size
(256², 512²). Every case also checks parity against PyTorch FP32 on the same inputs (the export gate's rules) and
records it with the achieved GFLOP/s and its share of this machine's measured matmul peak (``extra_info``).
Backends: PyTorch eager FP32, ONNX Runtime on the FP32 and the FP16 graph, OpenVINO (the CPU engine: BF16 where
the CPU has it), and the GPU backends, which skip with a reason where there is no GPU / TensorRT.
"""
from __future__ import annotations

import copy
import gc
import importlib.util
import platform

import pytest
import torch

from regenrt.export.parity import Tolerances, compare, judge
from regenrt.runtime.engine import backend_for
from regenrt.tasks import get_task

from .common import MODELS, count_macs, percentiles

BACKENDS = {  # backend -> artefact it runs (None: the PyTorch model itself)
    "torch-eager-fp32": None,
    "onnxruntime-fp32": "model.onnx",
    "onnxruntime-fp16": "model.fp16.onnx",
    "openvino": "model.openvino.xml",
    "openvino-default": "model.onnx",  # the peer: OpenVINO on model.onnx with nothing but the latency hint
    "regenrt-engine": None,  # what engine.json chose (any candidate: rewritten graph, bf16, int8, mixed)
    "tensorrt-fp16": "model.engine",
    "torch-cuda-fp32": None,  # eager on the GPU: the baseline GPU speed-ups are quoted against
    "torch-cuda-fp16": "model.torch.pt",
    # the same artefact with the runner's channels_last option and cuDNN's autotuner on while its graph is captured
    # (not yet the default: to be measured on a GPU)
    "torch-cuda-fp16-nhwc": "model.torch.pt",
}
GPU_BACKENDS = ("tensorrt-fp16", "torch-cuda-fp32", "torch-cuda-fp16", "torch-cuda-fp16-nhwc")
# measured as they are, pass or not (ours must pass): OpenVINO's default, and eager FP32 on the GPU, whose
# convolutions run TF32 where torch's default allows it (torch.backends.cudnn.allow_tf32, recorded)
PEERS = ("openvino-default", "torch-cuda-fp32")
SMOKE = {"model": ["deeplabv3plus_r50_1ch"], "batch": [1], "size": [256]}  # plain `pytest`: these, once each


@pytest.fixture(scope="session")
def references():
    """(key, batch, size) -> (model, inputs, PyTorch FP32 outputs, MACs), computed once per session."""
    cache = {}

    def get(key, batch, size):
        if (key, batch, size) not in cache:
            spec = MODELS[key]
            model = spec.build()
            x = spec.inputs(batch, size, seed=batch * 1000 + size)
            with torch.no_grad():
                y = model(torch.from_numpy(x)).numpy()
            cache[(key, batch, size)] = model, x, y, count_macs(model, torch.from_numpy(x))
        return cache[(key, batch, size)]

    return get


def _runner(backend, key, model, exported):
    if backend == "torch-eager-fp32":
        def run(x):
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()
        return run, "fp32", {"torch": torch.__version__}
    if backend == "tensorrt-fp16":
        if importlib.util.find_spec("tensorrt") is None:
            pytest.skip("TensorRT is not installed (pip install regenrt[tensorrt] on an NVIDIA GPU machine)")
    if backend.startswith("torch-cuda"):
        if not torch.cuda.is_available():
            pytest.skip("no NVIDIA GPU visible to torch on this machine")
        return _cuda_runner(backend, model, exported(key))
    if backend.startswith("openvino") and importlib.util.find_spec("openvino") is None:
        pytest.skip("OpenVINO is not installed (`pip install regenrt[openvino]`)")
    if backend == "openvino-default":
        return _openvino_default(exported(key) / BACKENDS[backend])
    if backend == "regenrt-engine":
        from regenrt.runtime import Engine

        engine = Engine.load(exported(key), device="cpu")
        return engine.runner.infer, engine.metadata["precision"], {"engine": engine.path.name}
    path = exported(key) / BACKENDS[backend]
    if not path.exists():
        pytest.skip(f"the export's parity gate refused {path.name} on this CPU (see parity.json): it is not published")
    run = backend_for(path).open(path, "cpu").infer
    if backend == "openvino":
        import openvino

        from regenrt.runtime.backends.openvino import read_metadata

        return run, read_metadata(path)["precision"], {"openvino": openvino.__version__}
    import onnxruntime

    return run, "fp16" if "fp16" in backend else "fp32", {"onnxruntime": onnxruntime.__version__}


def _openvino_default(onnx_path):
    """What a user who calls OpenVINO directly gets: ``compile_model("model.onnx", "CPU", LATENCY)`` (bf16 where
    the CPU has it, f32 elsewhere); its precision is read back from the compiled model. Under an ISA cap below
    BF16 (``ONEDNN_MAX_CPU_ISA=AVX2``) OpenVINO's default still picks bf16 from the CPU's flags and fails to
    compile; there the f32 hint is what the default is on a CPU without BF16."""
    import openvino

    from regenrt.runtime.backends.openvino import executes_bf16

    config = {"PERFORMANCE_HINT": "LATENCY"} | ({} if executes_bf16() else {"INFERENCE_PRECISION_HINT": "f32"})
    compiled = openvino.Core().compile_model(str(onnx_path), "CPU", config)
    request = compiled.create_infer_request()
    hint = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    precision = "bf16" if "bf" in hint.lower() else "fp32"

    def run(x):
        return request.infer({0: x})[compiled.outputs[0]].copy()

    return run, precision, {"openvino": openvino.__version__}


def _cuda_runner(backend, model, directory):
    """GPU timing with the data already on the device (inputs copied once), as a GPU pipeline runs; parity from
    a host round trip (the first call, also the warm-up). fp32: eager on the GPU; fp16: the torch backend
    (FP16 + CUDA graph)."""
    versions = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0),
                "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
    if backend == "torch-cuda-fp32":
        gpu_model = copy.deepcopy(model).cuda()  # the cached reference model stays on the CPU
        state = {}

        def run(x):
            with torch.no_grad():
                if state.get("x") is None or tuple(state["x"].shape) != x.shape:
                    state["x"] = torch.from_numpy(x).cuda()
                    return gpu_model(state["x"]).cpu().numpy()
                gpu_model(state["x"])
                torch.cuda.synchronize()

        return run, "fp32", versions
    from regenrt.models import build_from_state_dict
    from regenrt.runtime.backends.pytorch import TorchRunner, save_artefact

    path = directory / BACKENDS[backend]
    if not path.exists():
        loaded = build_from_state_dict(model.state_dict())
        save_artefact(path, model.state_dict(), loaded.arch.name, loaded.config, {"precision": "fp16", "mode": "eval"})
    nhwc = backend.endswith("-nhwc")
    runner = TorchRunner(path, "cuda", channels_last=nhwc)

    def run(x):
        if tuple(x.shape) not in runner._slots:
            autotune = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = nhwc  # chosen while the warm-up runs and the graph is captured
            try:
                return runner.infer(x)  # allocates the buffers, captures the graph, fills the input
            finally:
                torch.backends.cudnn.benchmark = autotune
        runner.execute(x.shape)
        runner.synchronize()

    return run, "fp16", versions


@pytest.mark.parametrize("size", [256, 512])
@pytest.mark.parametrize("batch", [1, 8, 32])
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("model", list(MODELS))
def test_model(benchmark, exported, references, machine_peak, model, backend, batch, size):
    spec = MODELS[model]
    if batch > 8 and backend not in GPU_BACKENDS:
        pytest.skip("batch 32 is measured on the GPU backends only")
    if spec.fixed_hw and (size, size) != spec.fixed_hw:
        pytest.skip(f"{model} takes {spec.fixed_hw[0]}x{spec.fixed_hw[1]} inputs only")
    torch_model, x, reference, macs = references(model, batch, size)
    run, precision, versions = _runner(backend, model, torch_model, exported)
    benchmark.group = f"model {model} {batch}x{x.shape[1]}x{size}x{size}"
    got = run(x)  # also the warm-up
    row = compare(reference, got)
    passed, criterion, _ = judge(row, precision, get_task(spec.task).metric, Tolerances())
    benchmark.extra_info.update({
        "model": model, "backend": backend, "precision": precision, "batch": batch, "shape": list(x.shape),
        "parity": {k: row[k] for k in ("max_abs", "rel_max", "psnr_db", "argmax_agreement") if k in row},
        "parity_criterion": criterion, "macs": macs, "versions": {**versions, "python": platform.python_version()},
    })
    benchmark.extra_info["parity_passed"] = passed
    if backend not in PEERS:
        assert passed, f"{backend} drifts from PyTorch FP32: {criterion} broken ({row})"
    # the same warm-up for every backend (OpenVINO's first inferences after a compile are slower), then timed
    gc.collect()  # earlier cases' sessions and compiled models go before this one is timed
    benchmark.pedantic(run, args=(x,), rounds=5 if batch * size * size > 256 * 256 else 20, iterations=1,
                       warmup_rounds=3)
    timing = percentiles(benchmark)
    if timing:
        gflops = 2 * macs / (timing["p50_ms"] * 1e-3) / 1e9
        peak = machine_peak.get({"bf16": "bf16", "fp32": "fp32", "fp16": "fp32"}.get(precision))  # no int8 peak measured
        benchmark.extra_info.update({**timing, "gflops": round(gflops, 1),
                                     "pct_of_peak": round(100 * gflops / peak, 1) if peak else None})
