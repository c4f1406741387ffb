"""Pictures of any size: every task takes sizes from 33x47 to non-multiples and larger than the engine and gives
outputs of the input's size; segmentation tiles blend without a seam and agree with the whole picture;
inpainting crops keep every known pixel bit-exact and cost a crop per hole group, not the picture; batches and
the pictures held in memory are bounded by pixels."""
import json
import time

import numpy as np
import pytest

from regenrt.errors import InputError
from regenrt.kernels import reference as ref
from regenrt.runtime import Engine, Predictor, RunOptions, run_directory
from regenrt.runtime import sizes
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

from .helpers import read_png, save_png

ODD = [(33, 47), (61, 100), (128, 96), (300, 257)]


@pytest.mark.parametrize("h,w", ODD)
def test_segmentation_and_phase_take_any_size_and_give_it_back(segmentation_setup, deeplab_engine_dir, h, w):
    _, seg_dir = segmentation_setup
    seg = Predictor(Engine.load(seg_dir / "model.onnx"))
    picture = synthetic_pictures(1, h, w, 3, seed=h)[0]
    out = seg.predict(picture=picture)
    assert out["_label.png"].shape == (h, w) and out["_overlay.png"].shape == (h, w, 3)
    phase = Predictor(Engine.load(deeplab_engine_dir / "model.onnx"))
    result = phase.predict(phase=ref.fourier_phase(synthetic_pictures(1, h, w, 1, seed=w)[0]))
    assert result[".png"].shape == (h, w)


def test_tiles_blend_without_a_seam_and_agree_with_the_whole_picture(segmentation_setup):
    """A 384x512 picture (a size the engine takes whole) through 128² tiles with 32 px of overlap: the blended
    logits' worst error at tile borders is no larger than inside the tiles, and the labels agree with the whole
    picture's."""
    _, seg_dir = segmentation_setup
    engine = Engine.load(seg_dir / "model.onnx")
    picture = synthetic_pictures(1, 384, 512, 3, seed=7)[0]
    meta = engine.metadata["input"]

    def make(region):
        out = np.empty((1, 3, *region.shape[:2]), np.float32)
        ref.rgb_normalize(np.ascontiguousarray(region), out, 0, meta.get("mean"), meta.get("std"))
        return out[0]

    whole = engine.infer(make(picture)[None])[0]
    plan = sizes.tiled_plan((384, 512), 128, 32, 16)
    assert plan.grid == (4, 5)
    blended = sizes.run_tiled(plan, picture, make, engine.infer, 4, reduce=lambda x: x)
    error = np.abs(blended - whole).max(axis=0)
    border = np.zeros((384, 512), bool)
    for start in sizes.starts(384, 128, 32)[1:]:
        border[start:start + 32] = True
    for start in sizes.starts(512, 128, 32)[1:]:
        border[:, start:start + 32] = True
    assert error[border].max() <= error[~border].max() * 1.05 + 1e-6, (error[border].max(), error[~border].max())
    labels = sizes.run_tiled(plan, picture, make, engine.infer, 4)
    agree = float(np.mean(labels == whole.argmax(0)))
    print(f"tiled vs whole label agreement: {agree:.4%}")
    assert agree >= 0.99, agree


def test_a_large_picture_is_tiled_by_default_and_recorded(segmentation_setup, tmp_path):
    _, seg_dir = segmentation_setup
    (tmp_path / "in").mkdir()
    save_png(tmp_path / "in" / "big.png", synthetic_pictures(1, 700, 900, 3, seed=3)[0])
    save_png(tmp_path / "in" / "small.png", synthetic_pictures(1, 47, 33, 3, seed=4)[0])
    engine = Engine.load(seg_dir / "model.onnx")
    summary = run_directory(engine, tmp_path / "in", tmp_path / "out", RunOptions(max_batch_pixels=300_000))
    assert (summary.done, summary.failed) == (2, 0), summary.errors
    assert read_png(tmp_path / "out" / "big_label.png").shape == (700, 900)
    assert read_png(tmp_path / "out" / "small_label.png").shape == (47, 33)
    entries = {json.loads(line)["id"]: json.loads(line) for line in
               (tmp_path / "out" / ".regenrt-manifest.jsonl").read_text().splitlines()} \
        if (tmp_path / "out" / ".regenrt-manifest.jsonl").exists() else None
    assert summary.sizes == {"tiled": 1, "padded": 1}
    assert "tiled" in summary.text() and "padded" in summary.text()
    if entries:
        assert entries["big"]["size"].startswith("tiled 2x2") and entries["small"]["size"].startswith("padded")


def test_inpainting_a_large_photograph_costs_its_crops_and_keeps_every_known_pixel(pix2pix_engine_dir):
    """A 4032x3024 picture with two 75x75 holes through the fixed 256x256 U-Net: two crops, the rest untouched."""
    engine = Engine.load(pix2pix_engine_dir / "model.onnx")
    predictor = Predictor(engine)
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (3024, 4032, 3), dtype=np.uint8)
    mask = np.zeros((3024, 4032), np.uint8)
    mask[500:575, 700:775] = 255
    mask[2500:2575, 3000:3075] = 255
    small_pic, small_mask = picture[:256, :256].copy(), np.zeros((256, 256), np.uint8)
    small_mask[90:165, 90:165] = 255
    predictor.predict(picture=small_pic, mask=small_mask)  # warm: kernels compiled, engine's first call made
    calls = []
    infer = engine.infer
    engine.infer = lambda x: calls.append(x.shape) or infer(x)
    start = time.perf_counter()
    out = predictor.predict(picture=picture, mask=mask)[".png"]
    big = time.perf_counter() - start
    start = time.perf_counter()
    predictor.predict(picture=small_pic, mask=small_mask)
    small = time.perf_counter() - start
    assert out.shape == picture.shape and np.array_equal(out[mask == 0], picture[mask == 0])
    assert not np.array_equal(out[mask != 0], picture[mask != 0])
    assert sum(shape[0] for shape in calls[:-1]) == 2 and all(s[2:] == (256, 256) for s in calls)  # two crops
    print(f"4032x3024 with two holes: {big * 1e3:.0f} ms; one 256² item: {small * 1e3:.0f} ms")


def test_holes_close_together_share_a_crop_and_a_hole_larger_than_the_model_is_refused_with_the_reason():
    mask = np.zeros((1000, 1000), np.uint8)
    mask[100:150, 100:150] = 1
    mask[160:200, 170:220] = 1  # close: one window
    mask[800:850, 800:850] = 1
    plan = sizes.crops_plan(mask, (256, 256), True, 256)
    assert len(plan.windows) == 2 and all(w[2:4] == (256, 256) for w in plan.windows)
    assert sorted(len(w[4]) for w in plan.windows) == [1, 2]
    mask[300:700, 300:400] = 1
    with pytest.raises(InputError, match="larger than the 256x256"):
        sizes.crops_plan(mask, (256, 256), True, 256)


def test_a_phase_map_over_the_budget_is_refused_with_the_flag_that_allows_it(deeplab_engine_dir):
    predictor = Predictor(Engine.load(deeplab_engine_dir / "model.onnx"), RunOptions(max_batch_pixels=10_000))
    with pytest.raises(InputError, match="--max-batch-pixels 16384"):
        predictor.predict(phase=np.zeros((128, 128)))


def test_the_pictures_held_in_memory_are_bounded_by_pixels(segmentation_setup, tmp_path, monkeypatch):
    """Twelve 0.5-MP pictures with a budget of two at a time: never more than the budget decoded and unwritten."""
    from regenrt.runtime import pipeline

    _, seg_dir = segmentation_setup
    (tmp_path / "in").mkdir()
    for i, pic in enumerate(synthetic_pictures(12, 512, 1024, 3, seed=9)):
        save_png(tmp_path / "in" / f"p{i:02d}.png", pic)
    peaks = []
    original = pipeline._Run._make_room

    def watch(self, pixels, *args):
        original(self, pixels, *args)
        peaks.append(sum(self.holding.values()) + pixels)

    monkeypatch.setattr(pipeline._Run, "_make_room", watch)
    options = RunOptions(max_batch_pixels=2 * 512 * 1024 // 4, tile=0, batch_size=8)
    summary = run_directory(Engine.load(seg_dir / "model.onnx"), tmp_path / "in", tmp_path / "out", options)
    assert (summary.done, summary.failed) == (12, 0)
    assert max(peaks) <= 4 * options.max_batch_pixels + 512 * 1024, max(peaks)


def test_non_square_tiles_many_holes_and_bad_settings():
    plan = sizes.tiled_plan((1000, 3000), (512, 1024), 64, 32)  # an engine fixed at 512x1024 (Cityscapes-like)
    assert plan.tile == (512, 1024) and plan.grid == (3, 4) and "512x1024 tiles" in plan.describe()
    picture = np.zeros((1000, 3000, 3), np.uint8)
    labels = sizes.run_tiled(plan, picture, lambda r: np.zeros((3, *r.shape[:2]), np.float32),
                             lambda x: np.zeros((x.shape[0], 2, 512, 1024), np.float32), 4)
    assert labels.shape == (1000, 3000)
    speckles = np.zeros((2000, 2000), np.uint8)
    speckles[::20, ::20] = 1  # 10 000 one-pixel holes
    start = time.perf_counter()
    crops = sizes.crops_plan(speckles, (256, 256), True, 256)
    assert time.perf_counter() - start < 20 and all(w[2:4] == (256, 256) for w in crops.windows)
    covered = np.zeros_like(speckles)
    for y, x, h, w, group in crops.windows:
        for y0, x0, y1, x1 in group:
            covered[y0:y1, x0:x1] = speckles[y0:y1, x0:x1]
    assert np.array_equal(covered, speckles)  # every hole pixel belongs to a window
    for bad in (RunOptions(overlap=-1), RunOptions(tile=-5), RunOptions(max_batch_pixels=0)):
        with pytest.raises(InputError):
            bad.sized()
