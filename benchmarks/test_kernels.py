"""Kernel benchmarks: numba CPU vs the NumPy reference vs a memory copy moving the same bytes, in one run.

The copy baseline moves (bytes read + bytes written) / 2 so that its traffic equals the kernel's.
Goals (issue 4, this machine): each numba kernel <= 2x the copy time and >= 5x faster than the reference at
512x512, batch 16.
"""
import numpy as np
import pytest

from regenrt.kernels import get_kernels
from regenrt.kernels import reference as ref
from regenrt.tasks.synthetic import box_masks

SIZES = [256, 512, 1024]
BATCHES = [1, 16]
IMPLS = ["numba", "numpy", "copy"]


def _phase_case(n, size):
    rng = np.random.default_rng(0)
    phases = rng.uniform(-np.pi, np.pi, (n, size, size)).astype(np.float32)
    out = np.empty((n, 1, size, size), np.float32)
    traffic = phases.nbytes + out.nbytes
    return (lambda k: [k.phase_normalize(phases[i], out, i) for i in range(n)]), traffic


def _composite_case(n, size):
    rng = np.random.default_rng(1)
    gen = rng.uniform(-1, 1, (n, 3, size, size)).astype(np.float32)
    pics = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = box_masks(n, size, size)[0] * 255
    traffic = gen.nbytes + pics.nbytes + masks.nbytes + pics.nbytes
    return (lambda k: [k.composite(gen[i], pics[i], masks[i]) for i in range(n)]), traffic


CASES = {"phase_normalize": _phase_case, "composite": _composite_case}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kernel", list(CASES))
def test_kernel(benchmark, kernel, size, batch, impl):
    run, traffic = CASES[kernel](batch, size)
    benchmark.group = f"{kernel} {batch}x{size}x{size}"
    benchmark.extra_info.update({"kernel": kernel, "impl": impl, "bytes": traffic})
    if impl == "copy":
        src = np.ones(traffic // 2, np.uint8)
        dst = np.empty_like(src)
        benchmark(np.copyto, dst, src)
        return
    kernels = get_kernels(impl)
    run(kernels)  # compile / warm up outside the timing
    benchmark(run, kernels)
