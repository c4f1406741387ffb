"""INT8 OpenVINO candidates: NNCF post-training quantization calibrated on task-realistic inputs (and the user's
``--samples``), and, when the parity gate refuses the result, a mixed-precision repair that keeps the layers
costing the most accuracy unquantized (they run in FP32).

Which layers: both IRs (FP32 and INT8) run one calibration batch with every convolution's output exposed; a
layer's *local* error is the noise-to-signal ratio of its output minus the largest one among the convolutions
feeding it (what it adds, not what it inherits). The layers with the largest local error are kept out of
quantization (NNCF's ignored scope), 2, 4, 8, ... of them, until the gate passes or ``MAX_REPAIRS`` tries.

Example::

    path = quantize(Path("graph.onnx"), work / "model.openvino.int8.xml", ctx, ignored=())
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError

MAX_REPAIRS = 4
MIXED_NAME = "model.openvino.int8-mixed.xml"  # every repair try writes here; the one that passes is published
CONV_TYPES = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")


def import_nncf():
    try:
        import nncf
    except ImportError:
        raise MissingDependencyError("INT8 candidates need NNCF: `pip install regenrt[int8]` (or pass --int8 off)."
                                     ) from None
    nncf.set_log_level(logging.ERROR)
    return nncf


def have_nncf() -> bool:
    try:
        import_nncf()
    except MissingDependencyError:
        return False
    return True


def quantize(source: Path, xml_path: Path, ctx, ignored: tuple[str, ...]) -> Path:
    """``source`` (an ONNX graph) -> INT8 IR at ``xml_path``: NNCF PTQ on ``ctx.calibration`` (one item per batch,
    fast bias correction), layers named in ``ignored`` left unquantized; regenrt metadata in its rt_info."""
    import openvino as ov

    from ..runtime.backends.openvino import RT_INFO_KEY

    nncf = import_nncf()
    model = ov.Core().read_model(str(source))
    items = [ctx.calibration[i:i + 1] for i in range(len(ctx.calibration))]
    scope = nncf.IgnoredScope(names=list(ignored), validate=False) if ignored else None
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws its own progress bar on stdout
        quantized = nncf.quantize(model, nncf.Dataset(items), subset_size=len(items), fast_bias_correction=True,
                                  ignored_scope=scope)
    kept = sorted(ignored)
    meta = ctx.derived("int8", int8={"tool": f"nncf {nncf.__version__}", "calibration_items": len(items),
                                     "kept_unquantized": kept, "unquantized_run_in": "fp32"},
                       graph_passes=[p for p in [_variant_of(source)] if p])
    import json

    quantized.set_rt_info(json.dumps(meta, sort_keys=True), [RT_INFO_KEY])
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)
    return xml_path


def _variant_of(source: Path) -> str | None:
    """graph.<pass>.onnx -> pass name; model.onnx -> None."""
    parts = source.name.split(".")
    return parts[1] if parts[0] == "graph" and len(parts) == 3 else None


def local_errors(fp32_source: Path, int8_xml: Path, x: np.ndarray) -> dict[str, float]:
    """Each convolution's local noise-to-signal ratio in the INT8 IR vs the FP32 graph, on input ``x``."""
    import openvino as ov

    core = ov.Core()
    outputs = {}
    for key, path in (("fp32", fp32_source), ("int8", int8_xml)):
        model = core.read_model(str(path))
        convs = [op for op in model.get_ordered_ops() if op.get_type_name() in CONV_TYPES]
        model.add_outputs([op.output(0) for op in convs])
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        result = compiled.create_infer_request().infer({0: x})
        outputs[key] = {port.get_node().get_friendly_name(): np.asarray(value) for port, value in result.items()}
        outputs[key] = {name: value for name, value in outputs[key].items() if name in {op.get_friendly_name()
                                                                                         for op in convs}}
        if key == "int8":
            graph = model
    nsr = {}
    for name, ref in outputs["fp32"].items():
        got = outputs["int8"].get(name)
        if got is not None and got.shape == ref.shape:
            nsr[name] = float(np.mean((got - ref) ** 2) / max(float(np.mean(ref ** 2)), 1e-30))
    upstream: dict[str, float] = {}
    local = {}
    for op in graph.get_ordered_ops():
        name = op.get_friendly_name()
        feeding = [upstream.get(op.input_value(i).get_node().get_friendly_name(), 0.0) for i in range(op.get_input_size())]
        inherited = max(feeding[:1] if op.get_type_name() in CONV_TYPES else feeding, default=0.0)
        if name in nsr:
            local[name] = nsr[name] - inherited
            upstream[name] = nsr[name]
        else:
            upstream[name] = inherited
    return local


def repair(ctx, candidate, path: Path, rows: list[dict]) -> Path | None:
    """Generator-like: each call returns the next mixed-precision try (or None when out of tries). The ranking is
    computed on the first call and kept on ``ctx``."""
    state = ctx.__dict__.setdefault("_int8_repair", {})
    if "ranking" not in state:
        source = ctx.graph(candidate.graph)
        errors = local_errors(source, path, ctx.calibration[:1])
        state["ranking"] = sorted(errors, key=errors.get, reverse=True)
        state["tries"] = 0
    ranking, tries = state["ranking"], state["tries"]
    keep = 2 ** (tries + 1)
    if tries >= MAX_REPAIRS or keep >= len(ranking):
        return None
    state["tries"] += 1
    kept = tuple(ranking[:keep])
    if ctx.log:
        ctx.log(f"      INT8 refused by the gate: keeping the {keep} layers with the largest local error in FP32 "
                f"({', '.join(k.rsplit('/', 2)[-2] if '/' in k else k for k in kept[:4])}{', ...' if keep > 4 else ''})")
    return quantize(ctx.graph(candidate.graph), path.with_name(MIXED_NAME), ctx, kept)
