"""``Engine``: one exported artefact, its backend chosen from the artefact kind, its contract from its metadata.

Example::

    engine = Engine.load("engine/model.fp16.onnx", device="cpu")
    y = engine.infer(x)          # x: NxCxHxW float32, validated first; y: NxC'xHxW float32

An Engine may be called from several threads at once: the ONNX Runtime session it wraps is thread-safe for
``run`` and nothing else in it is mutated after loading.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError, MissingDependencyError, MissingPathError, RegenrtError
from ..records import read_record

DEVICES = ("auto", "cpu", "cuda")
MODES = ("latency", "throughput")


@dataclass(frozen=True)
class Backend:
    """How to open one kind of artefact: ``open(path, device, mode)`` -> a runner with ``infer(x) -> y`` (and, for a
    runner whose buffers live on the GPU, the device interface of :mod:`regenrt.runtime.device`)."""

    name: str
    suffixes: tuple[str, ...]
    open: Callable[..., Any]  # (path, device, mode="latency"|"throughput")
    devices: Callable[[], list[str]]
    read_metadata: Callable[[Path], dict]
    extra: str  # the pip extra that installs it


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    _BACKENDS[backend.name] = backend
    return backend


def list_backends() -> list[Backend]:
    return list(_BACKENDS.values())


def backend_for(path: Path) -> Backend:
    for backend in _BACKENDS.values():
        if path.name.endswith(backend.suffixes):
            return backend
    known = ", ".join(f"{s} ({b.name})" for b in _BACKENDS.values() for s in b.suffixes)
    raise RegenrtError(f"no backend opens {path.name!r}; known artefact kinds: {known}.")


def artefact_files(path: Path) -> list[Path]:
    if path.suffix == ".xml":
        return [path, path.with_suffix(".bin")]
    if path.suffix in (".engine", ".pt2"):  # compiled code and its fingerprint
        return [path, Path(str(path) + ".json")]
    if path.suffix == ".onnx":  # and its external data files, if any
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        locations = sorted({e.value for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                            for e in t.external_data if e.key == "location"})
        return [path] + [path.parent / loc for loc in locations]
    return [path]


def _check_same_export(path: Path, metadata: dict) -> None:
    """An artefact beside a parity report of another checkpoint is a leftover of an earlier export: refuse it."""
    report = path.parent / "parity.json"
    ours = metadata.get("source", {}).get("sha256")
    if not ours or not report.is_file():
        return
    try:
        theirs = json.loads(report.read_text()).get("checkpoint_sha256")
    except (ValueError, OSError):
        return
    if theirs and theirs != ours:
        raise RegenrtError(f"{path.name} was exported from another checkpoint (sha256 {ours[:12]}…) than the export "
                           f"in its directory (parity.json: {theirs[:12]}…): it is a leftover of an earlier export. "
                           "Re-export, or use the artefacts the current export published (engine.json).")


class Engine:
    """A loaded artefact with its metadata; ``infer`` validates inputs against the contract before running."""

    def __init__(self, path: Path, backend: Backend, device: str, metadata: dict, runner: Any):
        self.path, self.backend, self.device, self.metadata, self.runner = path, backend, device, metadata, runner

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto", mode: str = "latency") -> "Engine":
        """Load an artefact file, or an export directory (its ``engine.json`` names the engine export chose).
        ``mode="throughput"``: compiled for several batches in flight (``engine.requests`` of them), as run-infer
        runs it; ``latency`` (default): one request, lowest time per call."""
        given = Path(path)
        path = resolve_engine_path(given, device, mode)
        if not path.exists():
            raise MissingPathError(f"engine {str(path)!r} does not exist; give the directory export-engine wrote (it "
                                   "runs the engine its engine.json names) or one artefact file in it.")
        if not path.is_file():
            raise RegenrtError(f"engine {str(path)!r} is not a file: give the directory export-engine wrote or one "
                               "artefact file in it.")
        if device not in DEVICES:
            raise RegenrtError(f"device must be one of {DEVICES}, got {device!r}.")
        backend = backend_for(path)
        metadata = backend.read_metadata(path)
        if not metadata.get("task"):
            raise RegenrtError(
                f"{path.name} was not written by export-engine (it carries no regenrt metadata: no task, no input "
                f"contract). Give it to export-engine first, which checks it and builds the engines: export-engine "
                f"{path} --task TASK -o engine/ (Python: export_engine({str(path)!r}, 'engine/', task=...)), then "
                "run-infer --engine engine/.")
        available = backend.devices()
        if metadata.get("compiled_for"):  # code compiled for one device (an AOTInductor package) runs there only
            available = [d for d in available if d == metadata["compiled_for"]]
        if not available:
            other = ("--device cpu runs the CPU engine recorded beside it" if given.is_dir()
                     else "use another artefact of the export (e.g. model.onnx)")
            raise MissingDependencyError(
                f"{path.name} needs the {backend.name} backend, which cannot run here (not installed, or no device "
                f"for it); install `pip install regenrt[{backend.extra}]` on a machine that can run it, or {other}."
            )
        if device == "auto":
            device = "cuda" if "cuda" in available else "cpu"
        elif device not in available:
            if device == "cuda" and not _cuda_visible():
                raise MissingDependencyError(
                    f"device 'cuda' was requested, and no NVIDIA GPU is visible here (torch.cuda.is_available() is "
                    f"False): run on the GPU machine, or use device='cpu' (run-infer: --device cpu) here.")
            raise MissingDependencyError(
                f"device {device!r} was requested but the {backend.name} backend here offers only {available}: "
                + (f"install `pip install regenrt[{backend.extra}]` for its {device} build, " if backend.extra else "")
                + "or use device='cpu' (run-infer: --device cpu).")
        if mode not in MODES:
            raise RegenrtError(f"mode must be one of {MODES}, got {mode!r}.")
        _check_same_export(path, metadata)
        return cls(path, backend, device, metadata, backend.open(path, device, mode))

    @property
    def files(self) -> list[Path]:
        """Every file the engine is made of (an OpenVINO IR is its .xml and .bin; a TensorRT engine has its
        fingerprint): what identifies it in run-infer's manifest."""
        return artefact_files(self.path)

    @property
    def requests(self) -> int:
        """How many batches may be in flight at once (``infer`` from that many threads): OpenVINO's optimal
        number of infer requests in throughput mode, else 1."""
        return max(1, int(getattr(self.runner, "requests", 1)))

    @property
    def task(self) -> str:
        return self.metadata["task"]

    @property
    def channels(self) -> int:
        return int(self.metadata["input"]["channels"])

    @property
    def static_hw(self) -> tuple[int, int] | None:
        _, _, h, w = self.metadata["input"]["shape"]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise InputError when a CxHxW model input shape is outside what the engine accepts."""
        if len(shape) != 3:
            raise InputError(f"expected a CxHxW array, got shape {tuple(shape)}.")
        if shape[0] != self.channels:
            raise InputError(f"the engine takes {self.channels} channel(s), got {shape[0]}.")
        h, w = shape[1:]
        if h < 1 or w < 1:
            raise InputError(f"the input is empty ({h}x{w} pixels): nothing to run the engine on.")
        multiple = int(self.metadata["input"].get("spatial_multiple", 1))
        if self.static_hw and (h, w) != self.static_hw:
            raise InputError(f"the engine takes {self.static_hw[0]}x{self.static_hw[1]} inputs, got {h}x{w}.")
        if h % multiple or w % multiple:
            raise InputError(f"height and width must be multiples of {multiple}, got {h}x{w}.")

    def check_item(self, x: np.ndarray) -> None:
        """Raise InputError when one CxHxW model input is outside what the engine accepts."""
        self.check_shape(x.shape)
        if not np.issubdtype(x.dtype, np.floating):
            raise InputError(f"expected floating-point input, got {x.dtype}.")
        if not np.isfinite(x).all():
            raise InputError("input holds NaN or Inf values.")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """NxCxHxW float -> NxC'xHxW float32 after validating every item."""
        batch = np.asarray(batch)
        if batch.ndim != 4:
            raise InputError(f"expected an NxCxHxW float32 batch, got shape {batch.shape}"
                             + (" (one item: add the batch axis, x[None])" if batch.ndim == 3 else "") + ".")
        c = self.channels
        if batch.shape[1] != c and batch.shape[3] == c:
            raise InputError(f"the batch is {'x'.join(map(str, batch.shape))}, channels-last (NxHxWxC); the engine takes "
                             f"NxCxHxW: x.transpose(0, 3, 1, 2)"
                             + (", and as float32 model input (normalized as the task says) — for uint8 pictures use "
                                "a Predictor, which does that" if batch.dtype == np.uint8 else "") + ".")
        if batch.dtype == np.uint8:
            raise InputError("the engine takes float32 model input (normalized as the task says), got uint8 pictures: "
                             "run them through a Predictor (Predictor(engine).predict(picture=...)).")
        for item in batch:
            self.check_item(item)
        return self.runner.infer(np.ascontiguousarray(batch, dtype=np.float32))

    __call__ = infer

    def describe(self) -> str:
        m = self.metadata
        return (f"{self.path.name}: {m['arch']} {m['precision']} task={m['task']} mode={m['mode']} "
                f"backend={self.backend.name} device={self.device}"
                + (f" infer-requests={self.requests}" if self.requests > 1 else ""))


ENGINE_RECORD = "engine.json"


def resolve_engine_path(path: Path, device: str = "auto", mode: str = "throughput") -> Path:
    """A directory made by export-engine -> the artefact its ``engine.json`` records for ``mode``: ``throughput``
    (run-infer, serving) its ``engine``, ``latency`` (one request at a time) its ``latency_engine`` where it records
    one; with ``device="cpu"``, the CPU choice recorded beside a GPU engine. A file -> itself."""
    if not path.is_dir():
        return path
    record = path / ENGINE_RECORD
    if not record.is_file():
        raise RegenrtError(f"{str(path)!r} is a directory without {ENGINE_RECORD}; pass an artefact file "
                           "(model.onnx, model.fp16.onnx, model.openvino.xml) or re-export with export-engine.")
    entry = read_record(record, ("engine",), "re-export with export-engine")
    cpu_engine = entry.get("cpu_engine") if isinstance(entry.get("cpu_engine"), dict) else {}
    gpu_engine, name, cpu_name = entry.get("device") == "cuda", entry["engine"], _for_mode(cpu_engine, mode)
    if not gpu_engine:
        name = _for_mode(entry, mode)
    elif device == "cpu" and cpu_name:
        name = cpu_name
    elif gpu_engine and device == "auto" and not _cuda_visible():
        raise MissingDependencyError(
            f"this export's engine is {name}, built for an NVIDIA GPU, and no GPU is visible here; "
            + (f"pass --device cpu (device='cpu') to run its CPU engine {cpu_name}." if cpu_name
               else "re-export on this machine for a CPU engine."))
    if Path(name).name != name:
        raise RegenrtError(f"{record} names {name!r}, which is not a file of that directory.")
    return path / name


def _for_mode(record: dict, mode: str) -> str | None:
    """The artefact a CPU record names for ``mode``: its latency engine for ``latency`` where it has one."""
    latency = record.get("latency_engine")
    if mode == "latency" and isinstance(latency, dict) and latency.get("engine"):
        return latency["engine"]
    return record.get("engine")


def _cuda_visible() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _lazy(module: str, name: str) -> Callable:
    """``regenrt.runtime.backends.<module>.<name>``, imported on first call: backends stay unimported until used."""
    def call(*args):
        import importlib

        return getattr(importlib.import_module(f"{__package__}.backends.{module}"), name)(*args)

    return call


def _onnx_devices() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    providers = onnxruntime.get_available_providers()
    return ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in providers else [])


def check_external_data(path: Path) -> None:
    """An ONNX file's external data must be plain files inside the model's directory: a location that is
    absolute, climbs out with '..', goes through a symbolic link or is a hard link (whose other name may live
    anywhere) is refused before ONNX Runtime opens anything."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a broken protobuf: ONNX Runtime would say the same, less clearly
        raise RegenrtError(f"{path.name} is not a readable ONNX model ({type(exc).__name__}: {exc}); re-export it.") \
            from None
    base = path.parent.resolve()
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = path.parent / location
        problem = None
        if not location or Path(location).is_absolute() or ".." in Path(location).parts:
            problem = "is not a relative path inside the model's directory"
        elif any((path.parent / Path(*Path(location).parts[:i + 1])).is_symlink()
                 for i in range(len(Path(location).parts))):
            problem = "goes through a symbolic link"
        elif not target.is_file():
            problem = "does not exist"
        elif base not in target.resolve().parents:
            problem = "resolves outside the model's directory"
        elif target.stat().st_nlink > 1:
            problem = "is a hard link (its other names may be anywhere)"
        if problem:
            raise RegenrtError(f"{path.name}: the external data {location!r} of tensor {tensor.name!r} {problem}; "
                               "refused. Keep the model's data files as plain files beside it (or re-export).")


def _onnx_open(path: Path, device: str, mode: str = "latency"):
    from .backends.onnxruntime import OnnxRuntimeRunner

    check_external_data(path)

    providers = ("CPUExecutionProvider",)
    if device == "cuda":  # TensorRT EP only on request: onnxruntime-gpu lists it even where TensorRT is absent
        providers = (("TensorrtExecutionProvider",) if os.environ.get("REGENRT_ORT_TENSORRT") == "1" else ()) \
            + ("CUDAExecutionProvider",)
    runner = OnnxRuntimeRunner(path, providers)
    runner.activate()
    return runner.single()


def _onnx_metadata(path: Path) -> dict:
    try:
        from ..export.metadata import read_onnx_metadata
    except ImportError:
        raise MissingDependencyError("reading ONNX metadata needs `pip install regenrt[onnx]`.") from None
    return read_onnx_metadata(path)


def read_metadata(path: str | os.PathLike) -> dict:
    """The regenrt metadata of any artefact, read by the backend that opens its kind (one reader per kind, each
    reading only the entry regenrt itself wrote); {} when it has none."""
    return backend_for(Path(path)).read_metadata(Path(path))


register_backend(Backend("onnxruntime", (".onnx",), _onnx_open, _onnx_devices, _onnx_metadata, "onnx-gpu"))


def _openvino_devices() -> list[str]:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return []
    return ["cpu"]


def _openvino_open(path: Path, device: str, mode: str = "latency"):
    from .backends.openvino import OpenVinoRunner

    return OpenVinoRunner(path, mode=mode)



register_backend(Backend("openvino", (".xml",), _openvino_open, _openvino_devices, _lazy("openvino", "read_metadata"),
                         "openvino"))


def _tensorrt_devices() -> list[str]:
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return []
    return ["cuda"] if torch.cuda.is_available() else []


def _tensorrt_open(path: Path, device: str, mode: str = "latency"):
    from .backends.tensorrt import TensorRTRunner

    return TensorRTRunner(path, cuda_graphs=_cuda_graphs())



register_backend(Backend("tensorrt", (".engine",), _tensorrt_open, _tensorrt_devices,
                         _lazy("tensorrt", "read_metadata"), "tensorrt"))


def _torch_open(path: Path, device: str, mode: str = "latency"):
    from .backends.pytorch import TorchRunner

    return TorchRunner(path, device, cuda_graphs=_cuda_graphs())


def _cuda_graphs() -> bool:
    """CUDA graphs per input shape for GPU runners: on unless REGENRT_CUDA_GRAPHS=0."""
    return os.environ.get("REGENRT_CUDA_GRAPHS", "1") != "0"




register_backend(Backend("torch", (".torch.pt",), _torch_open, _lazy("pytorch", "torch_devices"),
                         _lazy("pytorch", "read_metadata"), "cuda"))


def _aoti_open(path: Path, device: str, mode: str = "latency"):
    from .backends.aoti import AotiRunner

    return AotiRunner(path, device)


register_backend(Backend("aoti", (".pt2",), _aoti_open, _lazy("aoti", "aoti_devices"), _lazy("aoti", "read_metadata"),
                         "cuda"))
