"""Project-wide pytest switches: ``pytest --benchmark`` runs the benchmark suite with timing.

Plain ``pytest`` runs the tests and a smoke pass of the benchmarks: pytest-benchmark disabled (each benchmarked
call runs once) and only each benchmark's smoke cases (a module's ``SMOKE`` dict of allowed parameter values;
without one, its first parameter combination). ``pytest --benchmark`` runs only ``benchmarks/``, every case,
timed, and saves the results as JSON under ``.benchmarks/`` (compare runs with ``--benchmark-compare``).
"""
import os
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).parent / "benchmarks"
# smp and timm import with torchvision's _meta_registrations stubbed (tests/_site/sitecustomize.py says why): in
# this process, and through PYTHONPATH in every subprocess the tests start. A test-environment workaround only.
_SITE = Path(__file__).parent / "tests" / "_site"
sys.modules.setdefault("torchvision._meta_registrations", __import__("types").ModuleType("_meta_registrations"))

os.environ["PYTHONPATH"] = os.pathsep.join([str(_SITE), *filter(None, [os.environ.get("PYTHONPATH")])])


def pytest_addoption(parser):
    parser.addoption("--benchmark", action="store_true",
                     help="regenrt: run the benchmark suite (benchmarks/) timed, every case, results saved as JSON "
                          "under .benchmarks/; without it benchmarks run once each as a smoke check")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if not hasattr(config.option, "benchmark_disable"):
        return  # pytest-benchmark is not installed: benchmarks are skipped by their own import
    if config.getoption("--benchmark"):
        config.option.benchmark_disable = False
        config.option.benchmark_autosave = True
    else:
        config.option.benchmark_disable = True


def _in_benchmarks(item) -> bool:
    return BENCH_DIR in Path(str(item.fspath)).parents


def _smoke_case(item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return True
    allowed = getattr(item.module, "SMOKE", None)
    if allowed is None:
        return all(index == 0 for index in callspec.indices.values())
    return all(callspec.params[name] in values for name, values in allowed.items() if name in callspec.params)


def pytest_collection_modifyitems(config, items):
    benchmark = config.getoption("--benchmark")
    keep, drop = [], []
    for item in items:
        if _in_benchmarks(item):
            (keep if benchmark or _smoke_case(item) else drop).append(item)
        else:
            (drop if benchmark else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    config.stash[_DROPPED] = (sum(_in_benchmarks(item) for item in drop), sum(not _in_benchmarks(item) for item in drop))


_DROPPED = pytest.StashKey[tuple]()


def pytest_terminal_summary(terminalreporter, config):
    """Say what the deselected items are (else a bare "282 deselected" reads like tests lost)."""
    benchmarks, tests = config.stash.get(_DROPPED, (0, 0))
    if benchmarks:
        terminalreporter.write_line(f"{benchmarks} deselected: benchmark cases beyond each benchmark's smoke case "
                                    "(pytest --benchmark runs them all, timed)")
    if tests:
        terminalreporter.write_line(f"{tests} deselected: tests (pytest --benchmark runs only benchmarks/)")


@pytest.fixture(scope="session", autouse=True)
def _environment_properties(record_testsuite_property):
    """The junit report names the environment (tools/test_summary.py prints it): NumPy and Python versions."""
    import platform

    import numpy

    record_testsuite_property("numpy", numpy.__version__)
    record_testsuite_property("python", platform.python_version())
