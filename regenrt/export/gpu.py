"""The GPU engine of an export: a TensorRT FP16 engine, or the torch-CUDA FP16 artefact where TensorRT is absent.

``--gpu-engine auto`` (default) builds one only when an NVIDIA GPU is visible: TensorRT when it is installed,
else the torch-CUDA artefact — and says which. Asking for a kind the machine cannot build fails before any work,
with what to install. The artefact goes through the same parity gate as the CPU artefacts, on the GPU.

Example::

    kind = resolve_gpu_engine("auto")          # "tensorrt", "torch" or None (no GPU here)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingDependencyError
from .tensorrt import (build_engine, check_fingerprint, current_environment, import_tensorrt, optimization_profile,
                       sidecar_path, timing_cache_path, write_fingerprint)

GPU_ENGINES = ("auto", "tensorrt", "torch", "none")
TIMING_CACHE_DIR = Path.home() / ".cache" / "regenrt" / "tensorrt"
GPU_ARTEFACTS = {"tensorrt": "model.engine", "torch": "model.torch.pt"}


@dataclass(frozen=True)
class GpuOptions:
    engine: str = "auto"
    max_batch: int = 16
    timing_cache: Path | None = None  # default: one per TensorRT version and GPU under TIMING_CACHE_DIR
    version_compatible: bool = False
    hardware_compatible: bool = False


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _have_tensorrt() -> bool:
    try:
        import_tensorrt()
    except MissingDependencyError:
        return False
    return True


def resolve_gpu_engine(choice: str) -> str | None:
    """The GPU artefact kind to build for ``choice`` on this machine; raises when an explicit choice cannot be."""
    if choice not in GPU_ENGINES:
        raise MissingDependencyError(f"gpu engine must be one of {GPU_ENGINES}, got {choice!r}.")
    if choice == "none":
        return None
    if not cuda_available():
        if choice == "auto":
            return None
        raise MissingDependencyError(
            f"--gpu-engine {choice} needs an NVIDIA GPU visible to torch (torch.cuda.is_available() is False here): "
            "export on the GPU machine that will run the engine (engines are built for one GPU), or pass "
            "--gpu-engine none for the CPU artefacts only.")
    if choice == "tensorrt":
        import_tensorrt()  # raises with the install command
        return "tensorrt"
    if choice == "auto":
        return "tensorrt" if _have_tensorrt() else "torch"
    return "torch"


def build_gpu_artefact(kind: str, work: Path, *, loaded, metadata: dict, fp16_onnx: Path | None, shape: tuple,
                       dynamic_hw: bool, multiple: int, options: GpuOptions, rebuild: str) -> Path:
    """Build the ``kind`` artefact in ``work``; a TensorRT engine gets a provisional (unverified) fingerprint."""
    path = work / GPU_ARTEFACTS[kind]
    if kind == "torch":
        from ..runtime.backends.pytorch import save_artefact

        return save_artefact(path, loaded.model.state_dict(), loaded.arch.name, loaded.config,
                             {**metadata, "precision": "fp16"})
    if fp16_onnx is None:
        raise MissingDependencyError("a TensorRT engine is built from the FP16 graph: export with --precision fp16.")
    profile = optimization_profile(shape, dynamic_hw=dynamic_hw, multiple=multiple, max_batch=options.max_batch)
    environment = current_environment()
    cache = options.timing_cache or timing_cache_path(TIMING_CACHE_DIR, environment["tensorrt"],
                                                      environment["compute_capability"])
    precisions = build_engine(fp16_onnx, path, profile, timing_cache=cache,
                              version_compatible=options.version_compatible,
                              hardware_compatible=options.hardware_compatible)
    write_fingerprint(path, metadata=metadata, onnx_path=fp16_onnx, parity={"passed": False, "pending": True},
                      environment=environment, profile=profile, precisions=precisions,
                      rebuild_command=rebuild, compatibility={"version_compatible": options.version_compatible,
                                                              "hardware_compatible": options.hardware_compatible})
    return path


def open_for_gate(kind: str, path: Path):
    """A runner for the parity gate, on the GPU (the TensorRT engine is not verified yet: that is the gate)."""
    if kind == "torch":
        from ..runtime.backends.pytorch import TorchRunner

        return TorchRunner(path, "cuda")
    from ..runtime.backends.tensorrt import TensorRTRunner

    return TensorRTRunner(path, allow_unverified=True)


def record_parity(kind: str, path: Path, rows: list[dict], passed: bool) -> None:
    """Write the gate's verdict into the TensorRT engine's fingerprint (the torch artefact has none)."""
    if kind != "tensorrt":
        return
    sidecar = sidecar_path(path)
    fingerprint = json.loads(sidecar.read_text())
    fingerprint["parity"] = {"passed": passed, "rows": rows}
    fingerprint["verified"] = passed
    sidecar.write_text(json.dumps(fingerprint, indent=2, sort_keys=True))
    check_fingerprint(path, None, allow_unverified=not passed)
