"""The authors' own checkpoints load unchanged, with no flags, and reproduce the authors' outputs."""
import numpy as np
import torch

from regenrt.models import build_from_state_dict, load_checkpoint


def _run(path, x):
    loaded = build_from_state_dict(load_checkpoint(path).state_dict)
    with torch.no_grad():
        return loaded, loaded.model(torch.from_numpy(x)).numpy()


def test_smp_deeplabv3plus_r18_reproduces_reference(deeplab_fixture):
    path, ref = deeplab_fixture
    loaded, y = _run(path, ref["x"])
    assert loaded.arch.name == "deeplabv3plus"
    assert loaded.config["encoder"] == "resnet18"
    assert (loaded.config["in_channels"], loaded.config["classes"]) == (1, 1)
    assert np.abs(y - ref["y"]).max() <= 1e-4
    _, y_ns = _run(path, ref["x_nonsquare"])
    assert np.abs(y_ns - ref["y_nonsquare"]).max() <= 1e-4


def test_pix2pix_unet256_reproduces_reference(pix2pix_fixture):
    path, ref = pix2pix_fixture
    loaded, y = _run(path, ref["x"])
    assert loaded.arch.name == "pix2pix_unet"
    assert loaded.config | {} == {"input_nc": 3, "output_nc": 3, "num_downs": 8, "ngf": 16, "norm": "batch",
                                  "use_dropout": False, "instance_stats": "instance"}
    assert np.abs(y - ref["y"]).max() <= 1e-4
