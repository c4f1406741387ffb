"""The GPU check: install regenrt beside a preinstalled CUDA torch (never touching it), run the GPU tests and the
numba CUDA kernel tests on the real device, run the GPU benchmarks, and write one report (JSON + Markdown).

    ./dev.sh gpu-check [--out DIR] [--wheels DIR] [--fixtures DIR] [--stages tests,kernels,models,peers]
                       [--limit tests=150,kernels=90,models=200,peers=180] [--raw DIR]

Run it from a checkout on a machine with an NVIDIA GPU, with the Python that holds the CUDA torch
(``REGENRT_PYTHON``, default ``python3``). ``--wheels``: a folder of wheels for what that Python lacks (offline
machines; e.g. ``isal`` and ``segmentation-models-pytorch``). ``--fixtures``: the golden fixtures (the torch-CUDA
tests export the pix2pix one). ``--raw``: where each stage's JUnit XML and benchmark JSON go (default
``<out>/raw``; report.json holds what they say). Each stage runs in its own pytest process under a time limit;
a failing or timed-out stage is reported and the next one still runs. Before the stages: a one-line refusal when
this Python lacks pytest-benchmark or numba-cuda, then every CUDA kernel compiled for the GPU
(tools/cuda_compile_check.py; NVVM missing is a one-line refusal too). report.json's ``goals``: the issue's goals
as {"name", "value", "goal", "met"}, the GPU-peer ones (``engine_vs_best_peer_<model>_b<batch>``) included. Exit status: 0 when every stage passed, 1 otherwise, 2 without a visible GPU,
without what the check needs, or on bad arguments.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ("numpy", "onnx", "onnxruntime", "safetensors", "PIL", "tqdm", "isal", "numba")
# stage -> (pytest arguments, time limit in seconds)
# (models and end to end share one process: the benchmarked models are exported once)
STAGES = {  # tests+kernels+models <= 8 minutes with the install and the compile check; peers 3 more (one device
    # session of 15 minutes holds all four only when the machine starts fast: --stages picks)
    "tests": (["tests/gpu", "tests/kernels/test_numba_cuda.py"], 150),
    "kernels": (["--benchmark", "benchmarks/test_kernels_cuda.py"], 90),
    "models": (["--benchmark", "benchmarks/test_models.py", "benchmarks/test_end_to_end.py", "-k",
                "test_end_to_end or (torch-cuda and (deeplabv3plus_r50_1ch or unet_256_ngf64))"], 200),
    # the GPU engine against torch.compile / ONNX Runtime CUDA / eager, batch 8 at 256² by default (max-autotune
    # compiles for minutes: --limit peers=N and REGENRT_PEER_COMPILE=reduce-overhead trade it for time)
    "peers": (["--benchmark", "benchmarks/test_gpu_peers.py", "-k", "8-256]"], 180),
}
# goal name -> (how to read it from the benchmark rows, the goal, "min" (value >= goal) or "max" (value <= goal))
GOALS = {
    "kernels_vs_copy_256x16": (0.6, "min"), "kernels_vs_copy_1024x16": (0.8, "min"),
    "e2e_phase": (0.8, "min"), "e2e_inpainting": (0.8, "min"),
    "pipeline_graph_vs_engine_graph": (1.15, "max"),
}


def _run(cmd: list[str], timeout: float, env: dict | None = None, log: Path | None = None) -> tuple[int, float]:
    start = time.perf_counter()
    with open(log, "a") if log else open(os.devnull, "w") as sink:
        sink.write(f"\n$ {' '.join(cmd)}\n")
        sink.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # pytest stops and still writes its JUnit XML and benchmark JSON
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc = 124
    return rc, time.perf_counter() - start


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _facts() -> dict:
    facts: dict = {"python": platform.python_version(), "executable": sys.executable, "machine": platform.machine()}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        facts["nvidia_smi"] = out
    except (OSError, subprocess.TimeoutExpired) as exc:
        facts["nvidia_smi"] = f"unavailable: {exc}"
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["torch_cuda"] = torch.version.cuda
        facts["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
            facts["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
            facts["cudnn"] = torch.backends.cudnn.version()
            facts["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
    except ImportError as exc:
        facts["torch"] = f"missing: {exc}"
    for dist in ("numba", "numba-cuda", "numpy", "onnx", "onnxruntime", "isal", "segmentation-models-pytorch",
                 "tensorrt", "regenrt"):
        try:
            facts[dist] = md.version(dist)
        except md.PackageNotFoundError:
            facts[dist] = None
    return facts


def _install(wheels: Path | None, log: Path) -> dict:
    """regenrt without dependencies (the CUDA torch stays as it is), then any missing dependency from ``wheels``."""
    import torch

    before = torch.__version__
    steps = {}
    if wheels:
        files = sorted(str(p) for p in wheels.glob("*.whl"))
        if files:
            steps["wheels"] = _run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                                    "--no-cache-dir", *files], 300, log=log)[0]
    steps["regenrt"] = _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                             "--no-cache-dir", "-e", str(ROOT)], 300, log=log)[0]
    probe = ("import importlib.util, json; print(json.dumps([m for m in %r if importlib.util.find_spec(m) is None]))"
             % (CORE,))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/").stdout
    steps["missing"] = json.loads(out or "[]")
    after = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                           text=True, cwd="/").stdout.strip()
    steps["torch_untouched"] = before == after
    return steps


def _junit(path: Path) -> dict:
    if not path.exists():
        return {"cases": [], "counts": {}}
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, detail = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                detail = " ".join((node.get("message") or node.text or "").split())[:400]
        cases.append({"id": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "seconds": float(case.get("time", 0)), "detail": detail})
    counts: dict = {}
    for c in cases:
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    return {"cases": cases, "counts": counts}


def _benchmarks(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []  # not written (the stage stopped before its end) or empty
    rows = []
    for b in data.get("benchmarks", []):
        rows.append({"name": b["name"], "group": b.get("group"), "median_ms": b["stats"]["median"] * 1e3,
                     "extra": b.get("extra_info", {})})
    return rows


def _derived(bench: list[dict]) -> list[str]:
    """The ratios the issue asks for, computed from the rows (goal lines)."""
    lines = []
    by_group: dict = {}
    for row in bench:
        by_group.setdefault(row["group"], {})[row["extra"].get("impl") or row["extra"].get("backend")] = row
    for group, rows in sorted(by_group.items(), key=lambda kv: str(kv[0])):
        for impl in ("cuda", "cuda-batch"):
            if impl in rows and "d2d-copy" in rows:
                pct = 100 * rows["d2d-copy"]["median_ms"] / rows[impl]["median_ms"]
                lines.append(f"{group}: kernel ({impl}) {rows[impl]['median_ms']:.3f} ms vs copy "
                             f"{rows['d2d-copy']['median_ms']:.3f} ms -> {pct:.0f} % of copy bandwidth")
        if "torch-cuda-fp16-nhwc" in rows and "torch-cuda-fp32" in rows:
            nhwc = rows["torch-cuda-fp16-nhwc"]
            lines.append(f"{group}: torch-CUDA FP16+graphs, channels_last + cuDNN autotune {nhwc['median_ms']:.2f} ms "
                         f"-> {rows['torch-cuda-fp32']['median_ms'] / nhwc['median_ms']:.2f}x eager FP32 "
                         f"(parity {nhwc['extra'].get('parity')})")
        if "torch-cuda-fp16" in rows and "torch-cuda-fp32" in rows:
            speedup = rows["torch-cuda-fp32"]["median_ms"] / rows["torch-cuda-fp16"]["median_ms"]
            lines.append(f"{group}: torch-CUDA FP16+graphs {rows['torch-cuda-fp16']['median_ms']:.2f} ms vs eager "
                         f"FP32 {rows['torch-cuda-fp32']['median_ms']:.2f} ms -> {speedup:.2f}x "
                         f"(parity {rows['torch-cuda-fp16']['extra'].get('parity')})")
    for row in bench:
        if "end_to_end" in row["extra"]:
            e = row["extra"]
            more = {k: round(v, 2) for k, v in e.items() if k.startswith("ratio_") and k.endswith("_workers")}
            lines.append(f"end to end {e['end_to_end']}: pipeline {e['pipeline_items_per_s']:.1f} items/s, engine "
                         f"{e['engine_items_per_s']:.1f} -> ratio {e['ratio']:.2f} (cold {e['cold_ratio']:.2f}"
                         f"{', ' + str(more) if more else ''}); stage seconds {e.get('stage_s')}")
    return lines


def _goals(bench: list[dict]) -> list[dict]:
    """The issue's goals as ``{"name", "value", "goal", "met"}`` (value None: not measured in this run)."""
    values: dict = {}
    copies = {(r["extra"].get("size"), r["extra"].get("batch"), r["extra"].get("kernel")): r["extra"].get("event_ms")
              for r in bench if r["extra"].get("impl") == "d2d-copy"}
    for r in bench:
        e = r["extra"]
        if e.get("impl") == "cuda-batch" and e.get("event_ms"):
            copy = copies.get((e.get("size"), e.get("batch"), e.get("kernel")))
            if copy:
                name = f"kernels_vs_copy_{e['size']}x{e['batch']}"
                worst = values.get(name)
                values[name] = min(worst, copy / e["event_ms"]) if worst is not None else copy / e["event_ms"]
        if "end_to_end" in e and "ratio_vs_graph" in e:
            task = "phase" if e["end_to_end"].startswith("phase") else "inpainting"
            values[f"e2e_{task}"] = e["ratio_vs_graph"]
            if "pipeline_graph_vs_engine_graph" in e:
                worst = values.get("pipeline_graph_vs_engine_graph")
                value = e["pipeline_graph_vs_engine_graph"]
                values["pipeline_graph_vs_engine_graph"] = max(worst, value) if worst is not None else value
    goals = _peer_goals(bench)
    for name, (goal, kind) in GOALS.items():
        value = values.get(name)
        met = None if value is None else (value >= goal if kind == "min" else value <= goal)
        goals.append({"name": name, "value": None if value is None else round(value, 3), "goal": goal,
                      "kind": ">=" if kind == "min" else "<=", "met": met})
    return goals


def _peer_goals(bench: list[dict]) -> list[dict]:
    """From the GPU-peer rows: per model, batch and size, regenrt's fastest GPU artefact against the fastest peer
    (``engine_vs_best_peer_<model>_b<batch>[_512]``, goal >= 1.0) and, for R50 at batch 8, against eager FP32
    (``engine_vs_eager_fp32_r50_b8``, goal >= 3.0)."""
    cases: dict = {}
    for row in bench:
        e = row["extra"]
        if "gpu_peer" in e and e.get("ms"):
            cases.setdefault((e["model"], e["batch"], e["size"]), {})[e["gpu_peer"]] = e["ms"]
    goals = []
    for (model, batch, size), ms in sorted(cases.items()):
        ours = [v for k, v in ms.items() if k.startswith("regenrt-")]
        peers = {k: v for k, v in ms.items() if not k.startswith("regenrt-")}
        suffix = "" if size == 256 else f"_{size}"
        if ours and peers:
            best = min(peers, key=peers.get)
            value = peers[best] / min(ours)
            goals.append({"name": f"engine_vs_best_peer_{model}_b{batch}{suffix}", "value": round(value, 3),
                          "goal": 1.0, "kind": ">=", "met": value >= 1.0, "best_peer": best})
        if model == "r50" and batch == 8 and size == 256 and ours and "eager-fp32" in peers:
            value = peers["eager-fp32"] / min(ours)
            goals.append({"name": "engine_vs_eager_fp32_r50_b8", "value": round(value, 3), "goal": 3.0,
                          "kind": ">=", "met": value >= 3.0})
    for name in ("engine_vs_best_peer_r50_b8", "engine_vs_best_peer_unet_b8"):  # always listed: None = not run
        if not any(g["name"] == name for g in goals):
            goals.append({"name": name, "value": None, "goal": 1.0, "kind": ">=", "met": None})
    return goals


def _probe() -> list[str]:
    """What the check needs and this Python lacks, each as a few words (empty: nothing)."""
    missing = []
    if not _have("pytest_benchmark"):
        missing.append("pytest-benchmark (pip install pytest-benchmark, or a wheel in --wheels)")
    if not _have("numba_cuda"):
        missing.append("numba-cuda (pip install 'numba-cuda[cu12]' or [cu13] for the installed CUDA)")
    return missing


def _markdown(report: dict) -> str:
    f = report["facts"]
    out = [f"# regenrt GPU check — {f.get('gpu', 'no GPU')}", "",
           f"nvidia-smi: {f.get('nvidia_smi')}; torch {f.get('torch')} (CUDA {f.get('torch_cuda')}, cuDNN "
           f"{f.get('cudnn')}, TF32 convs {f.get('cudnn_allow_tf32')}); numba {f.get('numba')}, numba-cuda "
           f"{f.get('numba-cuda')}; numpy {f.get('numpy')}; onnxruntime {f.get('onnxruntime')}; TensorRT "
           f"{f.get('tensorrt') or 'not installed'}; Python {f.get('python')}", "",
           f"install: {report['install']}", ""]
    for name, stage in report["stages"].items():
        out.append(f"## {name}: rc {stage['rc']} in {stage['seconds']:.0f} s — {stage['junit']['counts']}")
        for case in stage["junit"]["cases"]:
            if case["outcome"] != "passed" or name == "tests":
                out.append(f"- {case['outcome']} {case['id']} ({case['seconds']:.1f} s) {case['detail'][:200]}")
        out.append("")
    out += ["## Goals", "| goal | value | target | met |", "|---|---|---|---|",
            *[f"| {g['name']} | {g['value']} | {g['kind']} {g['goal']} | {g['met']} |" for g in report.get("goals", [])],
            ""]
    out += ["## Derived", *[f"- {line}" for line in report["derived"]], ""]
    out += ["## Benchmarks (median ms)", *[f"- {r['name']}: {r['median_ms']:.3f}" for r in report["benchmarks"]]]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="./dev.sh gpu-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "gpu-check", help="report folder (default: gpu-check/)")
    parser.add_argument("--wheels", type=Path, help="folder of wheels to install first (offline machines)")
    parser.add_argument("--fixtures", type=Path, help="golden fixtures folder (default: ../shared/fixtures)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    parser.add_argument("--limit", default="", help="time limits in seconds per stage (default "
                        + ",".join(f"{k}={v}" for k, (_, v) in STAGES.items()) + ")")
    parser.add_argument("--raw", type=Path, help="folder for JUnit XML and benchmark JSON (default: <out>/raw)")
    parser.add_argument("--no-install", action="store_true", help="use regenrt from this checkout as installed")
    args = parser.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    try:
        limits = {k: float(v) for k, v in (item.split("=") for item in args.limit.split(",") if item)}
    except ValueError:
        parser.error(f"--limit takes STAGE=SECONDS,..., got {args.limit!r}")
    unknown = sorted(set(stages) - set(STAGES) | set(limits) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; the stages are {', '.join(STAGES)}")
    raw = args.raw or args.out / "raw"
    for folder in (args.out, raw):
        folder.mkdir(parents=True, exist_ok=True)
    log = args.out / "log.txt"
    log.write_text("")
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    report["install"] = {} if args.no_install else _install(args.wheels, log)
    report["facts"] = _facts()
    if not report["facts"].get("cuda_available"):
        print(f"[gpu-check] no NVIDIA GPU visible to torch ({report['facts'].get('torch')}, nvidia-smi: "
              f"{report['facts'].get('nvidia_smi')}): this check needs one; run it with the Python that holds the "
              "CUDA build of torch (REGENRT_PYTHON=...).", file=sys.stderr)
        (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str))
        return 2
    missing = _probe()
    if missing:
        print(f"[gpu-check] missing: {'; '.join(missing)}", file=sys.stderr)
        report["missing"] = missing
        (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str))
        return 2
    env = {**os.environ, "REGENRT_REAL_CUDA": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])  # also uninstalled
    # torch.compile peers in reduce-overhead (seconds per shape) unless asked otherwise: max-autotune compiles for
    # minutes per shape, more than the stage's default limit (REGENRT_PEER_COMPILE=max-autotune --limit peers=540)
    env.setdefault("REGENRT_PEER_COMPILE", "reduce-overhead")
    if args.fixtures:
        env["REGENRT_SHARED_FIXTURES"] = str(args.fixtures.resolve())
    report["stages"], bench = {}, []
    # every kernel compiled for this GPU first: a kernel that fails to type or lower fails here in seconds, by name
    cc = report["facts"].get("compute_capability", "9.0")
    rc, seconds = _run([sys.executable, "tools/cuda_compile_check.py", "--cc", cc], 120, env, log)
    report["compile_check"] = {"rc": rc, "seconds": seconds, "cc": cc}
    print(f"[gpu-check] cuda_compile_check for sm_{cc}: rc {rc} in {seconds:.0f} s", flush=True)
    if rc == 2:
        print("[gpu-check] missing: NVVM for the installed CUDA (pip install 'numba-cuda[cu12]' or [cu13]); see "
              f"{log}", file=sys.stderr)
        (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str))
        return 2
    for name in stages:
        pytest_args, limit = STAGES[name]
        limit = limits.get(name, limit)
        junit, bjson = raw / f"{name}.xml", raw / f"{name}.bench.json"
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-ra", "-q", f"--junitxml={junit}",
               *pytest_args]
        if "--benchmark" not in pytest_args and _have("xdist"):
            cmd += ["-n", "4", "--dist", "loadfile"]  # test files in parallel (each its own GPU context)
        if "--benchmark" in pytest_args:
            cmd.append(f"--benchmark-json={bjson}")
        print(f"[gpu-check] {name} (limit {limit} s)", flush=True)
        rc, seconds = _run(cmd, limit, env, log)
        report["stages"][name] = {"rc": rc, "seconds": seconds, "junit": _junit(junit)}
        bench += _benchmarks(bjson)
        print(f"[gpu-check] {name}: rc {rc} in {seconds:.0f} s {report['stages'][name]['junit']['counts']}",
              flush=True)
        report["benchmarks"], report["derived"], report["goals"] = bench, _derived(bench), _goals(bench)
        (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str))
        (args.out / "report.md").write_text(_markdown(report))
    report.setdefault("benchmarks", [])
    report.setdefault("derived", [])
    report.setdefault("goals", _goals([]))
    (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "report.md").write_text(_markdown(report))
    print((args.out / "report.md").read_text())
    return 0 if all(s["rc"] == 0 for s in report["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
