"""What every regenrt command shares: error printing, exit codes, option value parsing."""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from typing import Callable

from ..errors import EXIT_CODES, ParityError, RegenrtError


def exit_codes_epilog() -> str:
    lines = ["exit codes:"] + [f"  {code:>3}  {text}" for code, text in EXIT_CODES.items()]
    return "\n".join(lines)


def exit_codes_markdown() -> str:
    """The table of docs/exit-codes.md, from the same data as every --help."""
    return "\n".join(["| code | meaning |", "|---|---|", *(f"| {code} | {text} |" for code, text in EXIT_CODES.items())])


def config_value(text: str):
    """``12`` -> 12, ``true`` -> True, ``6,12,18`` -> [6, 12, 18], anything else stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "," in text:
        return [config_value(part) for part in text.split(",")]
    return text


def run_cli(prog: str, body: Callable[[], int], json_report: bool = False) -> int:
    """Run ``body``; print regenrt errors as one message (no traceback) and return their exit code."""
    try:
        return body()
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; nothing was published under a final name.", file=sys.stderr)
        return 130
    except ParityError as exc:
        if exc.report is not None:
            from ..export.parity import format_table

            print(json.dumps(exc.report, default=str) if json_report else format_table(exc.report["rows"], exc.report.get("metric", "image")))
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RegenrtError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception:  # an unexpected bug: say so, keep the traceback for the report
        if os.environ.get("REGENRT_DEBUG"):
            traceback.print_exc()
        else:
            print(f"{prog}: internal error: {traceback.format_exc(limit=-1).strip().splitlines()[-1]}\n"
                  "Re-run with REGENRT_DEBUG=1 for the full traceback and please report it.", file=sys.stderr)
        return 1


def parse_range(text: str) -> tuple[float, float]:
    """``LOW,HIGH`` (an argparse type)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, e.g. 0,1 — got {text!r}") from None
    return lo, hi


NEGATIVE_RANGE = re.compile(r"-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?,-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", re.IGNORECASE)


def join_negative_ranges(argv: list[str], option: str = "--output-range") -> list[str]:
    """``--output-range -0.05,-0.01`` as written: argparse takes a value starting with '-' for an option."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == option and i + 1 < len(argv) and NEGATIVE_RANGE.fullmatch(argv[i + 1]):
            out.append(f"{option}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out
