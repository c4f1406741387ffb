"""``ENGINE/report.html``: the export's verdict, readable in ten seconds — the chosen engine and why, every
candidate with the precision it claims and the one it executes (read back), its speed, gate margin and verdict in
words, and for each artefact the worst gate picture: input, PyTorch's output, the artefact's, and where they
differ (an error map with its scale; changed labels over the picture for segmentation). Built only from what the
export wrote (``parity.json``, ``engine.json``, the metadata) and the gate's worst pictures, so its numbers are
those files' numbers.

Example::

    write_export_report(out_dir / "report.html", report, engine, metadata, gate.pictures, not_built)
"""
from __future__ import annotations

import json
import os
import platform
from html import escape
from pathlib import Path

from . import charts, pictures
from .page import figure, page, table


def _machine() -> dict:
    facts = {"machine": platform.machine(), "python": platform.python_version(), "cores": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and "cpu" not in facts:
                facts["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                facts["flags"] = " ".join(sorted(f for f in flags if f.startswith(("avx512_bf16", "avx512_vnni",
                                                                                    "avx512f", "avx2", "amx"))))
                break
    except OSError:
        pass
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible"
    except ImportError:
        pass
    import importlib.metadata as md

    for dist in ("onnxruntime", "openvino", "nncf", "regenrt"):
        try:
            facts[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return facts


def _quality(row: dict, metric: str) -> str:
    if metric == "segmentation" and row.get("argmax_agreement") is not None:
        return f"argmax {row['argmax_agreement']:.3%}"
    if row.get("psnr_db") is not None and row["precision"] != "fp32":
        return f"PSNR {float(row['psnr_db']):.1f} dB" if row["psnr_db"] != "inf" else "PSNR inf"
    return f"rel {float(row.get('rel_max', 0)):.1e}"


def _verdict(name: str, entry: dict, report: dict, engine: dict) -> str:
    if name in report.get("withheld", {}):
        return f'<span class="bad">withheld: {escape(report["withheld"][name])}</span>'
    if not entry.get("passed"):
        return (f'<span class="bad">refused: {escape(entry.get("worst_criterion", ""))} not met on its worst '
                "picture</span>")
    chosen = []
    if name == engine.get("engine"):
        chosen.append("the engine (run-infer)")
    if name == (engine.get("latency_engine") or {}).get("engine"):
        chosen.append("the batch-1 engine (Engine.load)")
    return '<span class="ok">published' + (f"; {', '.join(chosen)}" if chosen else "") + "</span>"


def _panels(key: str, entry: dict, shots: dict, metadata: dict, metric: str, span) -> str:
    out = []
    for group, shot in shots.items():
        picture = pictures.shown_input(shot["input"], metadata)
        ref = pictures.shown_output(shot["reference"], metric, span)
        got = pictures.shown_output(shot["output"], metric, span)
        title = f"{escape(entry['artefact'])}: worst {'of your --samples' if group == 'samples' else 'gate picture'}"
        cells = [figure(pictures.png_uri(picture), f"input ({escape(shot['case'])}, item {shot['item']})"),
                 figure(pictures.png_uri(ref), "PyTorch FP32"),
                 figure(pictures.png_uri(got), f"{escape(entry['artefact'])} ({escape(entry['precision'])})")]
        if metric == "segmentation":
            marked, agree = pictures.changed_labels(picture, shot["reference"], shot["output"])
            cells.append(figure(pictures.png_uri(marked), f"labels that changed (red): {agree:.3%} agree"))
        else:
            emap, top = pictures.error_map(shot["reference"], shot["output"])
            cells.append(figure(pictures.png_uri(emap), f'|difference|, 0 <img src="{pictures.colour_scale(top)}" '
                                f'alt="scale" style="display:inline;vertical-align:middle"> {top:.3g}'))
        out.append(f'<div class="worst" id="worst-{escape(key)}-{group}" data-artefact="{escape(entry["artefact"])}"'
                   f' data-case="{escape(shot["case"])}" data-margin="{shot["margin"]!r}"><h3>{title}</h3>'
                   + "".join(cells) + "</div>")
    return "".join(out)


def export_report(report: dict, engine: dict, metadata: dict, shots: dict[str, dict],
                  not_built: dict[str, str] | None = None) -> str:
    metric = report.get("metric", "image")
    rows = report.get("rows", [])
    span = tuple(metadata.get("output", {}).get("observed_range") or (-1.0, 1.0))
    latency = engine.get("latency_ms", {}) if engine else {}
    base = latency.get("model.onnx")
    worst_of = {}
    for row in rows:
        if row["artefact"] not in worst_of or row["margin"] < worst_of[row["artefact"]]["margin"]:
            worst_of[row["artefact"]] = row
    candidates = report.get("candidates", {})
    body = [f"<h1>regenrt export: {escape(str(metadata.get('arch')))} — {escape(str(metadata.get('task')))}</h1>",
            f'<p class="muted">from {escape(str(metadata.get("source", {}).get("file")))} '
            f'(sha256 {escape(str(metadata.get("source", {}).get("sha256", ""))[:16])}…)</p>']
    chosen = engine.get("engine") if engine else None
    throughput = engine.get("throughput_items_per_s", {}) if engine else {}
    if chosen:
        ex = candidates.get(next((k for k, v in candidates.items() if v.get("artefact") == chosen), ""), {})
        rate = throughput.get(chosen)
        speed = (f", {rate:.1f} items/s at batch {engine.get('run_batch')} = {rate / throughput['model.onnx']:.2f}× "
                 "model.onnx (FP32, ONNX Runtime)") if rate and throughput.get("model.onnx") else ""
        latency_engine = (engine.get("latency_engine") or {}).get("engine")
        one = (f" One request at a time (Engine.load): <b>{escape(latency_engine)}</b>, "
               f"{latency[latency_engine]:.2f} ms at batch 1" + (f" = {base / latency[latency_engine]:.2f}× model.onnx"
                                                                 if base else "") + ".") \
            if latency_engine and latency_engine in latency else ""
        versus = (engine.get("versus") or {}).get("ms") or {}
        mine = versus.get(latency_engine or chosen)
        if mine:
            others = ", ".join(f"{v / mine:.2f}× {escape(k)} ({v:.2f} ms)" for k, v in versus.items()
                               if k != (latency_engine or chosen))
            one += (f" Timed together at batch 1 (round-robin): {escape(latency_engine or chosen)} {mine:.2f} ms = "
                    f"{others}.")
        body.append(f'<p class="verdict" id="verdict" data-engine="{escape(chosen)}">The engine run-infer runs: <b>'
                    f"{escape(chosen)}</b> ({escape(str(engine.get('precision')))}; executes "
                    f"{escape(_shares((ex.get('proof') or {}).get('mac_share')))}){speed}; its worst gate picture "
                    f"{escape(_quality(worst_of.get(chosen, {}), metric)) if chosen in worst_of else '—'}.{one} "
                    f"{len(report.get('rejected', []))} refused, {len(report.get('withheld', {}))} withheld "
                    f"(below, with the reason).</p>")
    else:
        body.append('<p class="verdict bad" id="verdict">No engine: nothing passed the gate (below, with the '
                    'reason for each).</p>')
    body.append("<h2>Candidates</h2>")
    trs, attrs = [], []
    for key, entry in candidates.items():
        name = entry["artefact"]
        row = worst_of.get(name, {})
        ms = latency.get(name)
        trs.append([escape(name), escape(entry.get("precision", "")),
                    escape(_shares((entry.get("proof") or {}).get("mac_share")) or entry.get("executes", "—")),
                    f"{ms:.2f}" if ms else "—", f"{base / ms:.2f}×" if ms and base else "—",
                    f"{throughput[name]:.1f}" if throughput.get(name) else "—",
                    escape(_quality(row, metric)) if row else "—", f"{entry.get('margin', 0):+.3f}",
                    _verdict(name, entry, report, engine or {})])
        attrs.append(f' data-artefact="{escape(name)}" data-margin="{entry.get("margin")!r}"'
                     f' data-latency="{ms!r}" data-throughput="{throughput.get(name)!r}"')
    for key, why in (not_built or {}).items():
        trs.append([escape(key), "", "", "", "", "", "", "", f'<span class="muted">not built: {escape(why)}</span>'])
        attrs.append("")
    body.append(table(["artefact", "claims", "executes (read back)", "batch-1 ms", "× model.onnx",
                       f"items/s at batch {engine.get('run_batch', 8) if engine else 8}", "worst picture",
                       "gate margin", "verdict"], trs, attrs))
    speeds = {name: ms for name, ms in latency.items()}
    if speeds:
        body += ["<h2>Speed (batch 1, measured at export on this machine)</h2>",
                 charts.bars(speeds, "ms", highlight={chosen} if chosen else set())]
    versus = (engine or {}).get("versus", {}).get("ms")
    if versus:
        body += ["<h2>Against what you would run by hand (batch 1, timed together)</h2>",
                 charts.bars(versus, "ms", highlight={(engine.get("latency_engine") or {}).get("engine") or chosen})]
    shares = {e["artefact"]: (e.get("proof") or {}).get("mac_share") for e in candidates.values()}
    shares = {k: v for k, v in shares.items() if v}
    if shares:
        body += ["<h2>What each artefact executes (share of multiply-accumulates, read back)</h2>",
                 charts.stacked(shares)]
    body.append("<h2>Worst pictures</h2><p class=\"muted\">For each artefact, the gate picture where it is furthest "
                "from PyTorch (and the worst of your own --samples, when given).</p>")
    for key, entry in candidates.items():
        if shots.get(key):
            body.append(_panels(key, entry, shots[key], metadata, metric, span))
    facts = _machine()
    body += ["<h2>Model and task</h2>", table(["", ""], [
        ["architecture", escape(str(metadata.get("arch")))],
        ["configuration", f"<code>{escape(json.dumps(metadata.get('config'), default=str))}</code>"],
        ["assumed", "<br>".join(f"{escape(k)}: {escape(str(v))}" for k, v in (metadata.get("assumed") or {}).items())
         or "nothing"],
        ["input", f"<code>{escape(json.dumps(metadata.get('input'), default=str))}</code>"],
        ["output", f"<code>{escape(json.dumps(metadata.get('output'), default=str))}</code>"],
        ["gate", escape(json.dumps(report.get("tolerances"), default=str))]]),
        "<h2>Machine</h2>", table(["", ""], [[escape(k), escape(str(v))] for k, v in facts.items()])]
    return page(f"regenrt export report — {metadata.get('arch')}", body)


def _shares(shares: dict | None) -> str:
    if not shares:
        return ""
    from ..runtime.proof import format_shares

    return format_shares(shares)


def write_export_report(path: Path, report: dict, engine: dict, metadata: dict, shots: dict,
                        not_built: dict[str, str] | None = None) -> Path:
    path.write_text(export_report(report, engine, metadata, shots, not_built))
    return path
