"""The GPU check: install regenrt beside a preinstalled CUDA torch (never touching it), compile every CUDA kernel,
then run the stages that decide the GPU goals first and the GPU tests last, under one deadline; one report.

    ./dev.sh gpu-check [--out DIR] [--wheels DIR] [--fixtures DIR] [--deadline 540] [--stages e2e,kernels,...]
                       [--limit e2e=130,...] [--no-install] [--stand-ins FILE]

Run it from a checkout on a machine with an NVIDIA GPU, with the Python that holds the CUDA torch
(``REGENRT_PYTHON``, default ``python3``). ``--wheels``: a folder of wheels for what that Python lacks (offline
machines). ``--fixtures``: the golden fixtures (optional: the default stages need none).

The default run, in this order (each stage one pytest process, its own process group, under its limit cut to
what is left of ``--deadline``; a stage that overruns gets SIGINT, then SIGKILL 10 s later):

1. install (``pip --no-deps``) and ``tools/cuda_compile_check.py`` (every kernel compiled for this GPU);
2. ``e2e`` — run-infer end to end (phase R50, inpainting U-Net 256) against the engine's CUDA-graph replay, and
   the pipeline graph against the engine graph: goals ``e2e_phase``, ``e2e_inpainting``,
   ``pipeline_graph_vs_engine_graph``;
3. ``kernels`` — the five CUDA kernels against a device-to-device copy at 16x256² and 16x1024²: goals
   ``kernels_vs_copy_256x16``, ``kernels_vs_copy_1024x16``;
4. ``peers-prep`` — the exports and AOTInductor packages the peer rows time (a cache under OUT: a rerun reuses it);
5. ``peers`` — at batch 8, 256²: regenrt's torch-CUDA (and AOTInductor) artefacts, then torch.compile
   (``REGENRT_PEER_COMPILE``, default reduce-overhead here), eager FP16, eager FP32 and ONNX Runtime CUDA: goals
   ``engine_vs_best_peer_r50_b8``, ``engine_vs_best_peer_unet_b8``, ``engine_vs_eager_fp32_r50_b8``;
6. ``tests`` — tests/gpu and the CUDA kernel tests (correctness: stream ordering, pipeline graphs per task, AOTI).

Each stage's tests write one JSON line each as they finish (``raw/<stage>.jsonl``, removed before the stage
starts): a stage stopped at its limit keeps what it finished. After every stage ``report.json`` and
``report.md`` are rewritten. A goal lists the rows it needs; one missing, skipped, failed or fallen back makes it
``met: null`` with ``missing``/``failed`` named. ``--stand-ins FILE`` (testing the check itself on a CPU):
JSON ``{stage: [pytest args]}`` replaces the stages' tests; no GPU, install or compile check. Exit status: 0 when
every stage ran complete and passed, 1 otherwise, 2 without a visible GPU, without what the check needs, or on
bad arguments.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from gpucheck import goals, report as reporting, stages  # noqa: E402  (tools/ on the path first)
from gpucheck.stages import Stage  # noqa: E402

CORE = ("numpy", "onnx", "onnxruntime", "safetensors", "PIL", "tqdm", "isal", "numba")
DEADLINE = 540.0  # seconds for the whole check: one device command may run 600
COMPILE_LIMIT = 45.0
INSTALL_ESTIMATE = 30.0  # pip --no-deps of regenrt (and a few wheels): what the plan leaves for it
# the order is the order of value: what decides goals first, correctness tests last
STAGES = {s.name: s for s in (
    Stage("e2e", ("--benchmark", "benchmarks/test_end_to_end.py"), 120,
          ("e2e_phase", "e2e_inpainting", "pipeline_graph_vs_engine_graph")),
    Stage("kernels", ("--benchmark", "benchmarks/test_kernels_cuda.py"), 40,
          ("kernels_vs_copy_256x16", "kernels_vs_copy_1024x16")),
    Stage("peers-prep", ("--benchmark", "benchmarks/test_gpu_peers.py", "-k", "test_prepare_peer_artefacts"), 65),
    Stage("peers", ("--benchmark", "benchmarks/test_gpu_peers.py", "-k", "test_gpu_peer and b8-256"), 100,
          ("engine_vs_best_peer_r50_b8", "engine_vs_best_peer_unet_b8", "engine_vs_eager_fp32_r50_b8")),
    Stage("tests", ("--full", "tests/gpu", "tests/kernels/test_numba_cuda.py"), 95),  # (every case: --full)
)}
OPTIONAL = {s.name: s for s in (  # not in the default run: --stages names them (with --deadline up to 570)
    Stage("models", ("--benchmark", "benchmarks/test_models.py", "-k", "torch-cuda and (deeplabv3plus_r50_1ch or "
                     "unet_256_ngf64)"), 200),
    Stage("peers-all", ("--benchmark", "benchmarks/test_gpu_peers.py", "-k", "test_gpu_peer"), 400),
)}


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


def _install(wheels: Path | None, log: Path, clock: stages.Clock) -> dict:
    """regenrt without dependencies (the CUDA torch stays as it is), then any missing dependency from ``wheels``."""
    import torch

    before = torch.__version__
    steps = {}
    if wheels:
        files = sorted(str(p) for p in wheels.glob("*.whl"))
        if files:
            steps["wheels"] = stages.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                                          "--no-cache-dir", *files], clock.limit_for(120), ROOT, None, log)[0]
    steps["regenrt"] = stages.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                                   "--no-cache-dir", "-e", str(ROOT)], clock.limit_for(120), ROOT, None, log)[0]
    probe = ("import importlib.util, json; print(json.dumps([m for m in %r if importlib.util.find_spec(m) is None]))"
             % (CORE,))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/").stdout
    steps["missing"] = json.loads(out or "[]")
    after = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                           text=True, cwd="/").stdout.strip()
    steps["torch_untouched"] = before == after
    return steps


def _probe() -> list[str]:
    """What the check needs and this Python lacks, each as a few words (empty: nothing)."""
    missing = []
    if not stages.have("pytest_benchmark"):
        missing.append("pytest-benchmark (pip install pytest-benchmark, or a wheel in --wheels)")
    if not stages.have("numba_cuda"):
        missing.append("numba-cuda (pip install 'numba-cuda[cu12]' or [cu13] for the installed CUDA)")
    return missing




def _ort_cuda() -> str | None:
    """None when ONNX Runtime's CUDA provider is installed (a needed peer), else why it is not compared."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} here is the CPU build (no CUDAExecutionProvider): regenrt[onnx-gpu]"
    return None


def _plan(args, parser) -> list[Stage]:
    known = {**STAGES, **OPTIONAL}
    names = [s for s in (args.stages or ",".join(STAGES)).split(",") if s]
    try:
        limits = {k: float(v) for k, v in (item.split("=") for item in args.limit.split(",") if item)}
    except ValueError:
        parser.error(f"--limit takes STAGE=SECONDS,..., got {args.limit!r}")
    unknown = sorted(set(names) - set(known) | set(limits) - set(known))
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; the stages are {', '.join(known)}")
    stand_ins = {}
    if args.stand_ins:
        stand_ins = json.loads(args.stand_ins.read_text())
    plan = []
    for name in names:
        stage = known[name]
        pytest_args = tuple(stand_ins.get(name, stage.args))
        if name == "tests" and not args.stand_ins and stages.have("xdist"):
            pytest_args += ("-n", "4", "--dist", "loadfile")  # test files in parallel (each its own GPU context)
        plan.append(Stage(name, pytest_args, limits.get(name, stage.limit), stage.decides))
    return plan


def _refuse(report: dict, out: Path, message: str) -> int:
    print(f"[gpu-check] {message}", file=sys.stderr)
    report["refused"] = message
    reporting.write(report, out)
    return 2


class _Stopped(Exception):
    pass


def _on_sigterm(signum, frame):
    raise _Stopped(f"signal {signum}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="./dev.sh gpu-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "gpu-check", help="report folder (default: gpu-check/)")
    parser.add_argument("--wheels", type=Path, help="folder of wheels to install first (offline machines)")
    parser.add_argument("--fixtures", type=Path, help="golden fixtures folder (default: ../shared/fixtures)")
    parser.add_argument("--deadline", type=float, default=DEADLINE,
                        help=f"seconds for the whole check, install included (default {DEADLINE:.0f}); every stage's "
                             "limit is cut to what is left")
    parser.add_argument("--stages", default="", help=f"comma-separated, in the order to run (default "
                        f"{','.join(STAGES)}; also {', '.join(OPTIONAL)})")
    parser.add_argument("--limit", default="", help="time limits in seconds per stage (default "
                        + ",".join(f"{k}={v.limit:.0f}" for k, v in STAGES.items()) + ")")
    parser.add_argument("--no-install", action="store_true", help="use regenrt from this checkout as installed")
    parser.add_argument("--stand-ins", type=Path, help="JSON {stage: [pytest args]}: test the check itself on a CPU "
                        "(no GPU, install or compile check)")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()  # the stages run in the checkout: their live files must land where this reads
    clock = stages.Clock(args.deadline)
    plan = _plan(args, parser)
    raw = args.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    log = args.out / "log.txt"
    log.write_text("")
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "deadline": args.deadline,
                    "plan": [{"name": s.name, "args": list(s.args), "limit": s.limit, "decides": list(s.decides)}
                             for s in plan], "stand_ins": bool(args.stand_ins), "stages": {},
                    "not_run": [s.name for s in plan], "elapsed": 0.0}
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _check(args, plan, clock, raw, log, report)
    except (_Stopped, KeyboardInterrupt) as exc:
        report["stopped"] = str(exc) or "interrupted"
        running = report.pop("running", None)
        if running:  # the stage this stop cut short keeps the tests it finished
            report["stages"][running] = stages.stopped_stage(raw / f"{running}.jsonl", report["stopped"])
            report["not_run"].remove(running)
            rows = stages.rows(report["stages"])
            report["rows"], report["derived"] = rows, reporting.derived(rows)
            report["goals"] = goals.evaluate(rows, report.get("ort_cuda"))
        return 1
    finally:
        report["elapsed"] = time.monotonic() - clock.start
        reporting.write(report, args.out)


def _check(args, plan, clock, raw, log, report) -> int:
    env = {**os.environ, "REGENRT_REAL_CUDA": "1", "PYTHONUNBUFFERED": "1",
           "REGENRT_GPU_PEER_CACHE": str((args.out / "cache").resolve())}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])  # also uninstalled
    # torch.compile peers in reduce-overhead (seconds per shape): max-autotune compiles for minutes per shape, more
    # than this check's deadline allows (REGENRT_PEER_COMPILE=max-autotune with --stages peers-prep,peers)
    env.setdefault("REGENRT_PEER_COMPILE", "reduce-overhead")
    if args.fixtures:
        env["REGENRT_SHARED_FIXTURES"] = str(args.fixtures.resolve())
    if not args.stand_ins:
        report["install"] = {} if args.no_install else _install(args.wheels, log, clock)
        report["facts"] = _facts()
        if not report["facts"].get("cuda_available"):
            return _refuse(report, args.out, f"no NVIDIA GPU visible to torch ({report['facts'].get('torch')}, "
                           f"nvidia-smi: {report['facts'].get('nvidia_smi')}): this check needs one; run it with the "
                           "Python that holds the CUDA build of torch (REGENRT_PYTHON=...).")
        missing = _probe()
        if missing:
            report["missing"] = missing
            return _refuse(report, args.out, f"missing: {'; '.join(missing)}")
        cc = report["facts"].get("compute_capability", "9.0")
        rc, seconds, how = stages.run([sys.executable, "tools/cuda_compile_check.py", "--cc", cc],
                                      clock.limit_for(COMPILE_LIMIT), ROOT, env, log)
        report["compile_check"] = {"rc": rc, "seconds": round(seconds, 1), "cc": cc, "ended": how}
        print(f"[gpu-check] cuda_compile_check for sm_{cc}: rc {rc} in {seconds:.0f} s", flush=True)
        if rc == 2:
            return _refuse(report, args.out, "missing: NVVM for the installed CUDA (pip install 'numba-cuda[cu12]' "
                           f"or [cu13]); see {log}")
    else:
        report["facts"] = {"python": platform.python_version(), "gpu": "stand-ins on a CPU"}
    report["ort_cuda"] = _ort_cuda()
    for stage in plan:
        print(f"[gpu-check] {stage.name} (limit {clock.limit_for(stage.limit):.0f} s of {stage.limit:.0f}, "
              f"{clock.left():.0f} s left)", flush=True)
        report["running"] = stage.name
        entry = stages.run_stage(stage, clock, raw, ROOT, env, log)
        del report["running"]
        report["stages"][stage.name] = entry
        report["not_run"].remove(stage.name)
        if entry["rc"] is None:
            report["not_run"].append(stage.name)
            del report["stages"][stage.name]
        rows = stages.rows(report["stages"])
        report["rows"], report["derived"] = rows, reporting.derived(rows)
        report["goals"] = goals.evaluate(rows, report["ort_cuda"])
        report["elapsed"] = time.monotonic() - clock.start
        reporting.write(report, args.out)
        print(f"[gpu-check] {stage.name}: rc {entry['rc']} in {entry['seconds']:.0f} s {entry['counts']}"
              f"{' INCOMPLETE: ' + entry['incomplete'] if entry['incomplete'] else ''}", flush=True)
    report.setdefault("goals", goals.evaluate([], report["ort_cuda"]))
    report["elapsed"] = time.monotonic() - clock.start
    reporting.write(report, args.out)
    print((args.out / "report.md").read_text())
    complete = not report["not_run"] and all(not s["incomplete"] and s["rc"] == 0 for s in report["stages"].values())
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
