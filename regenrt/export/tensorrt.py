"""TensorRT FP16 engines: a thin layer over the documented TensorRT 10/11 Python API, and the engine fingerprint.

What runs without TensorRT (and is tested on CPU): the optimization-profile computation, the fingerprint sidecar
(``model.engine.json``) with its checks, and the reading of the engine inspector's layer report that proves FP16
was used. ``build_engine`` itself needs TensorRT and an NVIDIA GPU; it was written against the TensorRT 10.x and
11.x Python API documentation and has NOT yet been run on TensorRT.

Precision: TensorRT 11 networks are always strongly typed, so FP16 must be in the graph — the FP16 ONNX graph
(``model.fp16.onnx``) is what is built, strongly typed on both TensorRT 10 and 11 (one ``--precision fp16`` for
both). After the build the engine's layer information is inspected and the build fails if no layer runs in FP16.

Example::

    profile = optimization_profile((1, 3, 256, 256), dynamic_hw=False, multiple=256, max_batch=16)
    built = build_engine("engine/model.fp16.onnx", "engine/model.engine", profile, timing_cache=cache_path)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExportError, MissingDependencyError, RegenrtError
from ..records import read_record
from ..hashing import sha256_file

SIDECAR_SUFFIX = ".json"  # model.engine -> model.engine.json
FINGERPRINT_SCHEMA = 1


def import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError(
            "TensorRT is not installed: install NVIDIA TensorRT 10 or 11 for your CUDA version "
            "(`pip install tensorrt-cu12` on a machine with an NVIDIA GPU), or use the CPU engines."
        ) from None
    return tensorrt


@dataclass(frozen=True)
class Profile:
    """One optimization profile: the min/opt/max NxCxHxW shapes of the input."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def as_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def optimization_profile(shape: tuple[int, int, int, int], *, dynamic_hw: bool, multiple: int,
                         max_batch: int = 16, max_hw: tuple[int, int] | None = None) -> Profile:
    """min/opt/max from ``--input-shape`` (the opt shape). Fixed-size models vary the batch only (1..max_batch);
    models that take any size divisible by ``multiple`` range from ``multiple`` up to ``max_hw`` (default 2 x opt)."""
    n, c, h, w = shape
    if n > max_batch:
        raise RegenrtError(f"the input shape's batch {n} exceeds the profile's maximum batch {max_batch}; "
                           "raise --max-batch.")
    if not dynamic_hw:
        return Profile((1, c, h, w), (n, c, h, w), (max_batch, c, h, w))
    mh, mw = max_hw or (2 * h, 2 * w)
    if mh < h or mw < w or mh % multiple or mw % multiple:
        raise RegenrtError(f"the profile's maximum size {mh}x{mw} must be multiples of {multiple} and at least "
                           f"the input shape's {h}x{w}.")
    return Profile((1, c, multiple, multiple), (n, c, h, w), (max_batch, c, mh, mw))


def _output_types(output: dict) -> str:
    """An output's data type as the inspector writes it: TensorRT 10 joins format and type in one field
    ("Format/Datatype": "Row major linear FP16 format"), TensorRT 11 splits them ("DataType": "Half" beside
    "Format"); the type field wins where both kinds are present."""
    for key in ("DataType", "Datatype", "Data Type"):
        if key in output:
            return str(output[key])
    return str(output.get("Format/Datatype", output.get("Format", "")))


def layer_precisions(engine_information: str) -> dict[str, int]:
    """Count the engine's layers by output precision, from ``EngineInspector.get_engine_information(JSON)``
    (needs ``ProfilingVerbosity.DETAILED`` at build time, and an execution context with the input shape set on
    the inspector for a dynamic profile: without one the inspector leaves formats out). Keys: ``fp16``,
    ``fp32``, ``other``; TensorRT 10 and 11 layouts alike."""
    try:
        info = json.loads(engine_information)
    except ValueError:
        raise ExportError("TensorRT's layer information is not JSON; build with ProfilingVerbosity.DETAILED.") from None
    counts = {"fp16": 0, "fp32": 0, "other": 0}
    for layer in info.get("Layers", []):
        if isinstance(layer, str):
            raise ExportError("TensorRT reported layer names only; build with ProfilingVerbosity.DETAILED.")
        types = " ".join(_output_types(o) for o in layer.get("Outputs", []) if isinstance(o, dict))
        if "FP16" in types or "Half" in types:
            counts["fp16"] += 1
        elif "FP32" in types or "Float" in types:
            counts["fp32"] += 1
        else:
            counts["other"] += 1
    return counts


def timing_cache_path(directory: str | os.PathLike, tensorrt_version: str, compute_capability: str) -> Path:
    """One timing cache per TensorRT version and GPU architecture: a cache from another version or GPU is
    rejected by TensorRT (``ignore_mismatch=False``), so sharing one file would lose its tuning every time."""
    return Path(directory) / f"timing-trt{tensorrt_version}-sm{compute_capability.replace('.', '')}.cache"


def require_fp16(counts: dict[str, int]) -> None:
    """The proof that FP16 was used: fail a build in which no layer computes in FP16."""
    if counts.get("fp16", 0) == 0:
        raise ExportError(f"TensorRT built the engine without any FP16 layer ({counts}): it silently fell back to "
                          "FP32. Check that model.fp16.onnx was built (export-engine --precision fp16) and that "
                          "this GPU has fast FP16.")


def current_environment() -> dict:
    """TensorRT, CUDA, driver versions and the GPU of this machine (needs TensorRT and torch with CUDA)."""
    trt = import_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError("TensorRT engines need an NVIDIA GPU; none is visible to torch here.")
    major, minor = torch.cuda.get_device_capability(0)
    return {"tensorrt": trt.__version__, "cuda": torch.version.cuda, "driver": _driver_version(),
            "gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}


def _driver_version() -> str:
    try:
        from numba import cuda

        return ".".join(map(str, cuda.cudadrv.driver.driver.get_version()))
    except Exception:  # the driver version is informative only
        return "unknown"


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    return Path(str(engine_path) + SIDECAR_SUFFIX)


def write_fingerprint(engine_path: Path, *, metadata: dict, onnx_path: Path, parity: dict, environment: dict,
                      profile: Profile, precisions: dict, rebuild_command: str, compatibility: dict) -> dict:
    """Write ``<engine>.json``: what the engine was built from, on, and how it was verified."""
    fingerprint = {
        "schema": FINGERPRINT_SCHEMA, "engine_sha256": sha256_file(engine_path), "onnx": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path), "metadata": {**metadata, "precision": "fp16"},
        "environment": environment, "profile": profile.as_dict(), "layer_precisions": precisions,
        "parity": parity, "verified": bool(parity.get("passed")), "rebuild": rebuild_command,
        "compatibility": compatibility,
    }
    sidecar_path(engine_path).write_text(json.dumps(fingerprint, indent=2, sort_keys=True))
    return fingerprint


def check_fingerprint(engine_path: str | os.PathLike, environment: dict | None, *,
                      allow_unverified: bool = False) -> dict:
    """Refuse an engine before any input is read: no or damaged fingerprint, engine bytes that are not the ones
    fingerprinted, a parity gate it did not pass, or a TensorRT version / GPU it was not built for. Returns the
    fingerprint. ``environment=None`` checks everything but the machine (for tools that only inspect)."""
    engine_path = Path(engine_path)
    sidecar = sidecar_path(engine_path)
    if not sidecar.is_file():
        if allow_unverified:
            return {}
        raise RegenrtError(f"{engine_path.name} has no fingerprint ({sidecar.name}): an engine is executable code "
                           "and regenrt runs only engines it built and verified. Rebuild it with export-engine (from "
                           "Python, TensorRTRunner(path, allow_unverified=True) runs it anyway, at your risk; the "
                           "command line has no such switch).")
    fp = read_record(sidecar, ("rebuild", "engine_sha256"), "rebuild the engine with export-engine")
    rebuild, expected_sha = fp["rebuild"], fp["engine_sha256"]
    if sha256_file(engine_path) != expected_sha:
        raise RegenrtError(f"{engine_path.name} is not the engine its fingerprint describes (sha256 differs: "
                           f"replaced or tampered with). Rebuild it: {rebuild}")
    if not fp.get("verified") and not allow_unverified:
        raise RegenrtError(f"{engine_path.name} did not pass the parity gate when it was built. Rebuild it: {rebuild}")
    if environment is not None:
        built = fp.get("environment", {})
        compat = fp.get("compatibility", {})
        problems = []
        if built.get("tensorrt") != environment.get("tensorrt") and not compat.get("version_compatible"):
            problems.append(f"TensorRT {built.get('tensorrt')} built it, this machine has {environment.get('tensorrt')}")
        if built.get("compute_capability") != environment.get("compute_capability") \
                and not compat.get("hardware_compatible"):
            problems.append(f"it was built for a compute capability {built.get('compute_capability')} GPU "
                            f"({built.get('gpu')}), this one is {environment.get('compute_capability')} "
                            f"({environment.get('gpu')})")
        if problems:
            raise RegenrtError(f"{engine_path.name} does not fit this machine: {'; '.join(problems)}. "
                               f"Rebuild it here: {rebuild}")
    return fp


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, profile: Profile, *,
                 timing_cache: str | os.PathLike | None = None, version_compatible: bool = False,
                 hardware_compatible: bool = False, workspace_gib: float = 4.0) -> dict:
    """Build a strongly typed engine from the FP16 ONNX graph (TensorRT 10 or 11); returns its layer precisions.

    NOT yet run on TensorRT; written against the documented API: OnnxParser, one optimization
    profile, a persistent timing cache, DETAILED profiling verbosity for the FP16 proof.
    """
    trt = import_tensorrt()
    from .onnx_export import INPUT_NAME

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    # TensorRT 10: ask for strong typing (the FP16 graph carries the precision); TensorRT 11 always is.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if major < 11 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {Path(onnx_path).name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    shapes = builder.create_optimization_profile()
    shapes.set_shape(INPUT_NAME, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(shapes)
    cache_file = Path(timing_cache) if timing_cache else None
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file and cache_file.is_file() else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        # a cache from another TensorRT version or GPU: TensorRT refuses it; start an empty one (and overwrite
        # the stale file below) rather than building without one
        if not config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False):
            raise ExportError("TensorRT refused even an empty timing cache; build without --timing-cache.")
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see its log above).")
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    Path(engine_path).write_bytes(bytes(memoryview(serialized)))
    _runtime, engine = deserialize(trt, logger, serialized, version_compatible)
    if engine is None:
        raise ExportError("TensorRT could not deserialize the engine it just built (see its log above).")
    # for a dynamic profile the inspector shows formats only with an execution context whose input shape is set
    context = engine.create_execution_context()
    context.set_input_shape(INPUT_NAME, profile.opt)
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context
    counts = layer_precisions(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    require_fp16(counts)
    return counts


def deserialize(trt, logger, data, version_compatible: bool) -> tuple:
    """``Runtime.deserialize_cuda_engine``; a version-compatible engine embeds the lean runtime (host code), which
    TensorRT loads only when ``engine_host_code_allowed`` is set -- otherwise it returns None."""
    runtime = trt.Runtime(logger)
    if version_compatible:
        runtime.engine_host_code_allowed = True
    return runtime, runtime.deserialize_cuda_engine(data)  # the caller keeps the runtime alive with the engine
