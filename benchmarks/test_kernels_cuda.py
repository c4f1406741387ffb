"""numba CUDA kernels on torch CUDA tensors vs a device-to-device copy of the same bytes, in one run.

Goal (issue 4, on a lent GPU): each kernel >= 60 % of the device-to-device copy bandwidth (``pct_of_copy``
in ``extra_info``; the copy moves (bytes read + bytes written) / 2 so its traffic equals the kernel's). Skipped
without an NVIDIA GPU, and when numba runs in its simulator (plain ``pytest`` runs the tests' simulator set-up in
the same process; run the GPU benchmarks with ``REGENRT_REAL_CUDA=1 pytest --benchmark benchmarks/test_kernels_cuda.py``).
"""
import os

import numpy as np
import pytest
import torch

from regenrt.kernels import reference as ref
from regenrt.tasks.synthetic import box_masks

if not torch.cuda.is_available():
    pytest.skip("no NVIDIA GPU visible to torch", allow_module_level=True)
if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("numba runs in its CUDA simulator in this process (set REGENRT_REAL_CUDA=1)", allow_module_level=True)

from regenrt.kernels import numba_cuda as kc  # noqa: E402  (after the skips: needs a real GPU)

SIZES = [256, 512, 1024]
BATCHES = [1, 16]
SMOKE = {"size": [256], "batch": [1]}


def _phase(n, size, stream):
    rng = np.random.default_rng(0)
    host = rng.uniform(-np.pi, np.pi, (n, size, size)).astype(np.float32)
    phases = torch.from_numpy(host).cuda()
    out = torch.empty((n, 1, size, size), device="cuda")

    def per_item():
        for i in range(n):
            kc.phase_normalize(phases[i], out, i, stream=stream)
        stream.synchronize()

    def batched():
        kc.phase_normalize_batch(phases, out, stream=stream)
        stream.synchronize()

    def check(run):
        out.zero_()
        run()
        expected = np.empty((n, 1, size, size), np.float32)
        for i in range(n):
            ref.phase_normalize(host[i], expected, i)
        return float(np.abs(out.cpu().numpy() - expected).max())

    return {"cuda": per_item, "cuda-batch": batched}, check, 2 * host.nbytes


def _composite(n, size, stream):
    rng = np.random.default_rng(1)
    gen_h = rng.uniform(-1, 1, (n, 3, size, size)).astype(np.float32)
    pics_h = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks_h = box_masks(n, size, size)[0] * 255
    gen, pics, masks = (torch.from_numpy(a).cuda() for a in (gen_h, pics_h, masks_h))
    out = torch.empty_like(pics)

    def per_item():
        for i in range(n):
            kc.composite(gen[i], pics[i], masks[i], out[i], stream=stream)
        stream.synchronize()

    def batched():
        kc.composite_batch(gen, pics, masks, out, stream=stream)
        stream.synchronize()

    def check(run):
        out.zero_()
        run()
        expected = np.stack([ref.composite(gen_h[i], pics_h[i], masks_h[i]) for i in range(n)])
        return float(np.abs(out.cpu().numpy().astype(np.int16) - expected).max())

    return {"cuda": per_item, "cuda-batch": batched}, check, gen_h.nbytes + 2 * pics_h.nbytes + masks_h.nbytes


CASES = {"phase_normalize": _phase, "composite": _composite}


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["cuda", "cuda-batch", "d2d-copy"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kernel", list(CASES))
def test_kernel_cuda(benchmark, kernel, size, batch, impl):
    """``cuda``: one launch per item (the launchers a caller uses on single items); ``cuda-batch``: one launch for
    the batch (what the runtime's GPU path runs); ``d2d-copy``: the bandwidth reference."""
    from numba import cuda

    torch_stream = torch.cuda.Stream()
    stream = cuda.external_stream(torch_stream.cuda_stream)
    runs, check, traffic = CASES[kernel](batch, size, stream)
    benchmark.group = f"cuda kernel {kernel} {batch}x{size}x{size}"
    benchmark.extra_info.update({"kernel": kernel, "impl": impl, "bytes": traffic,
                                 "gpu": torch.cuda.get_device_name(0)})
    if impl == "d2d-copy":
        src = torch.ones(traffic // 2, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)

        def copy():
            with torch.cuda.stream(torch_stream):
                dst.copy_(src)
            torch_stream.synchronize()

        benchmark(copy)
        return
    run = runs[impl]
    benchmark.extra_info["max_abs_vs_reference"] = error = check(run)  # also compiles
    assert error <= (1e-6 if kernel == "phase_normalize" else 0)
    benchmark(run)
