"""The check's report: ``report.json`` (everything) and ``report.md`` (for a person), rewritten after every stage
so that a check killed mid-run still leaves what it finished."""
from __future__ import annotations

import json
from pathlib import Path


def derived(rows: list[dict]) -> list[str]:
    """Readable ratios from the rows that passed (the goals say what is met; these say what was measured)."""
    lines = []
    ok = [r for r in rows if r["outcome"] == "passed" and r.get("median_ms")]
    kernels: dict = {}
    for r in ok:
        e = r["extra"]
        if e.get("impl") in ("cuda-batch", "d2d-copy") and e.get("event_ms"):
            kernels.setdefault((e.get("kernel"), e.get("size"), e.get("batch")), {})[e["impl"]] = e["event_ms"]
    for (kernel, size, batch), t in sorted(kernels.items(), key=str):
        if "cuda-batch" in t and "d2d-copy" in t:
            lines.append(f"kernel {kernel} {batch}x{size}²: {t['cuda-batch']:.4f} ms vs copy {t['d2d-copy']:.4f} ms "
                         f"-> {100 * t['d2d-copy'] / t['cuda-batch']:.0f} % of copy bandwidth")
    for r in ok:
        e = r["extra"]
        if "end_to_end" in e:
            more = {k: round(v, 2) for k, v in e.items() if k.startswith("ratio_") and isinstance(v, float)}
            lines.append(f"end to end {e['end_to_end']}: pipeline {e.get('pipeline_items_per_s', 0):.1f} items/s, "
                         f"engine {e.get('engine_items_per_s', 0):.1f}; {more}; pipeline graph / engine graph "
                         f"{e.get('pipeline_graph_vs_engine_graph', 'not captured')}")
        if "gpu_peer" in e:
            mode = f" ({e['mode']})" if e.get("mode") else ""
            lines.append(f"peer {e['model']} b{e['batch']} {e['size']}²: {e['gpu_peer']}{mode} {e['ms']:.3f} ms, "
                         f"{e.get('tflops', 0):.1f} TFLOP/s ({e.get('pct_fp16_peak', 0):.1f} % of FP16 peak), "
                         f"PSNR {e.get('psnr_db')}")
    return lines


def _goal_row(g: dict) -> str:
    met = {True: "yes", False: "no", None: "not measured"}[g["met"]]
    why = "; ".join([*(f"missing {m}" for m in g.get("missing", [])), *(f"failed {f}" for f in g.get("failed", []))])
    extra = []
    if g.get("best_peer"):
        extra.append(f"best peer {g['best_peer']}, ours {g.get('ours')}")
    if g.get("peers"):
        extra.append(f"peers {', '.join(g['peers'])}")
    if g.get("modes"):
        extra.append("modes " + ", ".join(f"{k}={v}" for k, v in g["modes"].items()))
    if g.get("not_compared"):
        extra.append("not compared: " + ", ".join(f"{k} ({v})" for k, v in g["not_compared"].items()))
    return f"| {g['name']} | {g['value']} | {g['kind']} {g['goal']} | {met} | {why or '; '.join(extra)} |"


def markdown(report: dict) -> str:
    f = report.get("facts", {})
    out = [f"# regenrt GPU check — {f.get('gpu', 'no GPU')}", "",
           f"started {report.get('started')}; deadline {report.get('deadline')} s; elapsed "
           f"{report.get('elapsed', 0):.0f} s{'; STAND-INS (no GPU measured)' if report.get('stand_ins') else ''}",
           "", f"nvidia-smi: {f.get('nvidia_smi')}; torch {f.get('torch')} (CUDA {f.get('torch_cuda')}, cuDNN "
           f"{f.get('cudnn')}); numba {f.get('numba')}, numba-cuda {f.get('numba-cuda')}; numpy {f.get('numpy')}; "
           f"onnxruntime {f.get('onnxruntime')} (CUDA provider: {report.get('ort_cuda') or 'yes'}); TensorRT "
           f"{f.get('tensorrt') or 'not installed'}; Python {f.get('python')}", "",
           f"install: {report.get('install')}; compile check: {report.get('compile_check')}", "",
           "## Goals", "| goal | value | target | met | needs / measured against |", "|---|---|---|---|---|",
           *[_goal_row(g) for g in report.get("goals", [])], ""]
    for name, stage in report.get("stages", {}).items():
        state = f" — INCOMPLETE: {stage['incomplete']}" if stage.get("incomplete") else ""
        out.append(f"## {name}: rc {stage['rc']} in {stage['seconds']:.0f} s (limit {stage['limit']:.0f} s) — "
                   f"{stage['counts']}{state}")
        for nodeid in stage.get("interrupted", []):
            out.append(f"- interrupted {nodeid}")
        for nodeid, t in stage.get("tests", {}).items():
            if t["outcome"] != "passed" or name == "tests":
                out.append(f"- {t['outcome']} {nodeid} ({t['seconds']:.1f} s) {t.get('detail', '')[:200]}")
        out.append("")
    why = ("the check was refused: " + report["refused"] if report.get("refused") else
           f"the check was stopped ({report['stopped']})" if report.get("stopped") else "the deadline was reached first")
    for name in report.get("not_run", []):
        out.append(f"## {name}: not run ({why})")
    out += ["## Derived (passed rows)", *[f"- {line}" for line in report.get("derived", [])], ""]
    return "\n".join(out) + "\n"


def write(report: dict, out: Path) -> None:
    """Both files, each written whole to a temporary name and renamed: a kill never leaves half a report."""
    for name, text in (("report.json", json.dumps(report, indent=1, default=str)), ("report.md", markdown(report))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
