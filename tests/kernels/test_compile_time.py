"""A first run's numba compilation is measured and said beside run-infer's speed; a run whose kernels come from
numba's cache says nothing of it."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from regenrt.kernels.compile_time import compile_time
from regenrt.runtime.pipeline import Summary

numba = pytest.importorskip("numba")


def test_compilations_are_timed_from_any_thread_and_a_compiled_function_costs_nothing_more():
    @numba.njit
    def f(x):
        return x * 2 + 1

    @numba.njit
    def g(x):
        return x - 3

    with compile_time() as first:
        f(np.arange(3))
        worker = threading.Thread(target=g, args=(np.arange(3),))
        worker.start()
        worker.join()
    assert first.seconds > 0.01  # two functions compiled, one on another thread
    with compile_time() as again:
        f(np.arange(3))
        g(np.arange(3))
    assert again.seconds == 0.0


def test_the_summary_says_how_much_of_the_wall_time_was_compiling():
    line = Summary(total=4, done=4, wall_s=5.0, compile_s=3.9).text()
    assert "0.8 items/s over 5.0s (3.9s of it numba compiling its kernels, once: later runs load them from its " \
           "cache)" in line
    assert "numba" not in Summary(total=4, done=4, wall_s=5.0, compile_s=0.1).text()


def test_the_run_page_says_it_too(tmp_path):
    from regenrt.report.run_page import run_report

    page = run_report(Summary(total=4, done=4, wall_s=5.0, compile_s=3.9), tmp_path, tmp_path, "inpainting")
    assert "over 5.0 s (3.9s of it numba compiling its kernels" in page
    assert "numba" not in run_report(Summary(total=4, done=4, wall_s=5.0), tmp_path, tmp_path, "inpainting")


@pytest.mark.full
def test_a_first_run_says_it_compiled_and_the_second_does_not(pix2pix_engine_dir, tmp_path):
    """run-infer with the numba kernels and an empty numba cache (NUMBA_CACHE_DIR), twice."""
    from ..runtime.helpers import save_png
    from regenrt.tasks.synthetic import box_masks, synthetic_pictures

    pictures = synthetic_pictures(2, 256, 256, 3, seed=1)
    masks, _ = box_masks(2, 256, 256, seed=2)
    for i, (p, m) in enumerate(zip(pictures, masks)):
        save_png(tmp_path / "in" / f"p{i}.png", p)
        save_png(tmp_path / "masks" / f"p{i}_mask.png", (m * 255).astype(np.uint8))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"), "PYTHONWARNINGS": "ignore"}

    def run(out):
        return subprocess.run([sys.executable, "-m", "regenrt.cli.run_infer", "--engine", pix2pix_engine_dir,
                               "--input", tmp_path / "in", "--masks", tmp_path / "masks", "--output", tmp_path / out,
                               "--kernels", "numba"], capture_output=True, text=True, env=env, timeout=600)

    first, second = run("o1"), run("o2")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "of it numba compiling its kernels" in first.stdout, first.stdout
    assert "numba compiling" not in second.stdout, second.stdout
