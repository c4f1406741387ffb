"""FP32 ONNX graph -> FP16 graph (FP16 compute, FP32 inputs/outputs) for strongly typed TensorRT builds.

TensorRT 11 has no FP16 builder flag: the precision must already be in the graph. Like NVIDIA ModelOpt's
AutoCast, nodes stay in FP32 when they are numerically sensitive, and the decision is calibrated on
task-realistic inputs rather than noise:

* ops that reduce or normalize (InstanceNorm, ReduceMean, GlobalAveragePool, Softmax, Sqrt, Div, …);
* nodes whose calibrated inputs or outputs exceed ``data_max`` in magnitude (FP16's spacing at 512 is 0.5);
* nodes that consume constants FP16 cannot hold (beyond ±65504, or non-zero below 2^-14 like a norm's eps).

Casts are inserted only at FP16/FP32 boundaries. Example::

    fp16_model, summary = convert_to_fp16(onnx.load("model.onnx"), calibration_batches)
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .onnx_io import infer_shapes, session_source

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
FP32_OPS = frozenset({
    "InstanceNormalization", "LayerNormalization", "GroupNormalization",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    "ReduceProd", "GlobalAveragePool", "GlobalLpPool", "LpNormalization", "CumSum",
    "Softmax", "LogSoftmax", "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Div",
})
# Inputs that the ONNX spec types as float32 whatever the data type (Resize roi/scales, Upsample scales).
FIXED_FP32_INPUTS = {"Resize": {1, 2}, "Upsample": {1}}
FP16_MAX, FP16_MIN_NORMAL = 65504.0, 2.0 ** -14
DEFAULT_DATA_MAX = 512.0


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Move float ``Constant`` nodes into initializers so that every constant is handled in one place."""
    kept = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value" \
                and node.attribute[0].t.data_type == FLOAT:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    graph = model.graph
    infos = list(graph.value_info) + list(graph.input) + list(graph.output)
    names = {vi.name for vi in infos if vi.type.tensor_type.elem_type == FLOAT}
    return names | {init.name for init in graph.initializer if init.data_type == FLOAT}


def calibrate(model: onnx.ModelProto, batches: Iterable[dict[str, np.ndarray]], names: set[str]) -> dict[str, float]:
    """Max |value| of every float tensor in ``names`` over the calibration batches (ONNX Runtime, CPU)."""
    from ..runtime.backends.onnxruntime import import_onnxruntime

    ort = import_onnxruntime()
    # every float tensor as an extra output of the model itself for the session's creation (no copy of the model:
    # with a copy, the weights sat in memory four times over while the session was made), then taken off again
    graph_outputs = model.graph.output
    kept = len(graph_outputs)
    existing = {o.name for o in graph_outputs}
    inits = {i.name for i in model.graph.initializer}
    for name in sorted(names - existing - inits - {i.name for i in model.graph.input}):
        graph_outputs.append(helper.make_tensor_value_info(name, FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor visible
    try:
        with session_source(model) as source:  # the serialized bytes (or temporary file) only while it is made
            session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    finally:
        del graph_outputs[kept:]
    ranges: dict[str, float] = {}
    out_names = [o.name for o in session.get_outputs()]
    for feed in batches:
        for name, value in zip(out_names, session.run(out_names, feed)):
            if value.size and np.issubdtype(value.dtype, np.floating):
                ranges[name] = max(ranges.get(name, 0.0), float(np.nanmax(np.abs(value))))
        for name, value in feed.items():
            ranges[name] = max(ranges.get(name, 0.0), float(np.abs(value).max()))
    return ranges


def _unsafe_constant(init: onnx.TensorProto) -> bool:
    """Beyond FP16's range, or an eps-like scalar that FP16 would flush to a subnormal or zero."""
    values = np.abs(numpy_helper.to_array(init)).ravel()
    if values.size == 0:
        return False
    tiny = (values > 0) & (values < FP16_MIN_NORMAL)
    return bool(values.max() > FP16_MAX or (values.size <= 16 and tiny.any()))


def _block_reason(node: onnx.NodeProto, floats: set[str], inits: dict[str, onnx.TensorProto],
                  ranges: dict[str, float], data_max: float) -> str | None:
    if node.op_type in FP32_OPS:
        return f"op:{node.op_type}"
    io = [t for t in list(node.input) + list(node.output) if t in floats]
    if any(ranges.get(t, 0.0) > data_max for t in io):
        return "range"
    if any(t in inits and _unsafe_constant(inits[t]) for t in node.input):
        return "constant"
    return None


def convert_to_fp16(model: onnx.ModelProto, calibration: Iterable[dict[str, np.ndarray]],
                    data_max: float = DEFAULT_DATA_MAX) -> tuple[onnx.ModelProto, dict]:
    """Return the FP16 graph (FP32 I/O) and a summary: node counts per precision and why nodes stayed FP32."""
    model = infer_shapes(model)
    graph = model.graph
    _constants_to_initializers(graph)
    floats = _float_tensors(model)
    inits = {i.name: i for i in graph.initializer}
    ranges = calibrate(model, calibration, floats)

    precision = {i.name: FLOAT for i in graph.input}  # tensor -> element type it is produced in
    casts: dict[tuple[str, int], str] = {}
    half_inits: dict[str, str] = {}
    new_nodes: list[onnx.NodeProto] = []
    kept_fp32: Counter = Counter()
    n_half = 0

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}__to_{'fp16' if to == HALF else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=to, name=f"cast_{casts[key]}"))
        return casts[key]

    for node in graph.node:
        float_outputs = [o for o in node.output if o in floats]
        if not float_outputs:  # shape arithmetic and the like: type-agnostic, leave untouched
            new_nodes.append(node)
            continue
        reason = _block_reason(node, floats, inits, ranges, data_max)
        target = FLOAT if reason else HALF
        if reason:
            kept_fp32[reason] += 1
        else:
            n_half += 1
        for idx, name in enumerate(node.input):
            if not name or name not in floats or idx in FIXED_FP32_INPUTS.get(node.op_type, ()):
                continue
            if name in inits:
                if target == HALF:
                    if name not in half_inits:
                        half_inits[name] = f"{name}__fp16"
                        arr = numpy_helper.to_array(inits[name]).astype(np.float16)
                        graph.initializer.append(numpy_helper.from_array(arr, half_inits[name]))
                    node.input[idx] = half_inits[name]
            elif precision.get(name, FLOAT) != target:
                node.input[idx] = cast(name, target)
        if node.op_type == "Cast" and target == HALF:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = HALF
        for out in float_outputs:
            precision[out] = target
        new_nodes.append(node)

    for out in graph.output:  # FP32 outputs: rename an FP16 producer's tensor and cast it back
        if precision.get(out.name) == HALF:
            inner = f"{out.name}__fp16"
            for node in new_nodes:
                node.output[:] = [inner if o == out.name else o for o in node.output]
                node.input[:] = [inner if i == out.name else i for i in node.input]
            new_nodes.append(helper.make_node("Cast", [inner], [out.name], to=FLOAT, name=f"cast_{out.name}_out"))

    used = {i for n in new_nodes for i in n.input}
    unused = [i for i in graph.initializer if i.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]
    model = infer_shapes(model)
    summary = {"fp16_nodes": n_half, "fp32_nodes": dict(sorted(kept_fp32.items())),
               "data_max": data_max, "casts": len(casts) + sum(1 for o in graph.output if precision.get(o.name) == HALF)}
    return model, summary
