"""On a real NVIDIA GPU: the torch-CUDA FP16 engine (export, gate, CUDA graphs), the numba CUDA kernels on torch
CUDA tensors, and the whole pipeline with the kernels on the engine's device buffers. TensorRT: marked ``trt``."""
import importlib.util
import json

import numpy as np
import pytest
import torch

from regenrt.export.gpu import GpuOptions
from regenrt.export.parity import compare
from regenrt.export.pipeline import export_checkpoint
from regenrt.kernels import reference as ref
from regenrt.runtime import Engine
from regenrt.runtime.device import on_device
from regenrt.runtime.pipeline import run_directory
from regenrt.tasks.runtime import RunOptions
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

from ..runtime.helpers import read_png, save_png


@pytest.fixture(scope="module")
def gpu_export(pix2pix_fixture, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_export")
    export_checkpoint(pix2pix_fixture[0], out, parity_samples=2, gpu=GpuOptions("torch"))
    return out


def test_export_gates_and_records_the_torch_cuda_engine(gpu_export, pix2pix_fixture):
    record = json.loads((gpu_export / "engine.json").read_text())
    assert record["engine"] == "model.torch.pt" and record["device"] == "cuda" and record["precision"] == "fp16"
    assert record["cpu_engine"]["device"] == "cpu"
    rows = [r for r in json.loads((gpu_export / "parity.json").read_text())["rows"] if r["artefact"] == "model.torch.pt"]
    assert rows and all(r["passed"] and r["precision"] == "fp16" for r in rows)
    engine = Engine.load(gpu_export)
    assert engine.device == "cuda" and engine.runner.precision == "fp16" and on_device(engine)
    _, ref_data = pix2pix_fixture
    x = ref_data["x"].astype(np.float32)
    assert compare(ref_data["y"], engine.infer(x))["psnr_db"] >= 40


def test_cuda_graph_replay_overwrites_outputs(gpu_export):
    engine = Engine.load(gpu_export / "model.torch.pt", device="cuda")
    runner = engine.runner
    rng = np.random.default_rng(0)
    first, second = (rng.uniform(-1, 1, (2, 3, 256, 256)).astype(np.float32) for _ in range(2))
    a = runner.infer(first)
    b = runner.infer(second)  # same shape: graph replay on the same buffers
    assert runner._slots[(2, 3, 256, 256)][2] is not None  # a graph was captured for this shape
    eager = Engine.load(gpu_export / "model.torch.pt", device="cuda")
    eager.runner.cuda_graphs = False
    for x, y in ((first, a), (second, b)):  # each replay reproduces eager FP16 on its own input
        assert np.abs(eager.infer(x) - y).max() <= 1e-2
    assert np.abs(a - b).max() > 0.1  # and the two inputs really give different outputs (not a stale buffer)


def test_kernels_on_torch_cuda_tensors():
    from numba import cuda

    from regenrt.errors import InputError
    from regenrt.kernels import numba_cuda as kc

    stream = cuda.external_stream(torch.cuda.current_stream().cuda_stream)
    phase = np.random.default_rng(1).uniform(-5, 5, (64, 96)).astype(np.float32)
    out = torch.zeros((2, 3, 64, 96), device="cuda")
    kc.phase_normalize(torch.from_numpy(phase).cuda(), out, 1, scale="01", fftshift=True, stream=stream)
    expected = np.zeros((2, 3, 64, 96), np.float32)
    ref.phase_normalize(phase, expected, 1, scale="01", fftshift=True)
    torch.cuda.synchronize()
    assert np.abs(out.cpu().numpy() - expected).max() <= 1e-6

    pic = synthetic_pictures(1, 64, 96, 3, seed=2)[0]
    mask = box_masks(1, 64, 96, seed=3)[0][0] * 255
    gen = np.random.default_rng(4).uniform(-1.1, 1.1, (3, 64, 96)).astype(np.float32)
    result = torch.empty((64, 96, 3), dtype=torch.uint8, device="cuda")
    kc.composite(torch.from_numpy(gen).cuda(), torch.from_numpy(pic).cuda(), torch.from_numpy(mask).cuda(), result,
                 stream=stream)
    torch.cuda.synchronize()
    assert np.array_equal(result.cpu().numpy(), ref.composite(gen, pic, mask))
    with pytest.raises(InputError, match="device array"):
        kc.composite(gen, torch.from_numpy(pic).cuda(), torch.from_numpy(mask).cuda(), result)


def _inpainting_inputs(tmp_path):
    """6 pictures with box masks at batch 4: a full batch and a tail batch."""
    pictures = synthetic_pictures(6, 256, 256, 3, seed=8)
    masks = box_masks(6, 256, 256, seed=9)[0] * 255
    for i, (p, m) in enumerate(zip(pictures, masks)):
        save_png(tmp_path / "in" / f"p{i}.png", p)
        save_png(tmp_path / "masks" / f"p{i}_mask.png", m)
    return pictures, masks, RunOptions(batch_size=4, masks=tmp_path / "masks")


def _check_gpu_against_cpu(tmp_path, pictures, masks):
    """Known pixels exact on the GPU path; the rest close to the CPU pipeline's."""
    for i in range(len(pictures)):
        got, cpu = read_png(tmp_path / "gpu" / f"p{i}.png"), read_png(tmp_path / "cpu" / f"p{i}.png")
        known = masks[i] == 0
        assert np.array_equal(got[known], pictures[i][known])
        assert compare(cpu[None].astype(np.float32), got[None].astype(np.float32))["psnr_db"] >= 35


def test_pipeline_on_gpu_keeps_known_pixels_and_matches_cpu(gpu_export, tmp_path):
    pictures, masks, options = _inpainting_inputs(tmp_path)
    gpu = Engine.load(gpu_export)
    summary = run_directory(gpu, tmp_path / "in", tmp_path / "gpu", options)
    assert (summary.done, summary.failed) == (6, 0)
    run_directory(Engine.load(gpu_export, device="cpu"), tmp_path / "in", tmp_path / "cpu", options)
    _check_gpu_against_cpu(tmp_path, pictures, masks)


@pytest.mark.trt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed")
def test_tensorrt_export_and_run(pix2pix_fixture, tmp_path):
    export_checkpoint(pix2pix_fixture[0], tmp_path, parity_samples=2, gpu=GpuOptions("tensorrt", max_batch=4))
    fingerprint = json.loads((tmp_path / "model.engine.json").read_text())
    assert fingerprint["verified"] and fingerprint["layer_precisions"]["fp16"] > 0
    engine = Engine.load(tmp_path)
    assert engine.backend.name == "tensorrt" and on_device(engine)
    _, ref_data = pix2pix_fixture
    assert compare(ref_data["y"], engine.infer(ref_data["x"].astype(np.float32)))["psnr_db"] >= 40


@pytest.mark.trt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed")
@pytest.mark.parametrize("graphs", [False, True])
def test_tensorrt_through_run_directory_full_and_tail_batches(pix2pix_fixture, tmp_path, graphs):
    """6 inputs at batch 4: two shapes, each with its own execution context (and graph), kernels on the engine's
    stream; known pixels exact, the rest close to the CPU pipeline."""
    export_checkpoint(pix2pix_fixture[0], tmp_path / "e", parity_samples=1, gpu=GpuOptions("tensorrt", max_batch=4))
    pictures, masks, options = _inpainting_inputs(tmp_path)
    engine = Engine.load(tmp_path / "e")
    engine.runner.cuda_graphs = graphs
    assert engine.backend.name == "tensorrt" and on_device(engine)
    assert run_directory(engine, tmp_path / "in", tmp_path / "gpu", options).done == 6
    contexts = {shape: slot[0] for shape, slot in engine.runner._slots.items()}
    assert len(contexts) == 2 and len({id(c) for c in contexts.values()}) == 2
    run_directory(Engine.load(tmp_path / "e", device="cpu"), tmp_path / "in", tmp_path / "cpu", options)
    _check_gpu_against_cpu(tmp_path, pictures, masks)


def test_capture_survives_another_thread_allocating(gpu_export):
    """Thread-local capture: a second engine, a Ray or Triton worker allocating and synchronizing in another thread
    while a shape's graph is captured must not invalidate the capture (it does in the default global mode)."""
    import threading

    engine = Engine.load(gpu_export / "model.torch.pt", device="cuda")
    stop = threading.Event()

    def noisy():  # its own stream, and a stream synchronize (a device-wide one breaks any capture, in any mode)
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            while not stop.is_set():
                (torch.empty(1 << 20, device="cuda") + 1).sum()
                stream.synchronize()

    worker = threading.Thread(target=noisy)
    worker.start()
    try:
        for n in (1, 2, 3):  # three shapes: three captures while the other thread allocates
            x = np.random.default_rng(n).uniform(-1, 1, (n, 3, 256, 256)).astype(np.float32)
            assert np.isfinite(engine.infer(x)).all()
    finally:
        stop.set()
        worker.join()


def test_pipeline_graph_matches_the_eager_pipeline(gpu_export, tmp_path):
    """run-infer's whole device pipeline captured in one CUDA graph per shape gives the eager pipeline's files."""
    pictures = synthetic_pictures(6, 256, 256, 3, seed=3)
    masks = box_masks(6, 256, 256, seed=4)[0] * 255
    for i, (p, m) in enumerate(zip(pictures, masks)):
        save_png(tmp_path / "in" / f"p{i}.png", p)
        save_png(tmp_path / "masks" / f"p{i}.png", m)
    outs, engines = {}, {}
    for graph in (False, True):  # a fresh engine each: the graph compared with the eager steps, not with itself
        engines[graph] = engine = Engine.load(gpu_export, device="cuda")
        options = RunOptions(batch_size=2, masks=tmp_path / "masks", pipeline_graph=graph)
        summary = run_directory(engine, tmp_path / "in", tmp_path / f"out{graph}", options)
        assert (summary.done, summary.failed) == (6, 0), summary.errors
        outs[graph] = [read_png(tmp_path / f"out{graph}" / f"p{i}.png") for i in range(6)]
    from regenrt.runtime.device import staging

    assert not any(slot.graph is not None for slot in staging(engines[False].runner)[0].slots.values())
    assert any(slot.graph is not None for slot in staging(engines[True].runner)[0].slots.values())
    for a, b in zip(outs[True], outs[False]):
        assert np.mean(a != b) <= 1e-3  # FP16 engine replayed vs eager: at most rare rounding ties
