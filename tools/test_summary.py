"""One summary line for a test run made of several pytest runs (``./dev.sh test``: the main environment and the
serving one), from their junit XML reports.

    python tools/test_summary.py .test-results/main.xml .test-results/serving.xml

A test is counted once: failed if it failed (or errored) anywhere, passed if it passed somewhere, else skipped
(the serving tests skip in the main environment and run in the serving one). Exit status 1 when any failed or a
report is missing.
"""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

RANK = {"skipped": 0, "passed": 1, "failed": 2}


def read(path: Path) -> tuple[dict[str, str], dict[str, str], float]:
    root = ET.parse(path).getroot()
    outcomes, props, seconds = {}, {}, 0.0
    for suite in root.iter("testsuite"):
        seconds += float(suite.get("time", 0) or 0)
        for prop in suite.iter("property"):
            props[prop.get("name")] = prop.get("value")
        for case in suite.iter("testcase"):
            key = f"{case.get('classname')}::{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                outcome = "failed"
            elif case.find("skipped") is not None:
                outcome = "skipped"
            else:
                outcome = "passed"
            if RANK[outcome] >= RANK.get(outcomes.get(key, "skipped"), 0):
                outcomes[key] = outcome
    return outcomes, props, seconds


def summarize(paths: list[Path]) -> tuple[str, bool]:
    merged: dict[str, str] = {}
    parts, ok, total_s, not_run = [], True, 0.0, 0
    for path in paths:
        if not path.exists():
            parts.append(f"{path.stem}: NO REPORT")
            ok = False
            continue
        outcomes, props, seconds = read(path)
        total_s += seconds
        not_run = max(not_run, int(props.get("not_run_full", 0) or 0))
        counts = {k: sum(v == k for v in outcomes.values()) for k in RANK}
        parts.append(f"{path.stem} (numpy {props.get('numpy', '?')}): {counts['passed']} passed, "
                     f"{counts['skipped']} skipped, {counts['failed']} failed")
        for key, outcome in outcomes.items():
            if RANK[outcome] >= RANK.get(merged.get(key, "skipped"), 0):
                merged[key] = outcome
    counts = {k: sum(v == k for v in merged.values()) for k in RANK}
    ok = ok and counts["failed"] == 0
    line = (f"{'PASSED' if ok else 'FAILED'}: {counts['passed']} passed, {counts['skipped']} skipped, "
            f"{counts['failed']} failed in {total_s / 60:.1f} min — {len(merged)} distinct tests, each counted once "
            "(a test of both environments counts once: failed if it failed in either, else passed if it passed in "
            "either); per environment: " + "; ".join(parts))
    if not_run:
        line += (f". The quick set: {not_run} slower tests of the full set not run (./dev.sh test --full runs them "
                 "and each benchmark's smoke case; CI does)")
    return line, ok


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    line, ok = summarize([Path(a) for a in argv])
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
