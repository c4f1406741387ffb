"""Trained models for speed and accuracy work: random weights say nothing about INT8 or FP16 on real use.

A random-weight segmentation model's logits are near-tied (range ~0.1), so any reduced precision flips its argmax,
and a random U-Net's output is noise: neither is what users bring. This trains, on 2 CPU cores in minutes and
deterministically, a DeepLabV3+ R50 3 -> 6 segmentation model on labelled procedural scenes
(:func:`regenrt.tasks.synthetic.labelled_scenes`: shapes whose class is the shape, not the colour, with many class
boundaries) and the pix2pix unet_256 ngf64 inpainting generator (L1 on the holes of two 75x75 boxes over the same
kind of pictures). The checkpoints are cached outside the repository (``REGENRT_TRAINED_DIR``, default
``~/.cache/regenrt/trained``), keyed by what defines them; the benchmarks and the INT8 tests use them.

    python -m benchmarks.trained seg6 unet      # train (or find) both; prints where they are and their loss
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from regenrt.demo import training_batch, training_loss
from regenrt.models import create_model
from regenrt.tasks.synthetic import labelled_scenes

VERSION = 1  # bump when the data or the training changes what a checkpoint holds


@dataclass(frozen=True)
class Recipe:
    kind: str
    arch: str
    config: dict
    size: int
    batch: int
    steps: int
    lr: float
    seed: int = 0

    @property
    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": VERSION}, sort_keys=True)
        return f"{self.kind}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


RECIPES = {
    "seg6": Recipe("seg6", "deeplabv3plus", {"encoder": "resnet50", "in_channels": 3, "classes": 6}, size=128, batch=6,
                   steps=300, lr=1e-3),
    "unet": Recipe("unet", "unet_256", {"ngf": 64}, size=256, batch=2, steps=240, lr=2e-4),
}


def cache_dir() -> Path:
    return Path(os.environ.get("REGENRT_TRAINED_DIR", Path.home() / ".cache" / "regenrt" / "trained"))


def _batch(recipe: Recipe, step: int):
    task = "segmentation" if recipe.kind == "seg6" else "inpainting"
    return training_batch(task, recipe.batch, recipe.size, recipe.seed * 100_000 + step, mask_seed=step)


def _loss(recipe: Recipe, out, y):
    return training_loss("segmentation" if recipe.kind == "seg6" else "inpainting", out, y)


def train(recipe: Recipe, log=print) -> tuple[torch.nn.Module, dict]:
    """Train from a fixed seed; returns the model (eval mode) and its record (losses, seconds)."""
    torch.manual_seed(recipe.seed)
    torch.use_deterministic_algorithms(True)
    model = create_model(recipe.arch, **recipe.config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    losses, started = [], time.perf_counter()
    for step in range(recipe.steps):
        x, y = _batch(recipe, step)
        loss = _loss(recipe, model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if log and (step % 20 == 0 or step == recipe.steps - 1):
            log(f"{recipe.kind} step {step + 1}/{recipe.steps}: loss {np.mean(losses[-20:]):.4f} "
                f"({time.perf_counter() - started:.0f}s)")
    torch.use_deterministic_algorithms(False)
    return model.eval(), {"recipe": asdict(recipe), "version": VERSION, "seconds": time.perf_counter() - started,
                          "losses": losses[::10], "final_loss": float(np.mean(losses[-20:]))}


def trained_checkpoint(kind: str, log=print) -> Path:
    """The checkpoint of ``kind`` (a plain state_dict, as users bring), trained on first use and cached."""
    recipe = RECIPES[kind]
    path = cache_dir() / f"{recipe.key}.pt"
    if path.exists():
        return path
    model, record = train(recipe, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(record, indent=1))
    return path


def held_out_segmentation(n: int, size: int = 256, seed: int = 777) -> tuple[np.ndarray, np.ndarray]:
    """Pictures of the kind the segmentation model was trained on, from seeds it never saw, with their labels."""
    return labelled_scenes(n, size, size, seed=10_000_000 + seed)


if __name__ == "__main__":
    for name in sys.argv[1:] or list(RECIPES):
        where = trained_checkpoint(name)
        print(f"{name}: {where} {json.loads(where.with_suffix('.json').read_text())['final_loss']:.4f}")
