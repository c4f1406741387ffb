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
    with pytest.raises(InputError, match="masks has shape .* like the pictures"):
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


# --- batched launchers: one launch for B items must equal B per-item references (the out buffer may be larger) ---

B = 2


@pytest.mark.parametrize("scale,shift", [("pm1", False), ("01", True)])
def test_phase_normalize_batch(scale, shift):
    phases = (rng.uniform(-4, 4, (B, H, W))).astype(np.float32)  # some outside [-pi, pi] to wrap
    expected = np.zeros((B + 1, 3, H, W), np.float32)
    for i in range(B):
        ref.phase_normalize(phases[i], expected, i, scale=scale, fftshift=shift, mean=0.1, std=0.5)
    out = cuda.to_device(np.zeros((B + 1, 3, H, W), np.float32))
    kc.phase_normalize_batch(cuda.to_device(phases), out, scale=scale, fftshift=shift, mean=0.1, std=0.5)
    assert np.abs(out.copy_to_host() - expected).max() <= 1e-5  # item B untouched (zeros)


def test_holes_composite_rgb_argmax_batches_exact():
    pics = synthetic_pictures(B, H, W, 3, seed=4)
    masks = box_masks(B, H, W, seed=5)[0] * 255
    expected = np.zeros((B, 3, H, W), np.float32)
    for i in range(B):
        ref.holes_fill(pics[i], masks[i], expected, i, 0.25)
    d_pics, d_masks = cuda.to_device(pics), cuda.to_device(masks)
    out = cuda.to_device(np.zeros((B, 3, H, W), np.float32))
    kc.holes_fill_batch(d_pics, d_masks, out, 0.25)
    assert np.array_equal(out.copy_to_host(), expected)

    gen = rng.uniform(-1.2, 1.2, (B, 3, H, W)).astype(np.float32)
    gen[1, 0, 2, 3] = 0.5 / 127.5 - 1  # a rounding tie
    results = cuda.device_array((B, H, W, 3), np.uint8)
    kc.composite_batch(cuda.to_device(gen), d_pics, d_masks, results)
    assert np.array_equal(results.copy_to_host(), np.stack([ref.composite(gen[i], pics[i], masks[i]) for i in range(B)]))
    alpha = np.stack([ref.feather_alpha(masks[i], 2) for i in range(B)])
    kc.composite_batch(cuda.to_device(gen), d_pics, d_masks, results, alpha=cuda.to_device(alpha))
    assert np.array_equal(results.copy_to_host(),
                          np.stack([ref.composite(gen[i], pics[i], masks[i], feather=2) for i in range(B)]))

    expected = np.zeros((B, 3, H, W), np.float32)
    for i in range(B):
        ref.rgb_normalize(pics[i], expected, i)
    out = cuda.to_device(np.zeros((B, 3, H, W), np.float32))
    kc.rgb_normalize_batch(d_pics, cuda.to_device(np.float32(ref.IMAGENET_MEAN)),
                           cuda.to_device(np.float32(ref.IMAGENET_STD)), out)
    assert np.abs(out.copy_to_host() - expected).max() <= 1e-6

    for classes in (4, 1):
        logits = rng.standard_normal((B + 1, classes, H, W)).astype(np.float32)
        labels, colours = cuda.device_array((B, H, W), np.uint8), cuda.device_array((B, H, W, 3), np.uint8)
        kc.argmax_palette_batch(cuda.to_device(logits), cuda.to_device(PALETTE), labels, colours)
        for i in range(B):
            la, ca = ref.argmax_palette(logits[i], PALETTE)
            assert np.array_equal(labels.copy_to_host()[i], la) and np.array_equal(colours.copy_to_host()[i], ca)


def test_batch_launchers_reject_host_arrays_and_bad_shapes():
    out = cuda.to_device(np.zeros((1, 3, H, W), np.float32))
    with pytest.raises(InputError, match="must be a device array"):
        kc.holes_fill_batch(np.zeros((1, H, W, 3), np.uint8), cuda.to_device(np.zeros((1, H, W), np.uint8)), out)
    with pytest.raises(InputError, match="out has shape .* N >= 2"):  # two items, one slot
        kc.holes_fill_batch(cuda.to_device(np.zeros((2, H, W, 3), np.uint8)),
                            cuda.to_device(np.zeros((2, H, W), np.uint8)), out)
    with pytest.raises(InputError, match=r"out has shape .* x 12 x 19"):
        kc.phase_normalize_batch(cuda.to_device(np.zeros((1, H, W + 1), np.float32)), out)
    with pytest.raises(InputError, match="alpha has shape"):
        kc.composite_batch(out, cuda.to_device(np.zeros((1, H, W, 3), np.uint8)),
                           cuda.to_device(np.zeros((1, H, W), np.uint8)), cuda.device_array((1, H, W, 3), np.uint8),
                           alpha=cuda.to_device(np.zeros((1, H, W - 1), np.float32)))


# --- what the launchers must refuse: device code has no bounds checks --------------------------------------------

def _composite_args(channels=3, gen_channels=3, dtype=np.float32):
    return (cuda.to_device(np.zeros((1, gen_channels, H, W), dtype)),
            cuda.to_device(np.zeros((1, H, W, channels), np.uint8)),
            cuda.to_device(np.zeros((1, H, W), np.uint8)), cuda.device_array((1, H, W, channels), np.uint8))


def test_composite_refuses_a_generator_with_fewer_channels_than_the_picture():
    """A 1-channel generator output for an RGB picture: the kernel would read channels 1 and 2 out of bounds."""
    with pytest.raises(InputError, match=r"generated has shape \(1, 1, 12, 18\); expected N x 3 x 12 x 18"):
        kc.composite_batch(*_composite_args(gen_channels=1))
    with pytest.raises(InputError, match="generated has shape"):
        kc.composite(cuda.to_device(np.zeros((1, H, W), np.float32)), cuda.to_device(np.zeros((H, W, 3), np.uint8)),
                     cuda.to_device(np.zeros((H, W), np.uint8)), cuda.device_array((H, W, 3), np.uint8))


def test_launchers_refuse_wrong_dtypes_and_short_palettes():
    with pytest.raises(InputError, match="generated must be float32; got float64"):
        kc.composite_batch(*_composite_args(dtype=np.float64))
    with pytest.raises(InputError, match="pictures must be uint8"):
        kc.holes_fill_batch(cuda.to_device(np.zeros((1, H, W, 3), np.float32)),
                            cuda.to_device(np.zeros((1, H, W), np.uint8)),
                            cuda.to_device(np.zeros((1, 3, H, W), np.float32)))
    logits = cuda.to_device(np.zeros((1, 5, H, W), np.float32))
    labels, colours = cuda.device_array((1, H, W), np.uint8), cuda.device_array((1, H, W, 3), np.uint8)
    with pytest.raises(InputError, match="5 classes need at least 5 rows"):
        kc.argmax_palette_batch(logits, cuda.to_device(PALETTE[:4]), labels, colours)


def test_no_allocation_per_launch(monkeypatch):
    """The optional arguments' stand-ins (no alpha, no ``bad``) are made once, not per call: numba's deferred
    frees synchronize the device, and an allocation cannot be captured in a CUDA graph."""
    args = _composite_args()
    kc.composite_batch(*args)  # the first call may make the placeholders
    made = []
    real = cuda.device_array
    monkeypatch.setattr(cuda, "device_array", lambda *a, **k: (made.append(a), real(*a, **k))[1])
    for _ in range(3):
        kc.composite_batch(*args)
        kc.composite(args[0][0], args[1][0], args[2][0], args[3][0])
        kc.argmax_palette_batch(args[0], cuda.to_device(PALETTE), cuda.device_array((1, H, W), np.uint8),
                                cuda.device_array((1, H, W, 3), np.uint8))
    assert len(made) == 6  # only the two arrays this test asks for per round


def test_post_kernels_flag_nan_and_inf_per_item_and_block():
    """``bad`` (items x blocks): the engine's NaN/Inf reach the host even where only uint8 results come back."""
    n, h, w = 3, 20, 30  # 600 pixels: 3 blocks of 256 per item
    pics = cuda.to_device(np.zeros((n, h, w, 3), np.uint8))
    masks = np.zeros((n, h, w), np.uint8)
    masks[:, 5:10, 5:10] = 255
    gen = np.zeros((n, 3, h, w), np.float32)
    gen[1, 2, 19, 29] = np.nan  # the last pixel: the third block of item 1 (a known pixel: still the engine's fault)
    gen[2, 0, 0, 0] = np.inf
    bad = cuda.to_device(np.full((n, kc.blocks(h * w)), 7, np.int32))  # stale values: every entry is rewritten
    kc.composite_batch(cuda.to_device(gen), pics, cuda.to_device(masks), cuda.device_array((n, h, w, 3), np.uint8),
                       bad=bad)
    assert bad.copy_to_host().tolist() == [[0, 0, 0], [0, 0, 1], [1, 0, 0]]
    logits = np.zeros((n, 4, h, w), np.float32)
    logits[0, 3, 10, 10] = -np.inf
    kc.argmax_palette_batch(cuda.to_device(logits), cuda.to_device(PALETTE), cuda.device_array((n, h, w), np.uint8),
                            cuda.device_array((n, h, w, 3), np.uint8), bad=bad)
    assert bad.copy_to_host().tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0]]  # pixel 310: the second block
    with pytest.raises(InputError, match=r"bad has shape \(3, 2\); expected \(3, 3\)"):
        kc.argmax_palette_batch(cuda.to_device(logits), cuda.to_device(PALETTE), cuda.device_array((n, h, w), np.uint8),
                                cuda.device_array((n, h, w, 3), np.uint8), bad=cuda.device_array((n, 2), np.int32))


def test_threads_of_a_warp_take_neighbouring_pixels():
    """Coalescing: consecutive ``threadIdx.x`` -> consecutive pixels of one row-major item (x fastest); the item is
    ``blockIdx.y``. (Every kernel takes its (item, pixel) from ``_pixel``.)"""
    @cuda.jit
    def where(out):
        b, i = kc._pixel()
        if i < out.shape[1]:
            out[b, i, 0] = cuda.threadIdx.x
            out[b, i, 1] = cuda.blockIdx.x

    n, pixels = 2, 600
    out = cuda.to_device(np.full((n, pixels, 2), -1, np.int64))
    grid, block = kc._grid(n, pixels)
    assert grid == (3, 2) and block == kc.THREADS
    where[grid, block](out)
    got = out.copy_to_host()
    i = np.arange(pixels)
    assert (got[:, :, 0] == i % kc.THREADS).all() and (got[:, :, 1] == i // kc.THREADS).all()


@pytest.mark.full(cases=["65535"])
@pytest.mark.parametrize("top", [255, 65535])
def test_phase_finish_on_the_device_equals_the_host_finish(top):
    """Quantization to the PNG's values and the per-item statistics (span, share clipped, NaN/Inf) on the device:
    the same numbers as the host's finish (float64 math both sides), so only uint8/uint16 come back."""
    n, h, w = 3, 20, 30
    outputs = rng.uniform(-0.3, 1.3, (n, 1, h, w)).astype(np.float32)
    outputs[0, 0, 0, 0] = 0.5 / 255  # a rounding tie
    outputs[2, 0, 19, 29] = np.nan
    lo, hi = -0.1, 1.2
    dtype = np.uint16 if top == 65535 else np.uint8
    quantized = cuda.to_device(np.full((n, h, w), 7, dtype))
    stats = cuda.to_device(np.full((n, kc.blocks(h * w), 4), 9.0))
    kc.phase_finish_batch(cuda.to_device(outputs), quantized, stats, (lo, hi))
    q, st = quantized.copy_to_host(), stats.copy_to_host()
    for i in range(2):
        raw = outputs[i, 0].astype(np.float64)
        want = np.rint(np.clip((raw - lo) / (hi - lo), 0.0, 1.0) * top).astype(dtype)
        assert np.array_equal(q[i], want)
        assert st[i, :, 0].min() == raw.min() and st[i, :, 1].max() == raw.max()
        assert st[i, :, 2].sum() == np.sum((raw < lo) | (raw > hi)) and not st[i, :, 3].any()
    assert st[2, :, 3].tolist() == [0, 0, 1]  # the NaN: item 2, third block
    with pytest.raises(InputError, match="low < high"):
        kc.phase_finish_batch(cuda.to_device(outputs), quantized, stats, (1.0, 1.0))
