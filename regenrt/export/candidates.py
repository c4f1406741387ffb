"""Export candidates: graph variant x backend x precision, each produced from the verified FP32 export and opened
through the backend registry; the pipeline gates every one (one loop) and times the CPU ones (one loop).

A candidate's ``build`` returns its artefact, or None where it does not apply on this machine or to this model
(OpenVINO not installed, a graph pass that found nothing to rewrite, INT8 turned off). A candidate may have a
``repair``: when the gate refuses it, ``repair`` builds a variant that keeps the layers that cost the most accuracy
in higher precision, gated in turn (see :mod:`regenrt.export.int8`).

Nothing rewritten leaks into ``model.onnx``: rewritten graphs are their own artefacts.

Example::

    for candidate in candidates_for(ctx):
        path = candidate.build(ctx)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from ..hashing import sha256_file
from .metadata import embed_metadata
from .onnx_export import INPUT_NAME
from .onnx_io import check_model, save_onnx
from .parity import Tolerances


@dataclass
class BuildContext:
    """What every candidate is built from."""

    work: Path
    fp32_path: Path
    metadata: dict  # the base regenrt metadata (no precision)
    calibration: np.ndarray  # task-realistic inputs (and --samples of the export shape) for FP16 ranges / INT8
    precisions: tuple[str, ...]  # asked for: ("fp32",) or ("fp32", "fp16")
    openvino: bool  # OpenVINO candidates wanted (installed, --cpu-engine auto|openvino)
    int8: bool  # INT8 candidates wanted (--int8 auto)
    log: Callable[[str], None] | None = None
    metric: str = "image"
    torch_model: dict | None = None  # model, mode, shape, dynamic_hw, multiple, max_batch, rebuild: for the
    # candidates compiled from the PyTorch model itself (AOTInductor), when asked for (--cpu-aoti)  # the gate's metric and tolerances (INT8 repair predicts the gate with them)
    tolerances: Tolerances = field(default_factory=Tolerances)
    _graphs: dict[str, Path | None] = field(default_factory=dict)

    def graph(self, variant: str) -> Path | None:
        """The ONNX graph of a variant: ``export`` is model.onnx; a pass name is model.onnx rewritten by that pass
        (None when the pass rewrote nothing). Built once, kept in the work directory, never published."""
        if variant == "export":
            return self.fp32_path
        if variant not in self._graphs:
            from .passes import get_pass

            graph, summary = get_pass(variant).apply(onnx.load(str(self.fp32_path)), copy=False)
            if not summary.get("rewritten"):
                self._graphs[variant] = None
            else:
                graph = check_model(graph, f"the {variant} graph")
                embed_metadata(graph, {**self.metadata, "precision": "fp32", "graph_passes": {variant: summary}})
                path = self.work / f"graph.{variant}.onnx"
                save_onnx(graph, path)
                self._graphs[variant] = path
                if self.log:
                    self.log(f"      graph pass {variant}: {summary}")
        return self._graphs[variant]

    def derived(self, precision: str, **extra: Any) -> dict:
        return {**self.metadata, "precision": precision, "derived_from_sha256": sha256_file(self.fp32_path), **extra}


@dataclass(frozen=True)
class Candidate:
    key: str
    artefact: str  # file name in the export directory
    backend: str  # the runtime backend that opens it
    graph: str  # graph variant: "export" or a pass name
    precision: Callable[[BuildContext], str]  # the precision it claims (and is compiled in)
    build: Callable[[BuildContext, "Candidate"], Path | None]
    cpu_engine: bool = True  # may be chosen as the CPU engine
    required: bool = False  # the export fails when the gate refuses it
    repair: Callable[[BuildContext, "Candidate", Path, list[dict]], Path | None] | None = None


_CANDIDATES: dict[str, Candidate] = {}


def register_candidate(candidate: Candidate) -> Candidate:
    _CANDIDATES[candidate.key] = candidate
    return candidate


def get_candidate(key: str) -> Candidate:
    return _CANDIDATES[key]


def list_candidates() -> list[Candidate]:
    return list(_CANDIDATES.values())


def artefact_names() -> dict[str, str]:
    return {c.key: c.artefact for c in _CANDIDATES.values()}


# --- ONNX Runtime: the faithful FP32 export, and the FP16 graph (TensorRT's source; on ONNX Runtime's CPU
# provider its convolutions run in FP32 between casts, which the proof shows, so it is never the CPU engine)

def _build_fp32(ctx: BuildContext, c: Candidate) -> Path:
    return ctx.fp32_path


FP16_CALIBRATION_ITEMS = 8  # FP16 needs each tensor's max |value| (overflow), not a distribution: 8 inputs suffice,
# and every one is an ONNX Runtime run with every tensor of the graph as an output


def _build_fp16(ctx: BuildContext, c: Candidate) -> Path | None:
    if "fp16" not in ctx.precisions:
        return None
    from .fp16 import convert_to_fp16

    items = ctx.calibration[:FP16_CALIBRATION_ITEMS]
    batches = [{INPUT_NAME: items[i:i + 2]} for i in range(0, len(items), 2)]
    graph, summary = convert_to_fp16(onnx.load(str(ctx.fp32_path)), batches)
    graph = check_model(graph, "the FP16 graph")
    embed_metadata(graph, ctx.derived("fp16", fp16=summary))
    path = ctx.work / c.artefact
    save_onnx(graph, path)
    return path


def _build_rewritten(ctx: BuildContext, c: Candidate) -> Path | None:
    """A rewritten graph as its own FP32 artefact: the FP32 gate proves the rewrite an identity (required: a pass
    that changes the numbers is a bug, and the export fails loudly)."""
    source = ctx.graph(c.graph)
    if source is None:
        return None
    path = ctx.work / c.artefact
    source.replace(path)
    ctx._graphs[c.graph] = path
    return path


register_candidate(Candidate("fp32", "model.onnx", "onnxruntime", "export", lambda ctx: "fp32", _build_fp32,
                             required=True))
register_candidate(Candidate("fp16", "model.fp16.onnx", "onnxruntime", "export", lambda ctx: "fp16", _build_fp16,
                             cpu_engine=False, required=True))
register_candidate(Candidate("fp32-subpixel", "model.subpixel.onnx", "onnxruntime", "subpixel-convtranspose",
                             lambda ctx: "fp32", _build_rewritten, required=True))


def _build_rewritten_for_bf16(ctx: BuildContext, c: Candidate) -> Path | None:
    """A rewrite that serves only OpenVINO's bf16 engines (``resize-matmul``): built where they are."""
    if not ctx.openvino or native_precision() == "fp32":
        return None
    return _build_rewritten(ctx, c)


register_candidate(Candidate("fp32-resize-matmul", "model.resize-matmul.onnx", "onnxruntime", "resize-matmul",
                             lambda ctx: "fp32", _build_rewritten_for_bf16, cpu_engine=False, required=True))
# (the FP32 proof that the rewrite is an identity; on ONNX Runtime it is model.onnx with two MatMuls for a Resize,
# never faster, so it is not timed as a CPU engine)


# --- OpenVINO: the IR of a graph variant in the best float precision this CPU runs, and INT8 ------------------

def native_precision(ctx: BuildContext | None = None) -> str:
    from ..runtime.backends.openvino import cpu_precisions

    return cpu_precisions()[0]


def _build_openvino(ctx: BuildContext, c: Candidate) -> Path | None:
    source = ctx.graph(c.graph) if ctx.openvino else None
    if source is None:
        return None
    from ..runtime.backends.openvino import convert

    extra = {"graph_passes": [c.graph]} if c.graph != "export" else {}
    return convert(source, ctx.work / c.artefact, ctx.derived(native_precision(), **extra))


def _build_openvino_precise_tail(ctx: BuildContext, c: Candidate) -> Path | None:
    """The IR of a graph whose output tail can run f32 (the ``resize-matmul`` rewrite) with that tail marked
    precise: bf16 everywhere else, compiled per input size (so the tail's matrices are constants OpenVINO keeps
    f32). Only where this CPU runs bf16 (elsewhere it is the plain FP32 IR again)."""
    source = ctx.graph(c.graph) if ctx.openvino and native_precision() != "fp32" else None
    if source is None:
        return None
    from ..runtime.backends.openvino import convert

    return convert(source, ctx.work / c.artefact,
                   ctx.derived(native_precision(), graph_passes=[c.graph], specialize_hw=True), precise_tail=True)


def _build_int8(ctx: BuildContext, c: Candidate) -> Path | None:
    if not (ctx.openvino and ctx.int8):
        return None
    from .int8 import quantize

    source = ctx.graph(c.graph)
    if source is None:
        return None
    return quantize(source, ctx.work / c.artefact, ctx, ignored=(), variant=c.graph)


def _native_rest_of(int8_key: str):
    def build(ctx: BuildContext, c: Candidate) -> Path | None:
        """The INT8 IR of ``int8_key`` with its unquantized layers (output layer, depthwise convolutions, resizes,
        ...) in this CPU's native float precision (bf16) instead of fp32: the same graph, its own artefact (the
        metadata names the precision they run in); only on CPUs with BF16."""
        source = ctx.work / get_candidate(int8_key).artefact
        if not (ctx.openvino and ctx.int8 and source.exists()) or native_precision() == "fp32":
            return None  # (OpenVINO is asked for its CPU's precisions only where it built the INT8 IR)
        from .int8 import with_unquantized_in

        return with_unquantized_in(source, ctx.work / c.artefact, native_precision())

    return build


def _repair_int8(ctx: BuildContext, c: Candidate, path: Path, rows: list[dict]) -> Path | None:
    from .int8 import repair

    return repair(ctx, c, path, rows)


register_candidate(Candidate("openvino", "model.openvino.xml", "openvino", "export", native_precision,
                             _build_openvino))
register_candidate(Candidate("openvino-subpixel", "model.openvino.subpixel.xml", "openvino", "subpixel-convtranspose",
                             native_precision, _build_openvino))
register_candidate(Candidate("openvino-resize-matmul", "model.openvino.resize-matmul.xml", "openvino", "resize-matmul",
                             native_precision, _build_openvino_precise_tail))
register_candidate(Candidate("openvino-int8", "model.openvino.int8.xml", "openvino", "export", lambda ctx: "int8",
                             _build_int8, repair=_repair_int8))
register_candidate(Candidate("openvino-int8-bf16", "model.openvino.int8-bf16.xml", "openvino", "export",
                             lambda ctx: "int8", _native_rest_of("openvino-int8")))
register_candidate(Candidate("openvino-int8-subpixel", "model.openvino.subpixel.int8.xml", "openvino",
                             "subpixel-convtranspose", lambda ctx: "int8", _build_int8, repair=_repair_int8))
register_candidate(Candidate("openvino-int8-subpixel-bf16", "model.openvino.subpixel.int8-bf16.xml", "openvino",
                             "subpixel-convtranspose", lambda ctx: "int8", _native_rest_of("openvino-int8-subpixel")))


# --- AOTInductor: the model compiled ahead of time for this CPU (fingerprinted like a TensorRT engine) ----------
def _build_aoti_cpu(ctx: BuildContext, c: Candidate) -> Path | None:
    if ctx.torch_model is None:
        return None
    from .aoti import build_package

    t = ctx.torch_model
    return build_package(t["model"], ctx.work / c.artefact, device="cpu", dtype="fp32", shape=t["shape"],
                         dynamic_hw=t["dynamic_hw"], multiple=t["multiple"], max_batch=t["max_batch"],
                         metadata=ctx.derived("fp32"), rebuild=t["rebuild"], mode=t["mode"])


register_candidate(Candidate("aoti-cpu", "model.aoti-cpu.pt2", "aoti", "export", lambda ctx: "fp32", _build_aoti_cpu))


def not_built_reason(ctx: BuildContext, c: Candidate) -> str:
    """Why ``c`` was not built for this model on this machine, in words (the same conditions its builder checks)."""
    int8 = "int8" in c.key  # (asking a candidate its precision may ask OpenVINO, which may be absent)
    if c.key == "aoti-cpu":
        return "asked with --cpu-aoti only"
    if c.key == "fp16" and "fp16" not in ctx.precisions:
        return "--precision fp32"
    if c.backend == "openvino" and not ctx.openvino:
        return "OpenVINO not installed, or --cpu-engine onnxruntime"
    if int8 and not ctx.int8:
        return "no INT8 candidates (--int8 off, NNCF not installed, or this CPU runs no INT8)"
    if c.graph != "export" and ctx._graphs.get(c.graph, "unset") is None:
        return f"the {c.graph} pass finds nothing to rewrite in this model"
    if (c.key.endswith("bf16") or c.graph == "resize-matmul") and not ctx.openvino:
        return "it serves OpenVINO's BF16 engines: OpenVINO not installed, or --cpu-engine onnxruntime"
    if (c.key.endswith("bf16") or c.graph == "resize-matmul") and native_precision() == "fp32":
        return "this CPU runs no BF16 (OpenVINO reports fp32 as its best precision)"
    if c.key.endswith("bf16"):
        return "its INT8 IR was not built"
    return "nothing to build for this model"


def candidates_for(ctx: BuildContext) -> list[Candidate]:
    return list_candidates()
