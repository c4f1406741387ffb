"""``OUTPUT/report.html`` of a run (``run-infer --report``): the counts, the throughput and where the time went,
every error with its reason, the size strategies, and a contact sheet — a sample of inputs beside their outputs
(segmentation overlays; inpainting with its holes outlined). One self-contained file, like the export's page.

Example::

    write_run_report(Path("out/report.html"), summary, Path("in"), Path("out"), engine, options)
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path

import numpy as np

from . import charts, pictures
from .page import figure, page, table

SHEET_ITEMS = 8


def _done(out_dir: Path) -> list[dict]:
    from ..runtime.manifest import MANIFEST_NAME

    entries = {}
    path = out_dir / MANIFEST_NAME
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            entries[entry["id"]] = entry
    return list(entries.values())


def _source(in_dir: Path, item_id: str) -> Path | None:
    found = sorted(p for p in (in_dir / item_id).parent.glob(Path(item_id).name + ".*") if p.is_file())
    return found[0] if found else None


def _shown(path: Path) -> np.ndarray | None:
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path)
            arr = arr if arr.ndim == 2 else arr.reshape(arr.shape[-2:])
            return ((np.angle(arr) if np.iscomplexobj(arr) else arr) / np.pi * 127.5 + 127.5).clip(0, 255) \
                .astype(np.uint8)
        from PIL import Image

        with Image.open(path) as img:
            img.thumbnail((640, 640))
            return np.asarray(img.convert("RGB"))
    except Exception:  # noqa: BLE001 - a picture the sheet cannot show is left out of it, not the report
        return None


def _outlined(picture: np.ndarray, mask_path: Path | None) -> np.ndarray:
    """The holes' edges drawn in red over the picture."""
    if mask_path is None:
        return picture
    from PIL import Image

    with Image.open(mask_path) as img:
        mask = np.asarray(img.convert("L").resize(picture.shape[1::-1], Image.NEAREST)) > 0
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    shown = picture.copy()
    shown[edge] = (255, 0, 0)
    return shown


def run_report(summary, in_dir: Path, out_dir: Path, task: str, options=None, engine_name: str = "") -> str:
    done = _done(out_dir)
    body = [f"<h1>regenrt run: {escape(task)} — {escape(engine_name)}</h1>",
            f'<p class="verdict" id="verdict" data-done="{summary.done}" data-failed="{summary.failed}">'
            f"{summary.done} done, {summary.failed} failed, {summary.skipped} skipped of {summary.total}"
            f"{' (interrupted)' if summary.interrupted else ''}; {summary.items_per_s:.2f} items/s over "
            f"{summary.wall_s:.1f} s"
            + (f" ({escape(summary.compiling())})" if summary.compiling() else "")
            + f". Inputs: {escape(str(in_dir))}; outputs: {escape(str(out_dir))}.</p>"]
    if summary.stage_s:
        body += ["<h2>Where the time went (seconds, summed over threads)</h2>",
                 charts.bars({k: float(v) for k, v in summary.stage_s.items()}, "s")]
    if summary.sizes:
        body += ["<h2>Sizes</h2>", table(["strategy", "items"], [[escape(k), str(v)] for k, v in
                                                               sorted(summary.sizes.items())])]
    if summary.notes:
        body += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in summary.notes) + "</ul>"]
    body.append("<h2>Errors</h2>")
    body.append(table(["item", "stage", "reason"], [[escape(i), escape(s), escape(r)] for i, s, r in summary.errors])
                if summary.errors else '<p class="ok">none</p>')
    body.append(f"<h2>Contact sheet (the first {min(SHEET_ITEMS, len(done))} of {len(done)} done)</h2>")
    masks = getattr(options, "masks", None)
    for entry in done[:SHEET_ITEMS]:
        source = _source(in_dir, entry["id"])
        outputs = list(entry.get("outputs", {}))
        shown = _shown(source) if source else None
        pick = next((o for o in outputs if o.endswith("_overlay.png")), None) or \
            next((o for o in outputs if o.endswith(".png")), None)
        result = _shown(out_dir / pick) if pick else None
        if shown is None or result is None:
            continue
        if task == "inpainting" and masks:
            stem = Path(entry["id"])
            mask = next((p for p in sorted(Path(masks).glob(f"{stem.name}*")) if p.stem in (stem.name,
                                                                                         f"{stem.name}_mask")), None)
            shown = _outlined(shown, mask)
        size = f" — {escape(entry['size'])}" if entry.get("size") else ""
        body.append(f'<div class="item" data-id="{escape(entry["id"])}">'
                    + figure(pictures.png_uri(shown, 300), f"{escape(entry['id'])}{size}")
                    + figure(pictures.png_uri(result, 300), escape(pick)) + "</div>")
    return page(f"regenrt run report — {task}", body)


def write_run_report(path: Path, summary, in_dir: Path, out_dir: Path, task: str, options=None,
                     engine_name: str = "") -> Path:
    path.write_text(run_report(summary, Path(in_dir), Path(out_dir), task, options, engine_name))
    return path
