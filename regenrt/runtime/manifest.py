"""What a run has finished, so a re-run skips it, and the lock that keeps two runs off one output directory.

The manifest (``.regenrt-manifest.jsonl`` in the output directory) gets one line per completed item, appended
(and handed to the OS) after the item's outputs were renamed into place: item id, sha256 of its source files, of
the engine and of each output, and the options that shape output bytes. An item is skipped only when all of these
still match — every output is re-hashed — so a corrupted or deleted output, a changed input, engine or option
redoes it. That check, not fsync, is what makes a re-run after a crash right: a killed process loses nothing the
OS has; after a power loss a lost line or an output emptied by the file system means the item is simply redone.
So the manifest is fsynced at most once a second (``SYNC_EVERY_S``) and at the end, not per item: per-item fsyncs
of outputs and manifest cost ~0.2 ms of CPU per item, 10 % of a fast engine's budget on a 2-core machine.
"""
from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path

from ..errors import BusyError, InputError
from ..hashing import sha256_bytes, sha256_file

MANIFEST_NAME = ".regenrt-manifest.jsonl"
LOCK_NAME = ".regenrt.lock"
SYNC_EVERY_S = 1.0


class OutputLock:
    """An exclusive, non-blocking flock on the output directory; released when the process ends, even by kill."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / LOCK_NAME
        self.fh = None

    def __enter__(self) -> "OutputLock":
        from .io import open_no_follow

        while True:
            self.fh = os.fdopen(open_no_follow(self.path, os.O_RDWR | os.O_CREAT), "r+")
            try:
                fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.fh.seek(0)
                holder = self.fh.read().strip() or "another process"
                self.fh.close()
                raise BusyError(f"another run-infer ({holder}) is writing to {self.path.parent}; wait for it or use "
                                "another --output directory.") from None
            try:  # the file a finishing run removed while we waited for it: lock the one now at the path
                if os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(self.fh.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()}")
        self.fh.flush()
        return self

    def __exit__(self, *exc) -> None:
        """The lock file goes with the run (removed while still locked; a run waiting on it locks a new one)."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only or vanished directory: the lock is released all the same
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


class Manifest:
    def __init__(self, out_dir: Path):
        self.path = out_dir / MANIFEST_NAME
        self.entries: dict[str, dict] = {}
        if self.path.is_symlink():
            raise InputError(f"{self.path} is a symbolic link: regenrt does not read or write its manifest through "
                             "a link; remove it.")
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["id"]] = entry
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a crash: that item is simply redone
        self._lock = threading.Lock()
        self._fh = None
        self._synced = time.monotonic()

    def is_done(self, item_id: str, sources_sha: str, engine_sha: str, options_key: str, out_dir: Path) -> bool:
        entry = self.entries.get(item_id)
        if not entry or (entry.get("sources"), entry.get("engine"), entry.get("options")) != (
                sources_sha, engine_sha, options_key):
            return False
        for name, digest in entry.get("outputs", {}).items():
            path = out_dir / name
            if not path.is_file() or sha256_file(path) != digest:
                return False
        return True

    def record(self, item_id: str, sources_sha: str, engine_sha: str, options_key: str, outputs: dict[str, str],
               size: str | None = None) -> None:
        """``size``: how the picture's size was met (whole, padded, tiled n x m, k crops)."""
        entry = {"id": item_id, "sources": sources_sha, "engine": engine_sha, "options": options_key,
                 "outputs": outputs, **({"size": size} if size else {})}
        with self._lock:
            if self._fh is None:
                torn = self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
                from .io import open_no_follow

                self._fh = os.fdopen(open_no_follow(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "a")
                if torn:
                    self._fh.write("\n")
            self._fh.write(json.dumps(entry) + "\n")
            self._fh.flush()
            if time.monotonic() - self._synced >= SYNC_EVERY_S:
                os.fsync(self._fh.fileno())
                self._synced = time.monotonic()
            self.entries[item_id] = entry

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


def sources_sha(paths: tuple[Path, ...]) -> str:
    return sha256_bytes("".join(sha256_file(p) for p in paths).encode())
