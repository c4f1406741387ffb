"""PNG at the speed run-infer needs: a writer for every output and a reader for the common inputs.

On a small machine the codecs share the cores with the engine, so their CPU time is the end-to-end rate users see
(256² RGB, one core: Pillow decode 2.0 ms, encode 7.4 ms; these 1.1 and 0.4 ms). Both are plain PNG:

- ``encode_png`` filters every row with "Up" (NumPy) and deflates with ISA-L (``isal``) when it is installed, else
  zlib; its output decodes bit-exact in Pillow (tests/runtime/test_png.py).
- ``decode_png`` reads non-interlaced 8-bit gray / gray+alpha / RGB / RGBA and 16-bit gray PNGs (inflate + a numba
  unfilter of all five row filters) and returns ``None`` for anything else — palettes, transparency chunks,
  interlacing, other depths, a bad CRC or stream, or no numba — so the caller hands the file to Pillow and gets
  Pillow's result or Pillow's error: the fast path never changes what a file decodes to.

Example::

    arr = decode_png(path.read_bytes())          # HxW / HxWxC array, or None: use Pillow
    data = encode_png(arr)                       # PNG bytes
"""
from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_LEVEL = 1  # deflate level of written PNGs: on these pictures level 6 is 2x slower for ~2 % smaller files
_PNG_COLOUR = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)
_CHANNELS = {0: 1, 4: 2, 2: 3, 6: 4}    # colour type -> channels
# (bit depth, colour type) the fast reader takes, as Pillow hands them to NumPy (16-bit colour: Pillow reduces it
# to 8 bits, so those files go to Pillow)
_FAST_KINDS = {(8, 0), (8, 4), (8, 2), (8, 6), (16, 0)}


@lru_cache(maxsize=None)
def _isal():
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


def deflate(data: bytes, level: int) -> bytes:
    """zlib-format compression; level 1 through ISA-L when installed (the same format, ~10x faster than zlib's
    level 1 on pictures, files a few % smaller)."""
    fast = _isal()
    return fast.compress(data, 1) if fast is not None and level == 1 else zlib.compress(data, level)


def inflate(data: bytes, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the zlib stream ``data``: a stream that inflates past what the header
    promises (a decompression bomb) is cut short, not expanded into memory."""
    fast = _isal()
    return (fast or zlib).decompressobj().decompress(data, limit + 1)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(arr: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """HxW or HxWxC (C = 1..4) uint8/uint16 -> PNG bytes (lossless); ``level``: deflate level 0-9."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in _PNG_COLOUR or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"encode_png takes HxW or HxWx1..4 uint8/uint16 arrays, got {arr.shape} {arr.dtype}")
    h, w, c = arr.shape
    depth = 16 if arr.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(arr.astype(">u2") if depth == 16 else arr).view(np.uint8).reshape(h, -1)
    filtered = np.empty((h, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2  # filter type Up: each byte minus the byte above it (mod 256); the first row as is
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack(">IIBBBBB", w, h, depth, _PNG_COLOUR[c], 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", deflate(filtered.tobytes(), level))
            + _chunk(b"IEND", b""))


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, or None when ``data`` does not start like a PNG."""
    if len(data) < 24 or data[:8] != SIGNATURE or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def decode_png(data: bytes) -> np.ndarray | None:
    """The pixels of a PNG of a kind the fast path reads (see the module doc), exactly as Pillow gives them to
    NumPy; None for every other file, valid or not."""
    unfilter = _unfilter_kernel()
    if unfilter is None or data[:8] != SIGNATURE:
        return None
    header, idat, pos = None, [], 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + 12 + length > len(data):
            return None  # truncated: Pillow's verdict
        body = data[pos + 8:pos + 8 + length]
        if struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] != zlib.crc32(kind + body) & 0xFFFFFFFF:
            return None  # corrupt: Pillow's verdict
        if header is None and kind != b"IHDR" or kind in (b"PLTE", b"tRNS"):
            return None
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body) if length == 13 else None
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    else:
        return None  # no IEND
    if header is None or not idat:
        return None
    w, h, depth, colour, compression, filtering, interlace = header
    if (depth, colour) not in _FAST_KINDS or compression or filtering or interlace or not w or not h:
        return None
    channels = _CHANNELS[colour]
    bpp, stride = channels * depth // 8, w * channels * depth // 8
    try:
        raw = np.frombuffer(inflate(b"".join(idat), h * (stride + 1)), np.uint8)
    except Exception:  # noqa: BLE001 - zlib.error / isal's error: Pillow reports the corrupt stream
        return None
    if raw.size != h * (stride + 1):
        return None
    out = np.empty((h, stride), np.uint8)
    if not unfilter(raw, h, stride, bpp, out):
        return None
    if depth == 16:
        return out.view(">u2").astype(np.uint16).reshape(h, w)
    return out.reshape(h, w) if channels == 1 else out.reshape(h, w, channels)


@lru_cache(maxsize=None)
def _unfilter_kernel():
    """The compiled unfilter, or None without numba (then Pillow reads every PNG)."""
    try:
        from ._png_unfilter import unfilter
    except ImportError:
        return None
    return unfilter
