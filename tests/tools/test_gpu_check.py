"""tools/gpu_check.py (./dev.sh gpu-check) on a CPU: it refuses without a GPU; with stand-in stages (real pytest
processes that pass, hang, ignore SIGINT, die or write rows) it keeps to its deadline, keeps what each stage
finished, never reports an earlier run's rows, and never calls a goal met on a row that is missing or failed."""
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from gpucheck import goals, live, stages  # noqa: E402

spec = __import__("importlib.util").util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
gpu_check = __import__("importlib.util").util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)

# stand-in test files: what each writes is a benchmark row of the kind the real stage writes
ROWS = {
    "e2e": """
        import pytest
        @pytest.mark.parametrize("task", ["phase-recovery", "inpainting"])
        def test_e2e(benchmark, task):
            benchmark.extra_info.update({"end_to_end": task + " (stand-in)", "ratio_vs_graph": 0.9,
                                         "pipeline_graph_vs_engine_graph": 1.1})
            benchmark(lambda: None)
        """,
    "kernels": """
        import pytest
        KERNELS = ["phase_normalize", "holes_fill", "rgb_normalize", "composite", "argmax_palette"]
        @pytest.mark.parametrize("impl", ["cuda-batch", "d2d-copy"])
        @pytest.mark.parametrize("size", [256, 1024])
        @pytest.mark.parametrize("kernel", KERNELS)
        def test_kernel(benchmark, kernel, size, impl):
            benchmark.extra_info.update({"kernel": kernel, "impl": impl, "size": size, "batch": 16,
                                         "event_ms": 0.01 if impl == "d2d-copy" else 0.0125})
            benchmark(lambda: None)
        """,
    "hang": """
        import time
        def test_finishes():
            pass
        def test_hangs():
            time.sleep(1000)
        """,
    "deaf": """
        import signal, time
        def test_ignores_sigint():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            time.sleep(1000)
        """,
    "dies": """
        import os
        def test_finishes():
            pass
        def test_dies():
            os._exit(3)
        """,
    "passes": """
        def test_ok():
            pass
        """,
}


def _stand_ins(tmp_path, plan: dict) -> Path:
    folder = tmp_path / "stand_ins"
    folder.mkdir(exist_ok=True)
    mapping = {}
    for stage, kind in plan.items():
        path = folder / f"test_{stage.replace('-', '_')}_{kind}.py"
        path.write_text(textwrap.dedent(ROWS[kind]))
        mapping[stage] = [str(path), "--benchmark-disable"]  # rows recorded, untimed: seconds, not minutes
    (folder / "plan.json").write_text(json.dumps(mapping))
    return folder / "plan.json"


def _check(tmp_path, plan_file, out, *args, timeout=120):
    env = {"PATH": "/usr/bin:/bin", "REGENRT_GPU_CHECK_GRACE": "2", "REGENRT_GPU_CHECK_RESERVE": "2",
           "HOME": str(tmp_path)}
    start = time.monotonic()
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--stand-ins", str(plan_file),
                             "--out", str(out), *args], capture_output=True, text=True, timeout=timeout, env=env)
    return result, time.monotonic() - start, json.loads((out / "report.json").read_text())


def test_without_a_gpu_it_refuses_and_says_why(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--no-install", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=300,
                            env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert "no NVIDIA GPU visible" in result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["facts"]["cuda_available"] is False and "no NVIDIA GPU" in report["refused"]


def test_the_default_plan_fits_the_deadline_in_the_order_of_value():
    """The defaults: every stage's limit, the compile check, the install, the SIGINT grace and the report reserve
    add up to no more than the 540 s deadline (one device command may run 600); the stages that decide goals
    run first, the correctness tests last."""
    limits = sum(s.limit for s in gpu_check.STAGES.values())
    assert gpu_check.DEADLINE <= 540
    assert limits + gpu_check.COMPILE_LIMIT + gpu_check.INSTALL_ESTIMATE + stages.GRACE + stages.RESERVE \
        <= gpu_check.DEADLINE
    names = list(gpu_check.STAGES)
    assert names[0] == "e2e" and names[-1] == "tests" and names.index("peers-prep") < names.index("peers")
    decided = {g for s in gpu_check.STAGES.values() for g in s.decides}
    assert decided == {g["name"] for g in goals.evaluate([], None) if g["name"] in decided}
    assert {"e2e_phase", "kernels_vs_copy_1024x16", "engine_vs_best_peer_r50_b8"} <= decided


def test_a_hanging_a_deaf_and_a_dying_stage_keep_to_the_deadline_and_keep_what_finished(tmp_path):
    """kernels hangs (SIGINT stops it), tests ignores SIGINT (SIGKILL of its group), peers dies mid-run: each is
    incomplete with what it finished kept; e2e's goals are computed; the whole run keeps to its deadline."""
    plan = _stand_ins(tmp_path, {"e2e": "e2e", "kernels": "hang", "peers-prep": "passes", "peers": "dies",
                                 "tests": "deaf"})
    result, seconds, report = _check(tmp_path, plan, tmp_path / "out", "--deadline", "45", "--limit",
                                     "e2e=20,kernels=4,peers-prep=20,peers=20,tests=4")
    assert result.returncode == 1, result.stdout + result.stderr
    assert seconds <= 45 + 5, seconds
    s = report["stages"]
    assert s["e2e"]["incomplete"] is None and s["e2e"]["counts"] == {"passed": 2}
    assert s["kernels"]["ended"] == "interrupted" and "stopped at its limit" in s["kernels"]["incomplete"]
    assert s["kernels"]["counts"]["passed"] == 1 and any("test_hangs" in n for n in s["kernels"]["interrupted"])
    assert s["tests"]["ended"] == "killed" and s["tests"]["incomplete"]
    assert s["peers"]["ended"] == "exited" and "before it finished" in s["peers"]["incomplete"]
    assert any("test_dies" in n for n in s["peers"]["interrupted"])
    g = {goal["name"]: goal for goal in report["goals"]}
    assert g["e2e_phase"]["met"] is True and g["pipeline_graph_vs_engine_graph"]["met"] is True
    assert g["kernels_vs_copy_256x16"]["met"] is None and g["kernels_vs_copy_256x16"]["missing"]
    assert g["engine_vs_best_peer_r50_b8"]["met"] is None
    md = (tmp_path / "out" / "report.md").read_text()
    assert "INCOMPLETE" in md and "interrupted" in md and "not measured" in md


@pytest.mark.full
def test_stages_past_the_deadline_are_listed_as_not_run(tmp_path):
    plan = _stand_ins(tmp_path, {"e2e": "hang", "kernels": "passes"})
    result, seconds, report = _check(tmp_path, plan, tmp_path / "out", "--deadline", "12", "--stages",
                                     "e2e,kernels", "--limit", "e2e=60")
    assert seconds <= 12 + 5 and result.returncode == 1
    assert report["not_run"] == ["kernels"] and "kernels" not in report["stages"]
    assert "kernels: not run" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.full
def test_a_rerun_after_a_killed_run_never_reports_the_old_rows(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "a").mkdir()
    full = _stand_ins(tmp_path / "a", {"kernels": "kernels"})
    _, _, first = _check(tmp_path, full, out, "--stages", "kernels")
    assert {g["name"]: g for g in first["goals"]}["kernels_vs_copy_256x16"]["met"] is True  # 0.8 >= 0.6
    (out / "raw" / "kernels.jsonl").write_text((out / "raw" / "kernels.jsonl").read_text() + '{"event": "te')
    (tmp_path / "b").mkdir()
    hang = _stand_ins(tmp_path / "b", {"kernels": "deaf"})
    _, _, second = _check(tmp_path, hang, out, "--stages", "kernels", "--deadline", "12", "--limit", "kernels=3")
    assert second["rows"] == [] and second["stages"]["kernels"]["counts"] == {"interrupted": 1}
    assert {g["name"]: g for g in second["goals"]}["kernels_vs_copy_256x16"]["met"] is None


def test_a_check_killed_mid_run_leaves_the_report_of_the_stages_it_finished(tmp_path):
    plan = _stand_ins(tmp_path, {"e2e": "e2e", "kernels": "hang"})
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--stand-ins", str(plan),
                             "--out", str(out), "--stages", "e2e,kernels", "--limit", "kernels=100"],
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    kernels = out / "raw" / "kernels.jsonl"
    while time.monotonic() < deadline and "test_hangs" not in (kernels.read_text() if kernels.exists() else ""):
        time.sleep(0.2)
    proc.terminate()  # SIGTERM: what a command limit sends first
    proc.wait(timeout=30)
    report = json.loads((out / "report.json").read_text())
    assert report["stages"]["e2e"]["counts"] == {"passed": 2} and "signal" in report["stopped"]
    stopped = report["stages"]["kernels"]  # the stage the stop cut short keeps what it finished
    assert stopped["ended"] == "stopped" and stopped["counts"] == {"passed": 1, "interrupted": 1}
    assert report["not_run"] == []
    assert {g["name"]: g for g in report["goals"]}["e2e_phase"]["met"] is True


def test_a_truncated_live_file_reads_as_what_it_holds(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"event": "start", "nodeid": "a"}\n{"event": "test", "nodeid": "a", "outcome": "passed"}\n'
                    '{"event": "start", "nodeid": "b"}\n{"event": "te')
    found = live.read(path)
    assert list(found["tests"]) == ["a"] and found["interrupted"] == ["b"] and found["bad_lines"] == 1
    assert not found["ended"] and live.read(tmp_path / "missing.jsonl")["tests"] == {}


# --- the goals: each computed from complete rows, and never met when a row it needs is missing or failed ---

def _kernel_rows(size=256, ms=0.0125):
    return [{"outcome": "passed", "extra": {"kernel": k, "impl": impl, "size": size, "batch": 16,
                                             "event_ms": 0.01 if impl == "d2d-copy" else ms}}
            for k in goals.KERNELS for impl in ("cuda-batch", "d2d-copy")]


def _e2e_rows(graph=True):
    return [{"outcome": "passed", "extra": {"end_to_end": f"{t} (x)", "ratio_vs_graph": 0.85,
                                             **({"pipeline_graph_vs_engine_graph": 1.1} if graph else {})}}
            for t in ("phase-recovery", "inpainting")]


def _peer_rows(model="r50", ort=True):
    ms = {"regenrt-torch": 2.0, "regenrt-aoti": 1.8, "compile-fp16": 2.7, "eager-fp16": 3.0, "eager-fp32": 9.0,
          **({"ort-cuda-fp16": 2.5} if ort else {})}
    return [{"outcome": "passed", "extra": {"gpu_peer": impl, "model": model, "batch": 8, "size": 256, "ms": v,
                                             **({"mode": "reduce-overhead"} if impl == "compile-fp16" else {})}}
            for impl, v in ms.items()]


def _by_name(rows, ort=None):
    return {g["name"]: g for g in goals.evaluate(rows, ort)}


def test_goals_from_complete_rows():
    g = _by_name(_kernel_rows() + _kernel_rows(1024, 0.02) + _e2e_rows() + _peer_rows() + _peer_rows("unet"))
    assert g["kernels_vs_copy_256x16"]["value"] == 0.8 and g["kernels_vs_copy_256x16"]["met"] is True
    assert g["kernels_vs_copy_1024x16"]["value"] == 0.5 and g["kernels_vs_copy_1024x16"]["met"] is False
    assert g["e2e_phase"]["met"] is True and g["pipeline_graph_vs_engine_graph"]["value"] == 1.1
    peer = g["engine_vs_best_peer_r50_b8"]
    assert peer["value"] == round(2.5 / 1.8, 3) and peer["met"] is True and peer["best_peer"] == "ort-cuda-fp16"
    assert peer["ours"] == "regenrt-aoti" and peer["modes"] == {"compile-fp16": "reduce-overhead"}
    assert peer["peers"] == list(goals.PEERS) and peer["not_compared"] == {}
    assert g["engine_vs_eager_fp32_r50_b8"]["value"] == 4.5 and g["engine_vs_eager_fp32_r50_b8"]["met"]


@pytest.mark.parametrize("which", ["kernel", "e2e", "peer", "ours"])
@pytest.mark.parametrize("how", ["missing", "failed", "skipped"])
def test_a_goal_is_never_met_with_a_needed_row_missing_or_failed(which, how):
    rows = _kernel_rows() + _e2e_rows() + _peer_rows()
    pick = {"kernel": lambda r: r["extra"].get("kernel") == "composite" and r["extra"]["impl"] == "cuda-batch",
            "e2e": lambda r: r["extra"].get("end_to_end", "").startswith("inpainting"),
            "peer": lambda r: r["extra"].get("gpu_peer") == "compile-fp16",
            "ours": lambda r: r["extra"].get("gpu_peer") == "regenrt-torch"}[which]
    target = next(r for r in rows if pick(r))
    if how == "missing":
        rows.remove(target)
    else:
        target["outcome"] = how
    g = _by_name(rows)
    names = {"kernel": ["kernels_vs_copy_256x16"], "e2e": ["e2e_inpainting", "pipeline_graph_vs_engine_graph"],
             "peer": ["engine_vs_best_peer_r50_b8"], "ours": ["engine_vs_best_peer_r50_b8",
                                                               "engine_vs_eager_fp32_r50_b8"]}[which]
    for name in names:
        assert g[name]["met"] is None and g[name]["value"] is None, g[name]
        assert (g[name]["missing"] if how == "missing" else g[name]["failed"]), g[name]


def test_a_pipeline_that_fell_back_to_eager_does_not_meet_the_graph_goal():
    g = _by_name(_e2e_rows(graph=False))
    assert g["pipeline_graph_vs_engine_graph"]["met"] is None
    assert "no pipeline graph was captured" in g["pipeline_graph_vs_engine_graph"]["failed"][0]
    assert g["e2e_phase"]["met"] is True  # run-infer vs graph replay was measured all the same


def test_an_uninstalled_peer_is_named_not_compared_and_an_unbuilt_aoti_package_only_narrows_ours():
    rows = [r for r in _peer_rows(ort=False) if r["extra"]["gpu_peer"] != "regenrt-aoti"]
    g = _by_name(rows, ort="onnxruntime here is the CPU build")["engine_vs_best_peer_r50_b8"]
    assert g["met"] is True and g["value"] == round(2.7 / 2.0, 3) and g["ours"] == "regenrt-torch"
    assert "ort-cuda-fp16" not in g["peers"] and g["not_compared"] == {"ort-cuda-fp16": "onnxruntime here is the CPU build"}
    assert _by_name(rows)["engine_vs_best_peer_r50_b8"]["missing"] == ["peer/r50/8/256/ort-cuda-fp16"]
