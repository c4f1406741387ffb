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
