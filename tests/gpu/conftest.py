"""GPU tests: real CUDA only. They skip with a reason without an NVIDIA GPU, and when numba was put into its
simulator (the default for the CPU test run): run them with ``REGENRT_REAL_CUDA=1 pytest -m gpu``."""
import os

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    reason = None
    if not torch.cuda.is_available():
        reason = "needs an NVIDIA GPU with torch CUDA (none visible here)"
    elif os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        reason = "numba runs in its CUDA simulator in this process: run with REGENRT_REAL_CUDA=1 pytest -m gpu"
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.gpu)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
