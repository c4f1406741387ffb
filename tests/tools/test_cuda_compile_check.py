"""tools/cuda_compile_check.py: every kernel of regenrt.kernels.numba_cuda has the argument types its launcher
passes in the check's table (a kernel added without one would never be compiled by it), and without numba-cuda
the check says what to install and exits 2. (The compile itself needs numba-cuda + NVVM: see the tool.)"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("cuda_compile_check", ROOT / "tools" / "cuda_compile_check.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def test_every_kernel_has_its_launch_signature():
    import regenrt.kernels.numba_cuda as kernels

    names = check.kernel_names(kernels)
    assert len(names) >= 7 and names == set(check.signatures())
    for name, sig in check.signatures().items():  # arity matches the kernel's parameters
        assert len(sig) == getattr(kernels, name).py_func.__code__.co_argcount, name


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is not None, reason="numba-cuda is installed here")
def test_without_numba_cuda_it_says_what_to_install():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "cuda_compile_check.py")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and 'pip install "numba-cuda[cu12]"' in done.stdout
