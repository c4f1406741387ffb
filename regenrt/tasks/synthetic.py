"""Procedural pictures with the statistics of photographs, for calibration, parity checks, demos and tests.

Reduced precision fails where photographs are hard: sharp edges between objects, flat areas beside textured ones,
a steep (~1/f^2.6 power) spectrum. Measured against real photographs (``tools/picture_statistics.py``, scikit-image's
public-domain pictures at 256²: power-spectrum slope -2.6, edge density 12 %, flat 8x8 blocks 22 %, saturated
pixels 1.5 %, colour saturation 0.28), the first generator (1/f noise + a few half-transparent shapes) had 0.8 %
edges and 5 % flat blocks: INT8 engines the gate passed on it lost 10 dB on real pictures. Each picture now is a
smooth textured background with 16-32 opaque objects, each flat or textured, clipped where the light is strong —
deterministic for a seed.

Example::

    pics = synthetic_pictures(4, 256, 256, seed=0)   # 4x256x256x3 uint8
"""
from __future__ import annotations

import numpy as np

SPECTRUM_EXPONENT = 1.3  # amplitude ~ 1/f^1.3: power ~ 1/f^2.6, as photographs


def _pink_noise(rng: np.random.Generator, h: int, w: int, exponent: float = 1.0) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    radius = np.sqrt(fx * fx + fy * fy)
    radius[0, 0] = 1.0
    spectrum = (rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))) / radius ** exponent
    field = np.real(np.fft.ifft2(spectrum))
    return (field - field.mean()) / (field.std() + 1e-12)


def _muted(rng: np.random.Generator, channels: int) -> np.ndarray:
    """A colour nearer grey than a uniform draw (photographs' mean colour saturation is ~0.3)."""
    grey = rng.uniform(0.1, 0.9)
    return grey + rng.uniform(0.0, 0.45) * (rng.uniform(0, 1, channels) - 0.5)


def synthetic_picture(rng: np.random.Generator, h: int, w: int, channels: int = 3) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    slope = xx * np.cos(rng.uniform(0, np.pi)) + yy * np.sin(rng.uniform(0, np.pi))
    base = _muted(rng, channels)[:, None, None] + rng.uniform(-0.3, 0.3) * slope
    luminance = _pink_noise(rng, h, w, SPECTRUM_EXPONENT)  # texture is mostly light, a little colour
    chroma = [0.3 * _pink_noise(rng, h, w, SPECTRUM_EXPONENT) for _ in range(channels)]
    pic = base + 0.1 * np.stack([luminance + c for c in chroma])
    yy_, xx_ = np.mgrid[0:h, 0:w]
    for _ in range(rng.integers(16, 33)):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.03, 0.22) * h, rng.uniform(0.03, 0.22) * w
        if rng.random() < 0.5:
            inside = ((yy_ - cy) / ry) ** 2 + ((xx_ - cx) / rx) ** 2 <= 1.0
        else:
            inside = (np.abs(yy_ - cy) <= ry) & (np.abs(xx_ - cx) <= rx)
        fill = _muted(rng, channels)[:, None]
        if rng.random() < 0.5:  # textured object (else flat: photographs have many flat areas)
            fill = fill + rng.uniform(0.05, 0.2) * _pink_noise(rng, h, w)[inside][None]
        pic[:, inside] = fill
    pic = 0.04 + 0.92 * pic * rng.uniform(0.9, 1.08)  # strong light clips a little
    out = np.ascontiguousarray(np.clip(pic.transpose(1, 2, 0) * 255.0, 0, 255).round().astype(np.uint8))
    return out


def synthetic_pictures(n: int, h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """``n`` pictures, NxHxWxC uint8, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    return np.stack([synthetic_picture(rng, h, w, channels) for _ in range(n)])


def box_masks(n: int, h: int, w: int, boxes: int = 2, seed: int = 0,
              side: float = 75 / 256) -> tuple[np.ndarray, list[list[tuple]]]:
    """``n`` HxW uint8 masks (1 = hole) with ``boxes`` non-overlapping squares of side ``side`` of the picture
    (default 75/256).

    Returns the masks and, per mask, the boxes as (top, left, height, width) — the Kaggle image-regeneration
    layout at 256x256 is two 75x75 boxes.
    """
    rng = np.random.default_rng(seed)
    side_h, side_w = max(1, round(side * h)), max(1, round(side * w))
    masks = np.zeros((n, h, w), np.uint8)
    all_boxes = []
    for i in range(n):
        placed: list[tuple] = []
        for _ in range(1000):
            if len(placed) == boxes:
                break
            top, left = int(rng.integers(0, h - side_h + 1)), int(rng.integers(0, w - side_w + 1))
            if all(top + side_h <= t or t + side_h <= top or left + side_w <= l or l + side_w <= left
                   for t, l, _, _ in placed):
                placed.append((top, left, side_h, side_w))
        for top, left, bh, bw in placed:
            masks[i, top:top + bh, left:left + bw] = 1
        all_boxes.append(placed)
    return masks, all_boxes


SCENE_CLASSES = ("background", "disk", "rectangle", "triangle", "stripes", "ring")


def _shape_mask(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
    ry, rx = rng.uniform(0.06, 0.22) * h, rng.uniform(0.06, 0.22) * w
    angle = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    if kind == "disk":
        return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    if kind in ("rectangle", "stripes"):
        return (np.abs(u) <= rx) & (np.abs(v) <= ry)
    if kind == "ring":
        r = (u / rx) ** 2 + (v / ry) ** 2
        return (r <= 1.0) & (r >= rng.uniform(0.3, 0.6))
    corners = [(cy + ry * np.sin(a), cx + rx * np.cos(a)) for a in angle + np.array([0, 2.1, 4.2]) +
               rng.uniform(-0.3, 0.3, 3)]
    (y0, x0), (y1, x1), (y2, x2) = corners
    d = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
    a = ((y1 - y2) * (xx - x2) + (x2 - x1) * (yy - y2)) / d
    b = ((y2 - y0) * (xx - x2) + (x0 - x2) * (yy - y2)) / d
    return (a >= 0) & (b >= 0) & (a + b <= 1)


def labelled_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A picture (HxWx3 uint8) of 4-9 overlapping shapes on a textured background, and its labels (HxW uint8, the
    index in :data:`SCENE_CLASSES`). The class is the shape, never the colour: every shape takes a random colour
    and texture, so a model must learn shapes and their boundaries (as a real segmentation model must)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    slope = xx * np.cos(rng.uniform(0, np.pi)) + yy * np.sin(rng.uniform(0, np.pi))
    base = rng.uniform(0.25, 0.75, 3)[:, None, None] + rng.uniform(-0.3, 0.3, (3, 1, 1)) * slope
    picture = (base + 0.1 * np.stack([_pink_noise(rng, h, w) for _ in range(3)])).transpose(1, 2, 0)  # no shapes
    labels = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(4, 10)):
        label = int(rng.integers(1, len(SCENE_CLASSES)))
        kind = SCENE_CLASSES[label]
        inside = _shape_mask(rng, kind, h, w)
        colour = rng.uniform(0, 1, 3)
        texture = 0.15 * _pink_noise(rng, h, w)[..., None]
        fill = colour + texture
        if kind == "stripes":
            yy, xx = np.mgrid[0:h, 0:w]
            theta, period = rng.uniform(0, np.pi), rng.uniform(4, 12)
            band = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period) > 0
            fill = np.where(band[..., None], fill, rng.uniform(0, 1, 3) + texture)
        picture[inside] = fill[inside]
        labels[inside] = label
    light = 1.0 + 0.35 * (np.mgrid[0:h, 0:w][1] / w - 0.5) * rng.uniform(-1, 1)  # uneven light, some clipping
    picture = np.clip(picture * light[..., None] * rng.uniform(0.8, 1.3), 0, 1)
    return (picture * 255).round().astype(np.uint8), labels


def labelled_scenes(n: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled scenes: NxHxWx3 uint8 pictures and NxHxW uint8 labels, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    pairs = [labelled_scene(rng, h, w) for _ in range(n)]
    return np.stack([p for p, _ in pairs]), np.stack([lab for _, lab in pairs])
