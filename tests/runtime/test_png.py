"""regenrt's PNG writer and reader: every kind of output it writes decodes bit-exact with Pillow (an independent
decoder), and every file its reader takes decodes to the array Pillow gives; the others it leaves to Pillow."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from regenrt.runtime.png import SIGNATURE, _chunk, decode_png, encode_png


@pytest.mark.parametrize("shape,dtype", [((37, 53), np.uint8), ((37, 53), np.uint16), ((37, 53, 1), np.uint8),
                                         ((37, 53, 2), np.uint8), ((37, 53, 3), np.uint8), ((37, 53, 4), np.uint8),
                                         ((1, 1), np.uint16), ((256, 256, 3), np.uint8)])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_png_round_trips_bit_exact_through_pillow(shape, dtype, level):
    rng = np.random.default_rng(sum(shape) + level)
    arr = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=np.int64).astype(dtype)
    arr[: shape[0] // 2] = np.iinfo(dtype).max  # long runs too, and the wrap-around of the Up filter (max - 0)
    arr[shape[0] // 2:][::2] = 0
    image = Image.open(io.BytesIO(encode_png(arr, level)))
    image.load()  # decodes every chunk: a bad CRC or a truncated stream raises here
    back = np.asarray(image)
    if dtype == np.uint16:
        assert image.mode.startswith("I;16") or image.mode == "I"
        back = back.astype(np.uint16)
    assert back.shape == np.squeeze(arr, axis=2).shape if arr.ndim == 3 and shape[2] == 1 else back.shape == shape
    assert np.array_equal(back.reshape(arr.shape), arr)


def test_png_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="uint8/uint16"):
        encode_png(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="HxWx1..4"):
        encode_png(np.zeros((4, 4, 5), np.uint8))


# -- the fast reader: the same arrays as Pillow, or None (Pillow decides) --------------------------------------

def _filtered_png(arr: np.ndarray, kinds, colour: int, depth: int = 8, extra: bytes = b"", interlace: int = 0) -> bytes:
    """A PNG whose row y uses filter ``kinds[y % len(kinds)]``, filtered by a plain-Python reading of PNG spec 9.2
    (independent of regenrt's unfilter kernel)."""
    h = arr.shape[0]
    rows = (arr.astype(">u2") if depth == 16 else arr).view(np.uint8).reshape(h, -1).astype(np.int64)
    bpp = max(1, (arr.shape[2] if arr.ndim == 3 else 1) * depth // 8)
    out = bytearray()
    for y in range(h):
        kind, row = kinds[y % len(kinds)], rows[y]
        up = rows[y - 1] if y else np.zeros_like(row)
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
        if kind == 4:
            p = left + up - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        else:
            pred = [np.zeros_like(row), left, up, (left + up) // 2][kind]
        out += bytes([kind]) + ((row - pred) % 256).astype(np.uint8).tobytes()
    header = struct.pack(">IIBBBBB", arr.shape[1], h, depth, colour, 0, 0, interlace)
    return (SIGNATURE + _chunk(b"IHDR", header) + extra + _chunk(b"IDAT", zlib.compress(bytes(out)))
            + _chunk(b"IEND", b""))


def _pillow(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image, dtype=np.uint16) if image.mode.startswith("I;16") else np.asarray(image)


@pytest.mark.parametrize("channels,colour", [(1, 0), (2, 4), (3, 2), (4, 6)])
@pytest.mark.parametrize("kinds", [[0], [1], [2], [3], [4], [4, 3, 0, 2, 1]])
def test_fast_reader_undoes_every_filter_as_pillow_does(channels, colour, kinds):
    rng = np.random.default_rng(channels * 10 + len(kinds))
    arr = rng.integers(0, 256, (19, 23, channels), dtype=np.uint8)
    arr[5:9] = 255  # runs and wrap-arounds
    arr = arr[..., 0] if channels == 1 else arr
    data = _filtered_png(arr, kinds, colour)
    fast = decode_png(data)
    assert fast is not None and fast.dtype == np.uint8
    assert np.array_equal(fast, _pillow(data)) and np.array_equal(fast, arr)


@pytest.mark.parametrize("kinds", [[1], [4], [3, 4, 2]])
def test_fast_reader_16_bit_gray(kinds):
    arr = np.random.default_rng(3).integers(0, 65536, (17, 29), dtype=np.int64).astype(np.uint16)
    data = _filtered_png(arr, kinds, colour=0, depth=16)
    fast = decode_png(data)
    assert fast is not None and fast.dtype == np.uint16 and np.array_equal(fast, arr)
    assert np.array_equal(fast, _pillow(data))


def test_fast_reader_takes_pillow_written_files():
    """Pillow's own encoder picks a filter per row (mostly Paeth on pictures): the everyday input."""
    for mode, shape in [("L", (31, 45)), ("LA", (31, 45, 2)), ("RGB", (64, 48, 3)), ("RGBA", (31, 45, 4))]:
        arr = np.random.default_rng(len(shape)).integers(0, 256, shape, dtype=np.uint8)
        arr[:, :10] = np.arange(10, dtype=np.uint8)[None, :, None] if arr.ndim == 3 else np.arange(10)[None, :]
        buf = io.BytesIO()
        Image.fromarray(arr, mode).save(buf, format="PNG")
        fast = decode_png(buf.getvalue())
        assert fast is not None and np.array_equal(fast, arr), mode


def _with(data: bytes, offset: int, byte: int) -> bytes:
    return data[:offset] + bytes([byte]) + data[offset + 1:]


def test_fast_reader_leaves_other_files_to_pillow():
    arr = np.arange(12 * 12 * 3, dtype=np.uint32).astype(np.uint8).reshape(12, 12, 3)
    good = _filtered_png(arr, [4], colour=2)
    idat = good.index(b"IDAT")
    unknown_filter = _filtered_png(arr, [4], colour=2)
    raw = bytearray(zlib.decompress(unknown_filter[idat + 4:unknown_filter.index(b"IEND") - 8]))
    raw[0] = 5  # filter type 5 does not exist
    cases = {
        "palette": _filtered_png(arr[..., 0], [0], colour=3, extra=_chunk(b"PLTE", bytes(range(256)) * 3)),
        "transparency": _filtered_png(arr, [0], colour=2, extra=_chunk(b"tRNS", b"\0\1\0\2\0\3")),
        "interlaced": _filtered_png(arr, [0], colour=2, interlace=1),
        "16-bit RGB": _filtered_png(arr.astype(np.uint16) * 257, [0], colour=2, depth=16),
        "bad CRC": _with(good, idat + 10, good[idat + 10] ^ 0xFF),
        "truncated": good[:idat + 20],
        "no IEND": good[:good.index(b"IEND") - 4],
        "not a PNG": b"GIF89a" + good[6:],
        "unknown filter": good[:idat - 4] + _chunk(b"IDAT", zlib.compress(bytes(raw))) + _chunk(b"IEND", b""),
        "short stream": good[:idat - 4] + _chunk(b"IDAT", zlib.compress(bytes(10))) + _chunk(b"IEND", b""),
    }
    for name, data in cases.items():
        assert decode_png(data) is None, name
    assert np.array_equal(decode_png(good), arr)


def test_decode_image_agrees_with_pillow_and_keeps_its_limits(tmp_path):
    """decode_image through the fast path and through Pillow give the same arrays; the pixel limit and the
    corrupt-file verdicts are the same as before the fast path."""
    from regenrt.errors import InputError
    from regenrt.runtime.io import decode_image

    arr = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    for name, image in {"rgb.png": Image.fromarray(arr), "p.png": Image.fromarray(arr).quantize(16),
                        "bits.png": Image.fromarray(arr[..., 0] > 128), "i16.png": Image.fromarray(
                            arr[..., 0].astype(np.uint16) * 257)}.items():
        image.save(tmp_path / name)
        expected = _pillow((tmp_path / name).read_bytes())
        expected = expected.astype(np.uint8) * 255 if image.mode == "1" else expected
        got = decode_image(tmp_path / name)
        if image.mode == "P":
            expected = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        assert np.array_equal(got, expected), name
    with pytest.raises(InputError, match="over the limit of 1000"):
        decode_image(tmp_path / "rgb.png", max_pixels=1000)
    data = (tmp_path / "rgb.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        decode_image(tmp_path / "cut.png")


def test_writer_without_isal_uses_zlib(monkeypatch):
    """isal is optional at run time: without it the same PNG is written with zlib (bit-exact pixels)."""
    import regenrt.runtime.png as png

    arr = np.random.default_rng(9).integers(0, 256, (33, 21, 3), dtype=np.uint8)
    monkeypatch.setattr(png, "_isal", lambda: None)
    data = png.encode_png(arr)
    assert np.array_equal(_pillow(data), arr) and np.array_equal(png.decode_png(data), arr)


def test_fast_reader_does_not_inflate_a_decompression_bomb():
    """A 4x4 header over a stream that inflates to 200 MB: cut at what the header promises, left to Pillow."""
    import resource

    packer, zeros = zlib.compressobj(9), bytes(1 << 20)
    stream = b"".join(packer.compress(zeros) for _ in range(200)) + packer.flush()  # never 200 MB in memory here
    bomb = (SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)) + _chunk(b"IDAT", stream)
            + _chunk(b"IEND", b""))
    assert decode_png(encode_png(np.zeros((4, 4), np.uint8))) is not None  # the reader loaded (numba) first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert decode_png(bomb) is None
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing near 200 MB
