"""The torch backend's buffered path (the one CUDA runs: per-shape input/output buffers allocated under
inference mode) and its FP16 model preparation, run on CPU tensors: the defects a GPU would hit first."""
import numpy as np
import pytest
import torch

from regenrt.models import build_from_state_dict, create_model
from regenrt.models.modes import BatchStatNorm2d, with_mode
from regenrt.runtime.backends.pytorch import TorchRunner, prepare_model, save_artefact


def _artefact(tmp_path, mode="eval"):
    torch.manual_seed(0)
    model = create_model("unet_128", ngf=4, norm="batch").eval()
    loaded = build_from_state_dict(model.state_dict())
    metadata = {"task": "inpainting", "mode": mode, "precision": "fp16"}
    return model, save_artefact(tmp_path / "model.torch.pt", model.state_dict(), loaded.arch.name, loaded.config,
                                metadata)


def test_buffered_infer_fills_inference_buffers_and_returns_independent_results(tmp_path):
    """The CUDA path's host interface on CPU tensors: the buffers are inference tensors (allocated under
    inference mode), so filling them outside inference mode raised on the first call; results must not alias the
    reused output buffer; two shapes (a full batch and a tail) each get their own buffers."""
    model, path = _artefact(tmp_path)
    runner = TorchRunner(path, "cpu", buffered=True)
    rng = np.random.default_rng(0)
    full, tail = (rng.uniform(-1, 1, (n, 3, 128, 128)).astype(np.float32) for n in (2, 1))
    a = runner.infer(full)
    b = runner.infer(tail)
    a_again = runner.infer(full[::-1].copy())
    assert set(runner._slots) == {(2, 3, 128, 128), (1, 3, 128, 128)}
    assert runner._slots[(2, 3, 128, 128)][0].is_inference()  # the buffers really are inference tensors
    with torch.no_grad():
        for x, y in ((full, a), (tail, b), (full[::-1].copy(), a_again)):
            assert np.abs(model(torch.from_numpy(x)).numpy() - y).max() <= 1e-5
    assert not np.shares_memory(a, a_again) and np.abs(a - a_again[::-1]).max() <= 1e-5


def test_batch_statistics_stay_fp32_in_an_fp16_model():
    """batch-stats mode in FP16: (x - mean)^2 overflows FP16 once |x - mean| > 256, the variance becomes inf and
    the layer outputs zeros. The runner's FP16 preparation keeps the statistics in FP32 (as the ONNX FP16
    converter keeps reductions in FP32)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                torch.nn.Conv2d(8, 4, 3, padding=1))
    x = torch.randn(2, 3, 16, 16) * 400  # activations far beyond FP16's sqrt(65504) = 256 from their mean
    reference = with_mode(model, "batch-stats")(x)
    h = model[0].half()(x.half())  # the defect, as the layer computed it before: statistics in FP16
    centred = h - h.mean(dim=(0, 2, 3), keepdim=True)
    assert not torch.isfinite((centred * centred).mean(dim=(0, 2, 3))).all()
    model[0].float()
    for candidate in (with_mode(model, "batch-stats").half(), prepare_model(model, "batch-stats", torch.float16, "cpu")):
        got = candidate(x.half()).float()
        assert torch.isfinite(got).all()
        assert (got - reference).abs().max() <= 2e-2 * reference.abs().max()
    prepared = prepare_model(model, "batch-stats", torch.float16, "cpu")
    assert all(m.weight.dtype == torch.float32 for m in prepared.modules() if isinstance(m, BatchStatNorm2d))


def test_channels_last_option_gives_the_same_outputs_in_contiguous_buffers(tmp_path):
    """The NHWC option (measured by the GPU benchmark as torch-cuda-fp16-nhwc): weights and the model's input in
    channels-last, the output buffer still plain NCHW (what the post-kernels read), the numbers unchanged."""
    model, path = _artefact(tmp_path)
    runner = TorchRunner(path, "cpu", buffered=True, channels_last=True)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 128, 128)).astype(np.float32)
    y = runner.infer(x)
    conv = next(m for m in runner.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.shape[1] > 1
    inp, out = runner.buffers(x.shape)
    assert inp.is_contiguous() and out.is_contiguous()
    with torch.no_grad():
        assert np.abs(model(torch.from_numpy(x)).numpy() - y).max() <= 1e-5


def test_buffers_are_kept_for_a_bounded_number_of_shapes(tmp_path, monkeypatch):
    """Inputs of many sizes: the least recently used shapes' buffers (and graphs) go; results stay right."""
    from regenrt.runtime import lru

    monkeypatch.setattr(lru, "MAX_SHAPES", 3)
    model, path = _artefact(tmp_path)
    runner = TorchRunner(path, "cpu", buffered=True)
    xs = {n: np.random.default_rng(n).uniform(-1, 1, (n, 3, 128, 128)).astype(np.float32) for n in (1, 2, 3, 4)}
    for n in (1, 2, 3, 1, 4):  # 1 used again before 4 arrives: 2 is the oldest and goes
        y = runner.infer(xs[n])
        with torch.no_grad():
            assert np.abs(model(torch.from_numpy(xs[n])).numpy() - y).max() <= 1e-5
    assert [s[0] for s in runner._slots] == [3, 1, 4]


def test_buffers_are_bounded_by_bytes_too(tmp_path, monkeypatch):
    """Large shapes fill a GPU before 16 of them are kept: the bytes a shape holds (buffers, and on a GPU the
    graph's memory pool) count against REGENRT_GPU_CACHE_MB (default: 40 % of the GPU's memory)."""
    _, path = _artefact(tmp_path)
    one = 4 * (2 * 3 * 128 * 128 + 2 * 3 * 128 * 128)  # a batch of 2: input and output float32
    monkeypatch.setenv("REGENRT_GPU_CACHE_MB", str(2.5 * one / (1 << 20)))
    runner = TorchRunner(path, "cpu", buffered=True)
    for n in (2, 1, 2, 1):
        runner.infer(np.zeros((n, 3, 128, 128), np.float32))
    assert len(runner._slots) == 2
    runner.infer(np.zeros((3, 3, 128, 128), np.float32))  # 1.5 x one more: the oldest (2) goes
    assert [s[0] for s in runner._slots] == [1, 3] and runner._slots.nbytes <= 2.5 * one
