"""export-engine as users run it: a real subprocess, real files, documented exit codes, no tracebacks."""
import json
import os
import subprocess
import sys

import pytest
import torch

from regenrt.cli.export_engine import build_parser, main
from regenrt.models import create_model

from .inprocess import run_main


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "regenrt.cli.export_engine", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


class Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.fixture(scope="module")
def unet_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("c") / "unet.pth"
    torch.save(create_model("unet_128", ngf=4).state_dict(), path)
    return path


def test_help_documents_every_flag_and_exit_code():
    result = cli("--help")
    assert result.returncode == 0
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag in result.stdout
    for code in ("0", "3", "4", "5", "130"):
        assert f"  {code}  " in result.stdout


@pytest.mark.full
def test_demo_end_to_end(tmp_path):
    result = cli("--demo", "inpainting", "-o", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    assert "parity gate passed" in result.stdout and "model.fp16.onnx" in result.stdout
    assert "[1/6] loading" in result.stderr and "[5/6] choosing the engine" in result.stderr
    assert "candidates (precision claimed -> executed, gate margin" in result.stdout
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    assert names >= {"model.onnx", "model.fp16.onnx", "parity.json", "engine.json"}
    assert any(n.startswith("model.openvino") and n.endswith(".xml") for n in names)
    report = json.loads((tmp_path / "demo" / "parity.json").read_text())
    for withheld, why in report["withheld"].items():  # a broken claim: not published, and said so
        assert withheld not in names and f"not published: {why}" in result.stdout
    assert "FAIL" not in result.stdout and "WARNING" not in result.stdout  # a passing export reads as one
    assert f"run it with `run-infer --engine {tmp_path / 'demo'}`" in result.stdout
    record = json.loads((tmp_path / "demo" / "engine.json").read_text())
    assert f"{record['engine']}: " in result.stdout.split("<- engine (run-infer)")[0].splitlines()[-1]
    fast = record["latency_engine"]["engine"]
    assert f"{fast}: " in result.stdout.split("batch-1 engine (Engine.load)")[0].splitlines()[-1]
    assert (f"batch-1 engine: {fast}" in result.stdout) == (fast != record["engine"])


def _bad(tmp_path, kind):
    path = tmp_path / "ckpt.pt"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(os.urandom(10000))
    elif kind == "truncated":
        torch.save(create_model("unet_128", ngf=4).state_dict(), path)
        path.write_bytes(path.read_bytes()[:3000])
    elif kind == "pickle":
        torch.save({"state_dict": {}, "x": Payload(tmp_path / "pwned")}, path)
    return path


@pytest.mark.parametrize("kind,message", [
    ("missing", "does not exist"), ("directory", "is a directory"), ("empty", "empty"),
    ("random", "not a readable PyTorch file"), ("truncated", "truncated or corrupted"),
    ("pickle", "executing pickled code"),
])
def test_bad_checkpoints_fail_cleanly_and_write_nothing(tmp_path, kind, message, capsys):
    out = tmp_path / "out"
    result = run_main(main, _bad(tmp_path, kind), "-o", out, capsys=capsys)
    assert result.returncode == (2 if kind == "missing" else 3), result.stderr  # a missing path: usage (2)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
    assert not (tmp_path / "pwned").exists()


def test_wrong_architecture_flag(unet_ckpt, tmp_path, capsys):
    result = run_main(main, unet_ckpt, "--arch", "deeplabv3plus", "-o", tmp_path / "out", capsys=capsys)
    assert result.returncode == 3 and "do not look like a deeplabv3plus checkpoint" in result.stderr
    assert not (tmp_path / "out").exists()


def test_ambiguous_task_names_the_flag(tmp_path, capsys):
    path = tmp_path / "bin.pt"
    torch.save(create_model("deeplabv3plus_r18", in_channels=3, classes=1).state_dict(), path)
    result = run_main(main, path, "-o", tmp_path / "out", capsys=capsys)
    assert result.returncode == 3 and "--task segmentation or --task phase-recovery" in result.stderr


def test_parity_breach_exit_code_and_table(unet_ckpt, tmp_path):
    result = cli(unet_ckpt, "-o", tmp_path / "out", "--min-psnr", "300", "--parity-samples", "1", "-q")
    assert result.returncode == 4
    assert "FAIL (PSNR >= 300 dB)" in result.stdout and "parity gate failed" in result.stderr
    assert not (tmp_path / "out" / "model.fp16.onnx").exists()


def test_flags_override_detection(unet_ckpt, tmp_path, capsys):
    result = run_main(main, unet_ckpt, "-o", tmp_path / "out", "--ngf", "8", "-q", capsys=capsys)
    assert result.returncode == 3 and "shape conflict" in result.stderr and "ngf" in result.stderr
