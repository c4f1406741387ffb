"""Built-in demo checkpoints: small models with random weights saved the way their authors' code saves them.

Random weights are the only kind that can be made here (no downloads); BatchNorm statistics are randomized and
the last layer scaled so that outputs have a realistic spread, as in the shared parity fixtures.

Example::

    path = make_demo_checkpoint("phase-recovery", "demo/")   # DeepLabV3+ R18, 1 channel in, 1 out
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .models import create_model

DEMOS = {
    "phase-recovery": ("deeplabv3plus_resnet18", {"in_channels": 1, "classes": 1}),
    "inpainting": ("unet_256", {"ngf": 16, "norm": "batch"}),
    "segmentation": ("deeplabv3plus_resnet18", {"in_channels": 3, "classes": 5}),
}


def make_demo_checkpoint(task: str, directory: str | Path, seed: int = 0) -> Path:
    """Save a demo state_dict for ``task`` to ``directory/demo_<task>.pt`` and return its path."""
    arch, config = DEMOS[task]
    torch.manual_seed(seed)
    model = create_model(arch, **config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    path = Path(directory) / f"demo_{task.replace('-', '_')}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def make_demo_inputs(task: str, directory: str | Path, n: int = 16, size: int = 256, seed: int = 0) -> dict:
    """Write ``n`` inputs for ``task`` under ``directory`` and return the run-infer options they need."""
    import numpy as np
    from PIL import Image

    from .kernels.reference import fourier_phase
    from .tasks.synthetic import box_masks, synthetic_pictures

    directory = Path(directory)
    inputs = directory / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    pictures = synthetic_pictures(n, size, size, 1 if task == "phase-recovery" else 3, seed=seed)
    if task == "phase-recovery":
        for i, pic in enumerate(pictures):
            np.save(inputs / f"phase_{i:03d}.npy", fourier_phase(pic))
        return {}
    for i, pic in enumerate(pictures):
        Image.fromarray(pic).save(inputs / f"picture_{i:03d}.png")
    if task == "segmentation":
        return {}
    masks, _ = box_masks(n, size, size, seed=seed + 1)
    mask_dir = directory / "masks"
    mask_dir.mkdir(exist_ok=True)
    for i, mask in enumerate(masks):
        Image.fromarray(mask * 255).save(mask_dir / f"picture_{i:03d}_mask.png")
    return {"masks": mask_dir}
