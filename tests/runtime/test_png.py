"""regenrt's PNG writer: every kind of output it writes decodes bit-exact with Pillow (an independent decoder)."""
import io

import numpy as np
import pytest
from PIL import Image

from regenrt.runtime.io import encode_png


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
