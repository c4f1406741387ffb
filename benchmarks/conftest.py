"""Benchmarks: pytest-benchmark tests that also assert parity. Run with `python -m pytest benchmarks`."""
import platform

import pytest


def pytest_benchmark_update_machine_info(config, machine_info):
    import numpy
    import onnxruntime
    import torch

    machine_info["versions"] = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                                "numpy": numpy.__version__, "python": platform.python_version()}
    try:
        import cpuinfo

        flags = set(cpuinfo.get_cpu_info().get("flags", []))
        machine_info["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except ImportError:
        pass


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")
