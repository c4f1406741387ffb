"""A pytest plugin that appends one JSON line per finished test to ``$REGENRT_LIVE_RESULTS`` as the stage runs
(``-p gpucheck.live``): a stage killed at its time limit keeps every test it finished, and the row of a benchmark
whose test failed after timing is recorded *with* that failure (pytest-benchmark's own JSON keeps the row and
drops the verdict, and is written only when pytest ends).

Lines: ``{"event": "start", "nodeid"}`` when a test starts; ``{"event": "test", "nodeid", "outcome", "seconds",
"detail", "bench"}`` when it ends (``outcome``: passed, failed, error or skipped; ``bench``: the benchmark's
name, group, median seconds and ``extra_info``, when the test used the ``benchmark`` fixture and it ran);
``{"event": "end", "exitstatus"}`` when pytest ends normally. Each line is flushed and fsynced."""
from __future__ import annotations

import json
import os

import pytest

_PATH = os.environ.get("REGENRT_LIVE_RESULTS")
_REPORTS: dict = {}


def _write(record: dict) -> None:
    if not _PATH:
        return
    with open(_PATH, "a") as sink:
        sink.write(json.dumps(record, default=str) + "\n")
        sink.flush()
        os.fsync(sink.fileno())


def pytest_runtest_logstart(nodeid, location):
    _write({"event": "start", "nodeid": nodeid})


def _bench(item) -> dict | None:
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    if fixture is None:
        return None
    row = {"name": item.name, "fullname": item.nodeid, "group": getattr(fixture, "group", None),
           "extra": dict(getattr(fixture, "extra_info", {}) or {}), "median_s": None}
    stats = getattr(fixture, "stats", None)
    inner = getattr(stats, "stats", None)
    if inner is not None and getattr(inner, "data", None):
        row["median_s"] = float(inner.median)
    return row


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    seen = _REPORTS.setdefault(item.nodeid, {"outcome": "passed", "seconds": 0.0, "detail": "", "bench": None})
    seen["seconds"] += report.duration
    if report.when == "call":
        seen["bench"] = _bench(item)
    if report.skipped and seen["outcome"] == "passed":
        seen["outcome"] = "skipped"
        longrepr = report.longrepr
        seen["detail"] = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)[:400]
    elif report.failed:
        seen["outcome"] = "failed" if report.when == "call" else "error"
        seen["detail"] = " ".join(str(report.longreprtext).split())[-400:]


def pytest_runtest_logfinish(nodeid, location):
    seen = _REPORTS.pop(nodeid, None)
    if seen is not None:
        _write({"event": "test", "nodeid": nodeid, **seen})


def pytest_sessionfinish(session, exitstatus):
    if not hasattr(session.config, "workerinput"):  # pytest-xdist: the controller says when the stage ended
        _write({"event": "end", "exitstatus": int(exitstatus)})


def read(path) -> dict:
    """The stage's results from its live file: ``{"tests": {nodeid: record}, "interrupted": [nodeid],
    "ended": bool, "exitstatus", "bad_lines": n}``; a missing file reads as nothing ran, a truncated last line
    (a kill mid-write) is counted in ``bad_lines``, never raised."""
    tests, started, ended, exitstatus, bad = {}, [], False, None, 0
    try:
        lines = open(path).read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        event = record.get("event")
        if event == "start":
            started.append(record["nodeid"])
        elif event == "test":
            tests[record["nodeid"]] = record
        elif event == "end":
            ended, exitstatus = True, record.get("exitstatus")
    interrupted = [n for n in dict.fromkeys(started) if n not in tests]
    return {"tests": tests, "interrupted": interrupted, "ended": ended, "exitstatus": exitstatus, "bad_lines": bad}
