"""A Triton Inference Server model repository for a verified regenrt engine (the engine model only).

``write_repository(engine, repo)`` lays out ``repo/<name>/config.pbtxt`` and ``repo/<name>/1/<model file>`` the
way Triton's model-repository documentation asks: ONNX artefacts for the ``onnxruntime_onnx`` platform, OpenVINO
IRs (``model.xml`` + ``model.bin``) for the ``openvino`` backend, TensorRT engines as ``model.plan`` for the
``tensorrt_plan`` platform; ``max_batch_size``, dynamic batching, input/output names, data types and dims from
the engine's metadata (-1 for the sizes it accepts freely), and an instance group per device. The pre/post-
processing (a Python-backend model and an ensemble) is not generated: a client sends model-ready NCHW float32
tensors and gets the engine's raw outputs.

Example::

    config = write_repository("engine/", "models/", name="phase", max_batch_size=8)
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import RegenrtError

KINDS = {  # artefact suffix -> (config line naming the runtime, file name in the version directory)
    ".onnx": ('platform: "onnxruntime_onnx"', "model.onnx"),
    ".xml": ('backend: "openvino"', "model.xml"),
    ".engine": ('platform: "tensorrt_plan"', "model.plan"),
}


def _dims(shape: list) -> list[int]:
    """Metadata shape without the batch axis; named (dynamic) axes become -1."""
    return [d if isinstance(d, int) else -1 for d in shape[1:]]


def config_text(name: str, suffix: str, metadata: dict, max_batch_size: int, instances: int, gpu: bool) -> str:
    runtime, _ = KINDS[suffix]
    inp, out = metadata["input"], metadata["output"]
    in_dims = _dims(inp["shape"])
    out_dims = [int(out["channels"]), *in_dims[1:]]
    lines = [
        f'name: "{name}"', runtime, f"max_batch_size: {int(max_batch_size)}",
        f'input [ {{ name: "{inp.get("name", "input")}" data_type: TYPE_FP32 dims: {in_dims} }} ]',
        f'output [ {{ name: "{out.get("name", "output")}" data_type: TYPE_FP32 dims: {out_dims} }} ]',
        "dynamic_batching { max_queue_delay_microseconds: 100 }",
        f"instance_group [ {{ count: {int(instances)} kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }} ]",
    ]
    return "\n".join(lines) + "\n"


def write_repository(engine: str | os.PathLike, repo: str | os.PathLike, *, name: str | None = None,
                     max_batch_size: int = 8, instances: int = 1, gpu: bool | None = None) -> Path:
    """Write the engine (a file, or an export directory: the engine its engine.json names) as a Triton model;
    returns the path of its config.pbtxt."""
    from ..runtime.engine import artefact_files, backend_for, resolve_engine_path

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
    name = name or metadata["task"].replace("-", "_")
    if max_batch_size < 1 or instances < 1:
        raise RegenrtError("max_batch_size and instances must be at least 1.")
    model_dir = Path(repo) / name
    version = model_dir / "1"
    version.mkdir(parents=True, exist_ok=True)
    _, target = KINDS[path.suffix]
    shutil.copy2(path, version / target)
    extras = artefact_files(path)[1:] if path.suffix in (".xml", ".onnx") else []  # (an engine's fingerprint stays)
    for extra in extras:  # an IR's weights (renamed with it), an ONNX graph's external data (by its own name)
        shutil.copy2(extra, version / ("model.bin" if path.suffix == ".xml" else extra.name))
    gpu = path.suffix == ".engine" if gpu is None else gpu
    config = model_dir / "config.pbtxt"
    config.write_text(config_text(name, path.suffix, metadata, max_batch_size, instances, gpu))
    return config
