"""``export_checkpoint``: checkpoint -> verified ONNX artefacts (FP32 and FP16), the work behind ``export-engine``.

Every artefact is built in a private temporary directory, parity-checked against the PyTorch model on
task-realistic inputs, and only then moved (atomically, same file system) to its final name. A breach or an
interruption leaves no artefact under a final name; the parity report is always written.

Example::

    result = export_checkpoint("ckpt.pt", "engine/")            # raises ParityError on drift
    result.artefacts["fp16"], result.report["passed"]
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import __version__
from ..errors import ArchitectureError, ExportError, InputError, MissingPathError, ParityError
from ..models import build_from_state_dict, load_checkpoint
from ..models.program import is_program, load_program
from ..wording import option, shorten
from ..models.modes import MODES, with_mode
from ..runtime.engine import artefact_files
from ..tasks import get_task, load_sample
from .candidates import BuildContext, Candidate, artefact_names, candidates_for, not_built_reason
from .gate import run_gate
from .gpu import no_gpu_engine, GPU_ARTEFACTS, GpuOptions, build_gpu_artefact, record_parity, resolve_gpu_engine
from .metadata import embed_metadata
from .onnx_export import INPUT_NAME, OPSET, export_onnx
from .onnx_io import data_path, save_onnx
from .parity import CALIBRATION_SAMPLES, Tolerances, format_table
from .selection import ARTEFACT_NAMES, gpu_record, select_cpu_engine, versus_peers
from .tensorrt import sidecar_path

REPORT_NAME = "parity.json"
ENGINE_RECORD = "engine.json"
PRECISIONS = {"fp32": ("fp32",), "fp16": ("fp32", "fp16")}
CPU_ENGINES = ("auto", "onnxruntime", "openvino")


@dataclass
class _Plan:
    """Everything decided before any file is written."""

    ckpt: Any
    loaded: Any
    model: torch.nn.Module
    task: Any
    shape: tuple[int, int, int, int]
    multiple: int
    dynamic_hw: bool
    mode: str
    exporter: str
    precisions: tuple[str, ...]
    samples: str | os.PathLike | None
    tolerances: Tolerances
    parity_samples: int
    calibration_samples: int
    seed: int
    cpu_engine: str
    int8: bool = False
    run_batch: int = 8
    gpu_kind: str | None = None
    gpu: GpuOptions = GpuOptions()
    rebuild: str = ""
    cpu_aoti: bool = False


@dataclass
class ExportResult:
    output_dir: Path
    artefacts: dict[str, Path]
    report: dict
    metadata: dict
    table: str = ""
    rejected: list[str] = field(default_factory=list)
    engine: dict = field(default_factory=dict)  # what engine.json records: the engine run-infer DIR uses


def parse_input_shape(text: str) -> tuple[int, int, int, int]:
    """``"input:1x1x256x256"`` or ``"1x1x256x256"`` -> (N, C, H, W)."""
    name, _, dims = text.rpartition(":")
    if name and name != INPUT_NAME:
        raise InputError(f"--input-shape names input {name!r}, but the exported graph's input is {INPUT_NAME!r}.")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise InputError(f"--input-shape {text!r}: expected NxCxHxW with positive integers, e.g. input:1x3x256x256.")
    return shape  # type: ignore[return-value]


def _nearest(value: int, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def _check_shape(shape: tuple[int, ...], channels: int, multiple: int, static_hw: tuple[int, int] | None,
                 what: str) -> None:
    n, c, h, w = shape
    if c != channels:
        raise InputError(f"{what}: the model takes {channels} input channel(s), got {c} (shape {shape}).")
    if h % multiple or w % multiple:
        raise InputError(f"{what}: height and width must be multiples of {multiple}, got {h}x{w}; the nearest "
                         f"valid size is {_nearest(h, multiple)}x{_nearest(w, multiple)}.")
    if static_hw and (h, w) != static_hw:
        raise InputError(f"{what}: this model is exported with a fixed {static_hw[0]}x{static_hw[1]} size, got {h}x{w}.")


class _Steps:
    """Numbered progress lines on stderr with the time each step took."""

    def __init__(self, total: int, log: Callable[[str], None] | None):
        self.total, self.index, self.log = total, 0, log
        self.started = time.perf_counter()

    def __call__(self, text: str) -> None:
        now = time.perf_counter()
        if self.index and self.log:
            self.log(f"      done in {now - self.started:.1f}s")
        self.index += 1
        self.started = now
        if self.log:
            self.log(f"[{self.index}/{self.total}] {text}")

    def finish(self) -> None:
        if self.log:
            self.log(f"      done in {time.perf_counter() - self.started:.1f}s")


def _parity_cases(task, config, shape, dynamic_hw, multiple, samples, n_parity, seed) -> list[tuple[str, np.ndarray]]:
    n, c, h, w = shape
    cases = [(f"synthetic {n_parity}x{c}x{h}x{w}", task.make_inputs(config, n_parity, h, w, seed))]
    cases.append((f"batch-1 1x{c}x{h}x{w}", cases[0][1][:1]))
    if dynamic_hw:
        h2, w2 = _nearest(h * 3 // 4, multiple), _nearest(w * 5 // 4, multiple)
        cases.append((f"non-square 1x{c}x{h2}x{w2}", task.make_inputs(config, 1, h2, w2, seed + 1)))
    if samples is not None:
        if not Path(samples).is_dir():
            raise MissingPathError(f"--samples {str(samples)!r} does not exist or is not a directory; give a folder of "
                                   "sample inputs.")
        files = sorted(p for p in Path(samples).iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InputError(f"--samples {str(samples)!r} holds no files.")
        for i, path in enumerate(files):  # every second file calibrates; the others are held out for the gate
            kind = "calibration" if i % 2 == 1 else "sample"
            try:
                x = load_sample(path, task, config, seed + i)[None]
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"sample {path.name} cannot be read: {exc}") from None
            _check_shape(x.shape, c, multiple, None if dynamic_hw else (h, w), f"sample {path.name}")
            if not np.isfinite(x).all():
                raise InputError(f"sample {path.name} holds NaN or Inf values.")
            cases.append((f"{kind} {path.name}", x.astype(np.float32)))
    return cases


def _gate_cases(cases: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """The cases the gate judges: never the ``--samples`` files that calibrated (FP16 ranges, INT8)."""
    return [(name, x) for name, x in cases if not name.startswith("calibration ")]


def export_checkpoint(checkpoint: str | os.PathLike, output_dir: str | os.PathLike | None = None, *,
                      arch: str | None = None, overrides: dict[str, Any] | None = None, task: str | None = None,
                      input_shape: str | tuple[int, int, int, int] | None = None, precision: str = "fp16",
                      mode: str = "eval", samples: str | os.PathLike | None = None, trust_pickle: bool = False,
                      accept_unsafe_torch: bool = False,
                      state_key: str | None = None, exporter: str = "torchscript",
                      tolerances: Tolerances = Tolerances(), parity_samples: int = 4,
                      calibration_samples: int = CALIBRATION_SAMPLES, seed: int = 0, cpu_engine: str = "auto",
                      int8: str = "auto", run_batch: int = 8, gpu: GpuOptions = GpuOptions(),
                      cpu_aoti: bool = False, log: Callable[[str], None] | None = None) -> ExportResult:
    """Export ``checkpoint`` to verified artefacts in ``output_dir`` (see module docstring).

    ``cpu_engine``: ``auto`` also converts to OpenVINO when it is installed and records the fastest verified
    artefact (measured here) in ``engine.json``; ``onnxruntime`` / ``openvino`` choose that kind.
    ``gpu.engine``: ``auto`` builds a GPU engine when an NVIDIA GPU is visible (TensorRT if installed, else the
    torch-CUDA FP16 artefact), gates it on the GPU and records it as the engine, the CPU choice beside it.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}.")
    if cpu_engine not in CPU_ENGINES:
        raise InputError(f"cpu_engine must be one of {CPU_ENGINES}, got {cpu_engine!r}.")
    with_openvino = cpu_engine == "openvino" or (cpu_engine == "auto" and _have_openvino())
    if cpu_engine == "openvino" and not _have_openvino():
        from ..runtime.backends.openvino import import_openvino

        import_openvino()  # raises with the install command
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}.")
    precisions = PRECISIONS[precision]
    gpu_kind = resolve_gpu_engine(gpu.engine)
    if gpu_kind == "tensorrt" and "fp16" not in precisions:
        raise InputError("a TensorRT engine is built from the FP16 graph: use "
                         f"{option('precision', 'fp16', owner='export_checkpoint')}, the default.")
    use_int8 = _resolve_int8(int8, with_openvino)
    if run_batch < 1:
        raise InputError(f"run_batch must be a positive batch size, got {run_batch}.")
    steps = _Steps(6 + bool(gpu_kind), log)
    steps(f"loading {checkpoint}")
    if is_program(checkpoint):
        ckpt, loaded, gpu_kind = _load_program(checkpoint, arch, overrides, task, input_shape, mode, trust_pickle,
                                               cpu_aoti, gpu, gpu_kind, log)
    else:
        ckpt = load_checkpoint(checkpoint, trust_pickle=trust_pickle, state_key=state_key,
                               accept_unsafe_torch=accept_unsafe_torch)
        loaded = _build(ckpt, arch, overrides)
    ckpt.state_dict = {}  # the model holds its own copy of the weights: one copy less for the whole export
    config = loaded.config
    task_name = task or loaded.arch.default_task(config)
    if not task_name:
        raise ArchitectureError(
            f"{loaded.arch.name} with {config.get('in_channels')} input channels and {config.get('classes')} class "
            "could be binary segmentation or dense regression; pass --task segmentation or --task phase-recovery "
            "(Python: export_checkpoint(task='segmentation') or task='phase-recovery')."
        )
    task_obj = get_task(task_name)
    in_contract = task_obj.input_contract(config)
    multiple, dynamic_hw = loaded.arch.spatial_multiple(config), loaded.arch.dynamic_hw(config)
    if input_shape is None:
        shape = (1, in_contract["channels"], *loaded.arch.default_hw(config))
    else:
        shape = parse_input_shape(input_shape) if isinstance(input_shape, str) else tuple(input_shape)
    _check_shape(shape, in_contract["channels"], multiple, None, "--input-shape")
    model = loaded.model if loaded.fixed_mode else with_mode(loaded.model, mode)
    if log:
        assumed = "".join(f"\n      assumed {k}: {v}" for k, v in loaded.assumed.items())
        log(f"      {loaded.arch.name} {config} task={task_name} mode={mode}{assumed}")

    out_dir = Path(output_dir) if output_dir is not None else Path.cwd() / f"{Path(checkpoint).stem}_engine"
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = _Plan(ckpt, loaded, model, task_obj, shape, multiple, dynamic_hw, mode, exporter, precisions, samples,
                 tolerances, parity_samples, calibration_samples, seed,
                 cpu_engine if cpu_engine != "auto" or with_openvino else "onnxruntime", use_int8, run_batch,
                 gpu_kind, gpu,
                 _rebuild_command(checkpoint, out_dir, arch, overrides, task, input_shape, mode, gpu_kind, gpu,
                                  cpu_aoti), cpu_aoti)
    work = Path(tempfile.mkdtemp(prefix=".regenrt-export-", dir=out_dir))
    try:
        return _export_in(work, out_dir, plan, steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _rebuild_command(checkpoint, out_dir, arch, overrides, task, input_shape, mode, gpu_kind, gpu,
                     cpu_aoti: bool = False) -> str:
    """The export-engine command line that rebuilds this export (kept in the fingerprints of the TensorRT engine
    and the AOTInductor packages)."""
    import shlex

    parts = ["export-engine", str(checkpoint), "-o", str(out_dir)]
    parts += ["--arch", arch] if arch else []
    parts += [f"--set={k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
              for k, v in (overrides or {}).items()]
    parts += ["--task", task] if task else []
    if input_shape:
        parts += ["--input-shape", input_shape if isinstance(input_shape, str) else "x".join(map(str, input_shape))]
    parts += ["--mode", mode] if mode != "eval" else []
    parts += ["--gpu-engine", gpu_kind] if gpu_kind else []
    parts += ["--max-batch", str(gpu.max_batch)] if gpu.max_batch != GpuOptions().max_batch else []
    parts += ["--version-compatible"] if gpu.version_compatible else []
    parts += ["--hardware-compatible"] if gpu.hardware_compatible else []
    parts += ["--cpu-aoti"] if cpu_aoti else []
    return shlex.join(parts)


INT8_CHOICES = ("auto", "on", "off")


def _resolve_int8(choice: str, with_openvino: bool) -> bool:
    """auto: an INT8 candidate when OpenVINO and NNCF are installed and the CPU runs INT8; on: require them."""
    if choice not in INT8_CHOICES:
        raise InputError(f"int8 must be one of {INT8_CHOICES}, got {choice!r}.")
    if choice == "off":
        return False
    from .int8 import have_nncf, import_nncf

    if choice == "on":
        if not with_openvino:
            raise InputError("--int8 on builds an OpenVINO INT8 candidate: it needs --cpu-engine auto or openvino "
                             "and OpenVINO installed (`pip install regenrt[openvino]`).")
        import_nncf()  # raises with the install command
        return True
    if not (with_openvino and have_nncf()):
        return False
    from ..runtime.backends.openvino import cpu_has_int8

    return cpu_has_int8()


def _have_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _load_program(path, arch, overrides, task, input_shape, mode, trust_pickle, cpu_aoti, gpu, gpu_kind, log):
    """A torch.export program or an ONNX file as the model (regenrt.models.program): what applies to weights
    only is refused by name; a GPU engine is built from the FP16 ONNX graph (TensorRT) or not at all."""
    for given, flag in ((arch, "--arch"), (mode != "eval", "--mode"), (cpu_aoti, "--cpu-aoti")):
        if given:
            raise InputError(f"{flag} applies to checkpoints (regenrt rebuilds those from weights); a "
                             f"{Path(path).suffix} model is exported as it is: leave {flag} out.")
    shape = None
    if input_shape is not None:
        shape = parse_input_shape(input_shape) if isinstance(input_shape, str) else tuple(input_shape)
    ckpt, loaded = load_program(path, task=task, trust_pickle=trust_pickle, input_shape=shape, overrides=overrides)
    if gpu_kind in ("torch", "aoti"):
        if gpu.engine != "auto":
            raise InputError(f"--gpu-engine {gpu.engine} builds from the PyTorch model's weights; a "
                             f"{Path(path).suffix} model gets a TensorRT engine (--gpu-engine tensorrt) or none.")
        if log:
            log("      GPU engine: none for a program (the torch-CUDA artefact is built from weights); TensorRT "
                "builds one from the FP16 graph where installed")
        gpu_kind = None
    return ckpt, loaded, gpu_kind


def _build(ckpt, arch: str | None, overrides: dict | None):
    """The model: from the weights, with an smp config.json's options (the caller's flags win); a config and
    weights that disagree name both files."""
    if ckpt.config_path is None:
        return build_from_state_dict(ckpt.state_dict, arch, overrides)
    try:
        return build_from_state_dict(ckpt.state_dict, arch or ckpt.arch, {**ckpt.options, **(overrides or {})})
    except ArchitectureError as exc:
        raise ArchitectureError(f"{ckpt.config_path} and {ckpt.path.name} disagree: {exc}") from None


def _known_artefacts() -> set[str]:
    """Every artefact file name an export can publish (candidates, their mixed-precision repairs, GPU engines)."""
    from .candidates import list_candidates
    from .int8 import mixed_name

    names = set(artefact_names().values()) | set(GPU_ARTEFACTS.values())
    return names | {mixed_name(c.artefact) for c in list_candidates() if c.repair is not None}


# the files that travel with an artefact, by its suffix (they may not exist)
_COMPANIONS: dict[str, Callable[[Path], Path]] = {".xml": lambda p: p.with_suffix(".bin"), ".onnx": data_path,
                                                  ".engine": sidecar_path, ".pt2": sidecar_path}


def _leftovers(path: Path) -> list[Path]:
    """Every file an artefact called ``path`` may consist of (an OpenVINO IR's .bin, an ONNX graph's external data,
    a TensorRT engine's fingerprint) — what must go when that artefact is not published."""
    companion = _COMPANIONS.get(path.suffix)
    return [path, companion(path)] if companion else [path]


def _base_metadata(p: _Plan) -> dict:
    ckpt, loaded = p.ckpt, p.loaded
    n, c, h, w = p.shape
    dims = ["batch", c, "height" if p.dynamic_hw else h, "width" if p.dynamic_hw else w]
    return {
        "regenrt_version": __version__, "task": p.task.name, "arch": loaded.arch.name, "config": loaded.config,
        "assumed": loaded.assumed, "mode": p.mode, "batch_dependent": p.mode == "batch-stats",
        "input": {"name": INPUT_NAME, "shape": dims, "spatial_multiple": p.multiple, "example_shape": [n, c, h, w],
                  **p.task.input_contract(loaded.config)},
        "output": {"name": "output", **p.task.output_contract(loaded.config)},
        "source": {"file": ckpt.path.name, "sha256": ckpt.sha256, "dtypes": ckpt.source_dtypes,
                   "state_key": ckpt.wrapper_key, "stripped_prefixes": ckpt.stripped_prefixes
                   + ([loaded.stripped_prefix] if loaded.stripped_prefix else [])},
        "warnings": ckpt.warnings, "exporter": p.exporter, "opset": OPSET, "torch_version": torch.__version__,
    }


def _export_in(work: Path, out_dir: Path, p: _Plan, steps: _Steps) -> ExportResult:
    model, task_obj, config, shape, seed = p.model, p.task, p.loaded.config, p.shape, p.seed
    base = _base_metadata(p)
    source = {"onnx": "the given ONNX graph as the FP32 artefact (input/output renamed, checked)",
              "torch.export": f"exporting the program to FP32 ONNX (opset {OPSET}, dynamo exporter)"}
    steps(source.get(p.loaded.arch.name, f"exporting FP32 ONNX (opset {OPSET}, {p.exporter} exporter)"))
    fp32_path = work / ARTEFACT_NAMES["fp32"]
    graph, base["exporter"] = _fp32_graph(p, model, fp32_path, steps.log)
    every_case = _parity_cases(task_obj, config, shape, p.dynamic_hw, p.multiple, p.samples, p.parity_samples, seed)
    cases = _gate_cases(every_case)
    with torch.no_grad():
        references = [model(torch.from_numpy(x)).numpy() for _, x in every_case]
    # what the model produces on task-realistic inputs (and --samples): run-infer maps outputs to pixels with it
    # unless told the trained range
    base["output"]["observed_range"] = [float(min(r.min() for r in references)),
                                        float(max(r.max() for r in references))]
    embed_metadata(graph, {**base, "precision": "fp32"})
    save_onnx(graph, fp32_path)
    del graph  # every later step reads the file: the in-memory copy of the weights goes

    references = [r for (name, _), r in zip(every_case, references) if not name.startswith("calibration ")]
    extra = {"int8": _content_cases(p, shape)} if p.int8 else {}
    ctx = BuildContext(work, fp32_path, base, _calibration(p, every_case), p.precisions,
                       openvino=p.cpu_engine in ("auto", "openvino"), int8=p.int8, log=steps.log,
                       metric=task_obj.metric, tolerances=p.tolerances,
                       torch_model=dict(model=p.loaded.model, mode=p.mode, shape=shape, dynamic_hw=p.dynamic_hw,
                                        multiple=p.multiple, max_batch=p.gpu.max_batch, rebuild=p.rebuild)
                       if p.cpu_aoti else None)
    steps(f"building candidates (calibrated on {len(ctx.calibration)} task inputs): "
          + ", ".join(c.key for c in candidates_for(ctx)))
    built: dict[str, tuple[Candidate, Path]] = {}
    for candidate in candidates_for(ctx):
        path = candidate.build(ctx, candidate)
        if path is not None:
            built[candidate.key] = (candidate, path)
    skipped = [c for c in candidates_for(ctx) if c.key not in built]
    not_built = {c.artefact: not_built_reason(ctx, c) for c in skipped}
    if skipped and steps.log:
        reasons: dict[str, list[str]] = {}
        for c in skipped:
            reasons.setdefault(not_built_reason(ctx, c), []).append(c.key)
        steps.log("      not built: " + "; ".join(f"{', '.join(keys)} ({why})" for why, keys in reasons.items()))
    paths = {key: path for key, (_, path) in built.items()}
    precision_of = {key: c.precision(ctx) for key, (c, _) in built.items()}

    if p.gpu_kind:
        # one GPU kind per export (auto: TensorRT, else torch-CUDA, whose runner drives the device pipeline; the
        # AOTInductor package runs through the host path, so it is built when asked for: --gpu-engine aoti)
        names = {"tensorrt": "TensorRT FP16 engine", "aoti": "AOTInductor FP16 package",
                 "torch": "torch-CUDA FP16 artefact"}
        steps(f"building the {names[p.gpu_kind]}"
              + (" (TensorRT is not installed here)" if p.gpu.engine == "auto" and p.gpu_kind != "tensorrt" else ""))
        paths[p.gpu_kind] = build_gpu_artefact(
            p.gpu_kind, work, loaded=p.loaded, metadata=base, fp16_onnx=paths.get("fp16"), shape=shape,
            dynamic_hw=p.dynamic_hw, multiple=p.multiple, options=p.gpu, rebuild=p.rebuild)
        precision_of[p.gpu_kind] = "fp16"

    steps("parity gate: PyTorch FP32 vs every artefact, in the precision it claims")
    gate = run_gate(paths, precision_of, built, ctx, cases, references, task_obj.metric, p.tolerances, steps.log,
                    extra=extra)
    rows, failed = gate.rows, gate.failed
    hard = sorted(k for k in failed if k not in gate.optional)
    refused = {paths[k].name for k in failed}
    kept = [r for r in rows if r["artefact"] not in refused]
    # "worst" is of what the export stands behind (a refused optional candidate is listed apart, in "refused");
    # when the export fails, of everything judged
    worst = min(kept if kept and not hard else rows, key=lambda r: r["margin"])
    report = {"passed": not hard,
              "tolerances": p.tolerances.as_dict(), "metric": task_obj.metric, "rows": rows, "worst": worst,
              "refused": {name: min((r for r in rows if r["artefact"] == name), key=lambda r: r["margin"])
                          for name in sorted(refused)},
              "checkpoint_sha256": p.ckpt.sha256, "candidates": gate.summary}
    for kind, path in paths.items():  # fingerprinted artefacts (TensorRT, AOTInductor) carry the gate's verdict
        record_parity(kind, path, _finite([r for r in rows if r["artefact"] == path.name]), kind not in failed)

    steps(f"choosing the engine ({'fastest verified' if p.cpu_engine == 'auto' else p.cpu_engine}: batch 1 latency, "
          f"throughput at run-infer's batch {p.run_batch})")
    cpu_ok = {k: v for k, v in paths.items() if k not in failed and k not in GPU_ARTEFACTS
              and built[k][0].cpu_engine and not gate.summary[k].get("claim_broken")}
    engine = select_cpu_engine(cpu_ok, precision_of, built, cases[1][1], p.run_batch, p.cpu_engine, steps.log,
                               gate.summary)
    passing_gpu = {k: gate.runners[k] for k in GPU_ARTEFACTS if k in paths and k not in failed and k in gate.runners}
    if p.gpu_kind and passing_gpu:
        engine = gpu_record(passing_gpu, cases[1][1], engine, steps.log)
    if engine and engine.get("device", "cpu") == "cpu":  # the batch-1 engine against what a user runs by hand
        name = (engine.get("latency_engine") or {}).get("engine") or engine["engine"]
        path = next((v for v in paths.values() if v.name == name), None)
        if path is not None:
            label = "eager PyTorch FP32" if not p.loaded.fixed_mode else f"the {p.loaded.arch.name} reference"
            engine["versus"] = versus_peers(path, model, cases[1][1], paths["fp32"], label)
            if steps.log:
                steps.log("      batch 1, timed together: " + ", ".join(f"{k} {v:.2f} ms"
                                                                      for k, v in engine["versus"]["ms"].items()))
    if not p.gpu_kind and engine:  # (nothing verified: no engine, no record)
        engine["gpu_engine"] = no_gpu_engine(p.gpu.engine, p.rebuild, from_weights=not p.loaded.fixed_mode)
        if steps.log:
            steps.log(f"      GPU engine: {engine['gpu_engine']['reason']}; {engine['gpu_engine']['how']}")

    steps("publishing artefacts")
    published = {}
    # a CPU engine candidate that passed the gate but does not execute what it claims is not published: a file named
    # and recorded as bf16 that runs two thirds in fp32 would mislead whoever picks it by hand
    withheld = {k: gate.summary[k]["claim_broken"] for k in paths if k not in failed and k not in GPU_ARTEFACTS
                and built[k][0].cpu_engine and gate.summary[k].get("claim_broken")}
    for kind, path in paths.items():
        final = out_dir / path.name
        for leftover in _leftovers(final):  # a stale artefact from an earlier export must not survive (a breach, or
            leftover.unlink(missing_ok=True)  # a layout change: its external data, say)
        if kind not in failed and kind not in withheld:
            for src in artefact_files(path):  # the artefact with every file it is made of
                os.replace(src, out_dir / src.name)
            published[kind] = final
    for stale in _known_artefacts() - {path.name for path in published.values()}:
        for leftover in _leftovers(out_dir / stale):  # an earlier export's artefact must not sit beside this one's
            leftover.unlink(missing_ok=True)
    report["published"] = {k: v.name for k, v in published.items()}
    report["rejected"] = sorted({paths[k].name for k in failed})
    report["withheld"] = {paths[k].name: why for k, why in withheld.items()}
    report["engine"] = engine
    (work / REPORT_NAME).write_text(json.dumps(_finite(report), indent=2))
    os.replace(work / REPORT_NAME, out_dir / REPORT_NAME)
    _write_page(work, out_dir, _finite(report), _finite(engine) if engine else {}, base, gate.pictures, not_built,
                steps.log)
    if engine:
        (work / ENGINE_RECORD).write_text(json.dumps(_finite(engine), indent=2))
        os.replace(work / ENGINE_RECORD, out_dir / ENGINE_RECORD)
    else:
        (out_dir / ENGINE_RECORD).unlink(missing_ok=True)
    table = format_table(rows, task_obj.metric)
    steps.finish()
    result = ExportResult(out_dir, published, report, base, table, report["rejected"], engine)
    if hard:
        w = min((r for r in rows if r["artefact"] in {paths[k].name for k in hard}), key=lambda r: r["margin"])
        raise ParityError(
            f"parity gate failed: {w['artefact']} output {w['output']!r} on {w['case']} breaks "
            f"{w['criterion']} (rel_max {w.get('rel_max', float('nan')):.3g}, PSNR {w.get('psnr_db', float('nan')):.1f} dB, "
            f"argmax {w.get('argmax_agreement', float('nan')):.2%}); rejected {', '.join(report['rejected'])} "
            f"— not published. Report: {out_dir / REPORT_NAME}", report) from None
    return result


PAGE_NAME = "report.html"


def _write_page(work: Path, out_dir: Path, report: dict, engine: dict, metadata: dict, shots: dict,
                not_built: dict, log) -> None:
    """report.html beside parity.json: the verdict as a page (regenrt.report.export_page). A failure to draw it
    is said, and never costs the export its verified artefacts."""
    from ..report.export_page import write_export_report

    try:
        write_export_report(work / PAGE_NAME, report, engine, metadata, shots, not_built)
        os.replace(work / PAGE_NAME, out_dir / PAGE_NAME)
    except Exception as exc:  # noqa: BLE001 - said on the log and in the page's absence
        (out_dir / PAGE_NAME).unlink(missing_ok=True)
        if log:
            log(f"      report.html not written ({type(exc).__name__}: {exc}); parity.json holds every number")


def _fp32_graph(p: _Plan, model, path: Path, log) -> tuple:
    """The FP32 graph and the exporter that made it: the asked one; when TorchScript cannot export an operator
    (adaptive pooling to sizes that do not divide the input, as PSPNet's pyramid), the dynamo exporter — said."""
    export = p.loaded.onnx_export or export_onnx
    kwargs = dict(example=torch.zeros(p.shape), dynamic_hw=p.dynamic_hw, spatial_multiple=p.multiple)
    try:
        return export(model, path, exporter=p.exporter, **kwargs), p.exporter
    except ExportError as exc:
        if p.exporter != "torchscript" or p.loaded.onnx_export is not None:
            raise
        if log:
            log(f"      the TorchScript exporter failed ({shorten(str(exc).splitlines()[0], 160)}); exporting with the "
                "dynamo exporter instead (--exporter dynamo)")
        return export(model, path, exporter="dynamo", **kwargs), "dynamo"


INT8_GATE_PICTURES = 16  # more pictures for INT8 candidates, in batches of 4


def _content_cases(p: _Plan, shape) -> tuple[list, list]:
    """Extra gate cases for INT8 candidates, whose error varies with picture content more than a float engine's:
    INT8_GATE_PICTURES more generated inputs (another seed than the gate's and calibration's) and PyTorch's answers.
    Measured on DeepLabV3+ R50 phase (2026-12-06): a mixed INT8 engine's worst of the gate's 4 pictures was 40.83 dB,
    its worst of 16 held-out pictures 39.98 dB."""
    import torch

    _, _, h, w = shape
    x = p.task.make_inputs(p.loaded.config, INT8_GATE_PICTURES, h, w, p.seed + 2000).astype(np.float32)
    cases = [(f"content {len(x[i:i + 4])}x{x.shape[1]}x{h}x{w} #{i // 4 + 1}", x[i:i + 4]) for i in range(0, len(x), 4)]
    with torch.no_grad():
        references = [p.model(torch.from_numpy(c)).numpy() for _, c in cases]
    return cases, references


def _calibration(p: _Plan, cases: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """FP16 range calibration and INT8 calibration inputs: ``calibration_samples`` task-realistic inputs (another
    seed than the gate's) and the ``--samples`` files set aside for calibration (every second one, of the export's
    shape) — the files the gate judges are held out."""
    n, c, h, w = p.shape
    synthetic = p.task.make_inputs(p.loaded.config, p.calibration_samples, h, w, p.seed + 1000).astype(np.float32)
    user = [x for name, x in cases if name.startswith("calibration ") and x.shape[1:] == (c, h, w)]
    return np.concatenate([synthetic, *user]) if user else synthetic


def _finite(value):
    """JSON has no Infinity/NaN: write them as strings ("inf" for a bit-exact PSNR)."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(x) for k, x in value.items()}
    if isinstance(value, list):
        return [_finite(x) for x in value]
    return value
