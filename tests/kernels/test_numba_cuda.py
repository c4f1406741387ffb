"""numba CUDA kernels against the NumPy reference (simulator in CI; REGENRT_REAL_CUDA=1 on a GPU)."""
import numpy as np
import pytest

from regenrt.errors import InputError
from regenrt.kernels import numba_cuda as kc
from regenrt.kernels import reference as ref
from regenrt.tasks.runtime.segmentation import PALETTE
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

cuda = kc.cuda
rng = np.random.default_rng(0)
H, W = 12, 18  # small: the simulator runs every thread in Python


@pytest.mark.parametrize("form", ["real", "planes"])
@pytest.mark.parametrize("scale,shift", [("pm1", False), ("01", True)])
def test_phase_normalize(form, scale, shift):
    spectrum = (rng.standard_normal((H, W)) + 1j * rng.standard_normal((H, W))).astype(np.complex64)
    phase = np.angle(spectrum).astype(np.float32) * 2  # some values outside [-pi, pi] to wrap
    expected = np.zeros((2, 3, H, W), np.float32)
    if form == "real":
        ref.phase_normalize(phase, expected, 1, scale=scale, fftshift=shift, mean=0.1, std=0.5)
        src = cuda.to_device(phase)
    else:
        ref.phase_normalize(spectrum, expected, 1, scale=scale, fftshift=shift, mean=0.1, std=0.5)
        src = cuda.to_device(np.stack([spectrum.real, spectrum.imag]).astype(np.float32))
    out = cuda.to_device(np.zeros((2, 3, H, W), np.float32))
    stream = cuda.stream()
    kc.phase_normalize(src, out, 1, scale=scale, fftshift=shift, mean=0.1, std=0.5, stream=stream)
    stream.synchronize()
    assert np.abs(out.copy_to_host() - expected).max() <= 1e-5


def test_holes_and_composite_exact():
    pic = synthetic_pictures(1, H, W, 3, seed=1)[0]
    mask = np.zeros((H, W), np.uint8)
    mask[2:8, 3:11] = 255
    expected = np.zeros((1, 3, H, W), np.float32)
    ref.holes_fill(pic, mask, expected, 0)
    d_out = cuda.to_device(np.zeros((1, 3, H, W), np.float32))
    d_pic, d_mask = cuda.to_device(pic), cuda.to_device(mask)
    kc.holes_fill(d_pic, d_mask, d_out, 0)
    assert np.array_equal(d_out.copy_to_host(), expected)

    gen = rng.uniform(-1.2, 1.2, (3, H, W)).astype(np.float32)
    gen[0, 2, 3] = 0.5 / 127.5 - 1  # a rounding tie
    result = cuda.device_array((H, W, 3), np.uint8)
    kc.composite(cuda.to_device(gen), d_pic, d_mask, result)
    assert np.array_equal(result.copy_to_host(), ref.composite(gen, pic, mask))
    alpha = ref.feather_alpha(mask, 2)
    kc.composite(cuda.to_device(gen), d_pic, d_mask, result, alpha=cuda.to_device(alpha))
    assert np.array_equal(result.copy_to_host(), ref.composite(gen, pic, mask, feather=2))


@pytest.mark.parametrize("channels", [3, 1])
def test_rgb_normalize(channels):
    pic = synthetic_pictures(1, H, W, 3, seed=2)[0]
    expected = np.zeros((2, channels, H, W), np.float32)
    ref.rgb_normalize(pic, expected, 1)
    out = cuda.to_device(np.zeros((2, channels, H, W), np.float32))
    kc.rgb_normalize(cuda.to_device(pic), cuda.to_device(np.float32(ref.IMAGENET_MEAN)),
                     cuda.to_device(np.float32(ref.IMAGENET_STD)), out, 1)
    assert np.abs(out.copy_to_host() - expected).max() <= 1e-6


def test_argmax_palette_exact():
    logits = rng.standard_normal((4, H, W)).astype(np.float32)
    labels, colours = cuda.device_array((H, W), np.uint8), cuda.device_array((H, W, 3), np.uint8)
    kc.argmax_palette(cuda.to_device(logits), cuda.to_device(PALETTE), labels, colours)
    la, ca = ref.argmax_palette(logits, PALETTE)
    assert np.array_equal(labels.copy_to_host(), la) and np.array_equal(colours.copy_to_host(), ca)


def test_launchers_reject_host_arrays_and_bad_shapes():
    with pytest.raises(InputError, match="phase must be a device array.*never move data"):
        kc.phase_normalize(np.zeros((H, W), np.float32), cuda.to_device(np.zeros((1, 1, H, W), np.float32)), 0)
    with pytest.raises(InputError, match="must be HxW or 2xHxW"):
        kc.phase_normalize(cuda.to_device(np.zeros((H, W + 1), np.float32)),
                           cuda.to_device(np.zeros((1, 1, H, W), np.float32)), 0)
    masks = box_masks(1, H, W)[0]
    with pytest.raises(InputError, match="do not fit together"):
        kc.holes_fill(cuda.to_device(np.zeros((H, W, 3), np.uint8)), cuda.to_device(masks[0][:5]),
                      cuda.to_device(np.zeros((1, 3, H, W), np.float32)), 0)


def test_numpy_row_stack_alias_is_put_back_only_where_numpy_removed_it():
    """numba-cuda's CUDA target registers an overload of np.row_stack, which NumPy 2.5 removed (every launch failed
    on the first real GPU run: numpy 2.5.2, numba-cuda 0.30.4)."""
    import types

    without = types.SimpleNamespace(vstack=np.vstack)
    assert kc.numpy_compat(without) and without.row_stack is np.vstack
    own = object()
    with_it = types.SimpleNamespace(vstack=np.vstack, row_stack=own)
    assert not kc.numpy_compat(with_it) and with_it.row_stack is own
    assert hasattr(np, "row_stack")  # the real module, after regenrt.kernels.numba_cuda was imported
