"""run-infer's --help is complete; regenrt-demo runs the whole path; usage errors are clear."""
import subprocess
import sys

import pytest

from regenrt.cli.run_infer import build_parser


def _run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_help_documents_every_flag_and_exit_code():
    result = _run("regenrt.cli.run_infer", "--help")
    assert result.returncode == 0
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag in result.stdout
    for code in ("  8  run-infer: partial", "  9  ", "130"):
        assert code in result.stdout
    for kind in ("engine.json", ".onnx", ".xml", ".engine"):  # every artefact kind Engine.load opens
        assert kind in result.stdout


def test_inpainting_needs_masks_or_boxes(pix2pix_engine_dir, tmp_path):
    (tmp_path / "in").mkdir()
    result = _run("regenrt.cli.run_infer", "--engine", pix2pix_engine_dir / "model.onnx", "--input", tmp_path / "in",
                  "--output", tmp_path / "out")
    assert result.returncode == 2 and "exactly one of --masks DIR or --boxes CSV" in result.stderr  # usage


def test_missing_engine(tmp_path):
    result = _run("regenrt.cli.run_infer", "--engine", tmp_path / "none.onnx", "--input", tmp_path, "--output",
                  tmp_path / "o")
    assert result.returncode == 2 and "directory export-engine wrote" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.full
def test_demo_runs_the_whole_path(tmp_path):
    result = _run("regenrt.cli.demo", "segmentation", "-o", tmp_path / "demo", "--items", "3", "--train-seconds", "0")
    assert result.returncode == 0, result.stderr
    assert "parity gate passed" in result.stdout and "done 3, failed 0" in result.stdout
    assert len(list((tmp_path / "demo" / "segmentation" / "outputs").glob("*_label.png"))) == 3
