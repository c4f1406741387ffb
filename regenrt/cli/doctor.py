"""``regenrt-doctor``: which backends, devices and libraries this machine has, and how to get the missing ones."""
from __future__ import annotations

import importlib
import platform
import sys

CHECKS = [  # (what, module, extra or pip name that installs it, what it is for)
    ("torch", "torch", "torch>=2.6 (core; .pt checkpoints need >= 2.10 or --accept-unsafe-torch)", "checkpoint loading, export, parity reference"),
    ("numpy", "numpy", "core", "arrays everywhere"),
    ("pillow", "PIL", "core", "picture decoding"),
    ("onnx", "onnx", "core", "graphs, metadata, FP16 conversion"),
    ("onnxruntime", "onnxruntime", "core (GPU: regenrt[onnx-gpu])", "ONNX engines on CPU (CUDA with onnxruntime-gpu)"),
    ("openvino", "openvino", "regenrt[openvino]", "the CPU engine with BF16"),
    ("tensorrt", "tensorrt", "regenrt[tensorrt] (NVIDIA's tensorrt-cu12 wheels; on a machine with an NVIDIA GPU "
                             "and its driver)", "TensorRT FP16 engines"),
    ("nncf", "nncf", "regenrt[int8]", "INT8 candidates (post-training quantization)"),
    ("numba", "numba", "regenrt[numba]", "CPU pre/post kernels"),
    ("numba-cuda", "numba_cuda", "regenrt[cuda]", "CUDA pre/post kernels"),
    ("onnxscript", "onnxscript", "regenrt[dynamo]", "the dynamo ONNX exporter (.pt2 programs; models TorchScript "
                                                    "cannot export)"),
    ("smp", "segmentation_models_pytorch", "regenrt[smp]", "any segmentation_models_pytorch checkpoint (built with smp)"),
    ("isal", "isal", "core", "fast PNG writing (ISA-L deflate; zlib, ~10x slower, without it)"),
    ("ray", "ray", "regenrt[ray]", "batch inference on a Ray cluster (run-infer --ray)"),
    ("pytriton", "pytriton", "regenrt[serve]", "online serving: Triton via PyTriton (numpy < 2)"),
]


def report() -> list[str]:
    lines = [f"python {platform.python_version()} on {platform.machine()} ({platform.system()})"]
    for name, module, extra, purpose in CHECKS:
        try:
            mod = importlib.import_module(module)
            version = str(getattr(mod, "__version__", "?")).split("-")[0][:14]  # OpenVINO adds a build string
            lines.append(f"  ok       {name:<12} {version:<14} {purpose}")
        except Exception:
            lines.append(f"  missing  {name:<12} {'':<14} {purpose}; install: {extra}")
    from ..models.checkpoint import torch_unpickler_warning

    warning = torch_unpickler_warning()
    if warning:
        lines.append(f"  WARNING  {warning}")
    lines.append("devices:")
    try:
        import torch

        cuda = torch.cuda.is_available()
        gpu = torch.cuda.get_device_name(0) if cuda else "none (torch sees no CUDA device)"
        lines.append(f"  torch CUDA: {gpu}")
    except ImportError:
        lines.append("  torch CUDA: unknown (torch missing)")
    lines.append(f"  CPU: {_cpu_line()}")
    from ..runtime import list_backends

    for backend in list_backends():
        lines.append(f"  backend {backend.name} ({', '.join(backend.suffixes)}): devices {backend.devices() or 'none'}")
    return lines


def _cpu_line() -> str:
    """The CPU and what OpenVINO runs on it, read from compiled probes (what export-engine's candidates will use)."""
    from ..export.selection import cpu_name

    try:
        from ..runtime.backends.openvino import cpu_has_int8, executes_bf16, int8_saturates

        bf16 = "yes" if executes_bf16() else "no (f32)"
        int8 = ("no" if not cpu_has_int8() else
                "yes, saturating without VNNI (7-bit weights)" if int8_saturates() else "yes (VNNI)")
        return f"{cpu_name()}; OpenVINO runs bf16: {bf16}; INT8: {int8}"
    except Exception as exc:  # noqa: BLE001 - OpenVINO missing or failing: still report the CPU
        return f"{cpu_name()}; OpenVINO precisions unknown ({type(exc).__name__})"


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(allow_abbrev=False, prog="regenrt-doctor", description="List backends, devices and library versions "
                            "found here, with the extra that installs each missing one.").parse_args(argv)
    print("\n".join(report()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
