"""The demo's models do their task after their minute of training: measured here on a few steps, so that the
demo cannot silently go back to showing noise."""
import numpy as np
import pytest
import torch

from regenrt import demo
from regenrt.models import create_model


def _hole_l1(model, x, target, hole):
    with torch.no_grad():
        y = model(x)
    return float((torch.abs(y - target) * hole).sum() / (3 * hole.sum()))


@pytest.mark.full
def test_a_few_training_steps_teach_the_inpainting_demo_to_fill_holes_with_their_surroundings():
    arch, config = demo.DEMOS["inpainting"]
    torch.manual_seed(0)
    model = create_model(arch, **config)
    x, (target, hole) = demo._batch("inpainting", 10**6, seed=5)  # a batch training never sees
    model.eval()
    before = _hole_l1(model, x, target, hole)
    record = demo.train(model, "inpainting", seconds=300, max_steps=40)
    after = _hole_l1(model, x, target, hole)
    picture_mean = float((torch.abs(target.mean((2, 3), keepdim=True) - target) * hole).sum() / (3 * hole.sum()))
    assert record["steps"] == 40 and record["last_loss"] < record["first_loss"]
    assert after < 0.8 * before and after < picture_mean  # better than filling with the picture's mean colour


def test_the_demo_inputs_have_the_holes_the_model_is_trained_for(tmp_path):
    from PIL import Image

    options = demo.make_demo_inputs("inpainting", tmp_path, n=3)
    masks = [np.asarray(Image.open(p)) > 0 for p in sorted(options["masks"].iterdir())]
    pictures = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "inputs").iterdir())]
    side = round(demo.HOLES[1] * 128)
    assert len(masks) == 3 and all(m.shape == (128, 128) and m.sum() == demo.HOLES[0] * side * side for m in masks)
    assert all(p.shape == (128, 128, 3) for p in pictures)


def test_each_task_has_its_own_demo_folder_and_a_rerun_starts_clean(tmp_path):
    seg = demo.demo_folder(tmp_path, "segmentation")
    for sub in ("inputs", "outputs", "engine"):
        (seg / sub).mkdir(parents=True)
        (seg / sub / "old.txt").write_text("from an earlier run")
    inpainting = demo.demo_folder(tmp_path, "inpainting")
    assert inpainting == tmp_path / "inpainting" and (seg / "outputs" / "old.txt").exists()  # other task untouched
    again = demo.demo_folder(tmp_path, "segmentation")
    assert again == seg and not (seg / "inputs").exists() and not (seg / "outputs").exists()
    assert (seg / "engine" / "old.txt").exists()  # the export overwrites its own artefacts
