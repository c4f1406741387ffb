"""The GPU engine against what a user on an NVIDIA GPU would write instead — same GPU, same run, data already on the
device, the same host clock around back-to-back calls and a device synchronize for all:

- ``eager-fp32``: the model as trained (TF32 where torch's defaults allow it, recorded);
- ``eager-fp16``: ``model.half()`` in channels_last;
- ``compile-fp16``: ``torch.compile(model.half() in channels_last, mode=...)`` — ``max-autotune`` (Triton and
  cuBLAS/cuDNN autotuning, CUDA graphs) for the batch-8 rows and ``reduce-overhead`` (CUDA graphs) elsewhere, the
  plan for scarce GPU time (max-autotune compiles for minutes per shape); ``REGENRT_PEER_COMPILE=reduce-overhead``
  (or ``max-autotune``) forces one mode for every row; each row records its mode;
- ``ort-cuda-fp16``: ONNX Runtime's CUDA execution provider on ``model.fp16.onnx`` with IO binding on device
  buffers and its CUDA-graph option (skipped with the reason where ``onnxruntime-gpu`` is not installed);

against regenrt's GPU artefacts: ``regenrt-torch`` (``model.torch.pt``: FP16 + a CUDA graph per shape) and
``regenrt-aoti`` (``model.aoti.pt2``: AOTInductor FP16, compiled once with a dynamic batch). Rows carry ms per
batch, TFLOP/s (2 x MACs / time), % of the GPU's dense FP16 peak (``REGENRT_FP16_PEAK_TFLOPS``, default 989: an
H100/H200 SXM) and PSNR against PyTorch FP32 on the CPU. ``tools/gpu_check.py`` turns the rows into the goals
``engine_vs_best_peer_<model>_b<batch>[_512]`` (the fastest regenrt artefact / the fastest peer) and
``engine_vs_eager_fp32_r50_b8``. Rows run in order of value (batch 8 at 256² first, regenrt's rows then the
peers); ``test_prepare_peer_artefacts`` builds what regenrt's rows time beforehand (gpu-check's ``peers-prep``).

Only under ``pytest --benchmark`` on a machine with an NVIDIA GPU; skipped with the reason elsewhere.
"""
from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import torch

from regenrt.export.parity import compare

from .common import MODELS, count_macs

PEERS = ("eager-fp32", "eager-fp16", "compile-fp16", "ort-cuda-fp16")
OURS = ("regenrt-torch", "regenrt-aoti")
CASES = {"r50": "deeplabv3plus_r50_1ch", "unet": "unet_256_ngf64"}
SMOKE = {"impl": ["eager-fp32"], "model": ["r50"], "batch": [1], "size": [256]}
REPEATS, ITERATIONS = 5, 20  # medians of 5 timings of 20 back-to-back runs each
FP16_PEAK_TFLOPS = float(os.environ.get("REGENRT_FP16_PEAK_TFLOPS", "989"))


def compile_mode(batch: int) -> str:
    """The torch.compile mode of a row: max-autotune at batch 8, reduce-overhead elsewhere (or the forced one)."""
    forced = os.environ.get("REGENRT_PEER_COMPILE")
    if forced:
        return forced
    return "max-autotune" if batch == 8 else "reduce-overhead"


def time_device(run, iterations: int = ITERATIONS, repeats: int = REPEATS) -> float:
    """Median ms per call of ``run``: ``iterations`` back-to-back calls, then a device-wide synchronize, timed on
    the host — the same clock for every implementation, whatever stream it runs on (regenrt's runner has its own
    stream, ONNX Runtime its own): what a caller waits for, launch overhead included."""
    import time

    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iterations):
            run()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3 / iterations)
    return float(np.median(times))


def _torch_peer(impl: str, model, x_host: np.ndarray, batch: int):
    fp32 = impl == "eager-fp32"
    m = copy.deepcopy(model).cuda().eval()
    if not fp32:
        m = m.half().to(memory_format=torch.channels_last)
    x = torch.from_numpy(x_host).cuda()
    x = x if fp32 else x.half().contiguous(memory_format=torch.channels_last)
    mode = None
    if impl == "compile-fp16":
        mode = compile_mode(batch)
        torch._dynamo.reset()  # no dynamic-shape state carried over from an earlier row's shapes
        m = torch.compile(m, mode=mode, dynamic=False)
    out = {}

    def run():
        with torch.no_grad():
            out["y"] = m(x)

    for _ in range(3):  # warm-up: compile, autotune, graph capture
        run()
    torch.cuda.synchronize()
    return run, lambda: out["y"].float().cpu().numpy(), {"mode": mode, "tf32": torch.backends.cudnn.allow_tf32}


def _ort_peer(directory, x_host: np.ndarray):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed here (the CPU build has no CUDA execution provider): "
                    "pip install regenrt[onnx-gpu]")
    try:
        session = ort.InferenceSession(str(directory / "model.fp16.onnx"),
                                       providers=[("CUDAExecutionProvider", {"enable_cuda_graph": "1"})])
    except Exception as exc:  # e.g. a graph ONNX Runtime cannot capture (CPU-side shape nodes, memcpy)
        pytest.skip(f"ONNX Runtime's CUDA provider with CUDA graphs refused model.fp16.onnx: {exc}")
    x = torch.from_numpy(x_host).cuda()
    inp, out_meta = session.get_inputs()[0], session.get_outputs()[0]
    with torch.no_grad():
        y = torch.empty(x.shape[0], *_output_shape(directory, x_host)[1:], device="cuda", dtype=torch.float32)
    binding = session.io_binding()
    binding.bind_input(inp.name, "cuda", 0, np.float32, list(x.shape), x.data_ptr())
    binding.bind_output(out_meta.name, "cuda", 0, np.float32, list(y.shape), y.data_ptr())
    torch.cuda.synchronize()

    def run():
        session.run_with_iobinding(binding)  # synchronous: ONNX Runtime's own stream

    for _ in range(3):  # the first runs capture the CUDA graph
        run()
    return run, lambda: y.cpu().numpy(), {"onnxruntime": ort.__version__, "cuda_graph": True}


def _output_shape(directory, x_host):
    from regenrt.runtime.engine import read_metadata

    meta = read_metadata(directory / "model.onnx")
    channels = meta.get("output", {}).get("channels")
    return (x_host.shape[0], channels, *x_host.shape[2:])


def _ours(impl: str, key: str, model, directory, x_host: np.ndarray):
    from regenrt.runtime.backends.aoti import AotiRunner
    from regenrt.runtime.backends.pytorch import TorchRunner

    if impl == "regenrt-aoti" and not (directory / "model.aoti.pt2").exists():
        why = directory / "aoti-error.txt"
        pytest.skip(f"the AOTInductor package could not be built here: {why.read_text() if why.exists() else '?'}")
    if impl == "regenrt-torch":
        runner = TorchRunner(directory / "model.torch.pt", "cuda")
        first = runner.infer(x_host)  # buffers, warm-up, graph capture for this shape

        def run():
            runner.execute(x_host.shape)  # graph replay on the runner's stream

        return run, lambda: first, {"artefact": "model.torch.pt"}
    runner = AotiRunner(directory / "model.aoti.pt2", "cuda")
    x = torch.from_numpy(x_host).cuda()
    out = {}

    def run():
        with torch.no_grad():
            out["y"] = runner.model(x)

    for _ in range(3):
        run()
    return run, lambda: out["y"].float().cpu().numpy(), {"artefact": "model.aoti.pt2"}


@pytest.fixture(scope="session")
def gpu_exports(tmp_path_factory):
    """(model key, with_aoti) -> directory with model.onnx, model.fp16.onnx, model.torch.pt (one export) and, with
    ``with_aoti``, model.aoti.pt2 (compiled once beside it: every batch up to 32, and for DeepLabV3+ every size up
    to 512) or aoti-error.txt saying why not. Under ``REGENRT_GPU_PEER_CACHE`` (set by gpu-check) the directories
    persist: the ``peers-prep`` stage builds them outside the timed stage (both exports before either package), and
    a rerun reuses each part whose marker matches this machine and code (``export.json``, ``aoti.json``). A build
    that failed is remembered for the session: the next rows of that model skip with its reason."""
    cache: dict = {}
    root = os.environ.get("REGENRT_GPU_PEER_CACHE")

    def get(key, with_aoti: bool = True):
        from pathlib import Path

        directory = Path(root) / f"gpu-{key}" if root else cache.setdefault(("dir", key),
                                                                            tmp_path_factory.mktemp(f"gpu-{key}"))
        for part, wanted in (("export", True), ("aoti", with_aoti)):
            if not wanted:
                continue
            if (key, part) not in cache:
                try:
                    if _marker(directory, part) != _fingerprint(key):
                        (_export if part == "export" else _package)(key, directory)
                        (directory / f"{part}.json").write_text(json.dumps(_fingerprint(key)))
                    cache[(key, part)] = None
                except Exception as exc:  # noqa: BLE001 - remembered: later rows skip with the reason
                    cache[(key, part)] = f"{type(exc).__name__}: {exc}"
            if cache[(key, part)] and part == "export":
                pytest.skip(f"the {key} export failed earlier in this session: {cache[(key, part)]}")
        return directory / "torch"

    return get


def _fingerprint(key: str) -> dict:
    import regenrt

    return {"model": key, "torch": torch.__version__, "regenrt": regenrt.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "code": _code_digest()}


def _code_digest() -> str:
    """The regenrt sources the artefacts come from (a rerun after a code change builds them anew)."""
    import hashlib
    from pathlib import Path

    import regenrt

    digest = hashlib.sha1()
    for path in sorted(Path(regenrt.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _marker(directory, part: str):
    try:
        return json.loads((directory / f"{part}.json").read_text())
    except (OSError, ValueError):
        return None


def _export(key: str, directory) -> None:
    import shutil

    from regenrt.export.gpu import GpuOptions
    from regenrt.export.pipeline import export_checkpoint

    spec = MODELS[key]
    shutil.rmtree(directory, ignore_errors=True)  # an incomplete or stale earlier build is never reused
    directory.mkdir(parents=True)
    torch.save(spec.build().state_dict(), directory / "ckpt.pt")
    overrides = {k: v for k, v in spec.config.items() if k == "encoder"}
    export_checkpoint(directory / "ckpt.pt", directory / "torch", arch=spec.arch, overrides=overrides or None,
                      task=spec.task, parity_samples=1, calibration_samples=2, int8="off",
                      cpu_engine="onnxruntime", gpu=GpuOptions("torch", max_batch=32))  # CPU side kept short


def _package(key: str, directory) -> None:
    """The AOTInductor package beside the export; why not, in aoti-error.txt (only the regenrt-aoti rows skip)."""
    from regenrt.export.aoti import missing_toolchain

    spec, out = MODELS[key], directory / "torch"
    (out / "aoti-error.txt").unlink(missing_ok=True)
    (out / "model.aoti.pt2").unlink(missing_ok=True)
    reason = missing_toolchain("cuda")  # checked before compiling
    if reason:
        (out / "aoti-error.txt").write_text(reason)
        return
    try:  # compiled once: dynamic batch, and H/W for DeepLabV3+
        from regenrt.export.aoti import build_package, record_verdict
        from regenrt.runtime.engine import read_metadata

        meta = {k: v for k, v in read_metadata(out / "model.onnx").items() if k != "precision"}
        build_package(spec.build(), out / "model.aoti.pt2", device="cuda", dtype="fp16",
                      shape=(1, spec.inputs(1, 256).shape[1], 256, 256), dynamic_hw=spec.fixed_hw is None,
                      multiple=16 if spec.fixed_hw is None else 256, max_batch=32, metadata=meta,
                      rebuild="benchmarks/test_gpu_peers.py")
        record_verdict(out / "model.aoti.pt2", [], True)  # judged by each row's PSNR below
    except Exception as exc:  # noqa: BLE001 - only the regenrt-aoti rows skip
        (out / "aoti-error.txt").write_text(f"{type(exc).__name__}: {exc}")


def _needs_gpu_benchmark(request) -> None:
    if not request.config.getoption("--benchmark"):
        pytest.skip("GPU peers: run under pytest --benchmark on an NVIDIA GPU machine")
    if not torch.cuda.is_available():
        pytest.skip("no NVIDIA GPU visible to torch on this machine")


@pytest.mark.parametrize("part,model", [(part, model) for part in ("export", "aoti") for model in CASES])
def test_prepare_peer_artefacts(request, gpu_exports, part, model):
    """What the peer rows time, built before them (gpu-check's ``peers-prep`` stage): both exports first, then the
    AOTInductor packages (a stage cut short still leaves every export)."""
    _needs_gpu_benchmark(request)
    directory = gpu_exports(CASES[model], with_aoti=part == "aoti")
    assert (directory / "model.torch.pt").exists() and (directory / "model.fp16.onnx").exists()
    if part == "aoti":
        assert (directory / "model.aoti.pt2").exists() or (directory / "aoti-error.txt").exists()


# the order of value: batch 8 at 256² (the goals) first, regenrt's rows, then the peers the goal is most likely
# decided by; then the other batches and sizes
ORDER = OURS + ("compile-fp16", "eager-fp16", "eager-fp32", "ort-cuda-fp16")
SHAPES = ((8, 256), (1, 256), (32, 256), (8, 512), (1, 512), (32, 512))


def _cases() -> list:
    return [pytest.param(impl, model, batch, size, id=f"{impl}-{model}-b{batch}-{size}")
            for batch, size in SHAPES for model in CASES for impl in ORDER]


@pytest.mark.parametrize("impl,model,batch,size", _cases())
def test_gpu_peer(benchmark, request, gpu_exports, impl, model, batch, size):
    _needs_gpu_benchmark(request)
    key = CASES[model]
    spec = MODELS[key]
    if spec.fixed_hw and size != spec.fixed_hw[0]:
        pytest.skip(f"{key} is exported at {spec.fixed_hw[0]}² only (its artefacts take that size)")
    torch_model = spec.build()
    x_host = spec.inputs(batch, size, seed=batch + size)
    with torch.no_grad():
        reference = torch_model(torch.from_numpy(x_host)).numpy()
    macs = count_macs(torch_model, torch.from_numpy(x_host[:1])) * batch
    directory = gpu_exports(key, with_aoti=impl == "regenrt-aoti")
    if impl in OURS:
        run, result, info = _ours(impl, key, torch_model, directory, x_host)
    elif impl == "ort-cuda-fp16":
        run, result, info = _ort_peer(directory, x_host)
    else:
        run, result, info = _torch_peer(impl, torch_model, x_host, batch)
    ms = time_device(run)
    row = compare(reference, result())
    benchmark.group = f"gpu peers {model} b{batch} {size}"
    benchmark.extra_info.update({
        "gpu_peer": impl, "model": model, "batch": batch, "size": size, "ms": ms,
        "tflops": 2 * macs / (ms * 1e-3) / 1e12, "pct_fp16_peak": 100 * 2 * macs / (ms * 1e-3) / 1e12 / FP16_PEAK_TFLOPS,
        "psnr_db": row.get("psnr_db"), "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, **info,
    })
    benchmark.pedantic(run, rounds=3, iterations=1)
    assert row["nonfinite"] == 0 and row["psnr_db"] >= (60 if impl == "eager-fp32" else 30), row
