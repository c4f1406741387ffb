"""In-memory use of an engine with its task's pre/post-processing, for production pipelines.

Example::

    engine = Engine.load("engine/model.onnx")
    predictor = Predictor(engine)
    out = predictor.predict(picture=rgb_uint8, mask=hole_mask)      # {".png": HxWx3 uint8}
    outs = predictor.predict_many([{"phase": p} for p in phases])    # batched

A Predictor is safe to call from several threads: it holds no per-call state and the engine is thread-safe.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InferenceError, InputError, RegenrtError
from .device import on_device, run_batch
from .engine import Engine
from ..tasks.runtime import Item, RunOptions, get_runtime


class Predictor:
    def __init__(self, engine: Engine, options: RunOptions | None = None):
        self.engine = engine
        self.options = options or RunOptions()
        self.runtime = get_runtime(engine.task)
        if engine.task != "inpainting":  # the inpainting checks are about --masks/--boxes, directory mode only
            self.runtime.check_options(self.options)
        self.options = self.runtime.resolve_options(self.options, engine).sized()

    def predict(self, **data: Any) -> dict[str, np.ndarray]:
        """One item given as arrays (phase-recovery: ``phase``; inpainting: ``picture``, ``mask``;
        segmentation: ``picture``) -> its outputs by suffix, as arrays."""
        return self.predict_many([data])[0]

    def predict_many(self, items: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        """Several items; same-shaped ones run together in batches of ``options.batch_size``."""
        for n, data in enumerate(items):
            missing = [name for name in self.runtime.inputs if name not in data]
            if missing:
                article = "an" if self.engine.task[0] in "aeiou" else "a"
                raise InputError(f"item {n}: {article} {self.engine.task} engine takes {', '.join(self.runtime.inputs)}; "
                                 f"this item has {', '.join(sorted(data)) or 'nothing'} (missing "
                                 f"{', '.join(missing)}).")
        prepared = [_typed(lambda: self.runtime.prepare(data, self.engine, self.options), f"item {n}")
                    for n, data in enumerate(items)]
        results: list[dict[str, np.ndarray] | None] = [None] * len(prepared)
        by_shape: dict[tuple, list[int]] = {}
        for i, p in enumerate(prepared):  # a padded picture (host path) never joins a GPU batch of its shape
            by_shape.setdefault((p.shape, bool(p.context.get("host"))), []).append(i)
        size = max(1, self.options.batch_size)
        for indices in by_shape.values():
            layout = prepared[indices[0]].context.get("plan")
            if layout is not None and layout.kind in ("tiled", "crops"):  # runs its own tiles or crops
                for i in indices:
                    out = _typed(lambda: self.runtime.run_plan(prepared[i], self.engine, self.options),
                                 "the engine", InferenceError)
                    results[i] = _typed(lambda: self.runtime.finish(prepared[i], out, self.options),
                                        "the engine", InferenceError)
                continue
            for start in range(0, len(indices), size):
                chunk = indices[start:start + size]
                if on_device(self.engine) and not prepared[chunk[0]].context.get("host"):  # kernels on the GPU
                    done = _typed(lambda: run_batch(self.engine, self.runtime, [prepared[i] for i in chunk],
                                                    self.options), "the engine", InferenceError)
                    for i, result in zip(chunk, done):
                        if isinstance(result, str):  # the item's engine output held NaN/Inf
                            raise InferenceError(f"item {i}: {result}.")
                        results[i] = result
                    continue
                outputs = _typed(lambda: self.engine.infer(np.stack([prepared[i].model_input for i in chunk])),
                                 "the engine", InferenceError)
                for i, out in zip(chunk, outputs):
                    if not np.isfinite(out).all():
                        raise InferenceError(f"item {i}: the engine's output holds NaN/Inf values.")
                    results[i] = self.runtime.finish(prepared[i], out, self.options)
        return results  # type: ignore[return-value]

    def predict_file(self, path: str | Path, mask: str | Path | None = None) -> dict[str, np.ndarray]:
        """One item from files (inpainting takes the mask path too)."""
        if "mask" in self.runtime.inputs and mask is None:
            raise InputError(f"an {self.engine.task} engine takes a mask beside the picture: "
                             f"predict_file({str(path)!r}, mask='its_mask.png') (white = the holes to fill).")
        sources = (Path(path),) + ((Path(mask),) if mask is not None else ())
        data = _typed(lambda: self.runtime.decode(Item(Path(path).stem, sources), self.options), Path(path).name)
        return self.predict(**data)


def _typed(call, what: str, error: type = InputError):
    """Run ``call``; anything but a regenrt error it raises (a decoder's TokenError, numba's TypingError, NumPy's
    MemoryError, an engine's InvalidArgument) leaves the API as ``error`` (an InputError by default), with the
    original type named; regenrt's own errors pass unchanged."""
    try:
        return call()
    except RegenrtError:
        raise
    except Exception as exc:  # noqa: BLE001 - the point: nothing untyped leaves the API
        raise error(f"{what}: {type(exc).__name__}: {exc}") from exc
