"""On a real GPU, for each task on a generated model (no fixture: nothing to carry to the GPU machine): run-infer
over four batches of one shape captures the whole device pipeline in one CUDA graph (on the shape's second batch)
and replays it, and the files equal those of the eager device pipeline (a fresh engine with pipeline graphs off).
This is what ``pipeline_graph_vs_engine_graph`` times; here it is checked to happen and to be right."""
import numpy as np
import pytest
import torch

from regenrt.export.gpu import GpuOptions
from regenrt.export.pipeline import export_checkpoint
from regenrt.kernels import reference as ref
from regenrt.models import create_model
from regenrt.runtime import Engine
from regenrt.runtime.device import on_device, staging
from regenrt.runtime.pipeline import run_directory
from regenrt.tasks.runtime import RunOptions
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

from ..runtime.helpers import read_png, save_png

BATCH, BATCHES = 2, 4  # 4 full batches of one shape: the graph is captured on the 2nd and replayed on the 3rd, 4th
TASKS = {  # task -> (architecture, its configuration, input size, the files each item writes)
    "phase-recovery": ("deeplabv3plus_r18", {"in_channels": 1, "classes": 1}, 128, (".npy", ".png")),
    "segmentation": ("deeplabv3plus_r18", {"in_channels": 3, "classes": 4}, 128, ("_label.png", "_overlay.png")),
    "inpainting": ("unet_128", {"ngf": 16}, 128, (".png",)),
}


def _model(arch: str, config: dict):
    torch.manual_seed(0)
    model = create_model(arch, **config).eval()
    with torch.no_grad():  # trained-looking statistics: random BatchNorm running stats, not the identity
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model


def _inputs(task: str, size: int, folder) -> RunOptions:
    n = BATCH * BATCHES
    (folder / "in").mkdir()
    options = {"batch_size": BATCH}
    if task == "phase-recovery":
        for i, pic in enumerate(synthetic_pictures(n, size, size, 1, seed=21)):
            np.save(folder / "in" / f"p{i}.npy", ref.fourier_phase(pic))
        options["save_npy"] = True
    else:
        for i, pic in enumerate(synthetic_pictures(n, size, size, 3, seed=22)):
            save_png(folder / "in" / f"p{i}.png", pic)
    if task == "inpainting":
        (folder / "masks").mkdir()
        for i, mask in enumerate(box_masks(n, size, size, seed=23)[0]):
            save_png(folder / "masks" / f"p{i}.png", mask * 255)
        options["masks"] = folder / "masks"
    return options


def _read(path):
    return np.load(path) if path.suffix == ".npy" else read_png(path)


@pytest.mark.parametrize("task", list(TASKS))
def test_the_pipeline_graph_is_captured_and_equals_the_eager_pipeline(task, tmp_path):
    arch, config, size, suffixes = TASKS[task]
    torch.save(_model(arch, config).state_dict(), tmp_path / "model.pt")
    export_checkpoint(tmp_path / "model.pt", tmp_path / "engine", task=task, parity_samples=1, int8="off",
                      cpu_engine="onnxruntime", input_shape=f"1x{config.get('in_channels', 3)}x{size}x{size}",
                      gpu=GpuOptions("torch"))
    options = _inputs(task, size, tmp_path)
    outs, engines = {}, {}
    for graph in (False, True):  # a fresh engine each: the graph compared with the eager steps, not with itself
        engines[graph] = engine = Engine.load(tmp_path / "engine", device="cuda")
        assert on_device(engine), f"{task}: the engine does not run the device pipeline ({engine.path.name})"
        with _no_capture_warning():
            summary = run_directory(engine, tmp_path / "in", tmp_path / f"out{graph}",
                                    RunOptions(**options, pipeline_graph=graph))
        assert (summary.done, summary.failed) == (BATCH * BATCHES, 0), summary.errors
        outs[graph] = {p.name: _read(p) for p in sorted((tmp_path / f"out{graph}").iterdir())
                       if p.name.endswith(suffixes)}
    slots = {graph: staging(engines[graph].runner)[0].slots for graph in (False, True)}
    assert not any(slot.graph is not None for slot in slots[False].values())
    captured = [slot for slot in slots[True].values() if slot.graph is not None]
    assert captured, f"{task}: no pipeline graph was captured over {BATCHES} batches of one shape " \
                     f"({[slot.capture_failed for slot in slots[True].values()]})"
    assert captured[0].runs >= BATCHES - 1  # captured on the 2nd batch, replayed on the others
    assert outs[True].keys() == outs[False].keys() and len(outs[True]) == BATCH * BATCHES
    for name in outs[True]:
        a, b = outs[True][name], outs[False][name]
        if name.endswith(".npy"):  # the same FP16 engine, graph replay vs eager launches: the same arithmetic
            assert np.abs(a - b).max() <= 1e-3 * max(1.0, float(np.abs(b).max())), name
        else:
            assert np.mean(a != b) <= 1e-3, name  # at most rare rounding ties


class _no_capture_warning:
    """A capture that fails is reported with a RuntimeWarning and the shape falls back to eager: fail on it."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self.seen = self._catch.__enter__()
        warnings.simplefilter("always", RuntimeWarning)
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        bad = [str(w.message) for w in self.seen if "graph" in str(w.message).lower()]
        assert not bad, f"pipeline graph capture fell back: {bad}"
        return False
