"""Bad inputs become per-item errors, nothing partial is left, and interrupted runs resume to the same bytes."""
import io
import os
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from regenrt.runtime.manifest import MANIFEST_NAME, OutputLock
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

from .helpers import read_png, errors_csv, run_infer, save_png


def _huge_png_header(width=50_000, height=50_000) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _leftovers(out_dir):
    return [p.name for p in out_dir.rglob("*") if p.name.endswith(".tmp")]


def test_inpainting_bad_items_reported_others_finished(pix2pix_engine_dir, tmp_path):
    pics = synthetic_pictures(3, 256, 256, 3, seed=2)
    masks, _ = box_masks(3, 256, 256, seed=3)
    inp, mdir = tmp_path / "in", tmp_path / "masks"
    for i in range(3):
        save_png(inp / f"good{i}.png", pics[i])
        save_png(mdir / f"good{i}_mask.png", masks[i] * 255)
    bad = {
        "corrupt": lambda p: p.write_bytes((inp / "good0.png").read_bytes()[:2000]),
        "disguised": lambda p: p.write_text("this is not a picture"),
        "empty": lambda p: p.write_bytes(b""),
        "huge": lambda p: p.write_bytes(_huge_png_header()),
        "nomask": lambda p: save_png(p, pics[0]),
        "softmask": lambda p: save_png(p, pics[0]),
        "sizemismatch": lambda p: save_png(p, pics[0]),
        "gray": lambda p: save_png(p, pics[0][..., 0]),
    }
    for name, make in bad.items():
        make(inp / f"{name}.png")
        if name not in ("nomask",):
            save_png(mdir / f"{name}_mask.png", masks[0] * 255)
    save_png(mdir / "softmask_mask.png", (masks[0] * 128).astype(np.uint8) + 1)
    save_png(mdir / "sizemismatch_mask.png", np.zeros((128, 256), np.uint8))

    out = tmp_path / "out"
    result = run_infer("--engine", pix2pix_engine_dir / "model.onnx", "--input", inp, "--masks", mdir,
                       "--output", out, "-q")
    assert result.returncode == 8, result.stderr
    errors = errors_csv(out)
    assert set(errors) == set(bad)
    assert "not a picture" in errors["disguised"] and "empty" in errors["empty"]
    assert "2500000000 pixels, over the limit" in errors["huge"] and "no mask found" in errors["nomask"]
    assert "not binary" in errors["softmask"] and "mask is 256x128" in errors["sizemismatch"]
    assert "1 channel(s); the model takes 3" in errors["gray"] and "corrupt" in errors["corrupt"]
    assert sorted(p.name for p in out.glob("*.png")) == ["good0.png", "good1.png", "good2.png"]
    assert not _leftovers(out)
    assert "done 3, failed 8" in result.stdout


def test_phase_bad_items(deeplab_engine_dir, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(0)
    np.save(inp / "ok.npy", rng.uniform(-np.pi, np.pi, (64, 64)))
    nan = rng.uniform(-np.pi, np.pi, (64, 64))
    nan[3, 3] = np.nan
    np.save(inp / "nan.npy", nan)
    np.save(inp / "rgb.npy", rng.uniform(-np.pi, np.pi, (3, 64, 64)))
    np.save(inp / "odd.npy", rng.uniform(-np.pi, np.pi, (60, 64)))
    np.save(inp / "ints.npy", np.zeros((64, 64), np.int32))
    save_png(inp / "eight_bit.png", np.zeros((64, 64), np.uint8))
    result = run_infer("--engine", deeplab_engine_dir / "model.onnx", "--input", inp, "--output", tmp_path / "o", "-q")
    assert result.returncode == 8
    errors = errors_csv(tmp_path / "o")
    assert set(errors) == {"nan", "rgb", "ints", "eight_bit"}
    assert "NaN" in errors["nan"] and "one channel" in errors["rgb"]
    assert "--from-image" in errors["eight_bit"]
    assert (tmp_path / "o" / "ok.png").exists()
    assert read_png(tmp_path / "o" / "odd.png").shape == (60, 64)  # padded to the multiple of 16, cropped back


def _phase_inputs(directory, n):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        np.save(directory / f"p{i:03d}.npy", rng.uniform(-np.pi, np.pi, (256, 256)))


def _outputs(out_dir):
    return {p.name: p.read_bytes() for p in sorted(out_dir.glob("*.png"))}


@pytest.mark.full(cases=["kill-9"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_run_resumes_to_identical_outputs(deeplab_engine_dir, tmp_path, sig):
    n = 40
    _phase_inputs(tmp_path / "in", n)
    engine = deeplab_engine_dir / "model.onnx"
    reference = run_infer("--engine", engine, "--input", tmp_path / "in", "--output", tmp_path / "ref", "-q")
    assert reference.returncode == 0

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "regenrt.cli.run_infer", "--engine", str(engine), "--input", str(tmp_path / "in"),
           "--output", str(out), "--batch-size", "1", "--workers", "1", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = out / MANIFEST_NAME
    deadline = time.time() + 120
    while time.time() < deadline and not (manifest.exists() and manifest.read_text().count("\n") >= 5):
        time.sleep(0.01)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    finished_before = manifest.read_text().count("\n")
    assert finished_before < n, "the run finished before it could be interrupted"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in stderr
    resumed = run_infer("--engine", engine, "--input", tmp_path / "in", "--output", out, "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert f"skipped {finished_before}" in resumed.stdout or "skipped" in resumed.stdout
    assert _outputs(out) == _outputs(tmp_path / "ref")
    assert not _leftovers(out)


def test_rerun_skips_by_manifest_and_redoes_corrupted(deeplab_engine_dir, tmp_path):
    _phase_inputs(tmp_path / "in", 4)
    args = ("--engine", deeplab_engine_dir / "model.onnx", "--input", tmp_path / "in", "--output", tmp_path / "o", "-q")
    assert run_infer(*args).returncode == 0
    good = (tmp_path / "o" / "p001.png").read_bytes()
    (tmp_path / "o" / "p001.png").write_bytes(good[:100])  # corrupted behind our back
    again = run_infer(*args)
    assert "done 1, failed 0, skipped 3" in again.stdout
    assert (tmp_path / "o" / "p001.png").read_bytes() == good
    changed = run_infer(*args[:-1], "--bit-depth", "16", "-q")  # an option that changes bytes redoes all
    assert "done 4" in changed.stdout


def test_two_runs_do_not_share_an_output_directory(deeplab_engine_dir, tmp_path):
    _phase_inputs(tmp_path / "in", 1)
    (tmp_path / "o").mkdir()
    with OutputLock(tmp_path / "o"):
        result = run_infer("--engine", deeplab_engine_dir / "model.onnx", "--input", tmp_path / "in",
                           "--output", tmp_path / "o", "-q")
    assert result.returncode == 9 and f"pid {os.getpid()}" in result.stderr
    assert not list((tmp_path / "o").glob("*.png"))
