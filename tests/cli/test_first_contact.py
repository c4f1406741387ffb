"""What a new user meets first, through the command line as typed: visible phase outputs (not clipped to black),
flags that mean exactly what they say, the demo running the engine export chose, doctor agreeing with the README
and pyproject, one line for the fixture tests a checkout without ../shared cannot run."""
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regenrt.cli.doctor import CHECKS
from regenrt.tasks.synthetic import synthetic_pictures

from .inprocess import run_main

ROOT = Path(__file__).resolve().parents[2]


def _run(module, *args, env=None):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def _in_process(module, *args, capsys):
    """``_run`` without the subprocess: for usage and input errors."""
    import importlib

    return run_main(importlib.import_module(module).main, *args, capsys=capsys)


def _phase_inputs(directory, n=3):
    directory.mkdir(parents=True, exist_ok=True)
    for i, pic in enumerate(synthetic_pictures(n, 64, 64, 1, seed=3)):
        from regenrt.kernels.reference import fourier_phase

        np.save(directory / f"p{i}.npy", fourier_phase(pic))


@pytest.mark.full
def test_phase_outputs_use_the_recorded_range_and_are_visible(deeplab_engine_dir, tmp_path):
    from regenrt.runtime import Engine

    observed = Engine.load(deeplab_engine_dir / "model.onnx", device="cpu").metadata["output"]["observed_range"]
    assert observed[0] < observed[1]
    _phase_inputs(tmp_path / "in")
    result = _run("regenrt.cli.run_infer", "--engine", deeplab_engine_dir / "model.onnx", "--input", tmp_path / "in",
                  "--output", tmp_path / "o", "-q")
    assert result.returncode == 0, result.stderr
    assert "observed at export" in result.stdout
    for png in (tmp_path / "o").glob("*.png"):
        pixels = np.asarray(Image.open(png))
        assert pixels.std() > 5 and 0 < pixels.mean() < 255  # a picture, not a black (or white) sheet


def test_clipping_is_reported_with_the_flag_to_use_and_negative_ranges_work(deeplab_engine_dir, tmp_path):
    _phase_inputs(tmp_path / "in")
    clipped = _run("regenrt.cli.run_infer", "--engine", deeplab_engine_dir / "model.onnx", "--input", tmp_path / "in",
                   "--output", tmp_path / "o1", "--output-range", "5,6", "-q")  # far outside what the model gives
    assert clipped.returncode == 0, clipped.stderr
    warning = re.search(r"Pass --output-range=(\S+?),(\S+?) ", clipped.stdout)
    assert warning and "3 of 3 picture(s)" in clipped.stdout, clipped.stdout
    lo, hi = float(warning.group(1)), float(warning.group(2))
    as_typed = _run("regenrt.cli.run_infer", "--engine", deeplab_engine_dir / "model.onnx", "--input",
                    tmp_path / "in", "--output", tmp_path / "o2", "--output-range", f"{lo:g},{hi:g}", "-q")
    assert as_typed.returncode == 0, as_typed.stderr  # "-0.05,-0.01" style values are accepted as written
    assert "WARNING" not in as_typed.stdout and "given (--output-range)" in as_typed.stdout
    assert _run("regenrt.cli.run_infer", "--engine", deeplab_engine_dir / "model.onnx", "--input", tmp_path / "in",
                "--output", tmp_path / "o3", "--output-range", "-0.05,-0.01", "-q").returncode == 0


def test_flags_mean_exactly_what_they_say(deeplab_engine_dir, pix2pix_engine_dir, segmentation_setup, tmp_path, capsys):
    from regenrt.cli.run_infer import main

    _, seg_engine = segmentation_setup
    (tmp_path / "in").mkdir()
    common = ("--input", tmp_path / "in", "--output", tmp_path / "o")
    cases = [  # (engine, extra args, what stderr must name)
        (deeplab_engine_dir / "model.onnx", ("--engin",), "the following arguments are required: --engine"),  # no prefixes
        (seg_engine / "model.onnx", ("--boxes", tmp_path / "b.csv"), "--boxes applies to inpainting engines"),
        (pix2pix_engine_dir / "model.onnx", ("--from-image", "--masks", tmp_path), "--from-image applies to"),
        (pix2pix_engine_dir / "model.onnx", ("--masks", tmp_path, "--submission", tmp_path / "s.csv"),
         "it needs --boxes"),
        (pix2pix_engine_dir / "model.onnx", ("--masks", tmp_path, "--boxes", tmp_path / "b.csv"), "exactly one of"),
        (deeplab_engine_dir / "model.onnx", ("--feather", "3"), "--feather applies to inpainting"),
    ]
    for engine, extra, message in cases:
        args = (("--engine", engine) if "--engin" not in extra else ("--engin", engine)) + common \
            + tuple(a for a in extra if a != "--engin")
        result = run_main(main, *args, capsys=capsys)
        assert result.returncode == 2, (extra, result.returncode, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (extra, result.stderr)
    assert not (tmp_path / "s.csv").exists()


def test_exit_code_table_in_readme_matches_the_code():
    from regenrt.errors import EXIT_CODES

    section = (ROOT / "docs" / "exit-codes.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", section, re.MULTILINE))
    assert set(map(int, table)) == set(EXIT_CODES)


def test_doctor_readme_and_pyproject_agree_on_extras():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    readme = (ROOT / "docs" / "install.md").read_text()  # where the extras are listed
    for name, _, install, _ in CHECKS:
        for extra in re.findall(r"regenrt\[([\w-]+)\]", install):
            assert extra in extras, (name, extra)
            assert f"regenrt[{extra}]" in readme or f"`{extra}`" in readme, (name, extra)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(pyproject["project"]["license"], str)  # SPDX string: no setuptools deprecation warning
    lines = _run("regenrt.cli.doctor").stdout.splitlines()
    ok = [ln for ln in lines if ln.startswith("  ok ")]
    assert ok and len({ln.index(ln.split()[3]) for ln in ok if len(ln.split()) > 3}) == 1  # purposes aligned


def test_demo_runs_the_engine_export_chose(tmp_path):
    """The default demo is inpainting (what shows the product); beside its outputs, what they should be (truth/)
    and one side-by-side sheet."""
    result = _run("regenrt.cli.demo", "-o", tmp_path / "demo", "--items", "3", "--train-seconds", "0")
    assert result.returncode == 0, result.stderr
    chosen = json.loads((tmp_path / "demo" / "inpainting" / "engine" / "engine.json").read_text())["engine"]
    assert f"{chosen}:" in result.stderr and "the engine export chose (engine.json)" in result.stderr
    assert "argmax" not in result.stdout.split("parity gate passed")[0]  # no class-map column for a picture
    for png in (tmp_path / "demo" / "inpainting" / "outputs").glob("*.png"):
        assert np.asarray(Image.open(png)).std() > 5  # visibly not blank
    truth = sorted(p.name for p in (tmp_path / "demo" / "inpainting" / "truth").iterdir())
    assert truth == sorted(p.name for p in (tmp_path / "demo" / "inpainting" / "outputs").glob("*.png"))
    sheet = np.asarray(Image.open(tmp_path / "demo" / "inpainting" / "sheet.png"))
    assert sheet.shape == (3 * 128, 3 * 128, 3) and "sheet.png" in result.stdout


def test_one_line_for_fixture_tests_without_shared(tmp_path):
    env = {**__import__("os").environ, "REGENRT_SHARED_FIXTURES": str(tmp_path / "none")}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--co",
                             str(ROOT / "tests" / "models")], capture_output=True, text=True, env=env, timeout=300,
                            cwd=ROOT)
    lines = [ln for ln in result.stdout.splitlines() if "golden fixtures not found" in ln]
    assert len(lines) == 1 and "test(s) that compare against the authors' golden checkpoints" in lines[0]


def test_every_documented_exit_code_is_produced_somewhere_in_the_suite():
    """Each code of the README's table is asserted, through the CLI, by a test that builds the situation the table
    names (this test finds those assertions: a code nobody checks is a promise nobody keeps)."""
    from regenrt.errors import EXIT_CODES

    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    unchecked = []
    for code in EXIT_CODES:
        if code in (0, 1):  # success is asserted everywhere; 1 is the bug code no test should produce
            continue
        if not re.search(rf"returncode == {code}\b", sources):
            unchecked.append(code)
    assert unchecked in ([], [5]), unchecked  # 5 (ONNX export failure) has no CLI-reachable trigger on a sound model


def test_sample_of_the_wrong_kind_is_exit_7(tmp_path, capsys):
    import torch

    from regenrt.models import create_model

    torch.save(create_model("deeplabv3plus_r18", in_channels=3, classes=2).state_dict(), tmp_path / "seg.pt")
    (tmp_path / "s").mkdir()
    np.save(tmp_path / "s" / "gray.npy", np.zeros((1, 64, 64), np.float32))
    result = _in_process("regenrt.cli.export_engine", tmp_path / "seg.pt", "-o", tmp_path / "e", "--samples",
                         tmp_path / "s", capsys=capsys)
    assert result.returncode == 7 and "gray.npy" in result.stderr, result.stderr


def test_an_input_folder_with_nothing_to_run_is_an_error_that_says_what_it_found(deeplab_engine_dir, tmp_path, capsys):
    """Pointing at the wrong folder used to be a silent success ("done 0 ... of 0", exit 0)."""
    (tmp_path / "empty").mkdir()
    result = _in_process("regenrt.cli.run_infer", "--engine", deeplab_engine_dir / "model.onnx", "--input",
                         tmp_path / "empty", "--output", tmp_path / "o", "-q", capsys=capsys)
    assert result.returncode == 2 and "found nothing to run" in result.stderr and "holds no files" in result.stderr
    (tmp_path / "other").mkdir()
    for name in ("a.txt", "b.txt", "c.jpg"):
        (tmp_path / "other" / name).write_bytes(b"x")
    result = _in_process("regenrt.cli.run_infer", "--engine", deeplab_engine_dir / "model.onnx", "--input",
                         tmp_path / "other", "--output", tmp_path / "o", "-q", capsys=capsys)
    assert result.returncode == 2, result.stderr
    assert "phase maps: .npy radians" in result.stderr and "3 other files (.txt x2, .jpg)" in result.stderr
    assert "--from-image" in result.stderr and not (tmp_path / "o").exists()


def test_the_api_names_the_inputs_a_task_takes(pix2pix_engine_dir):
    """predict_many([{"phase": p}]) on an inpainting engine said "KeyError: 'picture'"."""
    import pytest

    from regenrt.errors import InputError
    from regenrt.runtime import Engine
    from regenrt.runtime.predictor import Predictor

    predictor = Predictor(Engine.load(pix2pix_engine_dir / "model.onnx", device="cpu"))
    with pytest.raises(InputError, match=r"item 0: an inpainting engine takes picture, mask; this item has phase "
                                         r"\(missing picture, mask\)"):
        predictor.predict_many([{"phase": np.zeros((256, 256))}])


def test_a_path_that_does_not_exist_is_exit_2_whatever_it_is_for(pix2pix_engine_dir, tmp_path, capsys):
    """One rule (the README's exit-code table): a path given on the command line that does not exist is a usage
    error, exit 2, naming the flag — it was 2 for --input, 7 for --masks and 3 for a checkpoint."""
    engine = pix2pix_engine_dir / "model.onnx"
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    nowhere = tmp_path / "nowhere"
    cases = {
        "--input": ("regenrt.cli.run_infer", "--engine", engine, "--input", nowhere, "--output", tmp_path / "o",
                    "--masks", tmp_path / "masks"),
        "--masks": ("regenrt.cli.run_infer", "--engine", engine, "--input", tmp_path / "in", "--output",
                    tmp_path / "o", "--masks", nowhere),
        "--boxes": ("regenrt.cli.run_infer", "--engine", engine, "--input", tmp_path / "in", "--output",
                    tmp_path / "o", "--boxes", nowhere),
        "engine": ("regenrt.cli.run_infer", "--engine", nowhere, "--input", tmp_path / "in", "--output",
                   tmp_path / "o"),
        "checkpoint": ("regenrt.cli.export_engine", nowhere, "-o", tmp_path / "e"),
        "--samples": ("regenrt.cli.export_engine", pix2pix_engine_dir.parent / "missing.pt", "-o", tmp_path / "e"),
    }
    for what, args in cases.items():
        if what == "--samples":  # a real checkpoint, a missing --samples folder
            import torch

            from regenrt.models import create_model

            ckpt = tmp_path / "u.pt"
            torch.save(create_model("pix2pix_unet", num_downs=5, ngf=4).state_dict(), ckpt)
            args = ("regenrt.cli.export_engine", ckpt, "-o", tmp_path / "e", "--samples", nowhere,
                    "--input-shape", "1x3x32x32")
        result = _in_process(*args, "-q", capsys=capsys)
        assert result.returncode == 2, (what, result.stderr)
        assert "does not exist" in result.stderr and "Traceback" not in result.stderr, (what, result.stderr)
        if what.startswith("--"):
            assert what in result.stderr, (what, result.stderr)
    assert "directory export-engine wrote" in _in_process(*cases["engine"], "-q", capsys=capsys).stderr
