"""Charts as inline SVG, hand-made: a bar chart and a stacked bar. SVG rather than matplotlib: a few dozen lines,
no extra to install, sharp at any zoom, and the numbers stay text a browser's search finds (matplotlib would add
~40 MB to draw two kinds of bars).

Example::

    svg = bars({"model.onnx": 23.6, "model.openvino.xml": 11.5}, unit="ms")
"""
from __future__ import annotations

from html import escape

PRECISION_COLOURS = {"int8": "#3b6ea5", "bf16": "#5aa469", "fp16": "#e0a03a", "fp32": "#b55d5d"}


def bars(values: dict[str, float], unit: str, highlight: set[str] = frozenset(), width: int = 560) -> str:
    """Horizontal bars, one per label, longest = ``width``; highlighted labels in a stronger colour."""
    if not values:
        return ""
    top = max(values.values()) or 1.0
    row, label_w = 22, 260
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + width + 80}" height="{row * len(values) + 6}" '
             'role="img" font-family="sans-serif" font-size="12">']
    for i, (label, value) in enumerate(values.items()):
        y = i * row + 3
        length = max(1.0, value / top * width)
        colour = "#3b6ea5" if label in highlight else "#9bb4cf"
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="{row - 6}" fill="{colour}"/>'
                     f'<text x="{label_w + length + 4:.1f}" y="{y + 14}">{value:.3g} {escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stacked(shares: dict[str, dict[str, float]], width: int = 560) -> str:
    """One bar per label, split by precision (shares summing to 1), with a legend."""
    if not shares:
        return ""
    row, label_w = 22, 260
    height = row * len(shares) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + width + 20}" height="{height}" role="img" '
             'font-family="sans-serif" font-size="12">']
    for i, (label, split) in enumerate(shares.items()):
        y, x = i * row + 3, float(label_w)
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>')
        for precision, share in sorted(split.items(), key=lambda kv: -kv[1]):
            w = share * width
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 6}" '
                         f'fill="{PRECISION_COLOURS.get(precision, "#888")}"><title>{escape(precision)} '
                         f'{share:.1%}</title></rect>')
            x += w
    legend_y, x = row * len(shares) + 18, float(label_w)
    for precision, colour in PRECISION_COLOURS.items():
        parts.append(f'<rect x="{x}" y="{legend_y - 10}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="{legend_y}">{precision}</text>')
        x += 70
    parts.append("</svg>")
    return "".join(parts)
