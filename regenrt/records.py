"""JSON records regenrt writes beside artefacts (engine.json, a TensorRT engine's fingerprint), read back with
errors that say exactly what is wrong.

Example::

    entry = read_record(path / "engine.json", ("engine",), "re-export with export-engine")
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import RegenrtError


def read_record(path: Path, required: tuple[str, ...], fix: str) -> dict:
    """A JSON object regenrt wrote (engine.json, an engine's fingerprint) with its ``required`` string entries, or
    a RegenrtError that says what exactly is wrong with it — unreadable, not JSON (where), or which entry is
    missing — and ``fix``."""
    try:
        record = json.loads(path.read_text())
    except OSError as exc:
        raise RegenrtError(f"{path} cannot be read ({exc.strerror}); {fix}.") from None
    except ValueError as exc:
        raise RegenrtError(f"{path} is damaged: not valid JSON ({exc}); {fix}.") from None
    if not isinstance(record, dict):
        raise RegenrtError(f"{path} is damaged: a JSON {type(record).__name__}, not an object; {fix}.")
    for key in required:
        if not isinstance(record.get(key), str):
            state = "has no" if key not in record else f"has a {type(record[key]).__name__} as its"
            raise RegenrtError(f"{path} is damaged: it {state} {key!r} entry; {fix}.")
    return record
