"""Running the check's stages: each one pytest process, in its own process group with SIGINT restored, under a
time limit cut to what is left of the global deadline; its results read from the live file it writes as it goes.

A stage that overruns gets SIGINT (pytest stops the running test, finishes its hooks and ends) and, ``GRACE``
seconds later, SIGKILL for the whole group. Either way the tests it finished are in its live file; the running
one is listed as interrupted and the stage as incomplete."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import live

# seconds between SIGINT and SIGKILL, and what the deadline keeps back for the last report (the environment
# variables scale both down for the check's own tests)
GRACE = float(os.environ.get("REGENRT_GPU_CHECK_GRACE", "10"))
RESERVE = float(os.environ.get("REGENRT_GPU_CHECK_RESERVE", "20"))


@dataclass(frozen=True)
class Stage:
    """``args``: pytest's arguments; ``limit``: seconds (cut to the deadline); ``decides``: the goals it measures
    (what the report says was lost if the stage did not finish)."""

    name: str
    args: tuple[str, ...]
    limit: float
    decides: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)


class Clock:
    """The global deadline: seconds since the check started, and what a stage may still have."""

    def __init__(self, deadline: float, start: float | None = None):
        self.deadline, self.start = deadline, time.monotonic() if start is None else start

    def left(self) -> float:
        return self.deadline - (time.monotonic() - self.start)

    def limit_for(self, wanted: float) -> float:
        """The stage's limit: its own, cut so that its kill (SIGINT grace) and the report still fit."""
        return max(0.0, min(wanted, self.left() - GRACE - RESERVE))


def _restore_sigint():  # a child of a background job inherits SIGINT ignored: pytest would then never stop on it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(cmd: list[str], limit: float, cwd: Path, env: dict | None, log: Path | None) -> tuple[int, float, str]:
    """``cmd`` in a new process group with SIGINT restored; (exit status, seconds, how it ended: "exited",
    "interrupted" (SIGINT at the limit), "killed" (SIGKILL after the grace))."""
    start = time.monotonic()
    with open(log, "a") if log else open(os.devnull, "w") as sink:
        sink.write(f"\n$ {' '.join(cmd)}  (limit {limit:.0f} s)\n")
        sink.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_restore_sigint)
        how = "exited"
        try:
            rc = proc.wait(timeout=max(limit, 0.1))
        except subprocess.TimeoutExpired:
            how = "interrupted"
            _signal_group(proc, signal.SIGINT)
            try:
                proc.wait(timeout=GRACE)
            except subprocess.TimeoutExpired:
                how = "killed"
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            rc = 124
        except BaseException:  # the check itself stopped (SIGTERM, Ctrl-C): no stage outlives it
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            raise
    return rc, time.monotonic() - start, how


def _signal_group(proc, sig) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def run_stage(stage: Stage, clock: Clock, raw: Path, cwd: Path, env: dict, log: Path) -> dict:
    """One stage, started clean (its earlier files removed first), limited by the clock; its report entry:
    ``{"rc", "seconds", "limit", "ended", "incomplete", "tests", "interrupted", "counts"}``."""
    results = raw / f"{stage.name}.jsonl"
    for old in raw.glob(f"{stage.name}.*"):
        old.unlink()
    limit = clock.limit_for(stage.limit)
    if limit < 1:
        return {"rc": None, "seconds": 0.0, "limit": limit, "ended": "not started", "incomplete":
                f"not started: {clock.left():.0f} s left of the deadline", "tests": {}, "interrupted": [],
                "counts": {}}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "gpucheck.live", "-ra", "-q",
           *stage.args]
    stage_env = {**env, **stage.env, "REGENRT_LIVE_RESULTS": str(results),
                 "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                *filter(None, [env.get("PYTHONPATH")])])}
    rc, seconds, how = run(cmd, limit, cwd, stage_env, log)
    found = live.read(results)
    incomplete = None
    if how != "exited":
        incomplete = f"stopped at its limit of {limit:.0f} s ({how})"
    elif not found["ended"]:
        incomplete = f"pytest exited with status {rc} before it finished (see the log)"
    counts = _counts(found)
    return {"rc": rc, "seconds": seconds, "limit": limit, "ended": how, "incomplete": incomplete,
            "tests": found["tests"], "interrupted": found["interrupted"], "counts": counts,
            "bad_lines": found["bad_lines"]}


def _counts(found: dict) -> dict:
    counts: dict = {}
    for record in found["tests"].values():
        counts[record["outcome"]] = counts.get(record["outcome"], 0) + 1
    if found["interrupted"]:
        counts["interrupted"] = len(found["interrupted"])
    return counts


def stopped_stage(results: Path, why: str) -> dict:
    """The entry of a stage the whole check was stopped in (SIGTERM, Ctrl-C): what its live file holds."""
    found = live.read(results)
    return {"rc": None, "seconds": 0.0, "limit": 0.0, "ended": "stopped", "incomplete": f"the check was stopped "
            f"({why})", "tests": found["tests"], "interrupted": found["interrupted"], "counts": _counts(found),
            "bad_lines": found["bad_lines"]}


def rows(stages: dict) -> list[dict]:
    """Every benchmark row of the stages run, each with its test's outcome (a row whose test failed after timing
    keeps ``outcome: failed``)."""
    out = []
    for name, entry in stages.items():
        for nodeid, record in entry.get("tests", {}).items():
            bench = record.get("bench")
            if bench:
                out.append({**bench, "stage": name, "nodeid": nodeid, "outcome": record["outcome"],
                            "median_ms": None if bench.get("median_s") is None else bench["median_s"] * 1e3})
    return out


def have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
