"""Kernel benchmarks: numba CPU vs the NumPy reference vs an OpenCV equivalent vs a memory copy of the same bytes.

All in one run. The copy baseline copies (bytes read + bytes written) / 2 so that its traffic equals the
kernel's; every implementation writes into preallocated buffers, as the copy does. The OpenCV rows are what a
user would write with OpenCV (``addWeighted`` to scale/round/saturate, ``merge``, ``copyTo`` under the mask); for
phase they skip the wrap of out-of-range values, so they are a lower bound rather than an equal.
Goals (issue 4, this machine): each numba kernel <= 2x the copy time and >= 5x faster than the reference at
512x512, batch 16 — the terminal summary prints these ratios.
"""
import numpy as np
import pytest

from regenrt.kernels import get_kernels
from regenrt.kernels import reference as ref
from regenrt.tasks.synthetic import box_masks

SIZES = [256, 512, 1024]
BATCHES = [1, 16]
IMPLS = ["numba", "numpy", "opencv", "copy"]


def _phase_case(n, size):
    rng = np.random.default_rng(0)
    phases = rng.uniform(-np.pi, np.pi, (n, size, size)).astype(np.float32)
    out = np.empty((n, 1, size, size), np.float32)

    def opencv(cv2):
        for i in range(n):
            cv2.addWeighted(phases[i], 1 / np.pi, phases[i], 0.0, 0.0, dst=out[i, 0], dtype=cv2.CV_32F)

    def check(run):
        run()
        expected = np.empty_like(out)
        for i in range(n):
            ref.phase_normalize(phases[i], expected, i)
        return float(np.abs(out - expected).max())

    return (lambda k: [k.phase_normalize(phases[i], out, i) for i in range(n)]), opencv, check, \
        phases.nbytes + out.nbytes


def _composite_case(n, size):
    rng = np.random.default_rng(1)
    gen = rng.uniform(-1, 1, (n, 3, size, size)).astype(np.float32)
    pics = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = box_masks(n, size, size)[0] * 255
    out = np.empty_like(pics)

    def opencv(cv2):
        for i in range(n):
            planes = [cv2.addWeighted(g, 127.5, g, 0.0, 127.5, dtype=cv2.CV_8U) for g in gen[i]]
            np.copyto(out[i], pics[i])
            cv2.copyTo(cv2.merge(planes), masks[i], out[i])

    def check(run):
        run()
        expected = np.stack([ref.composite(gen[i], pics[i], masks[i]) for i in range(n)])
        return float(np.abs(out.astype(np.int16) - expected).max())

    return (lambda k: [k.composite(gen[i], pics[i], masks[i], out=out[i]) for i in range(n)]), opencv, check, \
        gen.nbytes + pics.nbytes + masks.nbytes + out.nbytes


CASES = {"phase_normalize": _phase_case, "composite": _composite_case}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kernel", list(CASES))
def test_kernel(benchmark, kernel, size, batch, impl):
    run, opencv, check, traffic = CASES[kernel](batch, size)
    benchmark.group = f"kernel {kernel} {batch}x{size}x{size}"
    benchmark.extra_info.update({"kernel": kernel, "impl": impl, "bytes": traffic})
    if impl == "copy":
        src = np.ones(traffic // 2, np.uint8)
        dst = np.empty_like(src)
        benchmark(np.copyto, dst, src)
        return
    if impl == "opencv":
        cv2 = pytest.importorskip("cv2", reason="OpenCV rows need `pip install opencv-python-headless`")
        call = (opencv, cv2)
    else:
        call = (run, get_kernels(impl))
    benchmark.extra_info["max_abs_vs_reference"] = error = check(lambda: call[0](call[1]))  # also compiles
    if impl != "opencv":
        assert error <= (1e-6 if kernel == "phase_normalize" else 0)
    benchmark(*call)
