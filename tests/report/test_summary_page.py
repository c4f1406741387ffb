"""pytest --benchmark's summary page, opened in a real headless browser: its tables, the goal ratios as a chart,
and the chosen engine's worst picture of each model; every picture loads, nothing is fetched."""
import numpy as np
import pytest
import torch

from benchmarks.summary_page import write_summary_page
from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model

from .browser import chromium, open_page

pytestmark = pytest.mark.skipif(chromium() is None, reason="needs Chromium (Debian: apt-get install chromium; "
                                                           ".ci/run installs it)")

LINES = ["Machine: test", "", "Goals (CPU with BF16):", "| model | shape | ratio | met |", "|---|---|---|---|",
         "| unet_128 | 1×3×128×128 | 1.42 | yes |"]


def test_the_summary_page_shows_tables_ratios_and_each_models_worst_picture(tmp_path):
    torch.manual_seed(0)
    torch.save(create_model("unet_128", ngf=8).state_dict(), tmp_path / "u.pt")
    export_checkpoint(tmp_path / "u.pt", tmp_path / "e", parity_samples=1, int8="off")
    page = write_summary_page(tmp_path / "summary.html", LINES, {"unet_128": tmp_path / "e"})
    html = page.read_text()
    assert "<table>" in html and "1.42 ×" in html and 'class="worst"' in html
    seen = open_page(page, tmp_path)
    assert "error" not in seen, seen.get("error")
    assert seen["images"] >= 4 and seen["broken"] == 0 and seen["fetched"] == [] and seen["console"] == []
    assert seen["panel"] and seen["panel"]["w"] > 0
    from PIL import Image

    assert np.asarray(Image.open(seen["screenshot"]).convert("RGB")).std() > 20
