"""run-infer --report: OUTPUT/report.html opened in a real headless browser — counts, the errors with their
reasons, and a contact sheet of inputs (holes outlined) beside their outputs, every picture loaded, offline."""
import numpy as np
import pytest
import torch

from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

from ..runtime.helpers import run_infer, save_png
from .browser import chromium, open_page

pytestmark = pytest.mark.skipif(chromium() is None, reason="needs Chromium (Debian: apt-get install chromium; "
                                                           ".ci/run installs it)")


def test_the_run_page_shows_counts_errors_and_a_contact_sheet(tmp_path):
    torch.manual_seed(0)
    torch.save(create_model("unet_128", ngf=8).state_dict(), tmp_path / "u.pt")
    export_checkpoint(tmp_path / "u.pt", tmp_path / "e", parity_samples=1, int8="off", cpu_engine="onnxruntime")
    for folder in ("in", "masks"):
        (tmp_path / folder).mkdir()
    for i, (pic, mask) in enumerate(zip(synthetic_pictures(3, 128, 160, 3, seed=1), box_masks(3, 128, 160, seed=2)[0])):
        save_png(tmp_path / "in" / f"p{i}.png", pic)
        save_png(tmp_path / "masks" / f"p{i}.png", mask * 255)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a picture")
    save_png(tmp_path / "masks" / "broken.png", np.zeros((8, 8), np.uint8))
    result = run_infer("--engine", tmp_path / "e", "--input", tmp_path / "in", "--masks", tmp_path / "masks",
                       "--output", tmp_path / "out", "--report", "-q")
    assert result.returncode == 8, result.stderr
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'data-done="3" data-failed="1"' in html and "broken" in html and "not a picture" in html
    assert html.count('class="item"') == 3 and "<script" not in html
    seen = open_page(tmp_path / "out" / "report.html", tmp_path)
    assert "error" not in seen, seen.get("error")
    assert seen["images"] == 6 and seen["broken"] == 0 and seen["fetched"] == [] and seen["console"] == []
    from PIL import Image

    assert np.asarray(Image.open(seen["screenshot"]).convert("RGB")).std() > 20
