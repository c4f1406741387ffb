"""ENGINE/report.html, opened in a real headless browser: every picture loads, nothing is fetched, the console is
clean, the screenshot shows the page and the worst picture's panel; its numbers are parity.json's and
engine.json's exactly; an export whose candidates were refused says why, in words."""
import json
import re
from html import unescape

import numpy as np
import pytest
import torch

from regenrt.export.parity import Tolerances
from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model

from .browser import chromium, open_page

pytestmark = pytest.mark.skipif(chromium() is None, reason="needs Chromium (Debian: apt-get install chromium; "
                                                           ".ci/run installs it)")


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    """The demo's inpainting U-Net, trained a few steps (it fills holes with their surroundings: a trained model's
    outputs, not noise), exported with INT8 candidates."""
    pytest.importorskip("nncf")
    from regenrt import demo

    root = tmp_path_factory.mktemp("page")
    torch.manual_seed(0)
    arch, config = demo.DEMOS["inpainting"]
    model = create_model(arch, **config)
    demo.train(model, "inpainting", seconds=60, max_steps=15)
    torch.save(model.eval().state_dict(), root / "u.pt")
    export_checkpoint(root / "u.pt", root / "e", parity_samples=2, int8="on", calibration_samples=8)
    return root / "e"


@pytest.mark.full
def test_the_export_page_opens_whole_and_offline_in_a_browser(int8_export, tmp_path):
    seen = open_page(int8_export / "report.html", tmp_path)
    assert "error" not in seen, seen.get("error")
    assert seen["images"] >= 8 and seen["broken"] == 0 and seen["fetched"] == []
    assert seen["console"] == [], seen["console"]
    assert seen["panel"] and seen["panel"]["w"] > 0 and seen["panel"]["height"] > 0
    from PIL import Image

    shot = np.asarray(Image.open(seen["screenshot"]).convert("RGB"))
    assert shot.shape[0] >= 1000 and shot.std() > 20  # not blank
    html = (int8_export / "report.html").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from elsewhere, by construction too
    assert "<script" not in html


@pytest.mark.full
def test_its_numbers_are_those_of_parity_json_and_engine_json(int8_export):
    html = (int8_export / "report.html").read_text()
    parity = json.loads((int8_export / "parity.json").read_text())
    engine = json.loads((int8_export / "engine.json").read_text())
    rows = dict(re.findall(r'<tr data-artefact="([^"]+)" data-margin="([^"]+)"', html))
    for entry in parity["candidates"].values():
        assert rows[entry["artefact"]] == repr(entry["margin"])
    latency = dict(re.findall(r'data-artefact="([^"]+)" data-margin="[^"]+" data-latency="([^"]+)"', html))
    for name, ms in engine["latency_ms"].items():
        assert latency[name] == repr(ms)
    assert f'data-engine="{engine["engine"]}"' in html
    for name, ms in engine["versus"]["ms"].items():  # against OpenVINO's default compile and eager PyTorch
        assert f"{ms:.2f} ms" in html and name in unescape(html)
    # every INT8 candidate (passed or refused: which depends on the CPU — VNNI or not) shows where its worst
    # picture's error lies: the map, and the largest |difference| it holds
    int8 = [e for e in parity["candidates"].values() if e["precision"] == "int8" and not e.get("could_not_run")]
    assert int8, "INT8 candidates were built (int8='on')"
    for entry in int8:
        panel = re.search(rf'<div class="worst" id="worst-[^"]+" data-artefact="{re.escape(entry["artefact"])}".*?'
                          r'</div>', html, re.S).group(0)
        assert "|difference|" in panel and panel.count("<img") >= 5


def test_the_page_of_refused_candidates_says_why_for_each(tmp_path):
    pytest.importorskip("nncf")
    torch.manual_seed(0)
    torch.save(create_model("unet_128", ngf=8).state_dict(), tmp_path / "u.pt")
    result = export_checkpoint(tmp_path / "u.pt", tmp_path / "e", parity_samples=1, int8="on", calibration_samples=4,
                               tolerances=Tolerances(int8_guard_db=40.0))  # every INT8 candidate refused
    html = unescape((tmp_path / "e" / "report.html").read_text())
    refused = [e for e in result.report["candidates"].values() if not e["passed"]]
    assert refused  # (INT8 is built on every CPU regenrt supports; a 40 dB guard refuses it on any of them)
    for entry in refused:
        row = re.search(rf'<tr data-artefact="{re.escape(entry["artefact"])}".*?</tr>', html, re.S).group(0)
        assert "refused:" in row and entry["worst_criterion"] in row
    seen = open_page(tmp_path / "e" / "report.html", tmp_path)  # (the quick set's browser check of this page)
    assert "error" not in seen, seen.get("error")
    assert seen["broken"] == 0 and seen["fetched"] == [] and seen["console"] == [], seen


def test_the_worst_of_your_own_samples_has_its_panel(tmp_path):
    from regenrt.tasks.synthetic import synthetic_pictures

    from ..runtime.helpers import save_png

    torch.manual_seed(0)
    torch.save(create_model("unet_128", ngf=8).state_dict(), tmp_path / "u.pt")
    (tmp_path / "mine").mkdir()
    for i, pic in enumerate(synthetic_pictures(3, 128, 128, 3, seed=4)):
        save_png(tmp_path / "mine" / f"s{i}.png", pic)
    export_checkpoint(tmp_path / "u.pt", tmp_path / "e", parity_samples=1, int8="off", cpu_engine="onnxruntime",
                      samples=tmp_path / "mine")
    html = (tmp_path / "e" / "report.html").read_text()
    assert re.search(r'id="worst-fp32-samples" data-artefact="model.onnx" data-case="sample s[02].png"', html)
    assert "worst of your --samples" in html
