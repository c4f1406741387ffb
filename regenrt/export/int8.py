"""INT8 OpenVINO candidates: NNCF post-training quantization calibrated on task-realistic inputs (and the user's
``--samples``), and, when the parity gate refuses the result, a mixed-precision repair that keeps the layers
costing the most accuracy unquantized (they run in FP32).

Two rules hold for every INT8 IR, each measured on a trained pix2pix unet_256 (16 held-out scenes, 12 photographs,
worst picture, AVX-512 BF16 EPYC, 2026-12-06):

- no FakeQuantize on a BatchNorm's input: OpenVINO leaves BatchNorm after a ConvTranspose unfused, and NNCF then
  quantizes the un-normalized activations between them (worst/mean PSNR 33.5/38.9 dB -> 34.2/44.7 dB, same speed);
- for image outputs (``metric == "image"``) the layer that produces the output stays unquantized: its input's
  quantization noise (and any clipping of a picture brighter than calibration saw) reaches the pixels directly
  (worst 34.2 -> 45.4 dB, +0-3 ms of 19 ms).

Layers are named as read, with OpenVINO's generated names (``ConvolutionBackpropData_6660``, new on every read)
replaced by stable ones (:func:`read_stable`): an ignored scope names the same layer in every read.

Which layers, measured on the quantized IR itself: for every convolution whose input is quantized, the IR is run
once with that one layer as the ignored scope leaves it (its input's FakeQuantize bypassed, its FP32 weights back in
place of the quantized ones); the layers whose bypass brings the output
closest to the FP32 graph's cost the most (leave-one-out sensitivity -- a layer's local noise is a poor guide: in
a residual network a noisy branch can matter less than a quiet one). The ranking is then walked with cumulative
bypasses (1, 2, 3, 4, 6, 8, ... layers) to *predict* the smallest set that passes the gate; only that set (and, if
the real gate still refuses, the next sizes) is re-quantized by NNCF with those layers in its ignored scope.

Example::

    path = quantize(Path("graph.onnx"), work / "model.openvino.int8.xml", ctx, ignored=())
    ranking = sensitivity(Path("graph.onnx"), path, x)
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import MissingDependencyError
from ..wording import option

MAX_REPAIRS = 4
LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # set sizes tried, cumulative along the ranking
PREDICT_ITEMS = 2  # calibration items the prediction runs on
PREDICT_MARGIN = 0.01  # predicted gate margin asked for beyond the INT8 guard band (relative: 0.4 dB at 40 dB)
CONV_TYPES = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")


def import_nncf():
    try:
        import nncf
    except ImportError:
        raise MissingDependencyError("INT8 candidates need NNCF: `pip install regenrt[int8]`, or pass "
                                     f"{option('int8', 'off', owner='export_checkpoint')}.") from None
    nncf.set_log_level(logging.ERROR)
    return nncf


def have_nncf() -> bool:
    try:
        import_nncf()
    except MissingDependencyError:
        return False
    return True


def read_stable(core, path: Path):
    """``core.read_model(path)`` with every generated friendly name (``<Type>_<counter>``, which OpenVINO numbers
    anew on every read) replaced by ``<Type>#<position>``: the same layer has the same name in every read."""
    model = core.read_model(str(path))
    for i, op in enumerate(model.get_ordered_ops()):
        kind, name = op.get_type_name(), op.get_friendly_name()
        if name.startswith(kind + "_") and name[len(kind) + 1:].isdigit():
            op.set_friendly_name(f"{kind}#{i}")
    return model


def output_layers(model) -> list[str]:
    """The convolutions/matmuls that produce the model's outputs (walking back from each Result through
    anything else: bias Add, Tanh, DepthToSpace, Resize)."""
    found, seen = [], set()
    stack = [r.input_value(0).get_node() for r in model.get_results()]
    while stack:
        node = stack.pop()
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        if node.get_type_name() in CONV_TYPES:
            found.append(node.get_friendly_name())
        elif node.get_type_name() not in ("Parameter", "Constant"):
            stack += [v.get_node() for v in node.input_values()]
    return sorted(found)


def quantize(source: Path, xml_path: Path, ctx, ignored: tuple[str, ...], variant: str = "export",
             float_output: bool | None = None) -> Path:
    """``source`` (an ONNX graph) -> INT8 IR at ``xml_path``: NNCF PTQ on ``ctx.calibration`` (one item per batch,
    fast bias correction), layers named in ``ignored`` left unquantized, no FakeQuantize before a BatchNorm, and
    the output layers unquantized when ``float_output`` (default: ``ctx.metric == "image"``); regenrt metadata in
    its rt_info."""
    import openvino as ov

    from ..runtime.backends.openvino import RT_INFO_KEY, int8_saturates

    nncf = import_nncf()
    model = read_stable(ov.Core(), source)
    items = [ctx.calibration[i:i + 1] for i in range(len(ctx.calibration))]
    if float_output is None:
        float_output = getattr(ctx, "metric", None) == "image"
    outputs = output_layers(model) if float_output else []
    ignored = tuple(sorted(set(ignored) | set(outputs)))
    scope = nncf.IgnoredScope(names=list(ignored), types=["BatchNormInference"], validate=False)
    # where INT8 saturates (no VNNI), every layer gets 7-bit weights (NNCF's overflow fix), not only the first
    fix = "enable" if int8_saturates() else "first_layer_only"  # NNCF's OverflowFix values; its default: the latter
    log = getattr(ctx, "log", None)
    if fix == "enable" and log and not ctx.__dict__.get("_said_saturates"):
        ctx.__dict__["_said_saturates"] = True
        log("      INT8 saturates on this CPU (no VNNI: u8 x s8 pairs summed in int16): quantizing with 7-bit weights "
            "(NNCF's overflow fix) in every layer")
    advanced = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(fix))
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws its own progress bar on stdout
        quantized = nncf.quantize(model, nncf.Dataset(items), subset_size=len(items), fast_bias_correction=True,
                                  ignored_scope=scope, advanced_parameters=advanced)
    kept = sorted(ignored)
    meta = ctx.derived("int8", int8={"tool": f"nncf {nncf.__version__}", "calibration_items": len(items),
                                     "kept_unquantized": kept, "output_layers_unquantized": outputs,
                                     "unquantized_run_in": "fp32", "overflow_fix": fix},
                       graph_passes=[variant] if variant != "export" else [])
    import json

    quantized.set_rt_info(json.dumps(meta, sort_keys=True), [RT_INFO_KEY])
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)
    return xml_path


def with_unquantized_in(int8_xml: Path, xml_path: Path, precision: str) -> Path:
    """A copy of an INT8 IR whose unquantized layers run in ``precision`` (its metadata says so; the runtime
    compiles it with that inference precision)."""
    import json

    import openvino as ov

    from ..runtime.backends.openvino import RT_INFO_KEY, read_metadata

    meta = read_metadata(int8_xml)
    meta["int8"] = {**meta.get("int8", {}), "unquantized_run_in": precision}
    model = ov.Core().read_model(str(int8_xml))
    model.set_rt_info(json.dumps(meta, sort_keys=True), [RT_INFO_KEY])
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return xml_path


def quantized_layers(model) -> list[str]:
    """Friendly names of the convolutions/matmuls whose data input comes through a FakeQuantize."""
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in CONV_TYPES
            and op.input_value(0).get_node().get_type_name() == "FakeQuantize"]


def fp32_weights(model) -> dict[str, np.ndarray]:
    """The FP32 weights of every convolution/matmul of ``model`` (the graph before quantization), by friendly name,
    in the shape the layer takes (through the Reshape/Convert a grouped convolution's weights come by)."""
    weights = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() not in CONV_TYPES or not op.get_input_partial_shape(1).is_static:
            continue
        node = op.input_value(1).get_node()
        while node.get_type_name() in ("Reshape", "Unsqueeze", "Squeeze", "Convert"):
            node = node.input_value(0).get_node()
        if node.get_type_name() == "Constant":
            shape = [int(d) for d in op.get_input_partial_shape(1).get_shape()]
            weights[op.get_friendly_name()] = node.get_data().astype(np.float32).reshape(shape)
    return weights


def bypassed(core, int8_xml: Path, names, weights: dict[str, np.ndarray] | None = None) -> object:
    """The INT8 IR with the layers in ``names`` as NNCF's ignored scope leaves them: their data inputs unquantized
    (FakeQuantize bypassed) and, where ``weights`` (:func:`fp32_weights` of the source) has them, their FP32
    weights instead of the 8-bit (7-bit where INT8 saturates) ones."""
    import openvino as ov

    model = core.read_model(str(int8_xml))  # saved with quantize()'s stable names
    names, weights = set(names), weights or {}
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        if name in names:
            op.input(0).replace_source_output(op.input_value(0).get_node().input_value(0))
            if name in weights and tuple(weights[name].shape) == tuple(op.get_input_partial_shape(1).get_shape()):
                op.input(1).replace_source_output(ov.opset13.constant(weights[name]).output(0))
    return model


def _run(core, model, x: np.ndarray) -> np.ndarray:
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return np.concatenate([request.infer({0: x[i:i + 1]})[compiled.outputs[0]].copy() for i in range(len(x))])


def _nsr(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean((y.astype(np.float64) - ref) ** 2) / max(float(np.mean(ref.astype(np.float64) ** 2)), 1e-30))


def _disagreement(y: np.ndarray, ref: np.ndarray) -> float:
    """Share of pixels whose label differs (argmax over channels; one channel: the sign)."""
    if ref.shape[1] == 1:
        return float(np.mean((y[:, 0] > 0) != (ref[:, 0] > 0)))
    return float(np.mean(np.argmax(y, axis=1) != np.argmax(ref, axis=1)))


def task_cost(metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """What a layer costs, in the task's own criterion (lower is better): for segmentation the labels that flip
    (the NSR of the logits only breaks ties — a layer can add much noise to logits far from a decision and flip
    nothing, while another flips the labels along every class boundary); for images the noise-to-signal ratio,
    which PSNR is a function of."""
    if metric == "segmentation":
        return lambda y, ref: _disagreement(y, ref) + 1e-6 * min(_nsr(y, ref), 1.0)
    return _nsr


def sensitivity(fp32_source: Path, int8_xml: Path, x: np.ndarray, metric: str = "image") -> tuple[list[str], dict]:
    """Leave-one-out: (layers ranked costliest first, {"reference", "int8_cost", "cost_without": {layer: cost}}),
    the cost in the task's criterion (:func:`task_cost`)."""
    import openvino as ov

    cost = task_cost(metric)
    core = ov.Core()
    source = read_stable(core, fp32_source)
    ref, weights = _run(core, source, x), fp32_weights(source)
    names = quantized_layers(core.read_model(str(int8_xml)))
    without = {name: cost(_run(core, bypassed(core, int8_xml, [name], weights), x), ref) for name in names}
    ranking = sorted(names, key=without.get)
    return ranking, {"reference": ref, "int8_cost": cost(_run(core, core.read_model(str(int8_xml)), x), ref),
                     "cost_without": without, "weights": weights}


def predict_keep(fp32_source: Path, int8_xml: Path, x: np.ndarray, ranking: list[str],
                 passes: Callable[[np.ndarray, np.ndarray], bool], ref: np.ndarray,
                 weights: dict[str, np.ndarray] | None = None) -> list[int]:
    """The ladder of set sizes to try, starting at the smallest whose cumulative bypass ``passes`` on ``x``
    ([] when even the largest misses: re-quantizing would not help)."""
    import openvino as ov

    core = ov.Core()
    sizes = [k for k in LADDER if k < len(ranking)]
    for i, k in enumerate(sizes):
        if passes(ref, _run(core, bypassed(core, int8_xml, ranking[:k], weights), x)):
            return sizes[i:]
    return []


def repair(ctx, candidate, path: Path, rows: list[dict]) -> Path | None:
    """Generator-like: each call returns the next mixed-precision try (or None when out of tries). The ranking and
    the predicted ladder are computed on the first call and kept on ``ctx`` (per candidate)."""
    from .parity import compare, judge

    state = ctx.__dict__.setdefault("_int8_repair", {}).setdefault(candidate.key, {})
    source = ctx.graph(candidate.graph)
    if "ladder" not in state:
        x = ctx.calibration[:PREDICT_ITEMS]
        ranking, info = sensitivity(source, path, x, ctx.metric)

        def passes(ref, y):
            return judge(compare(ref, y), "int8", ctx.metric, ctx.tolerances)[2] > PREDICT_MARGIN

        state["ranking"] = ranking
        predicted = predict_keep(source, path, x, ranking, passes, info["reference"], info["weights"])
        ladder: list[int] = []  # from the predicted size, at least doubling: when the gate's pictures disagree with
        for k in predicted:     # the prediction, one more layer rarely closes the gap (measured: R50 phase, 1->2->3)
            if not ladder or k >= 2 * ladder[-1]:
                ladder.append(k)
        state["ladder"] = ladder[:MAX_REPAIRS]
        if ctx.log and not state["ladder"]:
            ctx.log(f"      INT8 refused by the gate; keeping up to {max(k for k in LADDER if k < len(ranking)) if ranking else 0}"
                    " layers in FP32 is predicted to miss it too: no mixed-precision try")
    if not state["ladder"]:
        return None
    keep = state["ladder"].pop(0)
    kept = tuple(state["ranking"][:keep])
    if ctx.log:
        ctx.log(f"      INT8 refused by the gate: keeping the {keep} costliest layer{'s' * (keep > 1)} in FP32 "
                f"({', '.join(_short(k) for k in kept[:4])}{', ...' if keep > 4 else ''})")
    return quantize(source, path.with_name(mixed_name(path.name)), ctx, kept, candidate.graph)


def mixed_name(artefact: str) -> str:
    """model.openvino.int8.xml -> model.openvino.int8-mixed.xml (every repair try of a candidate writes there)."""
    stem, _, suffix = artefact.rpartition(".")
    return f"{stem}-mixed.{suffix}"


def _short(name: str) -> str:
    parts = [p for p in name.split("/") if p and p not in ("WithoutBiases",)]
    return parts[-2] if len(parts) >= 2 else name
