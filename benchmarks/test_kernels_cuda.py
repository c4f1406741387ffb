"""numba CUDA kernels on torch CUDA tensors vs a device-to-device copy of the same bytes, in one run.

Goal (on a GPU): every kernel >= 60 % of the device-to-device copy's bandwidth at 16 x 256², >= 80 % at 16 x 1024²
(``pct_of_copy`` in ``extra_info``: the copy moves (bytes read + bytes written) / 2, so its traffic equals the
kernel's). Timed as the hardware runs them, without Python's launch cost: ``REPEAT`` launches captured in one CUDA
graph, the graph replayed between two CUDA events on the launch stream (``event_ms`` = elapsed / REPEAT; the copy
the same way). Correctness first, on the kernel's own stream: the output is poisoned on that stream, the kernel run,
and every output element must differ from the poison where the reference does (then the graph's result is checked
the same way). Skipped without an NVIDIA GPU, and when numba runs in its simulator (plain ``pytest`` runs the tests'
simulator set-up in the same process; run the GPU benchmarks with ``REGENRT_REAL_CUDA=1 pytest --benchmark
benchmarks/test_kernels_cuda.py``).
"""
import os

import numpy as np
import pytest
import torch

from regenrt.kernels import reference as ref
from regenrt.tasks.runtime.segmentation import PALETTE
from regenrt.tasks.synthetic import box_masks

if not torch.cuda.is_available():
    pytest.skip("no NVIDIA GPU visible to torch", allow_module_level=True)
if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("numba runs in its CUDA simulator in this process (set REGENRT_REAL_CUDA=1)", allow_module_level=True)

from regenrt.kernels import numba_cuda as kc  # noqa: E402  (after the skips: needs a real GPU)

SIZES = [256, 1024]
BATCHES = [16]
REPEAT = 20  # launches per graph replay
SMOKE = {"size": [256]}


def _case_phase(n, size):
    host = np.random.default_rng(0).uniform(-4, 4, (n, size, size)).astype(np.float32)
    phases, out = torch.from_numpy(host).cuda(), torch.empty((n, 1, size, size), device="cuda")
    expected = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        ref.phase_normalize(host[i], expected, i)
    return (lambda s: kc.phase_normalize_batch(phases, out, stream=s)), [out], [expected], 2 * host.nbytes


def _case_holes(n, size):
    pics_h = np.random.default_rng(1).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks_h = box_masks(n, size, size)[0] * 255
    pics, masks = torch.from_numpy(pics_h).cuda(), torch.from_numpy(masks_h).cuda()
    out = torch.empty((n, 3, size, size), device="cuda")
    expected = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        ref.holes_fill(pics_h[i], masks_h[i], expected, i)
    return ((lambda s: kc.holes_fill_batch(pics, masks, out, stream=s)), [out], [expected],
            pics_h.nbytes + masks_h.nbytes + expected.nbytes)


def _case_rgb(n, size):
    pics_h = np.random.default_rng(2).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    pics = torch.from_numpy(pics_h).cuda()
    mean, std = (torch.tensor(v, dtype=torch.float32, device="cuda") for v in (ref.IMAGENET_MEAN, ref.IMAGENET_STD))
    out = torch.empty((n, 3, size, size), device="cuda")
    expected = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        ref.rgb_normalize(pics_h[i], expected, i)
    return ((lambda s: kc.rgb_normalize_batch(pics, mean, std, out, stream=s)), [out], [expected],
            pics_h.nbytes + expected.nbytes)


def _case_composite(n, size):
    rng = np.random.default_rng(3)
    gen_h = rng.uniform(-1, 1, (n, 3, size, size)).astype(np.float32)
    pics_h = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks_h = box_masks(n, size, size)[0] * 255
    gen, pics, masks = (torch.from_numpy(a).cuda() for a in (gen_h, pics_h, masks_h))
    out = torch.empty_like(pics)
    bad = torch.empty((n, kc.blocks(size * size)), dtype=torch.int32, device="cuda")
    expected = np.stack([ref.composite(gen_h[i], pics_h[i], masks_h[i]) for i in range(n)])
    return ((lambda s: kc.composite_batch(gen, pics, masks, out, bad=bad, stream=s)), [out, bad],
            [expected, np.zeros(tuple(bad.shape), np.int32)], gen_h.nbytes + 2 * pics_h.nbytes + masks_h.nbytes)


def _case_argmax(n, size, classes=6):
    logits_h = np.random.default_rng(4).standard_normal((n, classes, size, size)).astype(np.float32)
    logits, palette = torch.from_numpy(logits_h).cuda(), torch.from_numpy(PALETTE).cuda()
    labels = torch.empty((n, size, size), dtype=torch.uint8, device="cuda")
    colours = torch.empty((n, size, size, 3), dtype=torch.uint8, device="cuda")
    bad = torch.empty((n, kc.blocks(size * size)), dtype=torch.int32, device="cuda")
    pairs = [ref.argmax_palette(logits_h[i], PALETTE) for i in range(n)]
    return ((lambda s: kc.argmax_palette_batch(logits, palette, labels, colours, bad=bad, stream=s)),
            [labels, colours, bad], [np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]),
                                     np.zeros(tuple(bad.shape), np.int32)],
            logits_h.nbytes + 4 * n * size * size)


CASES = {"phase_normalize": _case_phase, "holes_fill": _case_holes, "rgb_normalize": _case_rgb,
         "composite": _case_composite, "argmax_palette": _case_argmax}


def _poison(outputs, torch_stream):
    with torch.cuda.stream(torch_stream):  # on the kernels' stream: ordered before them, never racing them
        for out in outputs:
            out.view(torch.uint8).fill_(0xA5)


def _check(outputs, expected, torch_stream, what: str) -> float:
    """Max |output - reference|; every element the reference does not equal to the poison must have changed."""
    torch_stream.synchronize()
    worst = 0.0
    for out, want in zip(outputs, expected):
        got = out.cpu().numpy()
        poison = np.full(1, 0xA5, np.uint8).repeat(got.itemsize).view(got.dtype)[0]
        stale = (got == poison) & (want != poison)
        assert not stale.any(), f"{what}: {int(stale.sum())} output element(s) not written"
        worst = max(worst, float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max()))
    return worst


def _graph_ms(work, torch_stream, replays: int = 10) -> tuple:
    """``work`` (one launch) captured REPEAT times in a CUDA graph; median ms per launch over ``replays`` replays,
    timed with CUDA events on the stream."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=torch_stream, capture_error_mode="thread_local"):
        for _ in range(REPEAT):
            work()
    times = []
    with torch.cuda.stream(torch_stream):
        graph.replay()  # warm
        for _ in range(replays):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(torch_stream)
            graph.replay()
            end.record(torch_stream)
            end.synchronize()
            times.append(start.elapsed_time(end) / REPEAT)
    return graph, float(np.median(times))


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["cuda-batch", "d2d-copy"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kernel", list(CASES))
def test_kernel_cuda(benchmark, kernel, size, batch, impl):
    """``cuda-batch``: one launch for the batch (what the runtime's GPU path runs); ``d2d-copy``: the bandwidth
    reference for the same bytes."""
    from numba import cuda

    torch_stream = torch.cuda.Stream()
    stream = cuda.external_stream(torch_stream.cuda_stream)
    launch, outputs, expected, traffic = CASES[kernel](batch, size)
    benchmark.group = f"cuda kernel {kernel} {batch}x{size}x{size}"
    benchmark.extra_info.update({"kernel": kernel, "impl": impl, "bytes": traffic, "batch": batch, "size": size,
                                 "gpu": torch.cuda.get_device_name(0)})
    if impl == "d2d-copy":
        src = torch.ones(traffic // 2, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        graph, ms = _graph_ms(lambda: dst.copy_(src), torch_stream)
    else:
        _poison(outputs, torch_stream)
        launch(stream)  # also compiles (or loads the cached kernel)
        error = _check(outputs, expected, torch_stream, "eager launch")
        graph, ms = _graph_ms(lambda: launch(stream), torch_stream)
        _poison(outputs, torch_stream)
        with torch.cuda.stream(torch_stream):
            graph.replay()
        error = max(error, _check(outputs, expected, torch_stream, "graph replay"))
        benchmark.extra_info["max_abs_vs_reference"] = error
        assert error <= (1e-5 if kernel in ("phase_normalize", "rgb_normalize") else 0)
    benchmark.extra_info["event_ms"] = ms
    benchmark.extra_info["gb_per_s"] = traffic / ms / 1e6

    def replay():
        with torch.cuda.stream(torch_stream):
            graph.replay()
        torch_stream.synchronize()

    benchmark(replay)
