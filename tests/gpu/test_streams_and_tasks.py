"""On a real GPU: every CUDA kernel on a non-default stream behind queued work, synchronizing only that stream
(a kernel or copy issued on another stream races and fails these); the device pipeline of all three tasks
against the CPU pipeline; the torch engine's graphs for a full and a tail batch. Written to catch the defects
of the GPU-path review (issue 12) on the first GPU run."""
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
from regenrt.tasks.runtime.segmentation import PALETTE
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

from ..runtime.helpers import read_png, save_png

H, W = 96, 160


@pytest.fixture()
def streams():
    from numba import cuda

    stream = torch.cuda.Stream()
    return stream, cuda.external_stream(stream.cuda_stream)


def _busy(stream):
    """Queue some milliseconds of work on ``stream``: anything not ordered behind it runs early."""
    with torch.cuda.stream(stream):
        a = torch.randn(2048, 2048, device="cuda")
        for _ in range(8):
            a = torch.tanh(a @ a)
    return a


def _to_device(arr, stream):
    """Host -> device on ``stream``, asynchronously (pinned memory), behind the busy work."""
    with torch.cuda.stream(stream):
        return torch.from_numpy(np.ascontiguousarray(arr)).pin_memory().to("cuda", non_blocking=True)


def _to_host(t, stream):
    with torch.cuda.stream(stream):
        host = t.to("cpu", non_blocking=True)
    stream.synchronize()  # this stream only: no device-wide synchronization hides a wrong stream
    return host.numpy()


@pytest.mark.parametrize("form", ["real", "planes"])
def test_phase_normalize_on_a_stream(streams, form):
    from regenrt.kernels import numba_cuda as kc

    stream, nstream = streams
    rng = np.random.default_rng(0)
    spectrum = (rng.standard_normal((H, W)) + 1j * rng.standard_normal((H, W))).astype(np.complex64)
    expected = np.zeros((2, 1, H, W), np.float32)
    if form == "real":
        host = (np.angle(spectrum) * 2).astype(np.float32)
        ref.phase_normalize(host, expected, 1, scale="01", fftshift=True)
    else:
        host = np.stack([spectrum.real, spectrum.imag]).astype(np.float32)
        ref.phase_normalize(spectrum, expected, 1, scale="01", fftshift=True)
    _busy(stream)
    src = _to_device(host, stream)
    with torch.cuda.stream(stream):
        out = torch.zeros((2, 1, H, W), device="cuda")
    kc.phase_normalize(src, out, 1, scale="01", fftshift=True, stream=nstream)
    assert np.abs(_to_host(out, stream) - expected).max() <= 1e-5


def test_holes_rgb_composite_argmax_on_a_stream(streams):
    from regenrt.kernels import numba_cuda as kc

    stream, nstream = streams
    pic = synthetic_pictures(1, H, W, 3, seed=2)[0]
    mask = box_masks(1, H, W, seed=3)[0][0] * 255
    gen = np.random.default_rng(4).uniform(-1.1, 1.1, (3, H, W)).astype(np.float32)
    logits = np.random.default_rng(5).standard_normal((4, H, W)).astype(np.float32)
    _busy(stream)
    d_pic, d_mask, d_gen, d_logits = (_to_device(a, stream) for a in (pic, mask, gen, logits))
    d_alpha = _to_device(ref.feather_alpha(mask, 3).astype(np.float32), stream)
    with torch.cuda.stream(stream):
        holes = torch.zeros((1, 3, H, W), device="cuda")
        rgb = torch.zeros((2, 3, H, W), device="cuda")
        plain = torch.empty((H, W, 3), dtype=torch.uint8, device="cuda")
        blended = torch.empty((H, W, 3), dtype=torch.uint8, device="cuda")
        labels = torch.empty((H, W), dtype=torch.uint8, device="cuda")
        colours = torch.empty((H, W, 3), dtype=torch.uint8, device="cuda")
    mean, std = _to_device(np.float32(ref.IMAGENET_MEAN), stream), _to_device(np.float32(ref.IMAGENET_STD), stream)
    kc.holes_fill(d_pic, d_mask, holes, 0, 0.0, stream=nstream)
    kc.rgb_normalize(d_pic, mean, std, rgb, 1, stream=nstream)
    kc.composite(d_gen, d_pic, d_mask, plain, stream=nstream)
    kc.composite(d_gen, d_pic, d_mask, blended, alpha=d_alpha, stream=nstream)
    kc.argmax_palette(d_logits, _to_device(PALETTE, stream), labels, colours, stream=nstream)

    expected_holes = np.zeros((1, 3, H, W), np.float32)
    ref.holes_fill(pic, mask, expected_holes, 0)
    expected_rgb = np.zeros((2, 3, H, W), np.float32)
    ref.rgb_normalize(pic, expected_rgb, 1)
    la, ca = ref.argmax_palette(logits, PALETTE)
    assert np.array_equal(_to_host(holes, stream), expected_holes)
    assert np.abs(_to_host(rgb, stream) - expected_rgb).max() <= 1e-6
    assert np.array_equal(_to_host(plain, stream), ref.composite(gen, pic, mask))
    assert np.array_equal(_to_host(blended, stream), ref.composite(gen, pic, mask, feather=3))
    assert np.array_equal(_to_host(labels, stream), la) and np.array_equal(_to_host(colours, stream), ca)


@pytest.fixture(scope="module")
def phase_gpu_export(tmp_path_factory):
    """A generated phase model (no fixture needed: a GPU check carries as little as it can)."""
    from regenrt.models import create_model

    out = tmp_path_factory.mktemp("phase_gpu")
    torch.manual_seed(0)
    model = create_model("deeplabv3plus_r18", in_channels=1, classes=1).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    torch.save(model.state_dict(), out / "phase.pt")
    export_checkpoint(out / "phase.pt", out / "engine", task="phase-recovery", parity_samples=1,
                      input_shape="1x1x256x256", gpu=GpuOptions("torch"))
    return out / "engine"


@pytest.fixture(scope="module")
def segmentation_gpu_export(segmentation_setup, tmp_path_factory):
    _, cpu_engine = segmentation_setup
    out = tmp_path_factory.mktemp("seg_gpu")
    export_checkpoint(cpu_engine.parent / "seg.pt", out, parity_samples=1, input_shape="1x3x64x64",
                      gpu=GpuOptions("torch"))
    return out


def _both(engine_dir, inputs, tmp_path, options):
    gpu = Engine.load(engine_dir)
    assert gpu.device == "cuda" and on_device(gpu)
    summary = run_directory(gpu, inputs, tmp_path / "gpu", options)
    cpu = run_directory(Engine.load(engine_dir, device="cpu"), inputs, tmp_path / "cpu", options)
    assert summary.failed == 0 and summary.done == cpu.done > 0
    return summary


def test_phase_pipeline_on_gpu_matches_cpu(phase_gpu_export, tmp_path):
    """7 inputs at batch 4: a full batch and a tail batch, each its own shape slot and graph."""
    pictures = synthetic_pictures(7, 256, 256, 1, seed=11)
    for i, pic in enumerate(pictures):
        (tmp_path / "in").mkdir(exist_ok=True)
        np.save(tmp_path / "in" / f"p{i}.npy", ref.fourier_phase(pic))
    _both(phase_gpu_export, tmp_path / "in", tmp_path, RunOptions(batch_size=4, save_npy=True))
    for i in range(7):
        got, cpu = np.load(tmp_path / "gpu" / f"p{i}.npy"), np.load(tmp_path / "cpu" / f"p{i}.npy")
        assert compare(cpu[None], got[None])["psnr_db"] >= 40


def test_segmentation_pipeline_on_gpu_matches_cpu(segmentation_gpu_export, tmp_path):
    for i, pic in enumerate(synthetic_pictures(5, 64, 64, 3, seed=12)):
        save_png(tmp_path / "in" / f"s{i}.png", pic)
    _both(segmentation_gpu_export, tmp_path / "in", tmp_path, RunOptions(batch_size=4))
    agree = [np.mean(read_png(tmp_path / "gpu" / f"s{i}_label.png") == read_png(tmp_path / "cpu" / f"s{i}_label.png"))
             for i in range(5)]
    assert min(agree) >= 0.995, agree


def test_torch_graphs_for_full_and_tail_batches(phase_gpu_export):
    engine = Engine.load(phase_gpu_export / "model.torch.pt", device="cuda")
    eager = Engine.load(phase_gpu_export / "model.torch.pt", device="cuda")
    eager.runner.cuda_graphs = False
    rng = np.random.default_rng(0)
    full, tail = (rng.uniform(-1, 1, (n, 1, 256, 256)).astype(np.float32) for n in (4, 3))
    a, b = engine.infer(full), engine.infer(tail)
    a2 = engine.infer(full[::-1].copy())
    slots = engine.runner._slots
    assert slots[(4, 1, 256, 256)][2] is not None and slots[(3, 1, 256, 256)][2] is not None
    assert slots[(4, 1, 256, 256)][0].data_ptr() != slots[(3, 1, 256, 256)][0].data_ptr()
    for x, y in ((full, a), (tail, b), (full[::-1].copy(), a2)):
        assert np.abs(eager.infer(x) - y).max() <= 1e-2  # each replay reproduces eager FP16 on its own input
    assert np.abs(a2[::-1] - a).max() <= 1e-2 and not np.shares_memory(a, a2)
