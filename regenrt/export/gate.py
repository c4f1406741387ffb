"""The gate loop: every candidate artefact, opened in the precision it claims, runs every parity case against
PyTorch FP32; its execution graph is read back (the proof of what it really executes); a refused candidate that
can be repaired (INT8: keep the costliest layers unquantized) is repaired and gated again.

Required artefacts (the FP32 graph, the FP16 graph when asked for, the GPU engine) make the export fail when
refused; optional ones (OpenVINO float and INT8 candidates) are refused, reported with their margin, and the
export goes on with the others.

Example::

    gate = run_gate(paths, precision_of, built, ctx, cases, references, "image", Tolerances(), log)
    gate.failed, gate.summary["openvino-int8"]["margin"]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..runtime.proof import check_claim, check_name, format_shares
from .gpu import GPU_ARTEFACTS, open_for_gate
from .parity import Tolerances, compare, judge



@dataclass
class GateResult:
    rows: list[dict] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    optional: set[str] = field(default_factory=set)
    runners: dict = field(default_factory=dict)  # the GPU artefacts' runners (their engine record reuses them)
    summary: dict[str, dict] = field(default_factory=dict)  # key -> artefact, precision, margin, proof, ...
    # key -> {"generated": worst picture, "samples": worst of the user's --samples (if any)}: each a dict of the
    # case's name, the item's input, PyTorch's output and the artefact's (for export's report.html)
    pictures: dict[str, dict] = field(default_factory=dict)


def _open(kind: str, path: Path):
    if kind in GPU_ARTEFACTS:
        return open_for_gate(kind, path)
    if path.name.endswith(".pt2"):  # a CPU AOTInductor package: its fingerprint has no verdict yet (this is it)
        from ..runtime.backends.aoti import AotiRunner

        return AotiRunner(path, "cpu", allow_unverified=True)
    from ..runtime.engine import backend_for

    return backend_for(path).open(path, "cpu")


def _proof(runner, x: np.ndarray) -> dict | None:
    proof = getattr(runner, "proof", None)
    if proof is None:
        return None
    try:
        return proof(x)
    except TypeError:
        return proof()


def gate_one(kind: str, path: Path, precision: str, cases, references, metric: str, tol: Tolerances,
             label: str = "") -> tuple[list[dict], object, dict]:
    runner = _open(kind, path)
    rows, worst = [], {}
    for (case, x), ref in zip(cases, references):
        out = runner.infer(x)
        row = {"artefact": path.name, "precision": precision, "case": case, "output": "output", **compare(ref, out)}
        if label:
            row["variant"] = label
        row["passed"], row["criterion"], row["margin"] = judge(row, precision, metric, tol)
        rows.append(row)
        group = "samples" if case.startswith("sample ") else "generated"
        if group not in worst or row["margin"] < worst[group]["margin"]:
            worst[group] = _picture(case, x, ref, out, row["margin"], metric)
    proof = _proof(runner, cases[1][1])
    entry = {"artefact": path.name, "precision": precision, "passed": all(r["passed"] for r in rows),
             "margin": min(r["margin"] for r in rows), "worst_criterion": min(rows, key=lambda r: r["margin"])["criterion"]}
    if label:
        entry["variant"] = label
    if proof is not None:
        entry["proof"] = proof
        entry["executes"] = proof["executes"]
        entry["claim_broken"] = check_claim(precision, proof) or check_name(path.name, proof)
    entry["_pictures"] = worst  # popped by run_gate into GateResult.pictures (arrays: never in parity.json)
    return rows, runner, entry


def _picture(case: str, x, ref, out, margin: float, metric: str) -> dict:
    """The item of a case where the artefact is furthest from PyTorch: its input and both outputs."""
    if metric == "segmentation":
        error = [float(np.mean(r.argmax(0) != o.argmax(0))) for r, o in zip(ref, out)]
    else:
        error = [float(np.abs(np.asarray(o, np.float64) - r).max()) for r, o in zip(ref, out)]
    i = int(np.argmax(error))
    return {"case": case, "item": i, "margin": margin, "input": np.asarray(x[i], np.float32),
            "reference": np.asarray(ref[i], np.float32), "output": np.asarray(out[i], np.float32)}


def run_gate(paths: dict[str, Path], precision_of: dict[str, str], built: dict, ctx, cases, references,
             metric: str, tol: Tolerances, log: Callable[[str], None] | None,
             extra: dict[str, tuple[list, list]] | None = None) -> GateResult:
    """``extra``: precision -> (cases, references) judged in addition for candidates of that precision (INT8:
    more pictures, its error varying with content)."""
    result = GateResult()
    extra = extra or {}

    def judged(precision):
        more_cases, more_refs = extra.get(precision, ([], []))
        return list(cases) + list(more_cases), list(references) + list(more_refs)

    for kind in list(paths):
        candidate = built.get(kind, (None,))[0]
        try:
            rows, runner, entry = gate_one(kind, paths[kind], precision_of[kind], *judged(precision_of[kind]), metric,
                                           tol)
        except Exception as exc:  # noqa: BLE001 - an optional candidate that cannot even run is refused, and said
            if kind in GPU_ARTEFACTS or candidate is None or candidate.required:
                raise
            rows, runner, entry = _could_not_run(kind, paths[kind], precision_of[kind], exc)
        result.rows += rows
        result.pictures[kind] = entry.pop("_pictures")
        result.summary[kind] = entry
        if kind in GPU_ARTEFACTS:  # kept for the engine record; a CPU session's weights go with it
            result.runners[kind] = runner
        del runner
        if candidate is not None and not candidate.cpu_engine and entry.get("claim_broken"):
            # the FP16 graph is the GPU engines' source; on the CPU it is gated for its numbers, never run as
            # the engine. What the CPU makes of it is recorded, not a broken claim of the CPU engine.
            entry["on_this_cpu"] = entry.pop("claim_broken")
        if not (kind in GPU_ARTEFACTS or (candidate is not None and candidate.required)):
            result.optional.add(kind)
            for row in rows:
                row["optional"] = True  # refused, not a failure of the export
        _say(log, entry)
        if entry["passed"]:
            continue
        result.failed.add(kind)
        if entry.get("could_not_run"):
            continue  # (a repair judges by the gate's numbers: there are none)
        while candidate is not None and candidate.repair is not None:
            repaired = candidate.repair(ctx, candidate, paths[kind], rows)
            if repaired is None:
                break
            key = f"{kind}-mixed"
            from ..runtime.engine import backend_for

            kept = backend_for(repaired).read_metadata(repaired).get("int8", {}).get("kept_unquantized", [])
            label = f"{len(kept)} layer{'s' * (len(kept) != 1)} kept unquantized"
            rows, runner, entry = gate_one(key, repaired, precision_of[kind], *judged(precision_of[kind]), metric, tol,
                                           label)
            entry["kept_unquantized"] = kept
            result.pictures[key] = entry.pop("_pictures")
            for row in rows:
                row["optional"] = True
            result.rows += rows
            paths[key], precision_of[key], built[key] = repaired, precision_of[kind], built[kind]
            result.summary[key] = entry
            del runner
            result.optional.add(key)
            _say(log, entry)
            if entry["passed"]:
                result.failed.discard(key)
                break
            result.failed.add(key)
    return result


def _could_not_run(kind: str, path: Path, precision: str, exc: Exception) -> tuple[list, None, dict]:
    """A candidate whose engine raised on a gate case (e.g. an INT8 IR of attention layers that fails at another
    input size): refused, with what it raised as the reason."""
    from ..wording import shorten

    criterion = f"runs on every gate case (it raised {type(exc).__name__}: {shorten(str(exc), 300)})"
    row = {"artefact": path.name, "precision": precision, "case": "every gate case", "output": "output",
           "passed": False, "criterion": criterion, "margin": -1.0}
    entry = {"artefact": path.name, "precision": precision, "passed": False, "margin": -1.0,
             "worst_criterion": criterion, "could_not_run": True, "_pictures": {}}
    return [row], None, entry


def _say(log, entry: dict) -> None:
    if not log:
        return
    verdict = "passed" if entry["passed"] else f"refused ({entry['worst_criterion']})"
    proof = entry.get("proof")
    executes = (" executes " + format_shares(proof["mac_share"]) + " of MACs"
                if proof and proof.get("mac_share") else "")
    variant = f" [{entry['variant']}]" if entry.get("variant") else ""
    log(f"      {entry['artefact']}{variant} ({entry['precision']}): {verdict}, margin {entry['margin']:+.2f};"
        f"{executes}" + (f" — not published: {entry['claim_broken']}" if entry.get("claim_broken") else "")
        + (f" (CPU note: {entry['on_this_cpu']}; not a CPU engine candidate)" if entry.get("on_this_cpu") else ""))
