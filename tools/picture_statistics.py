"""How regenrt's generated pictures differ from real photographs: the statistics that make reduced precision hard.

    python tools/picture_statistics.py [PHOTO ...]     # default: scikit-image's bundled public-domain photographs

For each source (real photographs; ``synthetic_pictures``; ``labelled_scenes``), at 256x256: the slope of the
radially averaged power spectrum (natural photographs: about -2), the share of saturated pixels (0 or 255 in any
channel), edge density (share of pixels whose gradient exceeds 10 % of the range), mean colour saturation, and the
share of flat 8x8 blocks (std < 2). Photographs are not shipped: they are read from an installed package
(``pip install scikit-image``) or the paths given.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
          "retina.jpg", "camera.png", "moon.png", "brick.png", "grass.png", "gravel.png")


def _photos(paths: list[str]) -> list[np.ndarray]:
    from PIL import Image

    if not paths:
        try:
            import skimage
        except ImportError:
            raise SystemExit("picture-statistics: pip install scikit-image (its bundled photographs), or pass paths")
        folder = Path(skimage.__file__).parent / "data"
        paths = [str(folder / name) for name in PHOTOS if (folder / name).exists()]
    out = []
    for path in paths:
        img = Image.open(path).convert("RGB")
        side = min(img.size)
        left, top = (img.size[0] - side) // 2, (img.size[1] - side) // 2
        out.append(np.asarray(img.crop((left, top, left + side, top + side)).resize((256, 256), Image.BILINEAR)))
    return out


def statistics(pictures: list[np.ndarray]) -> dict[str, float]:
    slopes, saturated, edges, colour, flat = [], [], [], [], []
    for pic in pictures:
        gray = pic.astype(np.float64).mean(axis=2)
        spectrum = np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean()))) ** 2
        yy, xx = np.indices(spectrum.shape)
        radius = np.hypot(yy - 128, xx - 128).astype(int)
        power = np.bincount(radius.ravel(), spectrum.ravel()) / np.maximum(np.bincount(radius.ravel()), 1)
        r = np.arange(4, 100)
        slopes.append(np.polyfit(np.log(r), np.log(power[r] + 1e-9), 1)[0])
        saturated.append(np.mean((pic == 0) | (pic == 255)))
        gy, gx = np.gradient(gray)
        edges.append(np.mean(np.hypot(gx, gy) > 25.5))
        mx, mn = pic.max(axis=2).astype(float), pic.min(axis=2).astype(float)
        colour.append(np.mean((mx - mn) / np.maximum(mx, 1)))
        blocks = gray[:256 // 8 * 8, :256 // 8 * 8].reshape(32, 8, 32, 8).std(axis=(1, 3))
        flat.append(np.mean(blocks < 2))
    return {"spectrum_slope": float(np.mean(slopes)), "saturated": float(np.mean(saturated)),
            "edge_density": float(np.mean(edges)), "colour_saturation": float(np.mean(colour)),
            "flat_blocks": float(np.mean(flat))}


def main(argv: list[str]) -> int:
    from regenrt.tasks.synthetic import labelled_scenes, synthetic_pictures

    photos = _photos(argv)
    sources = {"photographs": photos, "synthetic_pictures": list(synthetic_pictures(16, 256, 256, 3, seed=1)),
               "labelled_scenes": list(labelled_scenes(16, 256, 256, seed=1)[0])}
    print(f"{'source':<20} {'n':>3} " + " ".join(f"{k:>18}" for k in statistics(photos[:1])))
    for name, pics in sources.items():
        stats = statistics(pics)
        print(f"{name:<20} {len(pics):>3} " + " ".join(f"{v:>18.3f}" for v in stats.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
