"""The pre- and post-processing steps of regenrt's Triton ensemble, as plain Python (testable without Triton).

A Triton Python-backend model (``<name>_pre`` / ``<name>_post``, written by :func:`regenrt.integrations.triton.
write_repository`) loads its step from the ``regenrt.json`` beside its ``model.py`` and calls it on each request's
batched tensors. The step runs the task's own runtime — exactly what ``Predictor`` and ``run-infer`` run:

- ``pre``: raw inputs (phase maps; picture + mask; picture) -> the model-ready NCHW float32 tensor;
- ``post``: the same raw inputs + the engine's output -> the final pixels (the inpainting composite keeps every
  known pixel, the phase output is quantized to the recorded output range, segmentation gives labels + overlay).

The post step takes the raw inputs as well — the ensemble passes tensors between models, not Python objects — and
rebuilds from them, validated, what ``finish`` needs (the picture and mask to composite into, the picture to
overlay), without computing a model input again.

Example::

    step = Step.load("models/phase_pre/1/regenrt.json")
    model_input = step({"phase": phases})["input"]        # phases: N x H x W float32
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InferenceError, InputError, MissingDependencyError, RegenrtError
from .pytriton import signature, tensor_name  # (pytriton itself is imported only by serve())

STEP_FILE = "regenrt.json"
# the RunOptions a served model can carry (the rest are run-infer's file handling)
SERVED_OPTIONS = ("bit_depth", "output_range", "feather", "soft_mask")


def options_record(options) -> dict[str, Any]:
    return {k: getattr(options, k) for k in SERVED_OPTIONS}  # kernels: "auto" where served (identical outputs)


def options_from_record(record: dict[str, Any]):
    from ..kernels import get_kernels
    from ..tasks.runtime import RunOptions

    values = {k: record[k] for k in SERVED_OPTIONS if k in record}
    if values.get("output_range") is not None:
        values["output_range"] = tuple(values["output_range"])
    return RunOptions(kernels=get_kernels("auto"), **values)


def model_dims(metadata: dict[str, Any]) -> tuple[list[int], list[int]]:
    """The engine's input and output dims without the batch axis; named (dynamic) axes become -1."""
    in_dims = [d if isinstance(d, int) else -1 for d in metadata["input"]["shape"][1:]]
    return in_dims, [int(metadata["output"]["channels"]), *in_dims[1:]]


def _check_engine_runs_here(metadata: dict[str, Any]) -> None:
    """On the serving node (the Python backend loads its step there): an INT8 IR quantized for a CPU with VNNI is
    refused where INT8 saturates, as regenrt's own runner refuses it — Triton's OpenVINO backend would run it and
    drift. Without OpenVINO in the Python backend's environment there is nothing to probe with."""
    try:
        from ..runtime.backends.openvino import int8_refusal

        refusal = int8_refusal(metadata.get("file", "the engine"), metadata)
    except MissingDependencyError:  # OpenVINO is not installed beside the Python backend
        return
    if refusal:
        raise RegenrtError(refusal)


@dataclass
class StepSpec:
    kind: str                      # "pre" or "post"
    metadata: dict[str, Any]       # the engine's regenrt metadata (task, input/output shapes and names)
    options: dict[str, Any]        # options_record(RunOptions)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))


class Step:
    """One side of the ensemble around the engine; ``step(tensors) -> tensors``, all batched (first axis)."""

    def __init__(self, spec: StepSpec):
        from ..runtime.engine import Engine
        from ..tasks.runtime import get_runtime

        if spec.kind not in ("pre", "post"):
            raise RegenrtError(f"a regenrt Triton step is 'pre' or 'post', not {spec.kind!r}.")
        self.kind = spec.kind
        # the engine's description only: shapes, channels, task (the engine itself is Triton's model)
        self.engine = Engine(Path(spec.metadata.get("file", "engine")), None, "cpu", spec.metadata, None)
        self.runtime = get_runtime(self.engine.task)
        options = options_from_record(spec.options)
        if self.engine.task != "inpainting":
            self.runtime.check_options(options)
        self.options = self.runtime.resolve_options(options, self.engine)
        self.raw_inputs, self.final_outputs = signature(self.engine, self.options)
        self.input_name = spec.metadata["input"].get("name", "input")
        self.output_name = spec.metadata["output"].get("name", "output")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Step":
        try:
            record = json.loads(Path(path).read_text())
            spec = StepSpec(**{f.name: record[f.name] for f in fields(StepSpec)})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RegenrtError(f"{path}: not a regenrt step description ({type(exc).__name__}: {exc}); "
                               "rewrite the repository with regenrt-triton.") from None
        _check_engine_runs_here(spec.metadata)
        return cls(spec)

    @property
    def inputs(self) -> list[tuple[str, Any, tuple]]:
        """(name, dtype, dims without the batch axis) of what this step takes."""
        if self.kind == "pre":
            return self.raw_inputs
        return [*self.raw_inputs, (self.output_name, np.float32, tuple(model_dims(self.engine.metadata)[1]))]

    @property
    def outputs(self) -> list[tuple[str, Any, tuple]]:
        if self.kind == "post":
            return self.final_outputs
        return [(self.input_name, np.float32, tuple(model_dims(self.engine.metadata)[0]))]

    def __call__(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [name for name, _, _ in self.inputs if name not in tensors]
        if missing:
            raise InputError(f"missing input tensor(s) {missing}; this model takes "
                             f"{[name for name, _, _ in self.inputs]}.")
        n = len(tensors[self.inputs[0][0]])
        if any(len(tensors[name]) != n for name, _, _ in self.inputs):
            raise InputError("the input tensors hold different numbers of items.")
        raw = [{name: tensors[name][i] for name, _, _ in self.raw_inputs} for i in range(n)]
        prepared = [self._prepare(item, i, model_input=self.kind == "pre") for i, item in enumerate(raw)]
        if self.kind == "pre":
            return {self.input_name: np.stack([p.model_input for p in prepared])}
        results = []
        for i, p in enumerate(prepared):
            out = np.asarray(tensors[self.output_name][i], np.float32)
            if not np.isfinite(out).all():
                raise InferenceError(f"item {i}: the engine's output holds NaN/Inf values.")
            results.append(self.runtime.finish(p, out, self.options))
        return {tensor_name(suffix): np.stack([r[suffix] for r in results]) for suffix in results[0]}

    def _prepare(self, item: dict[str, np.ndarray], index: int, model_input: bool):
        try:
            return self.runtime.prepare(item, self.engine, self.options, model_input=model_input)
        except InputError as exc:
            raise InputError(f"item {index}: {exc}") from None
        except RegenrtError:
            raise
        except Exception as exc:  # noqa: BLE001 - a malformed tensor leaves as an InputError naming the item
            raise InputError(f"item {index}: {type(exc).__name__}: {exc}") from exc
