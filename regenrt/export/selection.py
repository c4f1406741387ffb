"""Which verified artefact ``run-infer --engine DIR`` runs: every CPU artefact timed here (batch 1, median of
``SELECTION_RUNS`` after a warm-up), the fastest (or the one asked for) recorded in ``engine.json``; a verified
GPU engine is the engine, with the CPU choice recorded beside it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .gpu import GPU_ARTEFACTS

ARTEFACT_NAMES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "openvino": "model.openvino.xml",
                  **GPU_ARTEFACTS}
SELECTION_RUNS = 5


def median_ms(run: Callable, x: np.ndarray) -> float:
    """Median wall time of ``run(x)`` over SELECTION_RUNS calls after a warm-up (host in, host out)."""
    run(x)
    times = []
    for _ in range(SELECTION_RUNS):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def gpu_record(kind: str, runner, x: np.ndarray, cpu_record: dict, log: Callable[[str], None] | None) -> dict:
    """engine.json for a verified GPU engine: it is the engine; the CPU choice stays beside it (--device cpu)."""
    import torch

    latency = median_ms(runner.infer, x)
    if log:
        log(f"      {ARTEFACT_NAMES[kind]} (fp16, {torch.cuda.get_device_name(0)}): {latency:.1f} ms")
    return {"engine": ARTEFACT_NAMES[kind], "backend": kind, "precision": "fp16", "device": "cuda",
            "chosen_by": "GPU engine (an NVIDIA GPU is visible)", "latency_ms": {ARTEFACT_NAMES[kind]: round(latency, 3)},
            "measured_shape": list(x.shape), "gpu": torch.cuda.get_device_name(0), "cpu_engine": cpu_record}


def select_cpu_engine(paths: dict[str, Path], precision_of: dict[str, str], x: np.ndarray, cpu_engine: str,
                   log: Callable[[str], None] | None, runners: dict) -> dict:
    """Time every verified artefact on ``x`` (median of SELECTION_RUNS after a warm-up) and pick the engine."""
    latency = {}
    for kind, path in paths.items():
        latency[kind] = median_ms(runners[kind].infer, x)
        if log:
            log(f"      {ARTEFACT_NAMES[kind]} ({precision_of[kind]}): {latency[kind]:.1f} ms")
    wanted = [k for k in latency if (cpu_engine == "openvino") == (k == "openvino")] if cpu_engine != "auto" else list(latency)
    if not wanted:
        return {}
    best = min(wanted, key=latency.get)
    return {"engine": ARTEFACT_NAMES[best], "backend": "openvino" if best == "openvino" else "onnxruntime",
            "precision": precision_of[best], "device": "cpu", "chosen_by": cpu_engine if cpu_engine != "auto"
            else "fastest verified artefact, measured here", "latency_ms": {ARTEFACT_NAMES[k]: round(v, 3)
            for k, v in latency.items()}, "measured_shape": list(x.shape), "cpu": cpu_name()}


def cpu_name() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
