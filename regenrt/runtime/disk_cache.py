"""The on-disk caches regenrt writes (OpenVINO's compiled models, the smp/timm signature index), bounded in bytes.

Where: ``$REGENRT_CACHE_DIR``, else ``$XDG_CACHE_HOME/regenrt``, else ``~/.cache/regenrt``. Bound:
``$REGENRT_CACHE_MAX_BYTES`` (default 1 GiB); whenever a cache is about to be written, the least recently used
files (by the later of their access and modification times) go until it fits. Removing the folder is always safe
(``rm -rf ~/.cache/regenrt``): everything in it is rebuilt on demand.

Example::

    prune(cache_root() / "openvino")      # before OpenVINO writes there
"""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MAX_BYTES = 1 << 30


def cache_root() -> Path:
    root = os.environ.get("REGENRT_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
        "regenrt"
    return Path(root)


def max_bytes() -> int:
    try:
        return int(os.environ.get("REGENRT_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES))
    except ValueError:
        return DEFAULT_MAX_BYTES


def prune(directory: Path, limit: int | None = None) -> int:
    """Remove the least recently used files under ``directory`` until it holds at most ``limit`` bytes (default
    :func:`max_bytes`); return the bytes removed. Files another process removes meanwhile are skipped."""
    limit = max_bytes() if limit is None else limit
    files = []
    for path in Path(directory).rglob("*"):
        try:
            st = path.stat(follow_symlinks=False)
        except OSError:
            continue
        if path.is_file() and not path.is_symlink():
            files.append((max(st.st_atime, st.st_mtime), st.st_size, path))
    total = sum(size for _, size, _ in files)
    removed = 0
    for _, size, path in sorted(files):
        if total - removed <= limit:
            break
        try:
            path.unlink()
            removed += size
        except OSError:
            continue
    return removed
