"""Pictures for the reports: model inputs and outputs turned back into what a person sees, error maps as colour
maps with their scale, changed segmentation labels marked over the picture — each a PNG data URI (the pages
embed everything: no file beside them, no network).

Example::

    uri = png_uri(error_map(reference, output)[0])
"""
from __future__ import annotations

import base64
import io

import numpy as np

# a perceptually ordered colour map (dark blue -> teal -> yellow), 5 anchors interpolated to 256 entries
_ANCHORS = np.array([[13, 8, 135], [32, 104, 155], [34, 160, 133], [148, 201, 71], [253, 231, 37]], np.float64)
COLORMAP = np.stack([np.interp(np.linspace(0, 4, 256), np.arange(5), _ANCHORS[:, c]) for c in range(3)],
                    axis=1).astype(np.uint8)


def png_uri(picture: np.ndarray, max_side: int = 320) -> str:
    """An HxW or HxWx3 uint8 picture as a PNG data URI, shrunk (nearest) so its longer side is at most
    ``max_side`` (a report shows many)."""
    from PIL import Image

    picture = np.asarray(picture)
    step = max(1, int(np.ceil(max(picture.shape[:2]) / max_side)))
    picture = np.ascontiguousarray(picture[::step, ::step])
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _to_uint8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((np.asarray(x, np.float64) - lo) / max(hi - lo, 1e-12) * 255, 0, 255).round().astype(np.uint8)


def shown_input(x: np.ndarray, metadata: dict) -> np.ndarray:
    """A model input (CxHxW float) as the picture it was made from, by the task's contract."""
    inp = metadata.get("input", {})
    if inp.get("mean") and inp.get("std") and x.shape[0] == 3:  # ImageNet normalization: undo it
        mean, std = np.array(inp["mean"])[:, None, None], np.array(inp["std"])[:, None, None]
        return _to_uint8(np.transpose(x * std + mean, (1, 2, 0)), 0.0, 1.0)
    picture = _to_uint8(x, -1.0, 1.0)  # [-1, 1] inputs: pictures with holes, phase / pi
    return picture[0] if picture.shape[0] == 1 else np.transpose(picture[:3], (1, 2, 0))


def shown_output(y: np.ndarray, metric: str, span: tuple[float, float]) -> np.ndarray:
    """A model output as a picture: class colours for segmentation, else the values over ``span``."""
    if metric == "segmentation":
        from ..tasks.runtime.segmentation import PALETTE

        return PALETTE[np.argmax(y, axis=0)]
    picture = _to_uint8(y, *span)
    return picture[0] if picture.shape[0] == 1 else np.transpose(picture[:3], (1, 2, 0))


def error_map(reference: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, float]:
    """|output - reference|, largest over channels, as a colour map scaled to its maximum; and that maximum."""
    error = np.abs(np.asarray(output, np.float64) - reference).max(axis=0)
    top = float(error.max())
    return COLORMAP[_to_uint8(error, 0.0, top if top > 0 else 1.0)], top


def changed_labels(picture: np.ndarray, reference: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, float]:
    """The picture dimmed, with the pixels whose label changed in red; and the share of labels that agree."""
    changed = np.argmax(reference, axis=0) != np.argmax(output, axis=0)
    shown = (np.asarray(picture if picture.ndim == 3 else np.repeat(picture[..., None], 3, 2), np.uint16) // 3)
    shown = shown.astype(np.uint8)
    shown[changed] = (255, 30, 30)
    return shown, float(1.0 - changed.mean())


def colour_scale(top: float, width: int = 160) -> str:
    """The colour map's legend as a data URI (a strip from 0 to ``top``)."""
    strip = np.repeat(COLORMAP[np.linspace(0, 255, width).astype(int)][None], 10, axis=0)
    return png_uri(strip, max_side=width)
