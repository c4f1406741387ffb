"""Models that arrive as programs rather than weights: a ``torch.export`` program (``.pt2``, any architecture) or
an ONNX file. Each becomes a :class:`LoadedModel` like a checkpoint does, so that candidates, gate and selection
never ask where the model came from; what differs is carried by the source:

- the **reference** the gate judges against: the program's own module in FP32, or the given ONNX graph run by
  ONNX Runtime in FP32 (``model`` below: called like any module);
- the **FP32 graph**: the program re-exported to ONNX with a dynamic batch (and H/W where the program allows,
  at its multiple), or the given graph with its input and output renamed to regenrt's and checked;
- the **task and input contract**: ``--task`` (Python ``task=``), or the ``regenrt`` metadata stored in the file
  (an extra file ``regenrt.json`` of the .pt2, the ``regenrt`` metadata property of an ONNX model).

A .pt2 is read **without executing pickled code**: before ``torch.export.load`` touches it, its weight and
constant configs are read from the archive and any pickled payload, custom or opaque object is refused (unless
``trust_pickle``); the load itself runs with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` (torch's own loader falls back
to full unpickling otherwise).

Example::

    ckpt, loaded = load_program("model.pt2", task="segmentation")
    loaded.model(x)                     # the reference, FP32
    loaded.onnx_export(path, example, dynamic_hw, multiple)   # the FP32 graph
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ArchitectureError, CheckpointError, InputError, UnsafeCheckpointError
from ..hashing import sha256_file
from .checkpoint import Checkpoint
from .loading import LoadedModel
from ..wording import shorten
from .registry import Architecture

PROGRAM_SUFFIXES = (".pt2", ".onnx")
EXTRA_FILE = "regenrt.json"
ASSUMED_MULTIPLE = 32  # an ONNX graph does not say which sizes it takes: the common CNN multiple, --set overrides
HOW_TO_EXPORT = ("torch.export.save(torch.export.export(model.eval(), (x,), dynamic_shapes=({0: "
                 "torch.export.Dim('batch'), 2: 32 * torch.export.Dim('h'), 3: 32 * torch.export.Dim('w')},)), "
                 "'model.pt2')")


def is_program(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in PROGRAM_SUFFIXES


def _architecture(name: str, dynamic_hw: bool, hw: tuple[int, int], multiple: int, task: str) -> Architecture:
    """What the rest of the export asks of an architecture, for a program (it is never rebuilt from weights)."""
    def refuse(_):
        raise ArchitectureError(f"a {name} model is not rebuilt from weights: export-engine takes the file itself.")

    return Architecture(name=name, build=refuse, detect=lambda sd: None, defaults={}, default_task=lambda c: task,
                        spatial_multiple=lambda c: multiple, dynamic_hw=lambda c: dynamic_hw,
                        default_hw=lambda c: hw)


def _config(channels: int, classes: int) -> dict[str, Any]:
    """The task contracts' names for the input and output channels (segmentation/phase and pix2pix spell them
    differently)."""
    return {"in_channels": channels, "classes": classes, "input_nc": channels, "output_nc": classes}


# --- torch.export programs --------------------------------------------------------------------------------------

# what a torch.export archive holds besides raw tensors: anything else (a packaged AOTInductor shared library, an
# ExecuTorch program, a file of another writer) is refused — torch.export.load would load some of it as code
_ALLOWED = re.compile(r"^[^/]+/(models/[^/]+\.json|data/(weights|constants)/[^/]+|data/sample_inputs/[^/]+\.pt|"
                      r"extra(_files)?/[^/]+|archive_format|archive_version|byteorder|version|\.data/[^/]+|"
                      r"data/version)$")


def _check_archive(path: Path, trust_pickle: bool) -> dict:
    """Refuse pickled payloads, code and duplicate entries before anything is unpickled; return the stored
    regenrt metadata (or {})."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise CheckpointError(f"{path.name} is not a torch.export program (not a zip archive): write it with "
                              f"torch.export.save, e.g. {HOW_TO_EXPORT}.") from None
    with archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise UnsafeCheckpointError(f"{path.name} holds several entries named {repeated[0]!r}: which one a "
                                        "reader takes differs between readers, so it is refused. Save it again "
                                        "with torch.export.save.")
        unexpected = [n for n in names if not n.endswith("/") and not _ALLOWED.match(n)]
        pickled = [n for n in names if n.endswith("/data/weights/model.pt") or n.endswith("/data/constants/model.pt")]
        for info in infos:
            if info.filename.endswith(("_weights_config.json", "_constants_config.json")):
                for fqn, entry in json.loads(archive.read(info)).get("config", {}).items():
                    kind = entry.get("path_name", "")
                    if entry.get("use_pickle") or kind.startswith(("custom_obj", "opaque_obj")):
                        pickled.append(f"{fqn} ({kind})")
        if unexpected and not trust_pickle:
            raise UnsafeCheckpointError(
                f"{path.name} holds files a torch.export program does not need ({', '.join(unexpected[:3])}): a "
                "packaged AOTInductor library or another writer's data, which loading could run as code. Save the "
                "program alone with torch.export.save, or — only if you trust its origin — pass --trust-pickle "
                "(Python: trust_pickle=True).")
        if pickled and not trust_pickle:
            raise UnsafeCheckpointError(
                f"{path.name} holds pickled objects ({', '.join(pickled[:4])}): loading them could run arbitrary "
                "code, and regenrt refuses that by default. Save the program again with a recent torch (weights are "
                "then stored as raw tensors), or — only if you trust its origin — pass --trust-pickle (Python: "
                "trust_pickle=True).")
        meta = next((archive.read(i) for i in infos if i.filename.endswith((f"extra/{EXTRA_FILE}",
                                                                             f"extra_files/{EXTRA_FILE}"))), None)
    return json.loads(meta) if meta else {}


_ENV_LOCK = __import__("threading").Lock()


@contextlib.contextmanager
def _weights_only(enforce: bool = True):
    """torch.load weights-only for the duration (torch's export loader falls back to full unpickling otherwise);
    the opposite override a user may have set is lifted meanwhile. One load at a time: the environment is shared."""
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
        os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        if enforce:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _dims(program) -> list:
    signature = program.graph_signature
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in signature.user_inputs]
    if len(placeholders) != 1:
        raise InputError(f"the program takes {len(placeholders)} inputs; regenrt's tasks take one NCHW picture "
                         "tensor. Export a wrapper module that takes that one tensor.")
    return list(placeholders[0].meta["val"].shape)


def _multiple(dim) -> int | None:
    """None for a fixed dimension; its coefficient for a symbolic one (``16*s1`` -> 16, ``s1`` -> 1)."""
    if isinstance(dim, int):
        return None
    import sympy

    expr = dim.node.expr
    coefficient = expr.as_coeff_Mul()[0] if isinstance(expr, sympy.Mul) else 1
    return int(coefficient)


def _load_pt2(path: Path, task: str | None, trust_pickle: bool, input_shape) -> tuple[Checkpoint, LoadedModel]:
    stored = _check_archive(path, trust_pickle)
    try:
        with _weights_only(enforce=not trust_pickle):
            program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - a truncated archive, another torch's format
        raise CheckpointError(f"{path.name} cannot be read as a torch.export program by torch {torch.__version__} "
                              f"({type(exc).__name__}: {shorten(str(exc), 200)}). Save it again with "
                              f"this torch: {HOW_TO_EXPORT}.") from None
    dims = _dims(program)
    if len(dims) != 4:
        raise InputError(f"the program's input has {len(dims)} dimensions; regenrt's tasks take NCHW (4).")
    if _multiple(dims[0]) is None:
        raise InputError(f"the program was exported with a fixed batch of {dims[0]}: regenrt's engines run "
                         f"batches of any size. Export it with a dynamic batch: {HOW_TO_EXPORT}.")
    multiples = [_multiple(d) for d in dims[2:]]
    dynamic_hw = all(m is not None for m in multiples)
    channels = int(dims[1])
    module = program.module()
    shape = input_shape or _example_shape(program, channels, dims, dynamic_hw, max(m or 1 for m in multiples))
    with torch.no_grad():
        classes = int(module(torch.zeros((2, *shape[1:]))).shape[1])
    task = task or stored.get("task")
    if not task:
        raise InputError(f"{path.name} does not say its task: pass --task (segmentation, inpainting or "
                         "phase-recovery; Python: task=...), or store it in the program: torch.export.save(..., "
                         "extra_files={'regenrt.json': json.dumps({'task': 'segmentation'})}).")
    multiple = max(m or 1 for m in multiples) if dynamic_hw else 1
    arch = _architecture("torch.export", dynamic_hw, tuple(shape[2:]), multiple, task)

    def onnx_export(model, fp32_path, *, example, dynamic_hw, spatial_multiple, exporter):
        from ..export.onnx_export import export_onnx

        # the program's module cannot be traced by the TorchScript exporter: torch.export it again (dynamo)
        return export_onnx(module, fp32_path, example=example, dynamic_hw=dynamic_hw,
                           spatial_multiple=spatial_multiple, exporter="dynamo")

    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in program.state_dict.values()})
    ckpt = Checkpoint(path, sha256_file(path), {}, dtypes, warnings=[] if not trust_pickle else
                      ["loaded with --trust-pickle: pickled objects in the program were unpickled"])
    assumed = {"source": "a torch.export program: the gate's reference is its own module in FP32"}
    loaded = LoadedModel(module, arch, _config(channels, classes), assumed, None, onnx_export=onnx_export,
                         fixed_mode=True)
    return ckpt, loaded


def _example_shape(program, channels, dims, dynamic_hw, multiple) -> tuple[int, int, int, int]:
    if not dynamic_hw:
        return (1, channels, int(dims[2]), int(dims[3]))
    side = max(256 // multiple, 1) * multiple
    return (1, channels, side, side)


# --- ONNX files -------------------------------------------------------------------------------------------------

class OnnxReference(nn.Module):
    """The given ONNX graph run by ONNX Runtime in FP32 on the CPU, called like a module (the gate's reference)."""

    def __init__(self, path: Path):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # no fusions that round
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run([self.output_name], {self.input_name: x.detach().cpu().numpy().astype(np.float32)})
        return torch.from_numpy(np.asarray(out[0], np.float32))


def _load_onnx(path: Path, task: str | None, input_shape, multiple_override: int | None
               ) -> tuple[Checkpoint, LoadedModel]:
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # noqa: BLE001 - protobuf errors of many kinds
        raise CheckpointError(f"{path.name} is not a readable ONNX model ({type(exc).__name__}: "
                              f"{shorten(str(exc), 200)}).") from None
    inputs = [i for i in graph.graph.input if i.name not in {t.name for t in graph.graph.initializer}]
    if len(inputs) != 1:
        raise InputError(f"{path.name} takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); regenrt's "
                         "tasks take one NCHW picture tensor. Export a wrapper that takes that one tensor.")
    dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise InputError(f"{path.name}'s input {inputs[0].name!r} has shape {dims}; regenrt's tasks take NCHW.")
    if isinstance(dims[0], int):
        raise InputError(f"{path.name}'s input {inputs[0].name!r} has a fixed batch of {dims[0]}: regenrt's engines "
                         "run batches of any size. Export it with a dynamic batch: torch.onnx.export(..., "
                         f"dynamic_axes={{'{inputs[0].name}': {{0: 'batch'}}}}) (or dynamic_shapes with dynamo).")
    if not isinstance(dims[1], int):
        raise InputError(f"{path.name}'s input has no fixed channel count ({dims[1]!r}); export it with one.")
    stored = {}
    for prop in graph.metadata_props:
        if prop.key == "regenrt":
            with contextlib.suppress(ValueError):
                stored = json.loads(prop.value)
    task = task or stored.get("task")
    if not task:
        raise InputError(f"{path.name} does not say its task: pass --task (segmentation, inpainting or "
                         "phase-recovery; Python: task=...).")
    dynamic_hw = not (isinstance(dims[2], int) and isinstance(dims[3], int))
    multiple = multiple_override or (ASSUMED_MULTIPLE if dynamic_hw else 1)
    hw = (256, 256) if dynamic_hw else (int(dims[2]), int(dims[3]))
    shape = input_shape or (1, int(dims[1]), *hw)
    reference = _reference(path)
    with torch.no_grad():
        classes = int(reference(torch.zeros(shape)).shape[1])
    assumed = {"source": "an ONNX file: the gate's reference is this graph on ONNX Runtime in FP32"}
    if len(graph.graph.output) > 1:
        assumed["outputs"] = (f"{len(graph.graph.output)} outputs: the first ({graph.graph.output[0].name}) is the "
                              "model's output, the others are dropped")
    if dynamic_hw and not multiple_override:
        assumed["spatial_multiple"] = (f"an ONNX graph does not say which sizes it takes: multiples of "
                                       f"{ASSUMED_MULTIPLE} assumed (--set spatial_multiple=N)")

    def onnx_export(model, fp32_path, *, example, dynamic_hw, spatial_multiple, exporter):
        from ..export.onnx_source import renamed_graph

        return renamed_graph(path, fp32_path)

    ckpt = Checkpoint(path, sha256_file(path), {}, sorted({_elem_type(t) for t in graph.graph.initializer}))
    arch = _architecture("onnx", dynamic_hw, hw, multiple, task)
    return ckpt, LoadedModel(reference, arch, _config(int(dims[1]), classes), assumed, None,
                             onnx_export=onnx_export, fixed_mode=True)


def _reference(path: Path) -> OnnxReference:
    try:
        return OnnxReference(path)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime names the node it cannot take
        raise InputError(f"ONNX Runtime cannot run {path.name} as given ({shorten(str(exc), 400)}); "
                         "regenrt's engines take what ONNX Runtime and OpenVINO take: re-export the model with "
                         "opset 17-21 and standard operators.") from None


def _elem_type(tensor) -> str:
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name


def load_program(path: str | os.PathLike, *, task: str | None = None, trust_pickle: bool = False,
                 input_shape: tuple[int, int, int, int] | None = None, overrides: dict | None = None
                 ) -> tuple[Checkpoint, LoadedModel]:
    """A ``.pt2`` or ``.onnx`` model as (source record, loaded model) — see the module docstring."""
    path = Path(path)
    if not path.is_file():
        from ..errors import MissingCheckpointError

        raise MissingCheckpointError(f"model file {str(path)!r} does not exist; check the path.")
    overrides = dict(overrides or {})
    multiple = overrides.pop("spatial_multiple", None)
    if overrides:
        raise InputError(f"a {path.suffix} model takes no architecture options ({sorted(overrides)}): it is "
                         "exported as it is (only --set spatial_multiple=N, for an ONNX file).")
    if path.suffix.lower() == ".pt2":
        return _load_pt2(path, task, trust_pickle, input_shape)
    return _load_onnx(path, task, input_shape, int(multiple) if multiple else None)
