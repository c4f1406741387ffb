"""One root exception with a few specific subclasses; each maps to a documented CLI exit code.

Messages say what was expected, what was found and what to do, so the CLI can print them as they are.
"""
from __future__ import annotations


class RegenrtError(Exception):
    """Root of every error regenrt raises on purpose; the base class covers usage problems (exit code 2)."""

    exit_code = 2


class MissingPathError(RegenrtError):
    """A path given on the command line does not exist (a checkpoint, --engine, --input, --masks, --boxes,
    --samples): always a usage error, exit code 2, whatever the path is for."""


class CheckpointError(RegenrtError):
    """The checkpoint cannot be read: not a file, empty, truncated or not a checkpoint."""

    exit_code = 3


class MissingCheckpointError(MissingPathError, CheckpointError):
    """The checkpoint path does not exist (a usage error: exit code 2, like every missing path)."""

    exit_code = 2


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint needs pickle code execution to load and the caller did not opt in."""


class UnsafeTorchError(CheckpointError):
    """This torch's weights-only unpickler is one a security advisory lists as exploitable, and the caller did not
    accept the risk (``--accept-unsafe-torch``)."""


class SecurityWarning(UserWarning):
    """A risk the user accepted (an old torch's unpickler, --trust-pickle): printed on stderr even in quiet mode."""


class ArchitectureError(RegenrtError):
    """The weights do not match a known architecture, match it ambiguously, or do not fit the one asked for."""

    exit_code = 3


class ExportError(RegenrtError):
    """ONNX export, graph conversion or the ONNX checker failed."""

    exit_code = 5


class ParityError(RegenrtError):
    """An exported artefact drifted from the PyTorch model beyond the gate; ``report`` holds the numbers."""

    exit_code = 4

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


class InputError(RegenrtError):
    """A sample or input file is unusable (wrong shape, channels, type or non-finite values)."""

    exit_code = 7


class InferenceError(RegenrtError):
    """The engine failed on an input, or returned non-finite values for it (Python API; run-infer makes these
    per-item rows)."""

    exit_code = 7


class MissingDependencyError(RegenrtError):
    """An optional backend is not installed; the message names the extra that installs it."""

    exit_code = 6


class BusyError(RegenrtError):
    """Another run holds the output directory."""

    exit_code = 9


class EnvironmentFault(RegenrtError):
    """The machine, not an input, stopped a run: disk full, I/O error, read-only or over-quota file system, the
    output directory gone, an engine that keeps failing, out of memory at the smallest batch. The run stops at
    once; what was done is recorded and a re-run completes the rest. ``summary`` holds the run's counts."""

    exit_code = 10

    def __init__(self, message: str, summary=None):
        super().__init__(message)
        self.summary = summary


EXIT_CODES = {  # the one source of `--help`'s epilogs and docs/exit-codes.md (tests/test_docs.py compares them)
    0: "success",
    1: "unexpected internal error (re-run with REGENRT_DEBUG=1 for the traceback, and report it)",
    2: "usage error (bad arguments, a path that does not exist — checkpoint, --engine, --input, --masks, --boxes, "
       "--samples —, an input folder with nothing to run, unknown names)",
    3: "checkpoint or architecture problem (unreadable, unsafe, unknown, ambiguous, mismatching)",
    4: "parity gate failed: an artefact drifted from PyTorch and was not published",
    5: "export failed (ONNX export, FP16 conversion, onnx.checker)",
    6: "an optional dependency is missing (the message names the pip extra)",
    7: "an input or sample file is unusable (the message names the file and the fix)",
    8: "run-infer: partial — some items failed (listed in OUTPUT/errors.csv)",
    9: "run-infer: the output directory is in use by another run",
    10: "run-infer: the environment or the engine stopped the run — disk full, I/O error, read-only or over-quota "
        "file system, output directory gone, out of memory on a single item, a sticky GPU error (illegal memory "
        "access, device-side assert, launch failure), the engine failing on every item of 3 batches in a row (no "
        "item is blamed for the engine's faults); done items are kept, a re-run completes the rest",
    130: "interrupted (Ctrl-C): export-engine publishes nothing under a final name; run-infer keeps every finished "
         "item and a re-run resumes",
}
