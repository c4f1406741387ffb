"""End to end: run-infer's pipeline (decode, pre-kernel, batched engine, post-kernel, encode, write) over a
directory of generated inputs vs the same engine alone on the same, already prepared, data — in one run.

Goal (issues 5, 11): pipeline throughput >= 0.9 x engine-only throughput (I/O and kernels hidden behind inference).
Both sides run the engine as run-infer does: loaded in throughput mode, with ``engine.requests`` batches in flight
(the engine-only side from as many threads, each calling ``infer`` on prepared batches back to back). Both are
measured warm: the engine side after warm-up calls, the pipeline in a second run over the same inputs (into a new
output directory, so nothing is skipped). The first run's ratio is reported too ("cold"): it carries what a process
pays once — numba's JIT runtime starting and the kernels loaded from their disk cache (~0.3 s), first allocations.
Under ``pytest --benchmark`` each case uses 256 inputs; the plain-pytest smoke pass uses 8.

On a GPU engine two more denominators, both timed with CUDA events on the runner's stream (METHOD: graph replay,
data already on the device): the engine's own CUDA graph replayed back to back (``graph_items_per_s``: the honest
ceiling of run-infer, goal ``ratio_vs_graph`` >= 0.8), and the run's pipeline graph of a full batch (upload,
pre-kernel, engine, post-kernel, download) against that engine graph (goal ``pipeline_graph_vs_engine_graph``
<= 1.15).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from regenrt.kernels import reference as ref
from regenrt.runtime import Engine, RunOptions, run_directory
from regenrt.runtime.device import on_device
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

from .common import MODELS

CASES = {"phase-recovery": "deeplabv3plus_r50_1ch", "inpainting": "unet_256_ngf64"}
SMOKE = {"task": ["phase-recovery"]}
BATCH = RunOptions().batch_size


def _write_inputs(task: str, root, n: int):
    """n inputs as users keep them (phase: .npy radians; inpainting: PNG pictures + PNG masks) and the same data
    as prepared model inputs."""
    (root / "in").mkdir()
    pictures = synthetic_pictures(n, 256, 256, 3 if task == "inpainting" else 1, seed=5)
    if task == "phase-recovery":
        prepared = []
        for i, pic in enumerate(pictures):
            phase = ref.fourier_phase(pic)
            np.save(root / "in" / f"p{i:04d}.npy", phase)
            prepared.append(ref.phase_to_input(phase))
        return {}, np.stack(prepared)
    (root / "masks").mkdir()
    masks, _ = box_masks(n, 256, 256, seed=6)
    for i, (pic, mask) in enumerate(zip(pictures, masks)):
        Image.fromarray(pic).save(root / "in" / f"p{i:04d}.png")
        Image.fromarray(mask * 255).save(root / "masks" / f"p{i:04d}.png")
    return {"masks": root / "masks"}, np.stack([ref.holes_to_input(p, m) for p, m in zip(pictures, masks)])


@pytest.mark.parametrize("task", list(CASES))
def test_end_to_end(benchmark, exported, request, tmp_path, task):
    n = 256 if request.config.getoption("--benchmark") else 8
    # the engine export-engine chose for this CPU, opened as run-infer opens it
    engine = Engine.load(exported(CASES[task]), mode="throughput")
    options, prepared = _write_inputs(task, tmp_path, n)
    batches = [prepared[i:i + BATCH] for i in range(0, n, BATCH)]
    with ThreadPoolExecutor(engine.requests) as pool:
        list(pool.map(engine.infer, batches[:engine.requests]))  # warm-up (and compile) outside both timings
        start = time.perf_counter()
        list(pool.map(engine.infer, batches))
        engine_s = time.perf_counter() - start

    outputs = iter(range(1000))

    def pipeline():
        return run_directory(engine, tmp_path / "in", tmp_path / f"out{next(outputs)}", RunOptions(**options))

    cold = pipeline()
    summary = benchmark.pedantic(pipeline, rounds=1, iterations=1)
    assert summary.done == n and summary.failed == 0 and cold.done == n
    ratio = summary.items_per_s / (n / engine_s)
    if on_device(engine):  # a GPU engine: against graph replay, and with more decode/encode threads
        import os

        benchmark.extra_info.update(_graph_denominators(engine, (BATCH, *prepared.shape[1:])))
        benchmark.extra_info["ratio_vs_graph"] = summary.items_per_s / benchmark.extra_info["graph_items_per_s"]

        workers = max(2, min(8, (os.cpu_count() or 2) - 1))
        more = run_directory(engine, tmp_path / "in", tmp_path / f"out{next(outputs)}",
                             RunOptions(**options, workers=workers))
        benchmark.extra_info[f"ratio_{workers}_workers"] = more.items_per_s / (n / engine_s)
        benchmark.extra_info[f"stage_s_{workers}_workers"] = more.stage_s
    benchmark.extra_info.update({
        "end_to_end": f"{task} ({MODELS[CASES[task]].key}, {engine.path.name}, batch {BATCH}, "
                      f"{engine.requests} request(s) in flight)", "items": n,
        "pipeline_items_per_s": summary.items_per_s, "engine_items_per_s": n / engine_s, "ratio": ratio,
        "cold_ratio": cold.items_per_s / (n / engine_s),
        "stage_s": summary.stage_s,
    })


def _events_ms(torch, stream, work, repeat: int = 50) -> float:
    """Median ms of ``work`` queued on ``stream`` between two CUDA events (warm)."""
    times = []
    with torch.cuda.stream(stream):
        work()
        for _ in range(repeat):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            work()
            end.record(stream)
            end.synchronize()
            times.append(start.elapsed_time(end))
    return float(np.median(times))


def _graph_denominators(engine, shape) -> dict:
    """The engine's graph replay (device-resident) and the pipeline graph the run captured for a full batch."""
    import torch

    from regenrt.runtime.device import staging

    runner = engine.runner
    with runner._lock:
        runner.buffers(shape)
        engine_ms = _events_ms(torch, runner.torch_stream, lambda: runner.execute(shape))
        stage, _ = staging(runner)
        graphs = [slot.graph for key, slot in stage.slots.items() if key[0] == shape and slot.graph]
        pipeline_ms = _events_ms(torch, runner.torch_stream, graphs[0].replay) if graphs else None
    out = {"graph_items_per_s": shape[0] / engine_ms * 1e3, "engine_graph_ms": engine_ms}
    if pipeline_ms is not None:
        out.update({"pipeline_graph_ms": pipeline_ms, "pipeline_graph_vs_engine_graph": pipeline_ms / engine_ms})
    return out
