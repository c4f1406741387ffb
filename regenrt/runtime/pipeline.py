"""``run_directory``: an engine applied to a directory of inputs, pipelined, resumable, losing nothing.

Decoding + preprocessing and postprocessing + encoding + writing run in worker threads around inference on the
calling thread (for an engine that runs several batches at once, ``engine.requests`` inference threads with one
more batch queued behind them; for a GPU engine, one thread of its own for the device stage with the next batch
queued behind it); at most ``prefetch`` items are decoded ahead and at most ``prefetch`` wait to be written, so
memory stays bounded whatever the number of inputs. Items of one shape are batched together (``batch_size``,
the last batch may be partial). Each output is written atomically; the manifest records an item only after all
its outputs are in place. A bad item becomes a row of ``errors.csv`` and the run goes on.

Example::

    summary = run_directory(Engine.load("engine/model.onnx"), "inputs/", "outputs/", RunOptions(batch_size=4))
    summary.done, summary.failed, summary.items_per_s
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import errno

from ..errors import EnvironmentFault, InputError, RegenrtError
from .device import NON_FINITE, on_device, run_batch
from .faults import ENGINE_ADVICE, engine_fault, is_out_of_memory
from .engine import Engine
from .io import csv_bytes, encode_npy, remove_stale_temporaries, write_atomic
from .png import encode_png
from ..hashing import sha256_bytes, sha256_file
from ..kernels.compile_time import compile_time
from .sizes import estimate_pixels
from .manifest import Manifest, OutputLock, sources_sha
from ..tasks.runtime import Item, Prepared, RunOptions, get_runtime

ERRORS_NAME = "errors.csv"
# OSError numbers that are the machine's fault, not an item's: the run stops at once (exit code 10)
ENVIRONMENT_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EIO: "an I/O error", errno.EROFS:
                      "the file system is read-only", errno.EDQUOT: "the disk quota is exceeded",
                      errno.ENOENT: "the output directory vanished"}
ENGINE_FAILURES_IN_A_ROW = 3  # whole batches failing on every item in a row: the engine, not the inputs
COMPILE_WORTH_SAYING_S = 0.5
ENVIRONMENT_ADVICE = "Fix the cause (free space, remount, restore the directory)"  # then: re-run the same command


class EngineStop(str):
    """The engine (the device) failed in a way no item caused: the run stops, no item is blamed."""


@dataclass
class Summary:
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: bool = False
    wall_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "infer": 0.0, "write": 0.0})
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (item, stage, reason)
    notes: list[str] = field(default_factory=list)  # the task's lines about the run (ranges used, clipping)
    sizes: dict[str, int] = field(default_factory=dict)  # items written per size strategy (whole, padded, tiled, crops)
    compile_s: float = 0.0  # of wall_s: numba compiling kernels (a first run; later runs load its cache)

    @property
    def items_per_s(self) -> float:
        return self.done / self.wall_s if self.wall_s else 0.0

    def compiling(self) -> str:
        """What part of the wall time was numba compiling (a first run), when worth saying; else ''."""
        if self.compile_s < COMPILE_WORTH_SAYING_S:
            return ""
        return f"{self.compile_s:.1f}s of it numba compiling its kernels, once: later runs load them from its cache"

    def text(self) -> str:
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in self.stage_s.items())
        state = " (interrupted)" if self.interrupted else ""
        sizes = ""
        if set(self.sizes) - {"exact"}:  # only worth a line when some picture was not the engine's size
            names = {"exact": "at the engine's size", "padded": "padded to the model's multiple",
                     "tiled": "tiled", "crops": "run as crops around their holes"}
            sizes = "\nsizes: " + ", ".join(f"{n} {names.get(k, k)}" for k, n in sorted(self.sizes.items())) + \
                " (per item in the manifest)"
        compiled = f" ({self.compiling()})" if self.compiling() else ""
        return "\n".join([f"done {self.done}, failed {self.failed}, skipped {self.skipped} of {self.total}{state}; "
                          f"{self.items_per_s:.1f} items/s over {self.wall_s:.1f}s{compiled}; time per stage (summed "
                          f"over threads): {stages}{sizes}", *self.notes])


def _encode(suffix: str, arr: np.ndarray) -> bytes:
    return encode_npy(arr) if suffix.endswith(".npy") else encode_png(arr)


def _engine_sha(engine: Engine) -> str:
    """The engine's identity in the manifest: every file it is made of (a swapped .bin is a new engine)."""
    files = engine.files
    return sha256_file(files[0]) if len(files) == 1 else sha256_bytes("".join(sha256_file(f) for f in files).encode())


class ItemFailure(str):
    """An engine failure that is one item's (found by running a failed batch item by item)."""


STOPPED = "stopped: environment fault"  # a write the environment prevented (not an item failure)


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, RegenrtError) else f"{type(exc).__name__}: {exc}"


def _stop_for(exc: Exception, single: str | None):
    """The run-stopping meaning of an engine exception, if any: a sticky device error (an :class:`EngineStop`), or
    out of memory on a single item (``single``: its id; an EnvironmentFault). None: retry or blame the item."""
    fault = engine_fault(exc)
    if fault:
        return EngineStop(f"the GPU reported {fault} while running the engine ({type(exc).__name__}: {exc}); "
                          "no item was blamed for it")
    if is_out_of_memory(exc) and single is not None:
        return EnvironmentFault(f"out of memory running the engine on a single item ({single}): "
                                f"{type(exc).__name__}: {exc}")
    return None


class _Run:
    def __init__(self, engine: Engine, in_dir: Path, out_dir: Path, options: RunOptions, progress):
        self.engine, self.in_dir, self.out_dir, self.options = engine, in_dir, out_dir, options
        self.runtime = get_runtime(engine.task)
        self.summary = Summary()
        self.manifest = Manifest(out_dir)
        self.engine_sha = _engine_sha(engine)
        self.options_key = options.key()
        self.progress = progress
        self.on_device = on_device(engine)
        self._stage_lock = threading.Lock()
        self.inflight: deque = deque()
        # inference off the main thread when the engine runs several batches at once (OpenVINO's throughput mode)
        # or on a GPU engine: its stage (fill, graph replay, synchronize, results) runs on a thread of its own
        # while the main thread gathers the next batch and hands out writes
        self.in_flight = engine.requests if not self.on_device else 1
        self.infer_pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="regenrt-infer") \
            if engine.requests > 1 or self.on_device else None
        self.fault: str | None = None  # set by an environment or engine fault: the run stops
        self.fault_advice = ENVIRONMENT_ADVICE
        self.reports: list[dict] = []  # what finish reported per written item (list.append is thread-safe)
        self.failed_in_a_row: list[set] = []  # item ids of consecutive batches that failed on every item
        # memory: one inference call takes at most this many pixels (a batch fills up to it), and the pictures
        # decoded and not yet written hold at most a few calls' worth (their sizes read from the file headers)
        self.batch_pixels = options.batch_pixels()
        self.holding: dict[str, int] = {}
        self.holding_limit = 4 * self.batch_pixels

    def timed(self, stage: str, started: float) -> None:
        with self._stage_lock:
            self.summary.stage_s[stage] += time.perf_counter() - started

    def fail(self, item_id: str, stage: str, reason: str) -> None:
        self.summary.failed += 1
        self.summary.errors.append((item_id, stage, reason))
        self.progress.update(1)
        self.holding.pop(item_id, None)

    def decode(self, item: Item) -> tuple[Item, Prepared | None, str | None, str]:
        """Worker: read, validate and preprocess one item; never raises for a bad item."""
        started = time.perf_counter()
        try:
            if item.error:
                raise InputError(item.error)
            digest = sources_sha(item.sources)
            if self.manifest.is_done(item.id, digest, self.engine_sha, self.options_key, self.out_dir):
                return item, None, None, "skip"
            prepared = self.runtime.prepare(self.runtime.decode(item, self.options), self.engine, self.options)
            prepared.item = item
            prepared.context["sources_sha"] = digest
            return item, prepared, None, "ok"
        except InputError as exc:
            return item, None, str(exc), "error"
        except Exception as exc:  # an unforeseen decoder failure is still this item's problem only
            return item, None, f"{type(exc).__name__}: {exc}", "error"
        finally:
            self.timed("decode", started)

    def write(self, prepared: Prepared, output: np.ndarray | None, finished: dict | None = None) -> str | None:
        """Worker: postprocess (unless the GPU did: ``finished``), encode and atomically write one item's
        outputs, then record it."""
        started = time.perf_counter()
        item = prepared.item
        try:
            outputs = finished if finished is not None else self.runtime.finish(prepared, output, self.options)
            digests = {}
            for suffix, arr in outputs.items():
                data = _encode(suffix, arr)
                name = f"{item.id}{suffix}"
                write_atomic(self.out_dir / name, data, root=self.out_dir, durable=False)  # the manifest's hash vouches
                digests[name] = sha256_bytes(data)
            if "report" in prepared.context:
                self.reports.append({**prepared.context["report"], "id": item.id})
            previous = self.manifest.entries.get(item.id, {}).get("outputs", {})
            self.manifest.record(item.id, prepared.context["sources_sha"], self.engine_sha, self.options_key, digests,
                                 size=self._strategy(prepared))
            for name in set(previous) - set(digests):  # an earlier run's outputs of other options (e.g. .npy)
                if Path(name).name == name and name.startswith(item.id):
                    (self.out_dir / name).unlink(missing_ok=True)
            return None
        except OSError as exc:
            if exc.errno in ENVIRONMENT_ERRNOS and not (exc.errno == errno.ENOENT and self.out_dir.is_dir()):
                self.stop(f"{ENVIRONMENT_ERRNOS[exc.errno]} while writing {item.id} under {self.out_dir} ({exc})")
                return STOPPED
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            self.timed("write", started)

    def stop(self, reason: str, advice: str = ENVIRONMENT_ADVICE) -> None:
        """An environment or engine fault: stop taking new work (items not attempted stay unmarked)."""
        with self._stage_lock:
            if self.fault is None:
                self.fault, self.fault_advice = reason, advice

    def infer(self, batch: list[Prepared], pool: ThreadPoolExecutor, writes: deque) -> None:
        """Run one batch; with an engine that takes several batches at once (``engine.requests``, OpenVINO's
        throughput mode) the batch goes to the inference threads and at most that many are in flight."""
        if self.fault:
            return  # an environment fault stopped the run: these items are not attempted
        if self.infer_pool is None:
            self._schedule_writes(batch, self._infer_batch(batch), pool, writes)
            return
        self.inflight.append((batch, self.infer_pool.submit(self._infer_batch, batch)))
        # one batch more than the engine runs at once waits queued, so a request that finishes starts the next
        # batch at once instead of idling while this thread hands out writes and gathers the next batch
        self.drain_inflight(pool, writes, self.in_flight)

    def drain_inflight(self, pool: ThreadPoolExecutor, writes: deque, keep: int) -> None:
        while len(self.inflight) > keep:
            batch, future = self.inflight.popleft()
            self._schedule_writes(batch, future.result(), pool, writes)

    def _infer_batch(self, batch: list[Prepared]):
        """(outputs, finished) for the batch, or an exception. Out of memory (host or GPU): retried as single items.
        A sticky device error: the run stops at once (an :class:`EngineStop`; retries would only blame innocent
        items). Any other failure of a multi-item batch: each item alone, so only the item that fails is failed."""
        started = time.perf_counter()
        try:
            return self._run_engine(batch)
        except Exception as exc:  # an engine error on this batch: find the item(s) it is about
            stop = _stop_for(exc, batch[0].item.id if len(batch) == 1 else None)
            if stop is not None:
                return stop
            return exc if len(batch) == 1 else self._one_by_one(batch)
        finally:
            self.timed("infer", started)

    def _run_engine(self, batch: list[Prepared]):
        layout = batch[0].context.get("plan")
        if layout is not None and layout.kind in ("tiled", "crops"):  # one item: it runs its own tiles or crops
            return [self.runtime.run_plan(batch[0], self.engine, self.options)], [None]
        if self.on_device and not batch[0].context.get("host"):  # upload, pre-kernel, engine, post-kernel, download on the GPU; only results come back
            results = run_batch(self.engine, self.runtime, batch, self.options)
            return ([ItemFailure(r) if isinstance(r, str) else None for r in results],
                    [None if isinstance(r, str) else r for r in results])
        outputs = self.engine.infer(np.stack([p.model_input for p in batch]))
        return [out if np.isfinite(out).all() else ItemFailure(NON_FINITE) for out in outputs], [None] * len(batch)

    def _strategy(self, prepared: Prepared) -> str | None:
        layout = prepared.context.get("plan")
        if layout is None:
            return None
        with self._stage_lock:
            self.summary.sizes[layout.kind] = self.summary.sizes.get(layout.kind, 0) + 1
        return layout.describe()

    def _one_by_one(self, batch: list[Prepared]):
        outputs, finished = [], []
        for p in batch:
            try:
                out, done = self._run_engine([p])
                outputs.append(out[0])
                finished.append(done[0])
            except Exception as exc:
                stop = _stop_for(exc, p.item.id)
                if stop is not None:
                    return stop
                outputs.append(ItemFailure(f"{type(exc).__name__}: {exc}"))
                finished.append(None)
        return outputs, finished

    def _schedule_writes(self, batch: list[Prepared], result, pool: ThreadPoolExecutor, writes: deque) -> None:
        if isinstance(result, EngineStop):
            self.stop(str(result), ENGINE_ADVICE)
            return
        if isinstance(result, EnvironmentFault):
            self.stop(str(result))
            return
        if isinstance(result, Exception):
            for p in batch:
                self.fail(p.item.id, "infer", _reason(result))
            self._count_batch(batch, failed=True)
            return
        outputs, finished = result
        failures = 0
        for p, out, done in zip(batch, outputs, finished):
            if isinstance(out, ItemFailure):
                self.fail(p.item.id, "infer", str(out))
                failures += 1
            else:
                writes.append((p.item.id, pool.submit(self.write, p, out, done)))
        self._count_batch(batch, failed=failures == len(batch))

    def _count_batch(self, batch: list[Prepared], failed: bool) -> None:
        """Batches failing on every item, in a row: after ``ENGINE_FAILURES_IN_A_ROW`` of them it is the engine, not
        the items — the run stops and those items lose their error rows (they are not done: a re-run redoes them)."""
        if not failed:
            self.failed_in_a_row = []
            return
        self.failed_in_a_row.append({p.item.id for p in batch})
        if len(self.failed_in_a_row) >= ENGINE_FAILURES_IN_A_ROW:
            innocent = set().union(*self.failed_in_a_row)
            rows = [e for e in self.summary.errors if e[0] in innocent]
            reason = rows[-1][2] if rows else "no reason given"
            self.summary.errors[:] = [e for e in self.summary.errors if e[0] not in innocent]
            self.summary.failed -= len(rows)
            self.stop(f"the engine failed on every item of {ENGINE_FAILURES_IN_A_ROW} batches in a row, "
                      f"{len(innocent)} items (last reason: {reason}); those items are not blamed in "
                      f"{ERRORS_NAME}", ENGINE_ADVICE)

    def drain_writes(self, writes: deque, keep: int) -> None:
        """Collect finished writes: all beyond ``keep`` (waiting for them), and any already done at the head (so the
        progress bar moves as items finish, not only when the queue is full)."""
        while writes and (len(writes) > keep or writes[0][1].done()):
            item_id, future = writes.popleft()
            error = future.result()
            if error is STOPPED:
                continue  # not this item's fault: it is simply not done
            if error:
                self.fail(item_id, "write", error)
            else:
                self.summary.done += 1
                self.progress.update(1)
                self.holding.pop(item_id, None)

    def run(self, items: list[Item]) -> Summary:
        opts, prefetch = self.options, max(2, self.options.batch_size * (self.engine.requests + 2))
        groups: dict[tuple, list[Prepared]] = {}
        decodes: deque[Future] = deque()
        writes: deque = deque()
        pending = iter(items)
        self.untaken = len(items)
        with ThreadPoolExecutor(max_workers=max(1, opts.workers), thread_name_prefix="regenrt-io") as pool:
            try:
                for item in pending:
                    if self.fault:
                        break
                    pixels = estimate_pixels(item.sources[0]) if item.sources and not item.error else 0
                    self._make_room(pixels, decodes, groups, pool, writes)
                    self.holding[item.id] = pixels
                    decodes.append(pool.submit(self.decode, item))
                    if len(decodes) >= prefetch:
                        self._take(decodes.popleft().result(), groups, pool, writes)
                    self.drain_writes(writes, prefetch)
                while decodes and not self.fault:
                    self._take(decodes.popleft().result(), groups, pool, writes)
                for shape in list(groups):
                    self.infer(groups.pop(shape), pool, writes)
                self.drain_inflight(pool, writes, 0)
                self.drain_writes(writes, 0)
                for future in decodes:  # after an environment fault: not attempted, not failed
                    future.cancel()
            except KeyboardInterrupt:
                self.summary.interrupted = True
                for future in decodes:
                    future.cancel()
                pool.shutdown(wait=True, cancel_futures=True)  # writes in flight finish; each is atomic
                self._count_finished(writes)
            finally:
                if self.infer_pool is not None:
                    self.infer_pool.shutdown(wait=True, cancel_futures=True)
        return self.summary

    def _make_room(self, pixels: int, decodes: deque, groups: dict, pool, writes: deque) -> None:
        """Before decoding another picture: while the pictures held (decoded, queued, in flight, being written)
        and this one exceed the memory budget, move the oldest work on — a folder of 48-MP pictures is decoded a
        few at a time, not 32 at once."""
        while self.holding and sum(self.holding.values()) + pixels > self.holding_limit and not self.fault:
            if decodes:
                self._take(decodes.popleft().result(), groups, pool, writes)
            elif groups:
                largest = max(groups, key=lambda k: sum(_pixels(p) for p in groups[k]) or 1)
                self.infer(groups.pop(largest), pool, writes)
            elif self.inflight:
                self.drain_inflight(pool, writes, 0)
            elif writes:
                self.drain_writes(writes, 0)
            else:
                break

    def _count_finished(self, writes: deque) -> None:
        for item_id, future in writes:
            if future.done() and not future.cancelled() and future.result() is None:
                self.summary.done += 1
                self.progress.update(1)  # the bar says what is kept when the run was interrupted

    def _batch_limit(self) -> int:
        """The batch size to dispatch at: ``batch_size``, except for the last ``requests`` batches of the run, which
        go out in ``requests`` times smaller batches — the requests then finish nearly together instead of one of
        them running the last full batch alone (a whole call's time with cores idle, ~4 % of a 256-item run)."""
        size, requests = self.options.batch_size, self.engine.requests
        if requests > 1 and self.untaken < size * requests:
            return max(1, -(-size // requests))
        return size

    def _take(self, decoded, groups, pool, writes) -> None:
        item, prepared, error, status = decoded
        self.untaken -= 1
        if status == "skip":
            self.summary.skipped += 1
            self.progress.update(1)
            self.holding.pop(item.id, None)
        elif status == "error":
            self.fail(item.id, "decode", error)
        else:
            key = (prepared.shape, bool(prepared.context.get("host")))  # a padded picture never joins a GPU batch
            group = groups.setdefault(key, [])
            if group and sum(_pixels(p) for p in group) + _pixels(prepared) > self.batch_pixels:
                self.infer(groups.pop(key), pool, writes)  # this item would overflow the call: the others go first
                group = groups.setdefault(key, [])
            group.append(prepared)
            planned = prepared.model_input is None and prepared.shape and prepared.shape[0] == "plan"
            if planned or len(group) >= self._batch_limit() or sum(_pixels(p) for p in group) >= self.batch_pixels:
                self.infer(groups.pop(key), pool, writes)


def _pixels(prepared: Prepared) -> int:
    shape = prepared.shape
    return int(shape[-1]) * int(shape[-2]) if len(shape) == 3 and isinstance(shape[-1], int) else 0


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def plan_run(engine: Engine, input_dir, output_dir, options: RunOptions | None):
    """What every driver of a run does before taking the output lock (run_directory here, the Ray driver in
    :mod:`regenrt.integrations.ray`): the task's runtime, the options with engine-dependent defaults, the items;
    an output directory inside the input directory refused; the output directory created.
    Returns (runtime, options, items, in_dir, out_dir)."""
    options = options or RunOptions()
    in_dir, out_dir = Path(input_dir), Path(output_dir)
    runtime = get_runtime(engine.task)
    runtime.check_options(options)
    options = runtime.resolve_options(options, engine).sized()
    if out_dir.resolve() == in_dir.resolve() or in_dir.resolve() in out_dir.resolve().parents:
        raise RegenrtError(f"the output directory {out_dir} is inside the input directory {in_dir}: its outputs would "
                           "be read back as inputs by the next run. Choose an --output outside --input.")
    items = runtime.items(in_dir, options)
    if not items:
        article = "an" if engine.task[0] in "aeiou" else "a"
        raise RegenrtError(f"found nothing to run in {str(in_dir)!r}: {article} {engine.task} engine reads "
                           f"{runtime.expects(options)}, searched recursively (hidden files skipped); the directory "
                           f"holds {_what_is_in(in_dir)}. Check --input.")
    out_dir.mkdir(parents=True, exist_ok=True)
    return runtime, options, items, in_dir, out_dir


def _what_is_in(directory: Path) -> str:
    """'3 files (.txt x2, .jpg)', or 'no files' — what a run that found no inputs saw."""
    counts: dict[str, int] = {}
    for path in directory.rglob("*"):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts):
            counts[path.suffix.lower() or "(no suffix)"] = counts.get(path.suffix.lower() or "(no suffix)", 0) + 1
    if not counts:
        return "no files"
    kinds = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(counts.items(), key=lambda kv: -kv[1])[:6])
    total = sum(counts.values())
    return f"{total} other file{'s' * (total != 1)} ({kinds})"


def close_run(out_dir: Path, summary: Summary, options: RunOptions, items: list[Item], manifest: Manifest,
              task: str, fault: str | None = None, advice: str = ENVIRONMENT_ADVICE) -> None:
    """What every driver does at the end, under the output lock: errors.csv, the environment fault (raised with
    the counts), the submission CSV."""
    try:
        _write_errors(out_dir, summary)
    except OSError as exc:
        if not fault:
            raise
        print(f"run-infer: could not write {out_dir / ERRORS_NAME} either ({exc})", file=sys.stderr)
    if fault:
        remaining = summary.total - summary.done - summary.failed - summary.skipped
        raise EnvironmentFault(
            f"stopped: {fault}. {summary.done} item(s) done (recorded in the manifest), {summary.failed} "
            f"failed, {remaining} not attempted. {advice} and re-run the same command: it resumes with the "
            f"{remaining + summary.failed} left.", summary)
    if options.submission and task == "inpainting":
        _write_submission(options.submission, items, manifest, out_dir)


def run_directory(engine: Engine, input_dir, output_dir, options: RunOptions | None = None,
                  progress: bool = False) -> Summary:
    """Run ``engine`` over ``input_dir`` into ``output_dir`` (see module docstring); returns the summary."""
    runtime, options, items, in_dir, out_dir = plan_run(engine, input_dir, output_dir, options)
    with OutputLock(out_dir):
        remove_stale_temporaries(out_dir)  # a killed run's half-written files: no live run owns them (the lock)
        bar = _progress_bar(len(items)) if progress else _NoProgress()
        run = _Run(engine, in_dir, out_dir, options, bar)
        run.summary.total = len(items)
        started = time.perf_counter()
        try:
            with compile_time() as compiled:
                summary = run.run(items)
        finally:
            run.manifest.close()
            bar.close()
        summary.wall_s = time.perf_counter() - started
        summary.compile_s = compiled.seconds
        summary.notes = runtime.report(run.reports, options)
        close_run(out_dir, summary, options, items, run.manifest, engine.task, run.fault, run.fault_advice)
    return summary


def _progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="item", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


def _write_errors(out_dir: Path, summary: Summary) -> None:
    path = out_dir / ERRORS_NAME
    if not summary.errors:
        path.unlink(missing_ok=True)
        return
    write_atomic(path, csv_bytes(["item", "stage", "reason"], sorted(summary.errors)), root=out_dir)


def _write_submission(path: Path, items: list[Item], manifest: Manifest, out_dir: Path) -> None:
    """``id,value`` rows of every completed boxes item, read back from the written PNGs (so resumes agree)."""
    from .io import decode_image
    from ..tasks.runtime.inpainting import submission_rows

    rows = []
    for item in items:
        entry = manifest.entries.get(item.id)
        if item.error or not entry or "boxes" not in item.extra:
            continue
        picture = decode_image(out_dir / f"{item.id}.png")
        rows.extend(submission_rows(item.id, picture, item.extra["boxes"]))
    write_atomic(Path(path), csv_bytes(["id", "value"], rows))
