"""AOTInductor artefacts: the model compiled ahead of time by PyTorch Inductor into a ``.pt2`` package.

``torch.export`` captures the model (eval mode, or the checkpoint's batch-statistics mode) with a dynamic batch
(and, for models that take any size divisible by their multiple, dynamic H/W); ``aoti_compile_and_package``
compiles it for one device: FP16 with channels_last on an NVIDIA GPU (``model.aoti.pt2``, a GPU engine beside
TensorRT and the torch-CUDA artefact), FP32 on the CPU (``model.aoti-cpu.pt2``, a CPU candidate on request). The
package is executable code built for one machine kind, so like a TensorRT engine it carries a fingerprint
(``<package>.json``: its sha256, the torch version, the device and its compute capability or CPU vector ISA, the
regenrt metadata, the parity verdict and the command that rebuilds it) and is refused on any mismatch before
an input is read (:func:`check_fingerprint`).

Example::

    build_package(model, work / "model.aoti-cpu.pt2", device="cpu", dtype="fp32", shape=(1, 3, 256, 256),
                  dynamic_hw=False, multiple=256, max_batch=16, metadata=meta, rebuild="export-engine ...")
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from ..errors import ExportError, MissingDependencyError, RegenrtError
from ..hashing import sha256_file
from ..records import read_record
from ..wording import shorten

FORMAT = "regenrt-aoti/1"
SIDECAR_SUFFIX = ".json"  # model.aoti.pt2 -> model.aoti.pt2.json


def sidecar_path(package: str | os.PathLike) -> Path:
    return Path(str(package) + SIDECAR_SUFFIX)


def environment(device: str) -> dict:
    """What a package is bound to: the torch version, and the device's compute capability (CUDA) or the CPU
    vector ISA Inductor generates code for (``torch.backends.cpu.get_cpu_capability()``: AVX512, AVX2, ...)."""
    import torch

    env = {"torch": torch.__version__, "device": device}
    if device == "cuda":
        if not torch.cuda.is_available():
            raise MissingDependencyError("an AOTInductor GPU package needs an NVIDIA GPU visible to torch.")
        major, minor = torch.cuda.get_device_capability(0)
        env.update(compute_capability=f"{major}.{minor}", gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    else:
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return env


def missing_toolchain(device: str) -> str | None:
    """Why an AOTInductor package for ``device`` cannot be compiled here (None: it can) — checked before any
    export or compile: the C++ compiler Inductor will use (``torch._inductor.cpp_builder.get_cpp_compiler``), and
    for CUDA the toolkit torch finds (``CUDA_HOME``, nvcc on PATH or /usr/local/cuda) with its headers."""
    try:  # the compiler Inductor itself will use (its cpp.cxx setting, $CXX): nothing else is tried later
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as exc:  # noqa: BLE001 - InvalidCxxCompiler, or an Inductor without cpp_builder
        return (f"no C++ compiler Inductor can use ({_short(exc)}): AOTInductor compiles the model to C++; install "
                "g++ (Debian/Ubuntu: apt-get install g++) or set CXX")
    if device == "cuda":
        from torch.utils.cpp_extension import CUDA_HOME

        if CUDA_HOME is not None and not (Path(CUDA_HOME) / "include" / "cuda_runtime_api.h").exists():
            return (f"the CUDA toolkit at {CUDA_HOME} has no headers (include/cuda_runtime_api.h): AOTInductor "
                    "compiles CUDA code with them; install the full toolkit (nvcc and headers) or set CUDA_HOME")
        if CUDA_HOME is None:
            return ("the CUDA toolkit is not found (no CUDA_HOME, no nvcc on PATH, no /usr/local/cuda): AOTInductor "
                    f"compiles CUDA code with it; install the toolkit matching torch's CUDA {_torch_cuda()} or set "
                    "CUDA_HOME")
    return None


def _short(exc: BaseException) -> str:
    return shorten(str(exc), 200) or type(exc).__name__


def _torch_cuda() -> str:
    import torch

    return str(torch.version.cuda)


def _program(model, dtype):
    """What is exported: float32 NCHW in and out (the pipeline's contract), ``dtype`` inside."""
    import torch

    class Program(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x.to(dtype)).float()

    return Program()


def build_package(model, path: Path, *, device: str, dtype: str, shape: tuple[int, int, int, int], dynamic_hw: bool,
                  multiple: int, max_batch: int, metadata: dict, rebuild: str, mode: str = "eval",
                  max_autotune: bool = False) -> Path:
    """Export and compile ``model`` into the package at ``path`` and write its (provisional, unverified)
    fingerprint; the parity gate's verdict is written by :func:`record_verdict`."""
    import torch
    from torch.export import Dim

    from ..runtime.backends.pytorch import prepare_model

    import copy

    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16}[dtype]
    prepared = prepare_model(copy.deepcopy(model), mode, torch_dtype, device).eval()  # the caller's model untouched
    if device == "cuda":
        prepared = prepared.to(memory_format=torch.channels_last)
    n, c, h, w = shape
    # traced with at least 2 of every dynamic size: torch.export specializes a dimension traced at 1 (a batch of
    # one is still allowed); H/W range over 2 .. 2 x opt blocks of the size multiple
    dims = {0: Dim("batch", min=1, max=max_batch)} if max_batch > 1 else {}
    trace_h, trace_w = h, w
    if dynamic_hw:
        trace_h, trace_w = max(h, 2 * multiple), max(w, 2 * multiple)
        dims[2] = multiple * Dim("h_blocks", min=2, max=max(2 * h // multiple, 2))
        dims[3] = multiple * Dim("w_blocks", min=2, max=max(2 * w // multiple, 2))
    example = torch.zeros((min(max(n, 2), max_batch), c, trace_h, trace_w), dtype=torch.float32, device=device)
    configs = {"max_autotune": max_autotune} if max_autotune else {}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecation notices from inside export
            program = torch.export.export(_program(prepared, torch_dtype), (example,), dynamic_shapes=({**dims},))
            torch._inductor.aoti_compile_and_package(program, package_path=str(path), inductor_configs=configs)
    except Exception as exc:  # torch.export / Inductor failures: the message says what to do
        raise ExportError(f"AOTInductor could not compile the model for {device} ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); export without it.") from exc
    hw_range = ([2 * multiple, max(2 * h // multiple, 2) * multiple], [2 * multiple, max(2 * w // multiple, 2) * multiple]
                ) if dynamic_hw else ([h, h], [w, w])
    write_fingerprint(path, metadata={**metadata, "precision": dtype, "compiled_for": device},
                      environment=environment(device), layers=_conv_precisions(program),
                      shape={"opt": list(shape), "max_batch": max_batch, "dynamic_hw": dynamic_hw,
                             "multiple": multiple, "h_range": hw_range[0], "w_range": hw_range[1]},
                      rebuild=rebuild)
    return path


def _conv_precisions(program) -> dict:
    """The precision of every convolution of the exported program the package is compiled from (the dtype of its
    output in the graph), as shares of the convolution count: what the package computes its heavy layers in."""
    import torch

    names = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
    counts: dict[str, int] = {}
    for node in program.graph.nodes:
        if node.op == "call_function" and "conv" in str(node.target):  # aten.conv2d / convolution / conv_transpose2d
            value = node.meta.get("val")
            kind = names.get(getattr(value, "dtype", None), str(getattr(value, "dtype", "unknown")))
            counts[kind] = counts.get(kind, 0) + 1
    total = sum(counts.values())
    return {"layer_share": {k: v / total for k, v in counts.items()} if total else {}, "heavy_layers": total,
            "source": "the convolutions of the torch.export program compiled into the package"}


def write_fingerprint(path: Path, *, metadata: dict, environment: dict, shape: dict, rebuild: str,
                      layers: dict | None = None, parity: dict | None = None) -> dict:
    record = {"format": FORMAT, "package_sha256": sha256_file(path), "metadata": metadata, "layers": layers or {},
              "environment": environment, "shapes": shape, "rebuild": rebuild,
              "parity": parity or {"passed": False, "pending": True}, "verified": bool(parity and parity["passed"])}
    sidecar_path(path).write_text(json.dumps(record, indent=2, sort_keys=True))
    return record


def record_verdict(path: Path, rows: list[dict], passed: bool) -> None:
    """Write the parity gate's verdict into the fingerprint (the sha256 is the package's, unchanged)."""
    sidecar = sidecar_path(path)
    record = json.loads(sidecar.read_text())
    record["parity"] = {"passed": passed, "rows": rows}
    record["verified"] = passed
    sidecar.write_text(json.dumps(record, indent=2, sort_keys=True))


def read_fingerprint(path: str | os.PathLike) -> dict:
    path = Path(path)
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise RegenrtError(f"{path.name} has no fingerprint ({sidecar.name}): an AOTInductor package is compiled "
                           "code, and regenrt runs only packages it built and verified. Rebuild it with export-engine.")
    record = read_record(sidecar, ("rebuild", "package_sha256", "format"), "rebuild the package with export-engine")
    if not all(isinstance(record.get(k), dict) for k in ("environment", "metadata")):
        raise RegenrtError(f"{sidecar} is damaged: its environment or metadata entry is missing; rebuild the package: "
                           f"{record['rebuild']}")
    if record.get("format") != FORMAT:
        raise RegenrtError(f"{sidecar.name} is not a {FORMAT} fingerprint; rebuild the package: {record['rebuild']}")
    return record


def check_fingerprint(path: str | os.PathLike, device: str, *, allow_unverified: bool = False) -> dict:
    """Refuse a package before any input is read: no or damaged fingerprint, bytes that are not the ones
    fingerprinted, a parity gate it did not pass, or a torch version / device / compute capability / CPU ISA it
    was not built for. Returns the fingerprint."""
    path = Path(path)
    record = read_fingerprint(path)
    rebuild = record["rebuild"]
    if sha256_file(path) != record["package_sha256"]:
        raise RegenrtError(f"{path.name} is not the package its fingerprint describes (sha256 differs: replaced or "
                           f"tampered with). Rebuild it: {rebuild}")
    if not record.get("verified") and not allow_unverified:
        raise RegenrtError(f"{path.name} did not pass the parity gate when it was built. Rebuild it: {rebuild}")
    built, here = record["environment"], environment(device)
    problems = [f"{key} {built.get(key)} (here: {here.get(key)})" for key in
                ("device", "torch", "compute_capability", "cpu_capability") if built.get(key) != here.get(key)]
    if problems:
        raise RegenrtError(f"{path.name} was compiled for another machine or torch: built for "
                           f"{'; '.join(problems)}. AOTInductor packages run only where they were compiled. "
                           f"Rebuild it here: {rebuild}")
    return record
