"""A Triton Inference Server model repository for a verified regenrt engine, with its pre/post-processing.

``write_repository(engine, repo)`` lays out, the way Triton's model-repository documentation asks:

- ``<name>_engine``: the engine — ONNX artefacts for the ``onnxruntime_onnx`` platform, OpenVINO IRs
  (``model.xml`` + ``model.bin``) for the ``openvino`` backend, TensorRT engines as ``model.plan`` for the
  ``tensorrt_plan`` platform; ``max_batch_size``, dynamic batching, input/output names, data types and dims from
  the engine's metadata (-1 for the sizes it accepts freely), an instance group per device;
- ``<name>_pre`` and ``<name>_post``: Python-backend models (``model.py`` + ``regenrt.json``) running the task's
  own pre- and post-processing (:mod:`regenrt.integrations.triton_steps`; regenrt must be importable by Triton's
  Python backend);
- ``<name>``: the ensemble a client calls — raw inputs (phase maps; picture + mask; picture) in, final pixels out,
  with the same tensor names and types as ``regenrt.integrations.pytriton`` serves.

``pipeline=False`` writes the engine alone as ``<name>`` (clients then send model-ready NCHW float32 tensors).

Example::

    config = write_repository("engine/", "models/", name="phase", max_batch_size=8)   # models/phase/config.pbtxt
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RegenrtError

KINDS = {  # artefact suffix -> (config line naming the runtime, file name in the version directory)
    ".onnx": ('platform: "onnxruntime_onnx"', "model.onnx"),
    ".xml": ('backend: "openvino"', "model.xml"),
    ".engine": ('platform: "tensorrt_plan"', "model.plan"),
}


TRITON_TYPES = {np.dtype(np.float32): "TYPE_FP32", np.dtype(np.uint8): "TYPE_UINT8",
                np.dtype(np.uint16): "TYPE_UINT16"}
STEP_MODEL = """\"\"\"regenrt's {kind}-processing as a Triton Python-backend model (written by regenrt-triton).\"\"\"
from pathlib import Path

import triton_python_backend_utils as pb_utils

from regenrt.errors import RegenrtError
from regenrt.integrations.triton_steps import STEP_FILE, Step


class TritonPythonModel:
    def initialize(self, args):
        self.step = Step.load(Path(__file__).parent / STEP_FILE)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                tensors = {{name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                           for name, _, _ in self.step.inputs}}
                outputs = self.step(tensors)
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, array) for name, array in outputs.items()]))
            except (RegenrtError, AttributeError) as exc:  # AttributeError: a tensor the request lacks
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses
"""


def _tensors(kind: str, specs: list[tuple[str, Any, tuple]]) -> str:
    rows = ", ".join(f'{{ name: "{name}" data_type: {TRITON_TYPES[np.dtype(dtype)]} dims: {list(dims)} }}'
                     for name, dtype, dims in specs)
    return f"{kind} [ {rows} ]"


def _config(name: str, runtime: str, max_batch_size: int, inputs, outputs, body: list[str]) -> str:
    lines = [f'name: "{name}"', runtime, f"max_batch_size: {int(max_batch_size)}", _tensors("input", inputs),
             _tensors("output", outputs), *body]
    return "\n".join(lines) + "\n"


def config_text(name: str, suffix: str, metadata: dict, max_batch_size: int, instances: int, gpu: bool) -> str:
    """The engine model's config.pbtxt."""
    from .triton_steps import model_dims

    runtime, _ = KINDS[suffix]
    inp, out = metadata["input"], metadata["output"]
    in_dims, out_dims = model_dims(metadata)
    return _config(name, runtime, max_batch_size, [(inp.get("name", "input"), np.float32, in_dims)],
                   [(out.get("name", "output"), np.float32, out_dims)],
                   ["dynamic_batching { max_queue_delay_microseconds: 100 }",
                    f"instance_group [ {{ count: {int(instances)} kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }} ]"])


def _step_config(name: str, step, max_batch_size: int, instances: int) -> str:
    return _config(name, 'backend: "python"', max_batch_size, step.inputs, step.outputs,
                   ["dynamic_batching { max_queue_delay_microseconds: 100 }",
                    f"instance_group [ {{ count: {int(instances)} kind: KIND_CPU }} ]"])


def _ensemble_config(name: str, pre, post, max_batch_size: int) -> str:
    """raw -> <name>_pre -> <name>_engine -> <name>_post -> final; the raw inputs go to the post step as well."""
    def maps(kind: str, pairs) -> str:
        return " ".join(f'{kind} {{ key: "{k}" value: "{v}" }}' for k, v in pairs)

    raw = [n for n, _, _ in pre.inputs]
    steps = [
        (f"{name}_pre", [(n, n) for n in raw], [(pre.input_name, "_model_input")]),
        (f"{name}_engine", [(pre.input_name, "_model_input")], [(post.output_name, "_model_output")]),
        (f"{name}_post", [(n, n) for n in raw] + [(post.output_name, "_model_output")],
         [(n, n) for n, _, _ in post.outputs]),
    ]
    body = ["ensemble_scheduling { step [ " + ", ".join(
        f'{{ model_name: "{model}" model_version: -1 {maps("input_map", ins)} {maps("output_map", outs)} }}'
        for model, ins, outs in steps) + " ] }"]
    return _config(name, 'platform: "ensemble"', max_batch_size, pre.inputs, post.outputs, body)


def write_repository(engine: str | os.PathLike, repo: str | os.PathLike, *, name: str | None = None,
                     max_batch_size: int = 8, instances: int = 1, gpu: bool | None = None, pipeline: bool = True,
                     options=None) -> Path:
    """Write the engine (a file, or an export directory: the engine its engine.json names) as Triton models;
    returns the path of the config.pbtxt a client calls (the ensemble's; with ``pipeline=False`` the engine's).
    ``options``: the ``RunOptions`` the pre/post steps run with (bit depth, output range, feathering)."""
    from ..runtime.engine import artefact_files, backend_for, resolve_engine_path
    from .triton_steps import STEP_FILE, Step, StepSpec, options_record

    path = resolve_engine_path(Path(engine), "auto")
    if not path.is_file():
        raise RegenrtError(f"engine {str(path)!r} does not exist or is not a file; build one with export-engine.")
    if path.suffix not in KINDS:
        raise RegenrtError(f"{path.name}: Triton serves ONNX, OpenVINO and TensorRT artefacts; the torch artefact "
                           "has no Triton backend here — export with --gpu-engine tensorrt or serve model.onnx.")
    metadata = backend_for(path).read_metadata(path)
    if not metadata.get("task"):
        raise RegenrtError(f"{path.name} carries no regenrt metadata; re-export it with export-engine.")
    if metadata.get("batch_dependent"):
        raise RegenrtError(f"{path.name} runs in batch-stats mode (an item's output depends on its batch): "
                           "dynamic batching would change results; export with --mode eval to serve it.")
    size = None
    if path.suffix == ".xml" and metadata.get("specialize_hw"):
        # an IR regenrt compiles per input size; Triton compiles once, so it serves the IR at the export's size
        size = tuple(metadata["input"]["example_shape"][2:])
        metadata = {**metadata, "input": {**metadata["input"], "shape": [metadata["input"]["shape"][0],
                                                                          metadata["input"]["channels"], *size]}}
    name = name or metadata["task"].replace("-", "_")
    if max_batch_size < 1 or instances < 1:
        raise RegenrtError("max_batch_size and instances must be at least 1.")
    if pipeline:
        from ..tasks.runtime import RunOptions

        record = options_record(options or RunOptions())
        steps = {kind: Step(StepSpec(kind, metadata, record)) for kind in ("pre", "post")}  # validates the options
    engine_name = f"{name}_engine" if pipeline else name
    model_dir = Path(repo) / engine_name
    version = model_dir / "1"
    version.mkdir(parents=True, exist_ok=True)
    _, target = KINDS[path.suffix]
    if size:
        from ..runtime.backends.openvino import save_for_size

        save_for_size(path, version / target, size)
    else:
        shutil.copy2(path, version / target)
        extras = artefact_files(path)[1:] if path.suffix in (".xml", ".onnx") else []  # (a fingerprint stays)
        for extra in extras:  # an IR's weights (renamed with it), an ONNX graph's external data (by its own name)
            shutil.copy2(extra, version / ("model.bin" if path.suffix == ".xml" else extra.name))
    gpu = path.suffix == ".engine" if gpu is None else gpu
    config = model_dir / "config.pbtxt"
    config.write_text(config_text(engine_name, path.suffix, metadata, max_batch_size, instances, gpu))
    if not pipeline:
        return config
    for kind, step in steps.items():
        step_dir = Path(repo) / f"{name}_{kind}"
        (step_dir / "1").mkdir(parents=True, exist_ok=True)
        StepSpec(kind, metadata, record).write(step_dir / "1" / STEP_FILE)
        (step_dir / "1" / "model.py").write_text(STEP_MODEL.format(kind=kind))
        (step_dir / "config.pbtxt").write_text(_step_config(f"{name}_{kind}", step, max_batch_size, instances))
    ensemble = Path(repo) / name
    (ensemble / "1").mkdir(parents=True, exist_ok=True)  # Triton wants a version directory, empty for ensembles
    (ensemble / "config.pbtxt").write_text(_ensemble_config(name, steps["pre"], steps["post"], max_batch_size))
    return ensemble / "config.pbtxt"
