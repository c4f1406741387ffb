"""run-infer end to end on each task, with engines exported from the shared fixtures."""
import csv

import numpy as np
import pytest
import torch

from regenrt.kernels.reference import holes_to_input, normalize_rgb
from regenrt.models import build_from_state_dict, load_checkpoint
from regenrt.runtime import Engine
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

from .helpers import read_png, run_infer, save_png


def test_phase_recovery_reproduces_smp_reference(deeplab_fixture, deeplab_engine_dir, tmp_path):
    _, ref = deeplab_fixture
    inputs = tmp_path / "in"
    inputs.mkdir()
    phases = {"a": ref["x"][0, 0], "b": ref["x"][1, 0], "wide": ref["x_nonsquare"][0, 0]}
    for name, x in phases.items():
        np.save(inputs / f"{name}.npy", (x.astype(np.float64) * np.pi))  # radians, as users store them
    result = run_infer("--engine", deeplab_engine_dir / "model.onnx", "--input", inputs, "--output", tmp_path / "out",
                       "--batch-size", "2", "--save-npy", "--bit-depth", "16", "--output-range", "0,1", "-q")
    assert result.returncode == 0, result.stderr
    expected = {"a": ref["y"][0], "b": ref["y"][1], "wide": ref["y_nonsquare"][0]}
    for name, y in expected.items():
        got = np.load(tmp_path / "out" / f"{name}.npy")
        assert np.abs(got - y).max() <= 1e-4
        png = read_png(tmp_path / "out" / f"{name}.png")
        assert png.dtype == np.uint16 and png.shape == y.shape[1:]
        expected_png = np.rint(np.clip(y[0].astype(np.float64), 0, 1) * 65535)
        assert np.abs(png - expected_png).max() <= 1e-4 * 65535 + 1  # the 1e-4 output error, in 16-bit steps
    assert "done 3, failed 0" in result.stdout


def test_phase_from_image(deeplab_engine_dir, tmp_path):
    for i, pic in enumerate(synthetic_pictures(3, 64, 96, 3, seed=1)):
        save_png(tmp_path / "in" / f"pic{i}.jpg" if i == 0 else tmp_path / "in" / f"pic{i}.png", pic)
    result = run_infer("--engine", deeplab_engine_dir / "model.fp16.onnx", "--input", tmp_path / "in",
                       "--output", tmp_path / "out", "--from-image", "-q")
    assert result.returncode == 0, result.stderr
    assert read_png(tmp_path / "out" / "pic1.png").shape == (64, 96)


def _inpainting_inputs(tmp_path, n=3):
    pics = synthetic_pictures(n, 256, 256, 3, seed=4)
    masks, boxes = box_masks(n, 256, 256, seed=5)
    for i in range(n):
        save_png(tmp_path / "in" / f"img{i}.png", pics[i])
        save_png(tmp_path / "masks" / f"img{i}_mask.png", masks[i] * 255)
    return pics, masks, boxes


@pytest.mark.parametrize("artefact", ["model.onnx", "openvino", "."])  # ".": the engine engine.json names
def test_inpainting_known_pixels_bit_exact_and_holes_from_model(pix2pix_fixture, pix2pix_engine_dir, tmp_path,
                                                                artefact):
    pics, masks, _ = _inpainting_inputs(tmp_path)
    if artefact == "openvino":  # the float IR export published: model.openvino.xml is withheld where its
        # ConvTranspose layers would run fp32 under a bf16 claim (BF16 CPUs); the sub-pixel IR then runs all in bf16
        artefact = next(n for n in ("model.openvino.xml", "model.openvino.subpixel.xml")
                        if (pix2pix_engine_dir / n).exists())
    engine = pix2pix_engine_dir / artefact
    result = run_infer("--engine", engine, "--input", tmp_path / "in",
                       "--masks", tmp_path / "masks", "--output", tmp_path / "out", "-q")
    assert result.returncode == 0, result.stderr
    exact_math = Engine.load(engine).metadata["precision"] == "fp32"
    model = build_from_state_dict(load_checkpoint(pix2pix_fixture[0]).state_dict).model
    for i in range(len(pics)):
        out = read_png(tmp_path / "out" / f"img{i}.png")
        hole = masks[i] != 0
        assert np.array_equal(out[~hole], pics[i][~hole])  # every known pixel bit-exact
        with torch.no_grad():
            y = model(torch.from_numpy(holes_to_input(pics[i], masks[i])[None])).numpy()[0]
        expected = np.rint(np.clip((y + 1) * 127.5, 0, 255)).astype(np.uint8).transpose(1, 2, 0)
        diff = np.abs(out[hole].astype(int) - expected[hole])
        if exact_math:
            assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # only float rounding at .5 boundaries
        else:  # fp16 / bf16 engines: the image-output parity default
            assert 10 * np.log10(255 ** 2 / max(np.mean(diff.astype(float) ** 2), 1e-12)) >= 40


def test_inpainting_boxes_csv_and_submission(pix2pix_engine_dir, tmp_path):
    pics, _, boxes = _inpainting_inputs(tmp_path, n=2)
    with open(tmp_path / "boxes.csv", "w") as fh:
        fh.write("file,x,y,width,height\n")
        for i, placed in enumerate(boxes):
            for top, left, h, w in placed:
                fh.write(f"img{i}.png,{left},{top},{w},{h}\n")
    result = run_infer("--engine", pix2pix_engine_dir / "model.fp16.onnx", "--input", tmp_path / "in",
                       "--boxes", tmp_path / "boxes.csv", "--submission", tmp_path / "sub.csv",
                       "--output", tmp_path / "out", "--feather", "3", "-q")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "sub.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["id", "value"] and len(rows) - 1 == 2 * 2 * 75 * 75 * 3
    out0 = read_png(tmp_path / "out" / "img0.png")
    top, left, h, w = boxes[0][1]
    first = [r for r in rows if r[0].startswith("img0_1_")]
    assert [int(v) for _, v in first] == out0[top:top + h, left:left + w].reshape(-1).tolist()
    hole = np.zeros((256, 256), bool)
    for t, l, bh, bw in boxes[0]:
        hole[t:t + bh, l:l + bw] = True
    assert np.array_equal(out0[~hole], pics[0][~hole])


def test_segmentation_labels_and_overlay(segmentation_setup, tmp_path):
    model, engine_dir = segmentation_setup
    pics = synthetic_pictures(2, 64, 96, 3, seed=8)
    for i, pic in enumerate(pics):
        save_png(tmp_path / "in" / "sub" / f"s{i}.png", pic)
    result = run_infer("--engine", engine_dir / "model.onnx", "--input", tmp_path / "in", "--output",
                       tmp_path / "out", "-q")
    assert result.returncode == 0, result.stderr
    for i, pic in enumerate(pics):
        labels = read_png(tmp_path / "out" / "sub" / f"s{i}_label.png")
        with torch.no_grad():
            logits = model(torch.from_numpy(normalize_rgb(pic)[None])).numpy()[0]
        assert (labels == logits.argmax(0)).mean() > 0.999
        assert read_png(tmp_path / "out" / "sub" / f"s{i}_overlay.png").shape == (64, 96, 3)


def test_phase_16bit_png_and_tiff_encodings_match_npy(deeplab_engine_dir, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    codes = rng.integers(0, 65536, (64, 64)).astype(np.uint16)
    phase = codes.astype(np.float64) / 65535.0 * 2 * np.pi - np.pi  # the documented decoding
    (tmp_path / "in").mkdir()
    Image.fromarray(codes).save(tmp_path / "in" / "enc16.png")
    Image.fromarray(codes).save(tmp_path / "in" / "enc16t.tif")
    np.save(tmp_path / "in" / "ref.npy", phase.astype(np.float32))
    result = run_infer("--engine", deeplab_engine_dir / "model.onnx", "--input", tmp_path / "in", "--output",
                       tmp_path / "out", "--save-npy", "-q")
    assert result.returncode == 0, result.stderr
    ref = np.load(tmp_path / "out" / "ref.npy")
    for name in ("enc16", "enc16t"):
        assert np.abs(np.load(tmp_path / "out" / f"{name}.npy") - ref).max() <= 1e-4


def test_numba_kernels_switch_in_without_changing_outputs(pix2pix_engine_dir, segmentation_setup, tmp_path):
    _inpainting_inputs(tmp_path)
    _, seg_engine = segmentation_setup
    for pic_i, pic in enumerate(synthetic_pictures(2, 64, 64, 3, seed=9)):
        save_png(tmp_path / "seg_in" / f"s{pic_i}.png", pic)
    runs = {
        "inpaint": ("--engine", pix2pix_engine_dir / "model.onnx", "--input", tmp_path / "in", "--masks",
                    tmp_path / "masks", "--feather", "2"),
        "seg": ("--engine", seg_engine / "model.onnx", "--input", tmp_path / "seg_in"),
    }
    for name, args in runs.items():
        for kernels in ("numpy", "numba"):
            result = run_infer(*args, "--output", tmp_path / f"{name}_{kernels}", "--kernels", kernels, "-q")
            assert result.returncode == 0, result.stderr
        a = {p.name: p.read_bytes() for p in (tmp_path / f"{name}_numpy").glob("*.png")}
        b = {p.name: p.read_bytes() for p in (tmp_path / f"{name}_numba").glob("*.png")}
        assert a and a == b
