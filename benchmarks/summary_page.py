"""``.benchmarks/summary.html``: the benchmark summary as a page — its tables, the goal ratios as a bar chart, and
for each benchmarked model the worst gate picture of the engine its export chose (taken from that export's
report.html). Self-contained like the export's page."""
from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

from regenrt.report import charts
from regenrt.report.page import page, table


def _tables(lines: list[str]) -> list[str]:
    """Markdown table lines -> HTML tables; any other line -> a paragraph."""
    out, block = [], []

    def flush():
        if block:
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block
                    if not re.fullmatch(r"\|[-| ]+\|", line.strip())]
            out.append(table(rows[0], [[escape(c) for c in r] for r in rows[1:]]))
            block.clear()

    for line in lines:
        if line.startswith("|"):
            block.append(line)
        else:
            flush()
            if line.strip():
                out.append(f"<p>{escape(line)}</p>")
    flush()
    return out


def _ratios(lines: list[str]) -> dict[str, float]:
    """The goal rows' ratio column (regenrt's engine over its peer) by model."""
    ratios, header = {}, None
    for line in lines:
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if "ratio" in header and "model" in header and not set(cells[0]) <= set("-"):
            try:
                ratios[cells[header.index("model")]] = float(cells[header.index("ratio")])
            except ValueError:
                pass
    return ratios


def worst_panel(export_dir: Path) -> str:
    """The worst gate picture of the engine ``export_dir``'s engine.json names, from its report.html."""
    try:
        engine = json.loads((export_dir / "engine.json").read_text())["engine"]
        html = (export_dir / "report.html").read_text()
    except (OSError, ValueError, KeyError):
        return ""
    found = re.search(rf'<div class="worst" id="worst-[^"]+-generated" data-artefact="{re.escape(engine)}".*?</div>',
                      html, re.S)
    return found.group(0) if found else ""


def summary_page(lines: list[str], exports: dict[str, Path]) -> str:
    body = ["<h1>regenrt benchmark summary</h1>", *_tables(lines)]
    ratios = _ratios(lines)
    if ratios:
        body += ["<h2>regenrt's engine over its peer (the goal rows; 1.0 = as fast)</h2>", charts.bars(ratios, "×")]
    panels = [(key, worst_panel(directory)) for key, directory in sorted(exports.items())]
    if any(p for _, p in panels):
        body.append("<h2>Worst gate picture of each model's chosen engine</h2>")
        body += [f"<h3>{escape(key)}</h3>{panel}" for key, panel in panels if panel]
    return page("regenrt benchmark summary", body)


def write_summary_page(path: Path, lines: list[str], exports: dict[str, Path]) -> Path:
    path.write_text(summary_page(lines, exports))
    return path
