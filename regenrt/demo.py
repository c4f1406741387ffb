"""Built-in demo checkpoints: small models saved the way their authors' code saves them, trained for a minute
on procedural pictures so that the demo shows the product, not only the plumbing (nothing is downloaded).

With ``train_seconds=0`` the weights stay random (BatchNorm statistics randomized, as in the shared parity
fixtures): near-tied segmentation logits, noise-like fills. Trained for ~60 s on 2 cores, the segmentation model
tells the scene's shapes apart (its class is the shape, not the colour), the inpainting generator fills holes with
the surrounding colours and edges, and phase recovery shows the picture's main edges emerging from its phase.

Example::

    path = make_demo_checkpoint("inpainting", "demo/", train_seconds=60)   # unet_256 ngf 16, trained a minute
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .models import create_model

DEMOS = {
    "phase-recovery": ("deeplabv3plus_resnet18", {"in_channels": 1, "classes": 1}),
    "inpainting": ("unet_128", {"ngf": 32, "norm": "batch"}),  # trained at 128², run at 256²
    "segmentation": ("deeplabv3plus_resnet18", {"in_channels": 3, "classes": 6}),  # labelled_scenes' 6 classes
}
TRAIN_SIZE = {"phase-recovery": 128, "inpainting": 128, "segmentation": 128}
TRAIN_BATCH = {"phase-recovery": 8, "inpainting": 8, "segmentation": 8}
HOLES = (4, 32 / 256)  # the demo's holes: 4 squares of 32/256 (a minute of training fills these; 75/256 ones need hours)


def demo_folder(output: str | Path, task: str) -> Path:
    """``output/<task>``, with the inputs, masks and outputs of an earlier demo of that task removed: one folder per
    task (another task's demo never mixes with it), and a re-run starts clean (run-infer would resume the old
    run's outputs). The checkpoint and engine are overwritten by the new ones."""
    import shutil

    root = Path(output) / task
    for old in ("inputs", "masks", "outputs"):
        shutil.rmtree(root / old, ignore_errors=True)
    return root


def make_demo_checkpoint(task: str, directory: str | Path, seed: int = 0, train_seconds: float = 0.0,
                         log=None) -> Path:
    """Save a demo state_dict for ``task`` to ``directory/demo_<task>.pt`` and return its path; trained for
    ``train_seconds`` on procedural pictures first (0: random weights)."""
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
    if train_seconds > 0:
        train(model, task, train_seconds, seed, log)
    path = Path(directory) / f"demo_{task.replace('-', '_')}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def training_batch(task: str, n: int, size: int, scene_seed: int, mask_seed: int | None = None,
                   holes: tuple[int, float] | None = None):
    """(model input, target) of one training batch of ``n`` procedural ``size``² pictures, turned into the task's
    inputs by its contract: phase maps of grayscale pictures (target: the picture in [0, 1]), labelled scenes
    (target: their labels), or scenes with ``holes`` = (count, side) boxes (default: box_masks' two 75/256 ones;
    target: the picture in [-1, 1] and the hole mask). Shared by the demo and benchmarks/trained.py."""
    import numpy as np

    from .kernels.reference import fourier_phase, holes_to_input, phase_to_input, rgb_normalize
    from .tasks.synthetic import box_masks, labelled_scenes, synthetic_pictures

    if task == "phase-recovery":
        pictures = synthetic_pictures(n, size, size, 1, seed=scene_seed)
        x = np.stack([phase_to_input(fourier_phase(p), 1) for p in pictures])
        y = pictures.reshape(n, 1, size, size).astype(np.float32) / 255.0
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)
    pictures, labels = labelled_scenes(n, size, size, seed=scene_seed)
    if task == "segmentation":
        x = np.empty((n, 3, size, size), np.float32)
        for i, pic in enumerate(pictures):
            rgb_normalize(pic, x, i)
        return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
    boxes = {"boxes": holes[0], "side": holes[1]} if holes else {}
    masks = box_masks(n, size, size, seed=scene_seed if mask_seed is None else mask_seed, **boxes)[0]
    x = np.stack([holes_to_input(p, m) for p, m in zip(pictures, masks)]).astype(np.float32)
    target = torch.from_numpy(pictures.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
    return torch.from_numpy(x), (target, torch.from_numpy(masks.astype(np.float32))[:, None])


def _batch(task: str, step: int, seed: int):
    """The demo's training batch ``step``."""
    return training_batch(task, TRAIN_BATCH[task], TRAIN_SIZE[task], 1_000_000 * (seed + 1) + step, holes=HOLES)


def training_loss(task: str, out, y):
    """Cross-entropy (segmentation), L1 (phase), hole-weighted L1 plus a tenth of the whole picture's (inpainting)."""
    import torch.nn.functional as F

    if task == "segmentation":
        return F.cross_entropy(out, y)
    if task == "phase-recovery":
        return F.l1_loss(out, y)
    target, hole = y
    return F.l1_loss(out * hole, target * hole, reduction="sum") / (3 * hole.sum()) + 0.1 * F.l1_loss(out, target)


def train(model: nn.Module, task: str, seconds: float, seed: int = 0, log=None, max_steps: int | None = None) -> dict:
    """Adam on procedural batches until ``seconds`` have passed (or ``max_steps``); the model is left in eval mode.
    Returns the first and last losses (averaged over 10 steps) and the step count."""
    import time

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses, started, step, said = [], time.perf_counter(), 0, 0.0
    while time.perf_counter() - started < seconds and (max_steps is None or step < max_steps):
        x, y = _batch(task, step, seed)
        loss = training_loss(task, model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        step += 1
        elapsed = time.perf_counter() - started
        if log and elapsed - said >= 15:
            said = elapsed
            log(f"demo: training the {task} model: {elapsed:.0f}/{seconds:.0f} s, step {step}, "
                f"loss {sum(losses[-10:]) / len(losses[-10:]):.3f}")
    model.eval()
    record = {"steps": step, "first_loss": sum(losses[:10]) / max(1, len(losses[:10])),
              "last_loss": sum(losses[-10:]) / max(1, len(losses[-10:]))}
    if log:
        log(f"demo: trained {step} steps in {time.perf_counter() - started:.0f} s, loss {record['first_loss']:.3f} -> {record['last_loss']:.3f}")
    return record


def contact_sheet(task: str, directory: str | Path, rows: int = 4) -> Path:
    """``sheet.png``: for the first ``rows`` items, the input (with its holes greyed for inpainting), the output and
    what it should be, side by side."""
    import numpy as np
    from PIL import Image

    directory = Path(directory)
    names = sorted(p.name for p in (directory / "inputs").iterdir())[:rows]
    tiles = []
    for name in names:
        stem = Path(name).stem
        if task == "phase-recovery":
            shown = np.load(directory / "inputs" / name)
            shown = ((shown + np.pi) / (2 * np.pi) * 255).astype(np.uint8)
            out, truth = f"{stem}.png", f"{stem}.png"
        else:
            shown = np.asarray(Image.open(directory / "inputs" / name).convert("RGB")).copy()
            out = f"{stem}.png" if task == "inpainting" else f"{stem}_overlay.png"
            truth = f"{stem}.png" if task == "inpainting" else f"{stem}_label.png"
            if task == "inpainting":
                mask = np.asarray(Image.open(directory / "masks" / f"{stem}_mask.png")) > 0
                shown[mask] = 128
        row = [_rgb(shown)]
        for folder, file in (("outputs", out), ("truth", truth)):
            path = directory / folder / file
            row.append(_rgb(np.asarray(Image.open(path))) if path.exists() else np.zeros_like(row[0]))
        tiles.append(np.concatenate(row, axis=1))
    sheet = directory / "sheet.png"
    if tiles:
        Image.fromarray(np.concatenate(tiles, axis=0)).save(sheet)
    return sheet


def _rgb(arr):
    import numpy as np

    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = (arr / max(1, arr.max()) * 255).astype(np.uint8)
    return np.repeat(arr[..., None], 3, 2) if arr.ndim == 2 else arr[..., :3]


def make_demo_inputs(task: str, directory: str | Path, n: int = 16, size: int | None = None, seed: int = 0) -> dict:
    """Write ``n`` inputs for ``task`` under ``directory`` (``size`` x ``size``; default 128 for the inpainting
    demo, whose unet_128 takes 128 x 128 only, else 256) and return the run-infer options they need."""
    import numpy as np
    from PIL import Image

    from .kernels.reference import fourier_phase
    from .tasks.synthetic import box_masks, labelled_scenes, synthetic_pictures

    directory = Path(directory)
    size = size or (128 if DEMOS[task][0] == "unet_128" else 256)
    inputs = directory / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    truth = directory / "truth"  # what each output should be, beside it
    truth.mkdir(exist_ok=True)
    if task == "phase-recovery":
        pictures = synthetic_pictures(n, size, size, 1, seed=seed)
        labels = None
    else:  # the kind of pictures the demo models are trained on (other seeds than training's)
        pictures, labels = labelled_scenes(n, size, size, seed=seed + 777)[:2]
    if task == "phase-recovery":
        for i, pic in enumerate(pictures):
            np.save(inputs / f"phase_{i:03d}.npy", fourier_phase(pic))
            Image.fromarray(pic).save(truth / f"phase_{i:03d}.png")  # the picture whose phase it is
        return {}
    for i, pic in enumerate(pictures):
        Image.fromarray(pic).save(inputs / f"picture_{i:03d}.png")
        if task == "inpainting":
            Image.fromarray(pic).save(truth / f"picture_{i:03d}.png")  # the picture before its holes
        else:
            from .tasks.runtime.segmentation import PALETTE

            Image.fromarray(PALETTE[labels[i]]).save(truth / f"picture_{i:03d}_label.png")
    if task == "segmentation":
        return {}
    masks, _ = box_masks(n, size, size, boxes=HOLES[0], seed=seed + 1, side=HOLES[1])
    mask_dir = directory / "masks"
    mask_dir.mkdir(exist_ok=True)
    for i, mask in enumerate(masks):
        Image.fromarray(mask * 255).save(mask_dir / f"picture_{i:03d}_mask.png")
    return {"masks": mask_dir}
