"""Pictures of any size, measured: a 4032x3024 photograph (inpainting with two 75x75 holes through the fixed
256x256 U-Net; segmentation tiled through DeepLabV3+ R18) against one 256² item, and a folder of large pictures
through ``run-infer`` segmentation at default settings with its peak RSS (the child process's, from the kernel).

Under ``pytest --benchmark``: the 4032x3024 rows and a folder of 24 pictures of 12-48 MP; the plain-pytest smoke
pass runs the folder case on 3 pictures of 1-2 MP.
"""
from __future__ import annotations

import resource
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model
from regenrt.runtime import Engine, Predictor, RunOptions

SMOKE = {"case": ["folder"]}
RSS_GOAL_GB = 6.0


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    root = tmp_path_factory.mktemp("sizes")
    torch.manual_seed(0)
    torch.save(create_model("deeplabv3plus_r18", in_channels=3, classes=6).eval().state_dict(), root / "seg.pt")
    torch.save(create_model("unet_256", ngf=16).eval().state_dict(), root / "unet.pt")
    common = dict(parity_samples=1, int8="off", calibration_samples=4)
    export_checkpoint(root / "seg.pt", root / "seg", **common)
    export_checkpoint(root / "unet.pt", root / "unet", **common)
    return root


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth picture with edges (compresses like a photograph, unlike noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 64 + 2, w // 64 + 2, 3), dtype=np.uint8)
    from PIL import Image

    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


@pytest.mark.parametrize("case", ["inpainting", "segmentation", "folder"])
def test_sizes(benchmark, request, engines, tmp_path, case):
    full = request.config.getoption("--benchmark")
    if case == "folder":
        return _folder(benchmark, engines, tmp_path, full)
    engine = Engine.load(engines / ("unet" if case == "inpainting" else "seg"), device="cpu")
    predictor = Predictor(engine)
    picture = _photo(3024, 4032, 1)
    item = {"picture": picture}
    small = {"picture": picture[:256, :256].copy()}
    if case == "inpainting":
        mask = np.zeros((3024, 4032), np.uint8)
        mask[500:575, 700:775] = 255
        mask[2500:2575, 3000:3075] = 255
        small_mask = np.zeros((256, 256), np.uint8)
        small_mask[90:165, 90:165] = 255
        item["mask"], small["mask"] = mask, small_mask
    predictor.predict(**small)  # warm
    one = min(_timed(lambda: predictor.predict(**small)) for _ in range(5))
    big = benchmark.pedantic(lambda: predictor.predict(**item), rounds=3, iterations=1)
    ms = float(np.median(benchmark.stats.stats.data)) * 1e3 if benchmark.stats else _timed(
        lambda: predictor.predict(**item)) * 1e3
    benchmark.extra_info.update({"sizes": f"{case} 4032x3024", "ms": ms, "one_256_ms": one * 1e3,
                                 "ratio_to_256": ms / (one * 1e3)})
    assert big[".png" if case == "inpainting" else "_label.png"].shape[:2] == (3024, 4032)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _folder(benchmark, engines, tmp_path, full: bool):
    from PIL import Image

    megapixels = [12, 16, 20, 24, 32, 48] * 4 if full else [1, 2, 1]
    (tmp_path / "in").mkdir()
    for i, mp in enumerate(megapixels):
        w = int((mp * 1e6 * 4 / 3) ** 0.5)
        h = int(mp * 1e6 / w)
        Image.fromarray(_photo(h, w, i)).save(tmp_path / "in" / f"p{i:02d}.jpg", quality=90)
    cmd = [sys.executable, "-c", "import sys; from regenrt.cli.run_infer import main; sys.exit(main(sys.argv[1:]))",
           "--engine", str(engines / "seg"), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "-q"]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    assert result.returncode == 0, result.stdout + result.stderr
    benchmark.extra_info.update({"sizes": f"folder of {len(megapixels)} pictures of {min(megapixels)}-"
                                          f"{max(megapixels)} MP (segmentation, defaults)", "seconds": seconds,
                                 "peak_rss_gb": peak_gb, "summary": result.stdout.strip()})
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert peak_gb < RSS_GOAL_GB, peak_gb
