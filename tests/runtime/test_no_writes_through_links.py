"""Nothing written where it must not go: no symbolic link under --output is followed by any write (lock,
manifest, outputs, subdirectories), and the temporary files of a killed run are cleaned on resume. Real links."""
import os

import numpy as np
import pytest

from regenrt.errors import InputError
from regenrt.runtime import Engine, RunOptions, run_directory
from regenrt.runtime.manifest import LOCK_NAME, MANIFEST_NAME
from regenrt.tasks.synthetic import synthetic_pictures

from .helpers import errors_csv, save_png


@pytest.fixture()
def phase(deeplab_engine_dir, tmp_path):
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "p0.npy", np.zeros((64, 64)))
    np.save(tmp_path / "in" / "p1.npy", np.ones((64, 64)))
    return Engine.load(deeplab_engine_dir / "model.onnx", device="cpu"), tmp_path


@pytest.mark.parametrize("name", [LOCK_NAME, MANIFEST_NAME])
def test_planted_lock_or_manifest_link_is_refused_and_its_target_untouched(phase, name):
    engine, tmp = phase
    target = tmp / "precious.txt"
    target.write_text("keep me")
    (tmp / "o").mkdir()
    os.symlink(target, tmp / "o" / name)
    with pytest.raises(InputError, match="symbolic link"):
        run_directory(engine, tmp / "in", tmp / "o")
    assert target.read_text() == "keep me"


def test_output_file_link_is_replaced_not_written_through(phase):
    engine, tmp = phase
    target = tmp / "precious.png"
    target.write_bytes(b"keep me")
    (tmp / "o").mkdir()
    os.symlink(target, tmp / "o" / "p0.png")
    assert run_directory(engine, tmp / "in", tmp / "o").done == 2
    assert target.read_bytes() == b"keep me"
    assert not (tmp / "o" / "p0.png").is_symlink() and (tmp / "o" / "p0.png").read_bytes()[:4] == b"\x89PNG"


def test_linked_output_subdirectory_is_an_item_failure_nothing_lands_outside(segmentation_setup, tmp_path):
    _, engine_dir = segmentation_setup
    for i, pic in enumerate(synthetic_pictures(2, 64, 64, 3, seed=4)):
        save_png(tmp_path / "in" / "sub" / f"s{i}.png", pic)
    save_png(tmp_path / "in" / "top.png", pic)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "o").mkdir()
    os.symlink(outside, tmp_path / "o" / "sub")
    summary = run_directory(Engine.load(engine_dir / "model.onnx", device="cpu"), tmp_path / "in", tmp_path / "o")
    assert summary.done == 1 and summary.failed == 2
    assert not list(outside.iterdir())
    assert all("symbolic link" in reason for reason in errors_csv(tmp_path / "o").values())


def test_temporaries_of_a_killed_run_are_removed_on_resume(phase):
    engine, tmp = phase
    (tmp / "o" / "deep").mkdir(parents=True)
    left = [tmp / "o" / ".p0.png.k1l2l3ed.tmp", tmp / "o" / "deep" / ".x.png.abcdefgh.tmp"]
    for path in left:
        path.write_bytes(b"half")
    keep = tmp / "o" / "notes.tmp"  # not one of ours (ours start with a dot)
    keep.write_text("mine")
    run_directory(engine, tmp / "in", tmp / "o")
    assert not any(p.exists() for p in left) and keep.exists()


def test_dangling_and_looping_input_links_are_counted_failures(phase):
    engine, tmp = phase
    os.symlink(tmp / "nowhere.npy", tmp / "in" / "dangling.npy")
    os.symlink(tmp / "in" / "loop_b.npy", tmp / "in" / "loop_a.npy")
    os.symlink(tmp / "in" / "loop_a.npy", tmp / "in" / "loop_b.npy")
    summary = run_directory(engine, tmp / "in", tmp / "o")
    assert (summary.total, summary.done, summary.failed) == (5, 2, 3)
    errors = errors_csv(tmp / "o")
    assert set(errors) == {"dangling", "loop_a", "loop_b"} and all("symbolic link" in r for r in errors.values())
