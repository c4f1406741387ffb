"""Ray Data batch inference, for real on a local Ray (started once per module, 2 CPUs): outputs byte-identical to
run-infer's pipeline for all three tasks, a bad item in the middle reported as a row, a re-run skipping what the
manifest recorded, and the manifest written by the driver alone."""
import json

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from regenrt.integrations.ray import infer_dataset  # noqa: E402
from regenrt.runtime import Engine, RunOptions, run_directory  # noqa: E402
from regenrt.runtime.manifest import MANIFEST_NAME  # noqa: E402
from regenrt.tasks.synthetic import box_masks, synthetic_pictures  # noqa: E402

from ..runtime.helpers import errors_csv, save_png  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _files(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def _same_as_run_infer(engine_path, inputs, tmp_path, options):
    reference = run_directory(Engine.load(engine_path, device="cpu"), inputs, tmp_path / "ref", options)
    summary = infer_dataset(engine_path, inputs, tmp_path / "ray", options, num_actors=2, block_items=2)
    assert (summary.done, summary.failed, summary.skipped) == (reference.done, reference.failed, reference.skipped)
    assert _files(tmp_path / "ray") == _files(tmp_path / "ref")  # outputs and errors.csv, byte for byte
    return summary


@pytest.mark.full
def test_phase_with_a_bad_item_in_the_middle(local_ray, deeplab_engine_dir, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for i in range(5):
        np.save(tmp_path / "in" / f"p{i}.npy", rng.uniform(-np.pi, np.pi, (64, 64)))
    np.save(tmp_path / "in" / "p2.npy", np.zeros((3, 64, 64)))  # the bad one, in the middle
    summary = _same_as_run_infer(deeplab_engine_dir / "model.onnx", tmp_path / "in", tmp_path, RunOptions())
    assert (summary.done, summary.failed) == (4, 1) and list(errors_csv(tmp_path / "ray")) == ["p2"]
    lines = (tmp_path / "ray" / MANIFEST_NAME).read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == ["p0", "p1", "p3", "p4"]
    again = infer_dataset(deeplab_engine_dir / "model.onnx", tmp_path / "in", tmp_path / "ray", num_actors=1)
    assert (again.done, again.skipped, again.failed) == (0, 4, 1)  # a re-run skips what the manifest recorded


@pytest.mark.full
def test_inpainting_and_segmentation(local_ray, pix2pix_engine_dir, segmentation_setup, tmp_path):
    pictures = synthetic_pictures(3, 256, 256, 3, seed=2)
    masks = box_masks(3, 256, 256, seed=3)[0]
    for i, (pic, mask) in enumerate(zip(pictures, masks)):
        save_png(tmp_path / "inp" / f"q{i}.png", pic)
        save_png(tmp_path / "masks" / f"q{i}_mask.png", mask * 255)
    _same_as_run_infer(pix2pix_engine_dir / "model.onnx", tmp_path / "inp", tmp_path / "a",
                       RunOptions(masks=tmp_path / "masks"))
    _, seg_engine = segmentation_setup
    for i, pic in enumerate(synthetic_pictures(3, 64, 64, 3, seed=4)):
        save_png(tmp_path / "seg" / "sub" / f"s{i}.png", pic)
    _same_as_run_infer(seg_engine / "model.onnx", tmp_path / "seg", tmp_path / "b", RunOptions())


def test_run_infer_ray_flag(deeplab_engine_dir, tmp_path):
    from ..runtime.helpers import run_infer

    (tmp_path / "in").mkdir()
    for i in range(3):
        np.save(tmp_path / "in" / f"p{i}.npy", np.full((64, 64), 0.1 * i))
    result = run_infer("--engine", deeplab_engine_dir / "model.onnx", "--input", tmp_path / "in", "--output",
                       tmp_path / "o", "--ray", "--ray-actors", "1", "-q")
    assert result.returncode == 0, result.stderr
    assert "done 3, failed 0" in result.stdout and len(list((tmp_path / "o").glob("*.png"))) == 3


def test_boxes_and_submission_as_run_infer_writes_them(local_ray, pix2pix_engine_dir, tmp_path):
    pictures = synthetic_pictures(2, 256, 256, 3, seed=7)
    for i, pic in enumerate(pictures):
        save_png(tmp_path / "in" / f"b{i}.png", pic)
    (tmp_path / "boxes.csv").write_text("file,x,y,width,height\nb0.png,10,10,4,4\nb1.png,0,0,2,3\n")
    subs = {}
    for kind in ("ref", "ray"):
        options = RunOptions(boxes=tmp_path / "boxes.csv", submission=tmp_path / f"{kind}.csv")
        if kind == "ref":
            run_directory(Engine.load(pix2pix_engine_dir / "model.onnx", device="cpu"), tmp_path / "in",
                          tmp_path / "o_ref", options)
        else:
            infer_dataset(pix2pix_engine_dir / "model.onnx", tmp_path / "in", tmp_path / "o_ray", options)
        subs[kind] = (tmp_path / f"{kind}.csv").read_bytes()
    assert subs["ray"] == subs["ref"] and subs["ray"].count(b"\n") == 1 + (16 + 6) * 3


@pytest.mark.full
def test_a_killed_driver_is_completed_by_a_rerun(local_ray, deeplab_engine_dir, tmp_path):
    """SIGKILL the whole `run-infer --ray` process group once a few items are recorded; the re-run does only the
    rest, and the outputs equal run-infer's byte for byte."""
    import os
    import signal
    import subprocess
    import sys
    import time

    rng = np.random.default_rng(5)
    (tmp_path / "in").mkdir()
    for i in range(40):
        np.save(tmp_path / "in" / f"p{i:02d}.npy", rng.uniform(-np.pi, np.pi, (64, 64)))
    engine = deeplab_engine_dir / "model.onnx"
    manifest = tmp_path / "ray" / MANIFEST_NAME
    driver = subprocess.Popen([sys.executable, "-m", "regenrt.cli.run_infer", "--engine", str(engine), "--input",
                               str(tmp_path / "in"), "--output", str(tmp_path / "ray"), "--ray", "--ray-actors", "1",
                               "--batch-size", "1", "-q"], start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if manifest.is_file() and len(manifest.read_bytes().splitlines()) >= 4:
            break
        time.sleep(0.02)
    assert driver.poll() is None, "the driver finished before it could be killed"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
    driver.wait()
    recorded = {json.loads(line)["id"] for line in manifest.read_text().splitlines() if line.endswith("}")}
    assert 4 <= len(recorded) < 40
    again = infer_dataset(engine, tmp_path / "in", tmp_path / "ray", RunOptions(batch_size=1), num_actors=1)
    assert (again.skipped, again.done, again.failed) == (len(recorded), 40 - len(recorded), 0)
    run_directory(Engine.load(engine, device="cpu"), tmp_path / "in", tmp_path / "ref", RunOptions(batch_size=1))
    assert _files(tmp_path / "ray") == _files(tmp_path / "ref")
