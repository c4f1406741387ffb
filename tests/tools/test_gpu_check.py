"""tools/gpu_check.py (./dev.sh gpu-check) on a machine without a GPU: it refuses with exit status 2 and says why,
and its report pieces (JUnit parsing, the derived ratios, the Markdown) are right on recorded inputs."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_without_a_gpu_it_refuses_and_says_why(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--no-install", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=300,
                            env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert "no NVIDIA GPU visible" in result.stderr
    assert json.loads((tmp_path / "report.json").read_text())["facts"]["cuda_available"] is False


def test_junit_and_derived_ratios(tmp_path):
    xml = tmp_path / "t.xml"
    xml.write_text('<testsuites><testsuite><testcase classname="a" name="ok" time="1.5"/>'
                   '<testcase classname="a" name="bad" time="0.1"><failure message="boom\nline 2"/></testcase>'
                   '<testcase classname="a" name="skip" time="0"><skipped message="no TRT"/></testcase>'
                   '</testsuite></testsuites>')
    junit = gpu_check._junit(xml)
    assert junit["counts"] == {"passed": 1, "failed": 1, "skipped": 1}
    assert junit["cases"][1]["detail"] == "boom line 2"
    rows = [{"name": "k1", "group": "g", "median_ms": 0.4, "extra": {"impl": "cuda"}},
            {"name": "k2", "group": "g", "median_ms": 0.2, "extra": {"impl": "cuda-batch"}},
            {"name": "k3", "group": "g", "median_ms": 0.1, "extra": {"impl": "d2d-copy"}},
            {"name": "m1", "group": "m", "median_ms": 6.0, "extra": {"backend": "torch-cuda-fp32"}},
            {"name": "m2", "group": "m", "median_ms": 2.0, "extra": {"backend": "torch-cuda-fp16", "parity": {}}}]
    lines = gpu_check._derived(rows)
    assert any("(cuda) 0.400 ms" in line and "25 %" in line for line in lines)
    assert any("(cuda-batch) 0.200 ms" in line and "50 %" in line for line in lines)
    assert any("-> 3.00x" in line for line in lines)
    report = {"facts": {"gpu": "X"}, "install": {}, "stages": {"tests": {"rc": 1, "seconds": 3.0, "junit": junit}},
              "derived": lines, "benchmarks": rows}
    text = gpu_check._markdown(report)
    assert text.startswith("# regenrt GPU check — X") and "failed a::bad" in text and "- k1: 0.400" in text


def test_goals_are_read_from_the_benchmark_rows():
    """report.json's ``goals``: the worst kernel against the copy of the same bytes, per size; run-infer against
    the engine's graph replay; the pipeline graph against the engine graph; None where not measured."""
    def kernel(name, impl, size, ms):
        return {"name": name, "group": "g", "median_ms": 1.0,
                "extra": {"impl": impl, "kernel": name, "size": size, "batch": 16, "event_ms": ms}}

    rows = [kernel("composite", "cuda-batch", 256, 0.02), kernel("composite", "d2d-copy", 256, 0.015),
            kernel("phase_normalize", "cuda-batch", 256, 0.01), kernel("phase_normalize", "d2d-copy", 256, 0.009),
            {"name": "e", "group": "e", "median_ms": 1.0,
             "extra": {"end_to_end": "phase-recovery (r50)", "ratio_vs_graph": 0.5,
                       "pipeline_graph_vs_engine_graph": 1.1}}]
    goals = {g["name"]: g for g in gpu_check._goals(rows)}
    assert goals["kernels_vs_copy_256x16"]["value"] == 0.75 and goals["kernels_vs_copy_256x16"]["met"] is True
    assert goals["kernels_vs_copy_1024x16"]["value"] is None and goals["kernels_vs_copy_1024x16"]["met"] is None
    assert goals["e2e_phase"] == {"name": "e2e_phase", "value": 0.5, "goal": 0.8, "kind": ">=", "met": False}
    assert goals["pipeline_graph_vs_engine_graph"]["met"] is True and goals["e2e_inpainting"]["value"] is None
    assert set(goals) >= {"kernels_vs_copy_256x16", "kernels_vs_copy_1024x16", "e2e_phase", "e2e_inpainting",
                          "pipeline_graph_vs_engine_graph"}


def test_peer_goals_compare_the_fastest_regenrt_artefact_with_the_fastest_peer():
    """engine_vs_best_peer_<model>_b<batch>: the fastest peer's ms over regenrt's fastest GPU artefact's (>= 1.0 is
    met); engine_vs_eager_fp32_r50_b8 (goal 3); the two batch-8 goals are always listed (None: not run)."""
    def peer(impl, model, batch, size, ms):
        return {"name": f"{impl}-{model}", "group": "p", "median_ms": ms,
                "extra": {"gpu_peer": impl, "model": model, "batch": batch, "size": size, "ms": ms}}

    rows = [peer("eager-fp32", "r50", 8, 256, 9.0), peer("compile-fp16", "r50", 8, 256, 2.4),
            peer("ort-cuda-fp16", "r50", 8, 256, 3.0), peer("regenrt-torch", "r50", 8, 256, 3.0),
            peer("regenrt-aoti", "r50", 8, 256, 2.0), peer("eager-fp16", "r50", 1, 512, 1.0),
            peer("regenrt-torch", "r50", 1, 512, 1.25)]
    goals = {g["name"]: g for g in gpu_check._goals(rows)}
    assert goals["engine_vs_best_peer_r50_b8"]["value"] == 1.2 and goals["engine_vs_best_peer_r50_b8"]["met"]
    assert goals["engine_vs_best_peer_r50_b8"]["best_peer"] == "compile-fp16"
    assert goals["engine_vs_eager_fp32_r50_b8"]["value"] == 4.5 and goals["engine_vs_eager_fp32_r50_b8"]["met"]
    assert goals["engine_vs_best_peer_r50_b1_512"]["value"] == 0.8 and not goals["engine_vs_best_peer_r50_b1_512"]["met"]
    assert goals["engine_vs_best_peer_unet_b8"]["value"] is None and goals["engine_vs_best_peer_unet_b8"]["met"] is None
