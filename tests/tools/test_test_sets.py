"""The quick set and the full set (conftest.py): what a plain run leaves out, what --full adds, that a test named
on the command line runs, and that a misspelt case is an error rather than a slow case left in the quick set."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TESTS = '''
import pytest

def test_quick():
    pass

@pytest.mark.full
def test_slow():
    pass

@pytest.mark.full(cases=["b"])
@pytest.mark.parametrize("x", ["a", "b"])
def test_some(x):
    pass
'''


def _project(tmp_path: Path, tests: str = TESTS) -> Path:
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    full: the full set\n")
    (tmp_path / "test_sets.py").write_text(tests)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "test_bench.py").write_text("def test_bench():\n    pass\n")
    return tmp_path


def _collect(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *args],
                          cwd=root, capture_output=True, text=True, timeout=120)


def _ids(result) -> set[str]:
    return {line for line in result.stdout.splitlines() if "::" in line}


def test_a_plain_run_leaves_out_the_full_tests_and_says_so_and_full_runs_them(tmp_path):
    root = _project(tmp_path)
    quick = _collect(root, "test_sets.py")
    assert _ids(quick) == {"test_sets.py::test_quick", "test_sets.py::test_some[a]"}, quick.stdout
    assert "2 deselected: tests of the full set only" in quick.stdout
    full = _collect(root, "--full", "test_sets.py")
    assert _ids(full) == {"test_sets.py::test_quick", "test_sets.py::test_slow", "test_sets.py::test_some[a]",
                          "test_sets.py::test_some[b]"}, full.stdout
    named = _collect(root, "test_sets.py::test_slow", "test_sets.py::test_some[b]")
    assert _ids(named) == {"test_sets.py::test_slow", "test_sets.py::test_some[b]"}, named.stdout


def test_benchmarks_are_collected_with_full_or_when_named(tmp_path):
    root = _project(tmp_path)
    assert not any("benchmarks" in i for i in _ids(_collect(root)))
    assert "benchmarks/test_bench.py::test_bench" in _ids(_collect(root, "--full"))
    assert "benchmarks/test_bench.py::test_bench" in _ids(_collect(root, "benchmarks"))


def test_a_misspelt_case_is_an_error(tmp_path):
    root = _project(tmp_path, TESTS.replace('cases=["b"]', 'cases=["c"]'))
    result = _collect(root, "test_sets.py")
    assert result.returncode != 0 and "names cases it does not have: ['c']" in result.stdout + result.stderr
