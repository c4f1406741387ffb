"""The issue's goals, read from the benchmark rows of a run. Each goal names the rows it needs; if any of them is
missing (not run, stage cut), skipped, failed (its test failed, parity included) or fell back (no pipeline graph
captured), the goal is ``met: null`` with ``missing`` / ``failed`` saying which — never ``true`` on what was not
measured. Every goal: ``{"name", "value", "goal", "kind", "met", "needs", "missing", "failed", ...}``."""
from __future__ import annotations

KERNELS = ("phase_normalize", "holes_fill", "rgb_normalize", "composite", "argmax_palette")
KERNEL_GOALS = {256: 0.6, 1024: 0.8}  # kernel / device-to-device copy of the same bytes, at batch 16
E2E = {"phase": ("phase-recovery", 0.8), "inpainting": ("inpainting", 0.8)}  # run-infer / engine graph replay
PIPELINE_GRAPH_GOAL = 1.15  # pipeline graph / engine graph, worst task
PEER_MODELS = ("r50", "unet")
PEERS = ("eager-fp32", "eager-fp16", "compile-fp16", "ort-cuda-fp16")
OURS_NEEDED, OURS_OPTIONAL = ("regenrt-torch",), ("regenrt-aoti",)  # aoti is opt-in (--gpu-engine aoti)


class FellBack(Exception):
    """A needed row ran but did not measure what the goal is about (e.g. the pipeline graph was not captured)."""


def key(row: dict) -> tuple | None:
    e = row.get("extra") or {}
    if e.get("impl") in ("cuda-batch", "d2d-copy") and "kernel" in e:
        return ("kernel", e["kernel"], e.get("size"), e.get("batch"), e["impl"])
    if "end_to_end" in e:
        return ("e2e", str(e["end_to_end"]).split(" ")[0])
    if "gpu_peer" in e:
        return ("peer", e.get("model"), e.get("batch"), e.get("size"), e["gpu_peer"])
    return None


def label(k: tuple) -> str:
    return "/".join(str(part) for part in k)


def _goal(name, goal, kind, needs: list[tuple], index: dict, compute, **more) -> dict:
    missing = [label(k) for k in needs if k not in index]
    failed = [f"{label(k)}: {index[k]['outcome']}" for k in needs if k in index and index[k]["outcome"] != "passed"]
    value = None
    if not missing and not failed:
        try:
            value = compute({k: index[k] for k in needs})
        except FellBack as exc:
            failed.append(str(exc))
    met = None if value is None else (value >= goal if kind == ">=" else value <= goal)
    return {"name": name, "value": None if value is None else round(value, 3), "goal": goal, "kind": kind,
            "met": met, "needs": [label(k) for k in needs], "missing": missing, "failed": failed, **more}


def _kernel_goals(index) -> list[dict]:
    goals = []
    for size, goal in KERNEL_GOALS.items():
        needs = [("kernel", k, size, 16, impl) for k in KERNELS for impl in ("cuda-batch", "d2d-copy")]

        def worst(rows, size=size):
            ratios = []
            for k in KERNELS:
                ms = rows[("kernel", k, size, 16, "cuda-batch")]["extra"].get("event_ms")
                copy = rows[("kernel", k, size, 16, "d2d-copy")]["extra"].get("event_ms")
                if not ms or not copy:
                    raise FellBack(f"kernel/{k}/{size}: no CUDA-event time recorded")
                ratios.append(copy / ms)
            return min(ratios)

        goals.append(_goal(f"kernels_vs_copy_{size}x16", goal, ">=", needs, index, worst))
    return goals


def _e2e_goals(index) -> list[dict]:
    goals = []
    for name, (task, goal) in E2E.items():
        def ratio(rows, task=task):
            e = rows[("e2e", task)]["extra"]
            if "ratio_vs_graph" not in e:
                raise FellBack(f"e2e/{task}: the engine did not run on the GPU (no graph-replay denominator)")
            return e["ratio_vs_graph"]

        goals.append(_goal(f"e2e_{name}", goal, ">=", [("e2e", task)], index, ratio))

    def pipeline(rows):
        values = []
        for (_, task), row in rows.items():
            if "pipeline_graph_vs_engine_graph" not in row["extra"]:
                raise FellBack(f"e2e/{task}: no pipeline graph was captured (the run fell back to eager steps)")
            values.append(row["extra"]["pipeline_graph_vs_engine_graph"])
        return max(values)

    goals.append(_goal("pipeline_graph_vs_engine_graph", PIPELINE_GRAPH_GOAL, "<=",
                       [("e2e", task) for task, _ in E2E.values()], index, pipeline))
    return goals


def _peer_goals(index, peers: tuple[str, ...], not_compared: dict) -> list[dict]:
    cases = {(k[1], k[2], k[3]) for k in index if k[0] == "peer"}
    cases |= {(model, 8, 256) for model in PEER_MODELS}  # always listed: null when not run
    goals = []
    for model, batch, size in sorted(cases, key=str):
        needs = [("peer", model, batch, size, impl) for impl in OURS_NEEDED + peers]
        optional = [("peer", model, batch, size, impl) for impl in OURS_OPTIONAL]
        used: dict = {}

        def best(rows, model=model, batch=batch, size=size, optional=optional, used=used):
            ours = {k[4]: r["extra"]["ms"] for k, r in rows.items() if k[4].startswith("regenrt-")}
            ours.update({k[4]: index[k]["extra"]["ms"] for k in optional
                         if k in index and index[k]["outcome"] == "passed"})
            theirs = {k[4]: r["extra"]["ms"] for k, r in rows.items() if not k[4].startswith("regenrt-")}
            peer, mine = min(theirs, key=theirs.get), min(ours, key=ours.get)
            used.update(best_peer=peer, ours=mine, ms={**ours, **theirs},
                        modes={k[4]: r["extra"].get("mode") for k, r in rows.items() if r["extra"].get("mode")})
            return theirs[peer] / ours[mine]

        suffix = "" if size == 256 else f"_{size}"
        goal = _goal(f"engine_vs_best_peer_{model}_b{batch}{suffix}", 1.0, ">=", needs, index, best,
                     peers=list(peers), not_compared=not_compared)
        goals.append({**goal, **used})
        if (model, batch, size) == ("r50", 8, 256):
            eager = [("peer", model, batch, size, impl) for impl in OURS_NEEDED + ("eager-fp32",)]
            goals.append(_goal("engine_vs_eager_fp32_r50_b8", 3.0, ">=", eager, index,
                               lambda rows: min(r["extra"]["ms"] for k, r in rows.items() if k[4] == "eager-fp32")
                               / min(r["extra"]["ms"] for k, r in rows.items() if k[4].startswith("regenrt-"))))
    return goals


def evaluate(rows: list[dict], ort_cuda: str | None = None) -> list[dict]:
    """The goals from ``rows`` (benchmark rows with their tests' ``outcome``). ``ort_cuda``: None when ONNX
    Runtime's CUDA provider is installed (then it is a needed peer), else why not (recorded as not compared)."""
    index: dict = {}
    for row in rows:
        k = key(row)
        if k is not None:
            index[k] = row  # a rerun of the same case in a later stage replaces the earlier row
    peers = PEERS if ort_cuda is None else tuple(p for p in PEERS if p != "ort-cuda-fp16")
    not_compared = {} if ort_cuda is None else {"ort-cuda-fp16": ort_cuda}
    return _e2e_goals(index) + _kernel_goals(index) + _peer_goals(index, peers, not_compared)
