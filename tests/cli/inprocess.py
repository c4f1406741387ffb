"""Run a command's ``main(argv)`` in the test's own process: for usage and input errors, where a subprocess would
spend two seconds importing torch to print one line. Tests of what only a process shows (exit on a signal, the
console script, the environment) start a subprocess instead."""
from __future__ import annotations

import subprocess
from typing import Callable


def run_main(main: Callable[[list[str]], int], *args, capsys) -> subprocess.CompletedProcess:
    """``main(args)`` as a finished process: its exit code (argparse's SystemExit included) and what it printed."""
    argv = [str(a) for a in args]
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)
