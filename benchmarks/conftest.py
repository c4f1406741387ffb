"""Benchmark fixtures and reporting: machine info, the machine's measured peak, and a goals summary.

Run the suite with ``pytest --benchmark`` (see the top-level conftest.py); results are saved as JSON under
``.benchmarks/`` and the summary below is also written to ``.benchmarks/summary.md``.
"""
from __future__ import annotations

import datetime
import platform
import time
from pathlib import Path

import numpy as np
import pytest


def _cpu_facts() -> dict:
    facts = {"machine": platform.machine(), "cores": __import__("os").cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                facts["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))
                break
    except OSError:
        pass
    import os

    for cap in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):  # an ISA cap reproduces a smaller CPU: say so
        if os.environ.get(cap):
            facts.setdefault("isa_caps", {})[cap] = os.environ[cap]
    return facts


def _runs_bf16() -> bool:
    """Whether OpenVINO executes bf16 here (read from a compiled probe: an ISA cap hides the CPU's BF16)."""
    try:
        from regenrt.runtime.backends.openvino import executes_bf16
    except ImportError:
        return False
    try:
        return executes_bf16()
    except Exception:  # noqa: BLE001 - no OpenVINO: the goals are the AVX2 ones
        return False


def _versions() -> dict:
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for dist in ("regenrt", "torch", "onnx", "onnxruntime", "openvino", "numba", "numpy", "opencv-python-headless"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return versions


def _gpu() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info.update(_cpu_facts())
    machine_info["gpu"] = _gpu()
    machine_info["versions"] = _versions()
    try:
        import openvino

        machine_info["openvino_cpu_capabilities"] = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except ImportError:
        pass


@pytest.fixture(scope="session")
def exported(tmp_path_factory, request):
    """key -> export directory, exported on first use (every artefact through the parity gate; no INT8 in smoke
    runs)."""
    cache = {}
    smoke = not request.config.getoption("--benchmark")

    def get(key):
        if key not in cache:
            from .common import MODELS, export_model

            cache[key] = export_model(MODELS[key], tmp_path_factory.mktemp(key), smoke=smoke)
            EXPORTS[key] = cache[key]
        return cache[key]

    return get


@pytest.fixture(scope="session")
def machine_peak(request) -> dict:
    """Measured matmul peak of this machine (GFLOP/s), best of a few 2048³ products (torch; NumPy too for fp32): fp32, and bf16 where
    the CPU has native BF16 (elsewhere torch emulates it, ~500x slower: not a peak). {} in smoke runs."""
    import torch

    if request.config.option.benchmark_disable:
        return {}
    flags = set(_cpu_facts().get("cpu_flags", []))  # and not capped below BF16 (oneDNN serves torch's bf16 too)
    native_bf16 = bool(flags & {"avx512_bf16", "amx_bf16"}) and _runs_bf16()
    kinds = [("fp32", torch.float32)] + ([("bf16", torch.bfloat16)] if native_bf16 else [])
    peak = {}
    for name, dtype in kinds:
        a = torch.randn(2048, 2048, dtype=dtype)
        b = torch.randn(2048, 2048, dtype=dtype)
        torch.matmul(a, b)
        best = min(_timed(torch.matmul, a, b) for _ in range(5))
        if dtype == torch.float32:  # the better of torch's and NumPy's BLAS: the peak is the machine's, not a library's
            a_np, b_np = a.numpy(), b.numpy()
            best = min(best, *(_timed(np.matmul, a_np, b_np) for _ in range(5)))
        peak[name] = 2 * 2048 ** 3 / best / 1e9
    _PEAK.update(peak)
    return peak


_PEAK: dict = {}
EXPORTS: dict = {}  # model key -> its export directory (the summary page shows each one's worst picture)


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or config.option.benchmark_disable or not session.benchmarks:
        return
    lines = summary_lines(session.benchmarks)
    if not lines:
        return
    terminalreporter.write_sep("=", "regenrt benchmark summary")
    for line in lines:
        terminalreporter.write_line(line)
    out = Path(str(config.rootpath)) / ".benchmarks" / "summary.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    from .summary_page import write_summary_page

    page = write_summary_page(out.with_suffix(".html"), lines, EXPORTS)
    terminalreporter.write_line(f"(also written to {out} and, with pictures, {page})")


def _median_ms(bench) -> float:
    return float(np.median(bench.stats.data)) * 1e3


def _quality(e: dict) -> str:
    parity = e["parity"]
    text = f"PSNR {parity['psnr_db']:.1f} dB" if e["precision"] != "fp32" else f"rel {parity['rel_max']:.1e}"
    if e["model"].endswith("seg6"):
        text += f", argmax {parity['argmax_agreement']:.2%}"
    return text + ("" if e.get("parity_passed", True) else " (FAILS the gate)")


# issue 11's goals: regenrt's engine vs the peer, at the gate's accuracy (BF16 CPU: vs OpenVINO default; AVX2-only
# CPU: vs the best of OpenVINO default and ONNX Runtime)
BF16_GOALS = {"deeplabv3plus_r50_seg6": 1.6, "unet_256_ngf64": 2.5, "deeplabv3plus_r50_1ch": 0.9}


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def goal_lines(models) -> list[str]:
    bf16 = _runs_bf16()
    by_group: dict = {}
    for b in models:
        by_group.setdefault(b.group, {})[b.extra_info["backend"]] = b
    lines = ["", f"Goals ({'CPU with BF16: regenrt engine / OpenVINO default' if bf16 else 'AVX2-only CPU: regenrt engine / best of OpenVINO default and ONNX Runtime'}, batch 1 p50):",
             "| model | shape | regenrt engine | its precision | peer ms | ratio | goal | parity of ours | peer passes gate | met |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for group, rows in sorted(by_group.items()):
        ours, default = rows.get("regenrt-engine"), rows.get("openvino-default")
        if ours is None or default is None or ours.extra_info["shape"][0] != 1:
            continue
        peers = [default] + ([rows["onnxruntime-fp32"]] if not bf16 and "onnxruntime-fp32" in rows else [])
        peer = min(peers, key=_median_ms)
        ratio = _median_ms(peer) / _median_ms(ours)
        goal = BF16_GOALS.get(ours.extra_info["model"], 1.0) if bf16 else 1.0
        passed = ours.extra_info.get("parity_passed", False)
        n, c, h, w = ours.extra_info["shape"]
        same = peer.extra_info["backend"] == "onnxruntime-fp32" and ours.extra_info["versions"].get("engine") == "model.onnx"
        met = "yes" if ratio >= goal and passed else "NO"
        if same and passed:  # the chosen engine is the peer itself (same file, same runtime): the ratio is noise
            met = "tie: the same engine (model.onnx on ONNX Runtime)"
        lines.append(f"| {ours.extra_info['model']} | {n}×{c}×{h}×{w} | {ours.extra_info['versions'].get('engine')} | "
                     f"{ours.extra_info['precision']} | {_median_ms(peer):.1f} ({peer.extra_info['backend']}) | "
                     f"{ratio:.2f} | ≥ {goal} | {_quality(ours.extra_info)} | "
                     f"{'yes' if default.extra_info.get('parity_passed') else 'no'} | "
                     f"{met} |")
    return lines


def summary_lines(benchmarks) -> list[str]:
    facts, versions = _cpu_facts(), _versions()
    caps = "".join(f"; {k}={v}" for k, v in facts.get("isa_caps", {}).items())
    lines = [f"Machine: {facts.get('cpu', '?')}, {facts.get('cores')} cores, flags {' '.join(facts.get('cpu_flags', []))}"
             f"{caps}; OpenVINO executes bf16: {'yes' if _runs_bf16() else 'no'}; GPU: {_gpu()}; "
             f"{datetime.date.today().isoformat()}",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())]
    if _PEAK:
        lines.append("Measured matmul peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in _PEAK.items()))
    models = [b for b in benchmarks if b.extra_info.get("model") and b.stats]
    if models:
        lines += ["", "| model | batch×C×H×W | backend | precision | p50 ms | p90 ms | p99 ms | × eager | × OpenVINO default | "
                      "GFLOP/s | % peak | parity |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        eager = {b.group: _median_ms(b) for b in models if b.extra_info["backend"] == "torch-eager-fp32"}
        peer = {b.group: _median_ms(b) for b in models if b.extra_info["backend"] == "openvino-default"}
        for b in sorted(models, key=lambda b: (b.group, b.extra_info["backend"])):
            e = b.extra_info
            parity = e["parity"]
            quality = _quality(e)
            speedup = eager.get(b.group, float("nan")) / _median_ms(b)
            vs_peer = peer.get(b.group, float("nan")) / _median_ms(b)
            n, c, h, w = e["shape"]
            lines.append(f"| {e['model']} | {n}×{c}×{h}×{w} | {e['backend']} | {e['precision']} | {e.get('p50_ms', 0):.1f} | "
                         f"{e.get('p90_ms', 0):.1f} | {e.get('p99_ms', 0):.1f} | {speedup:.2f} | {vs_peer:.2f} | "
                         f"{e.get('gflops', 0):.0f} | {_pct(e.get('pct_of_peak'))} | {quality} |")
        lines += goal_lines(models)
    kernels = [b for b in benchmarks if b.extra_info.get("kernel") and b.stats]
    if kernels:
        lines += ["", "| kernel | batch×size | numba ms | copy ms | numba / copy (goal ≤ 2) | NumPy / numba (goal ≥ 5) | "
                      "OpenCV ms | % of copy bandwidth |", "|---|---|---|---|---|---|---|---|"]
        by_group: dict = {}
        for b in kernels:
            by_group.setdefault(b.group, {})[b.extra_info["impl"]] = _median_ms(b)
        for group in sorted(by_group):
            t = by_group[group]
            if "numba" not in t or "copy" not in t:
                continue
            _, kernel, shape = group.split(" ")
            lines.append(f"| {kernel} | {shape} | {t['numba']:.2f} | {t['copy']:.2f} | {t['numba'] / t['copy']:.2f} | "
                         f"{t.get('numpy', float('nan')) / t['numba']:.1f} | {t.get('opencv', float('nan')):.2f} | "
                         f"{100 * t['copy'] / t['numba']:.0f} |")
        gpu_rows = [(g, t) for g, t in sorted(by_group.items()) if "cuda" in t and "d2d-copy" in t]
        if gpu_rows:
            lines += ["", "| CUDA kernel | batch×size | kernel ms | device-to-device copy ms | % of copy bandwidth "
                          "(goal ≥ 60) |", "|---|---|---|---|---|"]
            for group, t in gpu_rows:
                _, _, kernel, shape = group.split(" ")
                lines.append(f"| {kernel} | {shape} | {t['cuda']:.3f} | {t['d2d-copy']:.3f} | "
                             f"{100 * t['d2d-copy'] / t['cuda']:.0f} |")
    e2e = [b for b in benchmarks if b.extra_info.get("end_to_end")]
    if e2e:
        lines += ["", "| end to end | items | run-infer items/s (warm) | engine-only items/s | ratio (goal ≥ 0.9) | "
                      "met | first run's ratio (cold process) |",
                  "|---|---|---|---|---|---|---|"]
        for b in e2e:
            e = b.extra_info
            lines.append(f"| {e['end_to_end']} | {e['items']} | {e['pipeline_items_per_s']:.2f} | "
                         f"{e['engine_items_per_s']:.2f} | {e['ratio']:.2f} | {'yes' if e['ratio'] >= 0.9 else 'NO'} | "
                         f"{e['cold_ratio']:.2f} |")
    serving = sorted((b for b in benchmarks if b.extra_info.get("serving")), key=lambda b: b.extra_info["clients"])
    if serving:
        lines += ["", f"Serving: {serving[0].extra_info['serving']}; in-process = the same Predictor called from as "
                      "many threads", "| clients | requests | served req/s | p50 ms | p99 ms | in-process req/s | "
                      "p50 ms | p99 ms | served / in-process |", "|---|---|---|---|---|---|---|---|---|"]
        for b in serving:
            e = b.extra_info
            lines.append(f"| {e['clients']} | {e['requests']} | {e['served_rps']:.1f} | {e['served_p50_ms']:.1f} | "
                         f"{e['served_p99_ms']:.1f} | {e['local_rps']:.1f} | {e['local_p50_ms']:.1f} | "
                         f"{e['local_p99_ms']:.1f} | {e['served_rps'] / e['local_rps']:.2f} |")
    return lines
