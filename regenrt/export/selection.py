"""Which verified artefact an export directory runs: every CPU artefact timed here (batch-1 latency, and
throughput at run-infer's batch size and concurrency). ``engine.json`` records two choices with every candidate's
numbers: ``engine``, the highest throughput (what ``run-infer --engine DIR`` and serving run), and
``latency_engine``, the lowest batch-1 latency (what ``Engine.load(DIR)`` runs one request at a time); they differ
where one artefact wins at batch 1 and another at run-infer's batch. A verified GPU engine is the engine, with the
CPU choice beside it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .candidates import artefact_names
from .gpu import GPU_ARTEFACTS

ARTEFACT_NAMES = {**artefact_names(), **GPU_ARTEFACTS}
SELECTION_RUNS = 5
THROUGHPUT_ROUNDS = 3
INTERLEAVE_BYTES = 2 << 30  # candidates' files up to this size are held at once and their latency timed round-robin


def median_ms(run: Callable, x: np.ndarray) -> float:
    """Median wall time of ``run(x)`` over SELECTION_RUNS calls after a warm-up (host in, host out)."""
    run(x)
    times = []
    for _ in range(SELECTION_RUNS):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def interleaved_ms(runs: dict[str, Callable], x: np.ndarray, rounds: int = SELECTION_RUNS) -> dict[str, float]:
    """Median wall time (ms) of each ``runs[k](x)``, timed round-robin (one call of each per round, after one
    warm-up each): on a busy or throttling machine a slow spell then lands on every candidate alike, where timing
    one candidate after another hands it to whichever was being timed (measured on the 2-core EPYC: the same
    INT8 IR 35 ms in one block, 24 ms interleaved)."""
    for run in runs.values():
        run(x)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for key, run in runs.items():
            start = time.perf_counter()
            run(x)
            times[key].append(time.perf_counter() - start)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def gpu_record(runners: dict, x: np.ndarray, cpu_record: dict, log: Callable[[str], None] | None) -> dict:
    """engine.json for the verified GPU engines: the fastest, measured here at batch 1 (``runners``: kind -> the
    gate's runner), is the engine; every one's latency is recorded; the CPU choice stays beside it (--device cpu)."""
    import torch

    latency = {ARTEFACT_NAMES[kind]: median_ms(runner.infer, x) for kind, runner in runners.items()}
    kind = min(runners, key=lambda k: latency[ARTEFACT_NAMES[k]])
    if log:
        for name, ms in latency.items():
            log(f"      {name} (fp16, {torch.cuda.get_device_name(0)}): {ms:.1f} ms"
                + ("  <- GPU engine" if name == ARTEFACT_NAMES[kind] else ""))
    return {"engine": ARTEFACT_NAMES[kind], "backend": kind, "precision": "fp16", "device": "cuda",
            "chosen_by": "GPU engine (an NVIDIA GPU is visible): the fastest verified GPU artefact, batch 1, measured here",
            "latency_ms": {name: round(ms, 3) for name, ms in latency.items()},
            "measured_shape": list(x.shape), "gpu": torch.cuda.get_device_name(0), "cpu_engine": cpu_record}


def throughput(runner, x: np.ndarray, requests: int, rounds: int = THROUGHPUT_ROUNDS) -> float:
    """Items/s of ``requests`` threads each running ``rounds`` batches ``x`` (after one warm-up each), as the
    run-infer pipeline keeps that many batches in flight."""
    from concurrent.futures import ThreadPoolExecutor

    def work(n: int) -> None:
        for _ in range(n):
            runner.infer(x)

    with ThreadPoolExecutor(requests) as pool:
        list(pool.map(work, [1] * requests))
        start = time.perf_counter()
        list(pool.map(work, [rounds] * requests))
        wall = time.perf_counter() - start
    return requests * rounds * len(x) / wall


def select_cpu_engine(paths: dict[str, Path], precision_of: dict[str, str], built: dict, x: np.ndarray,
                      run_batch: int, cpu_engine: str, log: Callable[[str], None] | None, gate: dict) -> dict:
    """Time every verified CPU artefact whose claim its proof confirms: batch-1 latency (median of
    SELECTION_RUNS) and throughput at ``run_batch`` with the concurrency run-infer uses (OpenVINO: throughput
    hint, as many infer requests as it asks for); the engine is the highest throughput, the latency engine the
    lowest batch-1 latency (both among the kind asked for)."""
    from ..runtime.engine import artefact_files, backend_for

    latency, items_s, requests = {}, {}, {}
    batch = np.ascontiguousarray(np.repeat(x[:1], run_batch, axis=0))
    if sum(f.stat().st_size for path in paths.values() for f in artefact_files(path)) <= INTERLEAVE_BYTES:
        runners = {kind: backend_for(path).open(path, "cpu", "latency") for kind, path in paths.items()}
        latency = interleaved_ms({kind: runner.infer for kind, runner in runners.items()}, x)
        del runners
    for kind, path in paths.items():
        backend = backend_for(path)
        if kind not in latency:  # (too large to hold every candidate at once: one at a time)
            latency[kind] = median_ms(backend.open(path, "cpu", "latency").infer, x)
        runner = backend.open(path, "cpu", "throughput")
        requests[kind] = max(1, int(getattr(runner, "requests", 1)))
        items_s[kind] = throughput(runner, batch, requests[kind])
        del runner  # one candidate's weights in memory at a time
        if log:
            log(f"      {path.name} ({precision_of[kind]}): batch 1 {latency[kind]:.1f} ms; batch {run_batch} x "
                f"{requests[kind]} request(s) {items_s[kind]:.1f} items/s")
    wanted = [k for k in items_s if cpu_engine == "auto" or built[k][0].backend == cpu_engine]
    if not wanted:
        return {}
    best, fastest = max(wanted, key=items_s.get), min(wanted, key=latency.get)
    name = paths[best].name
    return {"engine": name, "backend": built[best][0].backend, "precision": precision_of[best],
            "executes": gate[best].get("proof", {}).get("mac_share"), "device": "cpu",
            "chosen_by": cpu_engine if cpu_engine != "auto" else
            f"highest throughput at run-infer's batch {run_batch} among verified artefacts, measured here",
            "latency_engine": {"engine": paths[fastest].name, "backend": built[fastest][0].backend,
                               "precision": precision_of[fastest],
                               "executes": gate[fastest].get("proof", {}).get("mac_share"),
                               "chosen_by": "lowest batch-1 latency among verified artefacts, measured here (what "
                                            "Engine.load(DIR) runs, one request at a time)"},
            "latency_ms": {paths[k].name: round(v, 3) for k, v in latency.items()},
            "throughput_items_per_s": {paths[k].name: round(v, 2) for k, v in items_s.items()},
            "infer_requests": {paths[k].name: v for k, v in requests.items()},
            "run_batch": run_batch, "measured_shape": list(x.shape), "cpu": cpu_name(), "cpu_flags": cpu_flags(),
            "candidates": {v["artefact"]: {k2: v.get(k2) for k2 in ("precision", "passed", "margin", "executes",
                                                                     "claim_broken", "variant")}
                           for v in gate.values()}}


def cpu_flags() -> list[str]:
    """The CPU's vector/matrix extension flags that decide the engine (AVX2, AVX-512, BF16, VNNI, AMX)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx")))
    except OSError:
        pass
    return []


def cpu_name() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versus_peers(engine_path, model, x: np.ndarray, onnx_path, torch_label: str = "eager PyTorch FP32") -> dict:
    """The batch-1 engine against what a user would run by hand, timed together round-robin at export: OpenVINO's
    default compile of model.onnx (``compile_model(path, "CPU", LATENCY)``; f32 where OpenVINO runs no bf16) where
    OpenVINO is installed, and the model itself in PyTorch. ``{"ms": {name: ms}, "shape": [...]}`` for engine.json
    and the export page."""
    import torch

    from ..runtime.engine import backend_for

    runner = backend_for(engine_path).open(engine_path, "cpu")
    runs = {engine_path.name: runner.infer}
    try:
        import openvino

        from ..runtime.backends.openvino import executes_bf16

        config = {"PERFORMANCE_HINT": "LATENCY"} | ({} if executes_bf16() else {"INFERENCE_PRECISION_HINT": "f32"})
        request = openvino.Core().compile_model(str(onnx_path), "CPU", config).create_infer_request()
        runs["OpenVINO default (model.onnx)"] = lambda a: request.infer([a])
    except ImportError:
        pass

    def eager(a):
        with torch.no_grad():
            return model(torch.from_numpy(a))

    ms = interleaved_ms(runs, x)
    # PyTorch in a block of its own, after: interleaved with OpenVINO, each runtime's worker threads still spin
    # after its call and take the cores from the other (measured here: eager EfficientNet 1 s instead of ~40 ms,
    # and the engine 4x slower right after it)
    ms.update(interleaved_ms({torch_label: eager}, x))
    return {"ms": {k: round(v, 3) for k, v in ms.items()}, "shape": list(x.shape),
            "how": "the engine and OpenVINO's default timed round-robin, PyTorch in a block after them; medians"}
