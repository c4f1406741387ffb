"""numba CPU kernels against the NumPy reference: compositing exact, normalization within float rounding."""
import numpy as np
import pytest

from regenrt.kernels import get_kernels
from regenrt.kernels import reference as ref
from regenrt.tasks.runtime.segmentation import PALETTE
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

nb = get_kernels("numba")
rng = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("scale,shift,mean,std", [("pm1", False, None, None), ("01", True, 0.5, 0.25)])
@pytest.mark.parametrize("out_dtype,channels", [(np.float32, 1), (np.float16, 3)])
def test_phase_normalize(dtype, scale, shift, mean, std, out_dtype, channels):
    h, w = 33, 48  # odd height exercises fftshift's asymmetric split
    if dtype == np.complex64:
        phase = (rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))).astype(dtype)
    else:
        phase = rng.uniform(-9, 9, (h, w)).astype(dtype)
        phase[0, 0], phase[0, 1] = np.pi, -np.pi  # the boundary values pass unchanged
    expected = np.zeros((3, channels, h, w), out_dtype)
    got = np.zeros_like(expected)
    ref.phase_normalize(phase, expected, 1, scale=scale, fftshift=shift, mean=mean, std=std)
    nb.phase_normalize(phase, got, 1, scale=scale, fftshift=shift, mean=mean, std=std)
    tol = 1e-3 if out_dtype == np.float16 else 1e-6
    assert np.abs(got.astype(np.float64) - expected).max() <= tol
    assert not got[0].any() and not got[2].any()  # only the asked slot is written


def test_holes_fill_and_rgb_normalize_exact():
    pic = synthetic_pictures(1, 40, 56, 3, seed=1)[0]
    mask = box_masks(1, 40, 56, seed=2)[0][0]
    for fn_ref, fn_nb, args in ((ref.holes_fill, nb.holes_fill, (pic, mask)), (ref.rgb_normalize, nb.rgb_normalize, (pic,))):
        a, b = np.zeros((2, 3, 40, 56), np.float32), np.zeros((2, 3, 40, 56), np.float32)
        fn_ref(*args, a, 1)
        fn_nb(*args, b, 1)
        assert np.array_equal(a, b)


@pytest.mark.parametrize("feather,soft,value_range", [(0, False, "pm1"), (4, False, "pm1"), (0, True, "01")])
def test_composite_exact(feather, soft, value_range):
    pic = synthetic_pictures(1, 64, 64, 3, seed=3)[0]
    mask = box_masks(1, 64, 64, seed=4)[0][0] * 255
    if soft:
        mask = (mask // 255 * rng.integers(1, 256, mask.shape)).astype(np.uint8)
    gen = rng.uniform(-1.2, 1.2, (3, 64, 64)).astype(np.float32)
    gen[0, :2, :2] = [[0.5 / 127.5 - 1, 1.5 / 127.5 - 1], [2.5 / 255, 3.5 / 255]]  # rounding ties
    a = ref.composite(gen, pic, mask, feather=feather, soft=soft, value_range=value_range)
    b = nb.composite(gen, pic, mask, feather=feather, soft=soft, value_range=value_range)
    assert np.array_equal(a, b)
    assert np.array_equal(b[mask == 0], pic[mask == 0])
    for kernels in (ref, nb):  # into a caller's buffer: same bytes, that buffer returned
        out = np.full_like(pic, 7)
        assert kernels.composite(gen, pic, mask, feather=feather, soft=soft, value_range=value_range, out=out) is out
        assert np.array_equal(out, a)


def test_composite_rejects_unfit_out():
    pic = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="out must be"):
        nb.composite(np.zeros((3, 8, 8), np.float32), pic, np.zeros((8, 8), np.uint8), out=np.zeros((8, 8, 4), np.uint8))


def test_phase_normalize_in_range_rows_and_outliers():
    """Rows entirely inside [-pi, pi] take the vectorized path; a row with one outlier is redone exactly."""
    phase = rng.uniform(-np.pi, np.pi, (16, 40)).astype(np.float32)
    phase[5, 7], phase[9, 0], phase[9, 39] = 7.5, np.pi, -np.pi
    expected, got = np.zeros((1, 1, 16, 40), np.float32), np.zeros((1, 1, 16, 40), np.float32)
    for shift in (False, True):
        ref.phase_normalize(phase, expected, 0, fftshift=shift)
        nb.phase_normalize(phase, got, 0, fftshift=shift)
        assert np.abs(got - expected).max() <= 1e-6


@pytest.mark.parametrize("classes", [1, 5])
def test_argmax_palette_exact(classes):
    logits = rng.standard_normal((classes, 30, 20)).astype(np.float32)
    logits[:, 0, 0] = 1.0  # ties: the first maximum wins in both
    la, ca = ref.argmax_palette(logits, PALETTE)
    lb, cb = nb.argmax_palette(logits, PALETTE)
    assert np.array_equal(la, lb) and np.array_equal(ca, cb)
