"""Files as users expect: output modes follow the umask (0644 under 022), writes stay atomic; CSV files are
real CSV (quoted where needed) with formula-like cells neutralized (OWASP CSV injection)."""
import csv
import io
import os

import numpy as np
import pytest

from regenrt.runtime.io import csv_bytes, csv_cell, write_atomic

from .helpers import run_infer, save_png


@pytest.fixture()
def umask():
    def set_(mask):
        os.umask(mask)

    old = os.umask(0o022)
    yield set_
    os.umask(old)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_umask_mode(tmp_path, umask, mask, mode):
    umask(mask)
    write_atomic(tmp_path / "a.png", b"data")
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == mode
    assert (tmp_path / "a.png").read_bytes() == b"data" and not list(tmp_path.glob(".*.tmp"))


def test_run_infer_outputs_are_readable_by_others_under_022(deeplab_engine_dir, tmp_path, umask):
    umask(0o022)
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "p.npy", np.zeros((64, 64)))
    np.save(tmp_path / "in" / "bad.npy", np.zeros((3, 64, 64)))
    result = run_infer("--engine", deeplab_engine_dir / "model.onnx", "--input", tmp_path / "in", "--output",
                       tmp_path / "o", "--save-npy", "-q")
    assert result.returncode == 8
    for name in ("p.png", "p.npy", "errors.csv"):
        assert (tmp_path / "o" / name).stat().st_mode & 0o777 == 0o644, name


def test_csv_cells_are_quoted_and_neutralized():
    assert csv_cell("=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
    assert [csv_cell(v) for v in ("+1", "-x", "@SUM(A1)", "\tx", "img0_1_5", 255, -3)] == \
        ["'+1", "'-x", "'@SUM(A1)", "'\tx", "img0_1_5", 255, -3]
    text = csv_bytes(["id", "value"], [("=cmd,x_0_0", 17), ("plain_0_1", 3)]).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["id", "value"], ["'=cmd,x_0_0", "17"], ["plain_0_1", "3"]]


def test_submission_ids_round_trip_or_are_the_items_error(pix2pix_engine_dir, tmp_path):
    """An id that cannot be written faithfully and safely (a formula-like start, a comma, quote or line break) is
    that item's error in errors.csv — never an altered id (it used to become "'=cmd,x_0_0", matching no picture);
    ordinary ids, in sub-folders too, stay exactly as they are."""
    from regenrt.tasks.synthetic import synthetic_pictures

    pic = synthetic_pictures(1, 256, 256, 3, seed=1)[0]
    bad = ["=cmd,x", "+plus", "-minus", "@at", 'q"uote', "comma,name", "new\nline"]
    good = ["plain", "sub/deeper_name-1", "x=y"]
    rows = ["file,x,y,width,height"]
    for name in bad + good:
        save_png(tmp_path / "in" / f"{name}.png", pic)
        quoted = '"' + f"{name}.png".replace('"', '""') + '"'
        rows.append(f"{quoted},10,10,2,2")
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    result = run_infer("--engine", pix2pix_engine_dir / "model.onnx", "--input", tmp_path / "in", "--boxes",
                       tmp_path / "boxes.csv", "--submission", tmp_path / "sub.csv", "--output", tmp_path / "o", "-q")
    assert result.returncode == 8, result.stderr  # partial: the bad ids failed
    errors = {r[0]: r[2] for r in csv.reader(io.StringIO((tmp_path / "o" / "errors.csv").read_text()))}
    for name in bad:  # (errors.csv neutralizes its own cells for spreadsheets; the reason quotes the id as it is)
        assert f"its id {name!r} cannot be written in sub.csv" in errors[csv_cell(name)], (name, errors)
    assert len(errors) == len(bad) + 1  # and the header row
    rows = list(csv.reader(io.StringIO((tmp_path / "sub.csv").read_text())))
    ids = {r[0].rsplit("_", 2)[0] for r in rows[1:]}
    assert ids == set(good) and all(len(r) == 2 for r in rows)


def test_boxes_are_matched_by_relative_path(pix2pix_engine_dir, tmp_path):
    """x/a.png and y/a.png are two pictures: their boxes and submission ids must not be shared or collide."""
    from regenrt.tasks.synthetic import synthetic_pictures

    pics = synthetic_pictures(3, 256, 256, 3, seed=5)
    for pic, name in zip(pics, ("x/a.png", "y/a.png", "top.png")):
        save_png(tmp_path / "in" / name, pic)
    (tmp_path / "boxes.csv").write_text("file,x,y,width,height\nx/a.png,0,0,1,1\ny/a.png,5,5,2,1\ntop.png,1,1,1,1\n")
    result = run_infer("--engine", pix2pix_engine_dir / "model.onnx", "--input", tmp_path / "in", "--boxes",
                       tmp_path / "boxes.csv", "--submission", tmp_path / "sub.csv", "--output", tmp_path / "o", "-q")
    assert result.returncode == 0, result.stderr
    ids = [r[0] for r in csv.reader(io.StringIO((tmp_path / "sub.csv").read_text()))][1:]
    assert len(ids) == len(set(ids)) == 3 + 6 + 3
    assert {i.rsplit("_", 2)[0] for i in ids} == {"x/a", "y/a", "top"}  # top-level ids are the stem, as before

    (tmp_path / "bare.csv").write_text("file,x,y,width,height\na.png,0,0,1,1\ntop.png,1,1,1,1\n")
    result = run_infer("--engine", pix2pix_engine_dir / "model.onnx", "--input", tmp_path / "in", "--boxes",
                       tmp_path / "bare.csv", "--output", tmp_path / "o2", "-q")
    assert result.returncode == 8
    text = (tmp_path / "o2" / "errors.csv").read_text()
    assert text.count("matches several input files") == 2 and (tmp_path / "o2" / "top.png").exists()
