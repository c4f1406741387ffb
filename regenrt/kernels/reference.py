"""NumPy reference implementations of the per-pixel pre/post steps.

These are the definitions of record: faster kernels (numba CPU/CUDA) are tested against them.

Example::

    phase = fourier_phase(gray)                      # HxW radians in [-pi, pi)
    batch[i] = phase_to_input(phase, channels=1)     # 1xHxW phase / pi
"""
from __future__ import annotations

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_gray(picture: np.ndarray) -> np.ndarray:
    """HxW or HxWxC picture (any dtype) -> HxW float64 luminance (ITU-R BT.601 weights for RGB)."""
    pic = np.asarray(picture, dtype=np.float64)
    if pic.ndim == 2:
        return pic
    if pic.shape[2] == 1:
        return pic[..., 0]
    return pic[..., :3] @ np.array([0.299, 0.587, 0.114])


def fourier_phase(picture: np.ndarray) -> np.ndarray:
    """Phase of the 2-D Fourier transform of a picture's luminance, float32 radians in [-pi, pi]."""
    phase = np.angle(np.fft.fft2(to_gray(picture)))
    return wrap_phase(phase).astype(np.float32)


def wrap_phase(phase: np.ndarray) -> np.ndarray:
    """Wrap radians into [-pi, pi]: values already inside pass unchanged (so np.angle's +pi stays +pi, as in
    training data made with it); values outside are wrapped to [-pi, pi)."""
    p = np.asarray(phase)
    return np.where(np.abs(p) <= np.pi, p, (p + np.pi) % (2 * np.pi) - np.pi)


def phase_to_input(phase: np.ndarray, channels: int = 1) -> np.ndarray:
    """HxW radians (any range) -> CxHxW float32 phase / pi in [-1, 1], replicated over ``channels``."""
    scaled = (wrap_phase(phase.astype(np.float64)) / np.pi).astype(np.float32)
    return np.repeat(scaled[None], channels, axis=0)


def holes_to_input(picture: np.ndarray, mask: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """HxWxC uint8 picture + HxW mask (nonzero = hole) -> CxHxW float32 in [-1, 1] with holes set to ``fill``."""
    x = picture.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    x[:, np.asarray(mask) != 0] = fill
    return x


def normalize_rgb(picture: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """HxWx3 uint8 picture -> 3xHxW float32 ``(x / 255 - mean) / std`` (smp's ImageNet preprocessing)."""
    x = picture.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


# --- in-place forms: the interface faster kernels implement (write one slot of a preallocated NCHW batch) ---

def phase_normalize(phase: np.ndarray, out: np.ndarray, index: int, *, scale: str = "pm1",
                    fftshift: bool = False, mean: float | None = None, std: float | None = None) -> None:
    """Raw phase (HxW radians, any range, or a complex spectrum) -> ``out[index]`` (C planes, replicated).

    ``scale="pm1"``: phase / pi in [-1, 1); ``"01"``: (phase + pi) / (2 pi) in [0, 1). Then ``(v - mean) / std``
    when given. ``fftshift`` moves the zero frequency to the centre first.
    """
    p = np.fft.fftshift(phase) if fftshift else np.asarray(phase)
    if np.iscomplexobj(p):  # a complex spectrum: its angle is the phase
        p = np.angle(p.astype(np.complex128))
    v = wrap_phase(p.astype(np.float64)) / np.pi
    if scale == "01":
        v = (v + 1.0) / 2.0
    if mean is not None:
        v = (v - mean) / std
    out[index] = v.astype(out.dtype)[None]


def holes_fill(picture: np.ndarray, mask: np.ndarray, out: np.ndarray, index: int, fill: float = 0.0) -> None:
    """HxWxC uint8 picture + HxW mask (nonzero = hole) -> ``out[index]`` in [-1, 1] with holes set to ``fill``."""
    out[index] = holes_to_input(picture, mask, fill).astype(out.dtype)


def rgb_normalize(picture: np.ndarray, out: np.ndarray, index: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
    """HxWx3 uint8 -> ``out[index]`` = (x / 255 - mean) / std, channels repeated/cut to ``out``'s C."""
    x = normalize_rgb(picture, mean, std)
    channels = out.shape[1]
    out[index] = np.resize(x, (channels, *x.shape[1:])).astype(out.dtype) if channels != 3 else x


def to_uint8(generated: np.ndarray, value_range: str = "pm1") -> np.ndarray:
    """CxHxW float in [-1, 1] (``pm1``) or [0, 1] (``01``) -> HxWxC uint8, rounding half to even after clipping."""
    g = np.asarray(generated, np.float32)
    scaled = (g + 1.0) * 127.5 if value_range == "pm1" else g * 255.0
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8).transpose(1, 2, 0)


def feather_alpha(mask: np.ndarray, radius: int) -> np.ndarray:
    """HxW float32 blend weight: 0 outside holes, rising to 1 over ``radius`` pixels inside each hole."""
    hole = np.asarray(mask) != 0
    if radius <= 0:
        return hole.astype(np.float32)
    depth = np.zeros(hole.shape, np.float32)
    current = hole.copy()
    for _ in range(radius):  # 3x3 erosions: depth counts how many a pixel survives
        depth += current
        padded = np.pad(current, 1, constant_values=False)
        current = np.logical_and.reduce([padded[1 + dy:padded.shape[0] - 1 + dy, 1 + dx:padded.shape[1] - 1 + dx]
                                         for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    return depth / radius


def composite(generated: np.ndarray, picture: np.ndarray, mask: np.ndarray, *, feather: int = 0,
              value_range: str = "pm1", soft: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Generator output (CxHxW float) + picture (HxWxC uint8) + mask (HxW) -> HxWxC uint8.

    Known pixels (mask == 0) are copied bit-exact; hole pixels take the generated value, blended with the
    picture by the feather weight (or by ``mask / 255`` when ``soft``). Rounding: half to even. ``out``: an
    HxWxC uint8 array to write (and return) instead of a new one.
    """
    gen = to_uint8(generated, value_range)
    hole = (np.asarray(mask) != 0)[..., None]
    if soft or feather > 0:
        alpha = (np.asarray(mask, np.float32) / 255.0) if soft else feather_alpha(mask, feather)
        gen = np.rint(alpha[..., None] * gen + (1.0 - alpha[..., None]) * picture).astype(np.uint8)
    if out is None:
        return np.where(hole, gen, picture)
    np.copyto(out, np.where(hole, gen, picture))
    return out


def argmax_palette(logits: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CxHxW logits -> (HxW uint8 labels, HxWx3 uint8 colours); one channel means ``logit > 0``."""
    labels = (logits[0] > 0).astype(np.uint8) if logits.shape[0] == 1 else logits.argmax(0).astype(np.uint8)
    return labels, palette[labels]
