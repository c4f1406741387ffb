"""Ray Data batch inference: run-infer's inputs, outputs and promises on a Ray cluster.

The driver lists the items exactly as ``run-infer`` does (the task's own pairing of pictures and masks, boxes,
phase maps), drops the ones its manifest says are complete, and hands the rest to a Ray Dataset; ``map_batches``
runs a callable class that loads the Engine once per actor and processes its block with run-infer's own pipeline
(decode, pre-kernels, engine, post-kernels, atomic writes). Actors never touch the manifest: they return what
they wrote (names and sha256) and the driver appends it, so no two processes write the same file and a killed
driver's re-run skips what was recorded. Per-item errors stay per-item rows of ``errors.csv``.

Example::

    summary = infer_dataset("engine/", "inputs/", "outputs/", RunOptions(masks=Path("masks/")), num_actors=4)
"""
from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, RegenrtError


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError("Ray batch inference needs Ray Data: `pip install regenrt[ray]`.") from None
    return ray


class _Collecting:
    """The manifest an actor sees: nothing is skipped (the driver decided), records are returned, not written."""

    def __init__(self):
        self.entries: dict[str, dict] = {}

    def is_done(self, *args, **kwargs) -> bool:
        return False

    def record(self, item_id, sources_sha, engine_sha, options_key, outputs, size=None) -> None:
        self.entries[item_id] = {"item_id": item_id, "sources_sha": sources_sha, "engine_sha": engine_sha,
                                 "options_key": options_key, "outputs": outputs, "size": size}

    def close(self) -> None:
        pass


class _Worker:
    """One per Ray actor: the engine loaded once, then blocks of items through run-infer's pipeline."""

    def __init__(self, engine_path: str, device: str, in_dir: str, out_dir: str, options_blob: bytes):
        from ..runtime import Engine

        self.engine = Engine.load(engine_path, device=device, mode="throughput")
        self.in_dir, self.out_dir = Path(in_dir), Path(out_dir)
        self.options = pickle.loads(options_blob)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from ..runtime.pipeline import _NoProgress, _Run

        items = [pickle.loads(bytes(blob)) for blob in batch["item"]]
        run = _Run(self.engine, self.in_dir, self.out_dir, self.options, _NoProgress())
        run.manifest = _Collecting()
        summary = run.run(items)
        if run.fault:
            raise RegenrtError(f"stopped on a Ray worker: {run.fault}")
        errors = {item_id: (stage, reason) for item_id, stage, reason in summary.errors}
        reports = {r.get("id"): r for r in run.reports}
        rows: dict[str, list] = {"id": [], "entry": [], "stage": [], "reason": [], "report": []}
        for item in items:
            stage, reason = errors.get(item.id, ("", ""))
            rows["id"].append(item.id)
            rows["entry"].append(pickle.dumps(run.manifest.entries.get(item.id)))
            rows["stage"].append(stage)
            rows["reason"].append(reason)
            rows["report"].append(pickle.dumps(reports.get(item.id)))
        return rows


def infer_dataset(engine: str | os.PathLike, input_dir: str | os.PathLike, output_dir: str | os.PathLike,
                  options=None, *, address: str | None = None, num_actors: int = 1, block_items: int | None = None,
                  device: str = "cpu"):
    """Run ``engine`` over ``input_dir`` into ``output_dir`` on Ray (the cluster at ``address``, or a local one);
    the same outputs, manifest and ``errors.csv`` as :func:`regenrt.runtime.run_directory`. Returns its Summary.
    ``num_actors`` actors each load the engine once (``device="cuda"``: one GPU per actor); ``block_items`` items
    go to an actor per call (default 4 batches). The output directory must be on a file system every worker sees.
    """
    ray = import_ray()
    from ..runtime import Engine
    from ..runtime.io import remove_stale_temporaries
    from ..runtime.manifest import Manifest, OutputLock, sources_sha
    from ..runtime.pipeline import Summary, _engine_sha, close_run, plan_run

    probe = Engine.load(engine, device=device, mode="throughput")  # the driver reads the task and identity of the
    # artefact the actors run (an export directory's engine, not its batch-1 engine)
    runtime, options, items, in_dir, out_dir = plan_run(probe, input_dir, output_dir, options)
    summary = Summary(total=len(items))
    started = time.perf_counter()
    with OutputLock(out_dir):
        remove_stale_temporaries(out_dir)
        manifest = Manifest(out_dir)
        engine_sha, key = _engine_sha(probe), options.key()
        todo = []
        for item in items:
            if item.error:
                summary.failed += 1
                summary.errors.append((item.id, "decode", item.error))
            elif manifest.is_done(item.id, sources_sha(item.sources), engine_sha, key, out_dir):
                summary.skipped += 1
            else:
                todo.append(item)
        reports = []
        try:
            if todo:
                if not ray.is_initialized():
                    ray.init(address=address, include_dashboard=False, log_to_driver=False)
                dataset = ray.data.from_items([{"item": pickle.dumps(item)} for item in todo])
                dataset = dataset.map_batches(
                    _Worker, fn_constructor_args=(str(probe.path), device, str(in_dir), str(out_dir),
                                                  pickle.dumps(options)),
                    batch_size=block_items or 4 * options.batch_size, batch_format="numpy", concurrency=num_actors,
                    num_gpus=1 if device == "cuda" else 0)
                for row in dataset.iter_rows():  # recorded as results arrive: a killed driver loses only those in flight
                    entry = pickle.loads(row["entry"])
                    if entry is None:
                        summary.failed += 1
                        summary.errors.append((str(row["id"]), str(row["stage"]), str(row["reason"])))
                        continue
                    manifest.record(**entry)
                    summary.done += 1
                    report = pickle.loads(row["report"])
                    if report is not None:
                        reports.append(report)
        finally:
            manifest.close()
        summary.wall_s = time.perf_counter() - started
        summary.notes = runtime.report(reports, options)
        close_run(out_dir, summary, options, items, manifest, probe.task)
    return summary
