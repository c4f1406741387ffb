"""Project-wide pytest switches: ``--full`` and ``--benchmark``.

Plain ``pytest`` runs the quick set (about 8 minutes on 2 cores): every test but those marked ``full`` — slower
cases whose capability a quicker test also covers (another architecture of the same family, a second interrupt
kind, the same device path on another task) — and no benchmarks. A test named on the command line
(``path::test``) always runs.

``pytest --full`` (what CI runs, ``./dev.sh test --full``) adds the ``full`` tests and a smoke pass of the
benchmarks: pytest-benchmark disabled (each benchmarked call runs once) and only each benchmark's smoke cases (a
module's ``SMOKE`` dict of allowed parameter values; without one, its first parameter combination).

``pytest --benchmark`` runs only ``benchmarks/``, every case, timed, and saves the results as JSON under
``.benchmarks/`` (compare runs with ``--benchmark-compare``).
"""
import collections
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
    parser.addoption("--full", action="store_true",
                     help="regenrt: also run the tests marked 'full' (slower cases of what the quick set covers) and "
                          "a smoke pass of the benchmarks: what CI runs")
    parser.addoption("--benchmark", action="store_true",
                     help="regenrt: run the benchmark suite (benchmarks/) timed, every case, results saved as JSON "
                          "under .benchmarks/ (--full runs each benchmark's smoke case once, untimed)")


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


def _benchmarks_asked(config) -> bool:
    """--full, --benchmark, or a path under benchmarks/ given on the command line (not testpaths' default)."""
    if config.getoption("--full") or config.getoption("--benchmark"):
        return True
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return False
    return any(BENCH_DIR == p or BENCH_DIR in p.parents
               for p in (Path(a.split("::")[0]).resolve() for a in config.args))


def pytest_ignore_collect(collection_path, config):
    """The quick run does not even collect benchmarks/ (their modules import what only benchmarks need)."""
    if (BENCH_DIR == collection_path or BENCH_DIR in collection_path.parents) and not _benchmarks_asked(config):
        return True
    return None


def _named(config, item) -> bool:
    """The item was named on the command line (``path::test`` or ``path::test[case]``)."""
    return any("::" in arg and (item.nodeid == arg or item.nodeid.startswith(arg.rstrip("/") + "["))
               for arg in (a.replace(os.sep, "/") for a in config.args))


def _why_dropped(config, item) -> str | None:
    """Which set ``item`` is left out of this run for, or None to run it."""
    if config.getoption("--benchmark"):
        return None if _in_benchmarks(item) else "tests"
    if _named(config, item):
        return None
    if _in_benchmarks(item):
        return None if _smoke_case(item) else "benchmark cases"
    return "full" if _marked_full(item) and not config.getoption("--full") else None


def _marked_full(item) -> bool:
    """``@pytest.mark.full`` marks every case of a test; ``@pytest.mark.full(cases=[id, ...])`` those cases."""
    mark = item.get_closest_marker("full")
    if mark is None:
        return False
    cases = mark.kwargs.get("cases")
    callspec = getattr(item, "callspec", None)
    if cases is not None and callspec is not None and callspec.id not in cases:
        return False
    return True


def _check_full_cases(config, items) -> None:
    """A ``full(cases=...)`` naming a case that does not exist is a typo that would leave a slow case in the quick
    set: an error. (Checked where every case was collected: not when the command line names single cases.)"""
    if any("::" in arg for arg in config.args):
        return
    ids: dict[str, set] = collections.defaultdict(set)
    asked: dict[str, set] = {}
    for item in items:
        test = item.nodeid.split("[")[0]
        if getattr(item, "callspec", None) is not None:
            ids[test].add(item.callspec.id)
        mark = item.get_closest_marker("full")
        if mark is not None and "cases" in mark.kwargs:
            asked[test] = set(mark.kwargs["cases"])
    for test, cases in asked.items():
        if not cases <= ids[test]:
            raise pytest.UsageError(f"{test}: @pytest.mark.full names cases it does not have: "
                                    f"{sorted(cases - ids[test])} (its cases: {sorted(ids[test])})")


def pytest_collection_modifyitems(config, items):
    _check_full_cases(config, items)
    keep, drop = [], collections.Counter()
    dropped = []
    for item in items:
        why = _why_dropped(config, item)
        if why is None:
            keep.append(item)
        else:
            drop[why] += 1
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    config.stash[_DROPPED] = drop


_DROPPED = pytest.StashKey[collections.Counter]()
_SAID = {
    "full": "tests of the full set only (marked 'full': slower cases of what the quick set covers); pytest --full "
            "(./dev.sh test --full, what CI runs) runs them",
    "benchmark cases": "benchmark cases beyond each benchmark's smoke case (pytest --benchmark runs them all, timed)",
    "tests": "tests (pytest --benchmark runs only benchmarks/)",
}


def pytest_terminal_summary(terminalreporter, config):
    """Say what the deselected items are (else a bare "282 deselected" reads like tests lost)."""
    for why, count in config.stash.get(_DROPPED, collections.Counter()).items():
        terminalreporter.write_line(f"{count} deselected: {_SAID[why]}")
    if not _benchmarks_asked(config) and config.args_source != pytest.Config.ArgsSource.ARGS:
        terminalreporter.write_line("benchmarks/ not collected: pytest --full runs each benchmark's smoke case, "
                                    "pytest --benchmark every case, timed")


@pytest.fixture(scope="session", autouse=True)
def _environment_properties(record_testsuite_property, request):
    """The junit report names the environment (tools/test_summary.py prints it): NumPy and Python versions, and
    how many tests of the full set this quick run left out."""
    import platform

    import numpy

    record_testsuite_property("numpy", numpy.__version__)
    record_testsuite_property("python", platform.python_version())
    record_testsuite_property("not_run_full", str(request.config.stash.get(_DROPPED, {}).get("full", 0)))
