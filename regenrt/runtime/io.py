"""File I/O of the runtime: guarded picture and .npy decoding, CSV cells, atomic writes (PNG itself: png.py).

Example::

    picture = decode_image(path, max_pixels=64_000_000)   # HxW / HxWxC uint8 (or uint16), or InputError
    write_atomic(out_dir / "a.png", encode_png(picture), root=out_dir)
"""
from __future__ import annotations

import io
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..wording import option, shorten
from .png import decode_png, png_size

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
        raise InputError(f"the picture declares {count} pixels, over the limit of {max_pixels} "
                         f"({option('max_pixels', count if count != 'too many' else max_pixels * 4)} raises it).") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot open picture: {exc}") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise InputError(f"the picture declares {width}x{height} = {width * height} pixels, over the limit of "
                         f"{max_pixels} ({option('max_pixels', width * height)} raises it).")
    return img


def decode_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Fully decode a picture to an array (uint8 or uint16, HxW or HxWxC) or raise InputError. Common PNGs go
    through regenrt's fast reader (:mod:`regenrt.runtime.png`), everything else through Pillow; both give the
    same array."""
    from PIL import Image

    if path.suffix.lower() == ".png":
        data = path.read_bytes()
        size = png_size(data)
        if size is not None and size[0] * size[1] <= max_pixels:
            arr = decode_png(data)
            if arr is not None:
                return arr
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


def as_channels(arr, channels: int, what: str = "picture") -> np.ndarray:
    """HxW / HxWxC uint8 -> HxWx``channels``; an opaque alpha channel is dropped, anything else mismatching fails
    with the layout that was seen and the one expected."""
    if isinstance(arr, (str, os.PathLike)):
        raise InputError(f"{what} is a path ({str(arr)!r}), not an array: read it with Predictor.predict_file("
                         f"{str(arr)!r}) (or pass the decoded HxWx{channels} uint8 array).")
    arr = np.asarray(arr)
    if arr.dtype.kind in "US" and arr.ndim == 0:
        return as_channels(str(arr), channels, what)
    if arr.ndim == 4:
        raise InputError(f"{what} is a stack of {arr.shape[0]} pictures ({'x'.join(map(str, arr.shape))}); one item "
                         f"takes one HxWx{channels} picture: pass them to Predictor.predict_many([{{'{what}': p}} for "
                         f"p in stack]).")
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] > 4:
        raise InputError(f"{what} is channels-first ({'x'.join(map(str, arr.shape))}, CxHxW); a picture is HxWxC "
                         f"(here {arr.shape[1]}x{arr.shape[2]}x{arr.shape[0]}): pass np.transpose({what}, (1, 2, 0)).")
    if arr.ndim not in (2, 3):
        raise InputError(f"{what} has shape {arr.shape}; a picture is HxW or HxWxC ({channels} channel(s)).")
    if arr.dtype != np.uint8:
        raise InputError(f"{what} must be 8-bit (uint8, 0..255), got {arr.dtype}"
                         + (": convert a float picture in 0..1 with (x * 255).round().astype(np.uint8)."
                            if np.issubdtype(arr.dtype, np.floating) else "."))
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] in (2, 4) and (arr[..., -1] == 255).all():
        arr = arr[..., :-1]
    if arr.shape[2] != channels:
        raise InputError(f"{what} has {arr.shape[2]} channel(s); the model takes {channels}.")
    return arr


CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A text cell safe to open in a spreadsheet: one starting like a formula gets a leading apostrophe (OWASP's
    CSV-injection advice); numbers and ordinary names are unchanged. Quoting is the csv module's (RFC 4180)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value)
    return "'" + text if text.startswith(CSV_FORMULA_PREFIXES) else text


def csv_bytes(header: list[str], rows) -> bytes:
    """CSV with RFC 4180 quoting (the csv module's: a cell with a comma, quote or newline is quoted) of neutralized
    cells, "\n" line ends, UTF-8; undecodable file names (surrogate escapes) become backslash escapes."""
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([csv_cell(c) for c in row] for row in rows)
    return buf.getvalue().encode("utf-8", "backslashreplace")


NPY_KINDS = "biufc"  # booleans, integers, floats, complex: what a phase map or a picture can hold
NPY_MAX_ITEMSIZE = 16  # complex128 / float128
NPY_MAX_HEADER = 10_000


def load_npy_checked(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A ``.npy`` array whose header was checked first: numbers only (no pickles, strings or records), at most
    ``max_pixels`` values per plane and 4 planes, and as many data bytes in the file as the header promises — so a
    header declaring 1e5 x 1e5, or a giant dtype, is refused before any allocation. Any malformed file is an
    :class:`InputError` (NumPy's header parser raises SyntaxError, tokenize.TokenError, ValueError... for fuzzed
    headers). The dtype is left as stored: the task's ``prepare`` normalizes it (:func:`native_float`), for files and
    for the Python API alike."""
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version not in ((1, 0), (2, 0), (3, 0)):
                raise ValueError(f"unknown format version {version[0]}.{version[1]}")
            start = fh.tell()
            width = 2 if version == (1, 0) else 4  # the header's length field, read before NumPy reads that many
            length = int.from_bytes(fh.read(width), "little")
            if length > NPY_MAX_HEADER:
                raise ValueError(f"a header of {length} bytes (at most {NPY_MAX_HEADER} are read)")
            fh.seek(start)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh, max_header_size=NPY_MAX_HEADER)
            offset = fh.tell()
        except Exception as exc:  # noqa: BLE001 - a fuzzed header makes NumPy's parser fail in many ways
            raise InputError(shorten(f"not a readable .npy array: malformed header ({exc})", 300)) from None
    if dtype.hasobject:
        raise InputError("the .npy array holds Python objects (a pickle): refused; save plain numbers.")
    if dtype.kind not in NPY_KINDS or dtype.itemsize > NPY_MAX_ITEMSIZE or dtype.subdtype is not None:
        raise InputError(f"the .npy array holds {dtype} values: refused; save plain numbers (floats, integers).")
    dims = [int(d) for d in shape]
    planes = math.prod(dims[:-2]) if len(dims) > 2 else 1
    pixels = dims[-2] * dims[-1] if len(dims) >= 2 else math.prod(dims)
    if pixels > max_pixels or planes > 4:
        raise InputError(f"the .npy array is {'x'.join(map(str, dims))}: more than {max_pixels} pixels per plane "
                         f"(or more than 4 planes); refused before loading ({option('max_pixels', pixels)} allows it).")
    size = path.stat().st_size - offset
    needed = math.prod(dims) * dtype.itemsize
    if size < needed:
        raise InputError(f"the .npy file is truncated: its header promises {needed} bytes of data, it holds {size}.")
    try:
        arr = np.load(path, allow_pickle=False)
    except MemoryError:
        raise InputError(f"not enough memory to load a {'x'.join(map(str, dims))} {dtype} array.") from None
    except Exception as exc:  # noqa: BLE001 - whatever NumPy raises on a bad file is this file's problem
        raise InputError(shorten(f"not a readable .npy array ({exc})", 300)) from None
    return arr


def native_float(arr: np.ndarray) -> np.ndarray:
    """Float/complex data in native byte order and a width the kernels take (float16 -> float32, float128 ->
    float64); other dtypes unchanged (the caller says what it needs)."""
    if np.issubdtype(arr.dtype, np.complexfloating):
        return np.ascontiguousarray(arr, dtype=np.complex128 if arr.dtype.itemsize >= 16 else np.complex64)
    if np.issubdtype(arr.dtype, np.floating):
        return np.ascontiguousarray(arr, dtype=np.float64 if arr.dtype.itemsize >= 8 else np.float32)
    return arr


def encode_npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` sets it, racing with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


FILE_MODE = 0o666  # before the umask, as open() creates files (0644 under the usual 022)


def open_no_follow(path: Path, flags: int, mode: int = FILE_MODE) -> int:
    """``os.open`` that refuses a symlink at ``path`` (a link planted there would redirect the write)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if path.is_symlink():
            raise InputError(f"{path} is a symbolic link: regenrt does not write through links under an output "
                             "directory; remove it.") from None
        raise exc


def make_dirs_under(root: Path, directory: Path) -> None:
    """Create ``directory`` below ``root`` (itself as given, a link or not) without following a symbolic link
    anywhere between them: a linked subdirectory would put outputs outside ``root``."""
    rel = directory.relative_to(root)
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise InputError(f"{current} is a symbolic link inside the output directory {root}: outputs would land "
                             "outside it. Remove the link, or choose another --output.")
        current.mkdir(exist_ok=True)


TEMP_SUFFIX = ".tmp"


def remove_stale_temporaries(root: Path) -> int:
    """Delete the ``.<name>.XXXXXXXX.tmp`` files a killed run left under ``root`` (called under the output lock,
    so no live run owns them); links are not followed. Returns how many were removed."""
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                Path(dirpath, name).unlink(missing_ok=True)
                removed += 1
    return removed


def write_atomic(path: Path, data: bytes, root: Path | None = None, durable: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path`` (a symbolic link
    at ``path`` is replaced, never written through). The file gets the mode a plain ``open`` would give it (0666
    minus the umask), not mkstemp's private 0600. With ``root``, the directories between ``root`` and ``path``
    are created without following links. ``durable=False`` skips the fsync: the rename still makes the file appear
    whole or not at all to every reader and after a killed process; only a power loss can leave it empty, which
    suits files whose content is verified by hash before it is trusted (run-infer's outputs: the manifest)."""
    if root is not None:
        make_dirs_under(root, path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
