"""The GPU engine of an export: a TensorRT FP16 engine, the AOTInductor FP16 package, or the torch-CUDA FP16
artefact.

``--gpu-engine auto`` (default) builds one only when an NVIDIA GPU is visible: TensorRT when it is installed,
else the torch-CUDA artefact — and says which; ``aoti`` compiles the model ahead of time with PyTorch Inductor
(:mod:`regenrt.export.aoti`). Asking for a kind the machine cannot build fails before any work, with what to
install. The artefact goes through the same parity gate as the CPU artefacts, on the GPU. Where no GPU is
visible, the export says so and records the command that builds the GPU engine on the GPU machine
(:func:`no_gpu_engine`): an engine is built for one GPU, on it.

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

GPU_ENGINES = ("auto", "tensorrt", "aoti", "torch", "none")
TIMING_CACHE_DIR = Path.home() / ".cache" / "regenrt" / "tensorrt"
GPU_ARTEFACTS = {"tensorrt": "model.engine", "aoti": "model.aoti.pt2", "torch": "model.torch.pt"}


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
    if choice == "aoti":
        from .aoti import missing_toolchain

        reason = missing_toolchain("cuda")
        if reason:
            raise MissingDependencyError(f"--gpu-engine aoti cannot be built here: {reason}; or use --gpu-engine torch.")
    return choice  # aoti, torch


def build_gpu_artefact(kind: str, work: Path, *, loaded, metadata: dict, fp16_onnx: Path | None, shape: tuple,
                       dynamic_hw: bool, multiple: int, options: GpuOptions, rebuild: str) -> Path:
    """Build the ``kind`` artefact in ``work``; a TensorRT engine gets a provisional (unverified) fingerprint."""
    path = work / GPU_ARTEFACTS[kind]
    if kind == "aoti":
        from .aoti import build_package

        return build_package(loaded.model, path, device="cuda", dtype="fp16", shape=shape, dynamic_hw=dynamic_hw,
                             multiple=multiple, max_batch=options.max_batch, metadata=metadata, rebuild=rebuild,
                             mode=metadata.get("mode", "eval"))
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
    if kind == "aoti":
        from ..runtime.backends.aoti import AotiRunner

        return AotiRunner(path, "cuda", allow_unverified=True)
    from ..runtime.backends.tensorrt import TensorRTRunner

    return TensorRTRunner(path, allow_unverified=True)


def no_gpu_engine(choice: str, rebuild: str, from_weights: bool = True) -> dict:
    """What engine.json says about the GPU engine of an export that built none: why, and the command that builds
    it on the GPU machine (engines are compiled for one GPU, so they are built there, never shipped). The command
    names the default GPU engine (auto: TensorRT where installed, else the torch-CUDA FP16 artefact with CUDA
    graphs); a model given as a program (.pt2, .onnx) gets TensorRT only."""
    import shlex

    if choice == "none":
        reason = "none asked for (--gpu-engine none)"
    else:
        reason = "none built here (no NVIDIA GPU visible to torch)"
    parts = shlex.split(rebuild)
    if "--gpu-engine" in parts:
        del parts[parts.index("--gpu-engine"):parts.index("--gpu-engine") + 2]
    if from_weights:
        how = ("on the NVIDIA GPU machine: " + shlex.join(parts) + " (TensorRT FP16 where TensorRT is installed, "
               "else the torch-CUDA FP16 artefact with CUDA graphs)")
    else:
        how = ("on an NVIDIA GPU machine with TensorRT: " + shlex.join(parts + ["--gpu-engine", "tensorrt"])
               + " (built from the FP16 ONNX graph)")
    return {"built": False, "reason": reason, "how": how}


def record_parity(kind: str, path: Path, rows: list[dict], passed: bool) -> None:
    """Write the gate's verdict into a fingerprinted artefact: the TensorRT engine, the AOTInductor packages
    (GPU and CPU); other artefacts carry none."""
    if path.name.endswith(".pt2"):
        from .aoti import record_verdict

        record_verdict(path, rows, passed)
        return
    if kind != "tensorrt":
        return
    sidecar = sidecar_path(path)
    fingerprint = json.loads(sidecar.read_text())
    fingerprint["parity"] = {"passed": passed, "rows": rows}
    fingerprint["verified"] = passed
    sidecar.write_text(json.dumps(fingerprint, indent=2, sort_keys=True))
    check_fingerprint(path, None, allow_unverified=not passed)
