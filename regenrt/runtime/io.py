"""File I/O of the runtime: guarded picture decoding, PNG encoding and atomic writes.

Example::

    picture = read_picture_checked(path, max_pixels=64_000_000)   # HxWxC uint8 or InputError
    write_atomic(out_dir / "a.png", encode_png(picture))
"""
from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError

DEFAULT_MAX_PIXELS = 64_000_000  # a 8000x8000 picture; larger declared sizes are refused before decoding


def open_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Open a picture lazily, refusing empty files, non-pictures and oversized declarations before decoding."""
    from PIL import Image, UnidentifiedImageError

    if path.stat().st_size == 0:
        raise InputError("the file is empty (0 bytes).")
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        raise InputError("not a picture PIL can decode (corrupt, or another kind of file with a picture's name).") from None
    except Image.DecompressionBombError as exc:  # PIL's own limit fires first for sizes far beyond ours
        found = re.search(r"\((\d+) pixels\)", str(exc))
        count = found.group(1) if found else "too many"
        raise InputError(f"the picture declares {count} pixels, over the limit of {max_pixels}.") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot open picture: {exc}") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise InputError(f"the picture declares {width}x{height} = {width * height} pixels, over the limit of "
                         f"{max_pixels} (--max-pixels raises it).")
    return img


def decode_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Fully decode a picture to an array (uint8 or uint16, HxW or HxWxC) or raise InputError."""
    from PIL import Image

    img = open_image(path, max_pixels)
    try:
        with img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(img, dtype=np.uint16)
            if img.mode == "I":
                return np.asarray(img).astype(np.int64)
            if img.mode not in ("L", "RGB", "RGBA", "LA", "1"):
                img = img.convert("RGBA" if "A" in img.mode else "RGB")
            return np.asarray(img.convert("L") if img.mode == "1" else img)
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"picture data is corrupt or truncated: {exc}") from None


def as_channels(arr: np.ndarray, channels: int, what: str = "picture") -> np.ndarray:
    """HxW / HxWxC uint8 -> HxWx``channels``; an opaque alpha channel is dropped, anything else mismatching fails."""
    if arr.dtype != np.uint8:
        raise InputError(f"{what} must be 8-bit, got {arr.dtype}.")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] in (2, 4) and (arr[..., -1] == 255).all():
        arr = arr[..., :-1]
    if arr.shape[2] != channels:
        raise InputError(f"{what} has {arr.shape[2]} channel(s); the model takes {channels}.")
    return arr


def encode_png(arr: np.ndarray) -> bytes:
    """HxW (uint8/uint16) or HxWx3 uint8 -> PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def encode_npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
