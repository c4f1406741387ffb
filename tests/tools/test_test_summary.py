"""tools/test_summary.py: one line for a run made of two pytest runs (main and serving environments)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from test_summary import summarize  # noqa: E402


def _report(path: Path, numpy: str, cases: dict[str, str], not_run_full: int | None = None) -> Path:
    body = {"passed": "", "skipped": '<skipped message="not here"/>', "failed": '<failure message="boom"/>',
            "error": '<error message="setup"/>'}
    rows = "".join(f'<testcase classname="t" name="{name}" time="0.1">{body[outcome]}</testcase>'
                   for name, outcome in cases.items())
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest" time="60"><properties>'
                    f'<property name="numpy" value="{numpy}"/>'
                    + ("" if not_run_full is None else f'<property name="not_run_full" value="{not_run_full}"/>')
                    + f'</properties>{rows}</testsuite></testsuites>')
    return path


def test_a_test_skipped_in_one_environment_and_passed_in_the_other_counts_once_as_passed(tmp_path):
    main = _report(tmp_path / "main.xml", "2.3.5", {"a": "passed", "serve": "skipped", "gone": "skipped"})
    serving = _report(tmp_path / "serving.xml", "1.26.4", {"serve": "passed"})
    line, ok = summarize([main, serving])
    assert ok and line.startswith("PASSED: 2 passed, 1 skipped, 0 failed in 2.0 min")
    assert "main (numpy 2.3.5): 1 passed, 2 skipped" in line and "serving (numpy 1.26.4): 1 passed" in line
    assert "3 distinct tests, each counted once" in line  # the per-environment counts add up to more


def test_a_failure_or_error_anywhere_fails_and_a_missing_report_fails(tmp_path):
    main = _report(tmp_path / "main.xml", "2.3.5", {"a": "passed", "b": "error"})
    serving = _report(tmp_path / "serving.xml", "1.26.4", {"a": "failed"})
    line, ok = summarize([main, serving])
    assert not ok and "0 passed, 0 skipped, 2 failed" in line
    line, ok = summarize([_report(tmp_path / "m.xml", "2", {"a": "passed"}), tmp_path / "absent.xml"])
    assert not ok and "absent: NO REPORT" in line


def test_a_quick_run_says_how_many_tests_of_the_full_set_it_left_out(tmp_path):
    quick = _report(tmp_path / "main.xml", "2", {"a": "passed"}, not_run_full=43)
    line, ok = summarize([quick, _report(tmp_path / "serving.xml", "1", {"s": "passed"}, not_run_full=0)])
    assert ok and "The quick set: 43 slower tests of the full set not run (./dev.sh test --full" in line
    line, _ = summarize([_report(tmp_path / "full.xml", "2", {"a": "passed"}, not_run_full=0)])
    assert "quick set" not in line
