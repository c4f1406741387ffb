"""The output's bilinear ``Resize`` -> two MatMuls with its interpolation matrices, built in the graph from the
input's shape (dynamic H/W stay dynamic).

OpenVINO's CPU plugin runs ``Interpolate`` in bf16 under a bf16 hint whatever the layer is marked, so a model that
ends in a bilinear upsampling (DeepLabV3+'s segmentation head: 1x1 convolution, then x4) has its output rounded to
8 significant bits: on the R50 phase model that alone costs ~4 dB (38.4 dB worst picture vs 42.5 without it). A
MatMul (and the convolution before it) marked precise runs f32, so the graph tail from the last convolution to
the output can run f32 while everything before it runs bf16 (:func:`regenrt.runtime.backends.openvino.convert`
with ``precise_tail``).

Per axis, for output index ``i`` the source coordinate ``x`` follows the node's coordinate_transformation_mode
(align_corners, half_pixel, pytorch_half_pixel, asymmetric), clamped to ``[0, n_in - 1]`` (what ONNX's edge
handling gives for linear); ``M[i, floor(x)] = 1 - w`` and ``M[i, floor(x) + 1] = w`` with ``w = x - floor(x)``.
``Y = M_h @ X @ M_w^T`` is the same weighted sum of the same neighbours: an identity in FP32 up to rounding.

Only Resizes whose output reaches a graph output through unary elementwise operations are rewritten: inside the
network a bf16 Interpolate costs nothing measurable, and a MatMul over 256 channels would cost time.

Example::

    graph, summary = resize_as_matmul(onnx.load("model.onnx"))   # summary["rewritten"] == 1 for DeepLabV3+
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .base import GraphPass, attributes, fresh_name, register_pass, replace_nodes, target

MODES = ("align_corners", "half_pixel", "pytorch_half_pixel", "asymmetric")
TAIL_OPS = {"Identity", "Sigmoid", "Tanh", "Relu", "Clip", "LeakyRelu", "Softmax", "LogSoftmax", "HardSigmoid"}


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _reaches_output_through_unary(graph: onnx.GraphProto, name: str) -> bool:
    outputs = {o.name for o in graph.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    while name not in outputs:
        users = consumers.get(name, [])
        if len(users) != 1 or users[0].op_type not in TAIL_OPS or users[0].input[0] != name:
            return False
        name = users[0].output[0]
    return True


def _eligible(node: onnx.NodeProto, graph: onnx.GraphProto, constants: dict) -> bool:
    if node.op_type != "Resize":
        return False
    a = attributes(node)
    mode = a.get("coordinate_transformation_mode", b"half_pixel")
    if a.get("mode", b"nearest") != b"linear" or (mode.decode() if isinstance(mode, bytes) else mode) not in MODES:
        return False
    if a.get("antialias", 0) or a.get("axes") or a.get("keep_aspect_ratio_policy", b"stretch") != b"stretch":
        return False
    scales = node.input[2] if len(node.input) > 2 else ""
    sizes = node.input[3] if len(node.input) > 3 else ""
    if scales:
        value = constants.get(scales)
        if value is None or value.shape != (4,) or tuple(value[:2]) != (1.0, 1.0) or not np.all(value[2:] > 0):
            return False
    elif not sizes:
        return False
    return _reaches_output_through_unary(graph, node.output[0])


class _Builder:
    """Appends nodes and initializers under one name stem."""

    def __init__(self, taken: set[str], stem: str):
        self.taken, self.stem, self.nodes, self.initializers = taken, stem, [], []

    def const(self, key: str, value) -> str:
        name = fresh_name(self.taken, f"{self.stem}/{key}")
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], key: str, **attrs) -> str:
        name = fresh_name(self.taken, f"{self.stem}/{key}")
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name


def _matrix(b: _Builder, shape: str, axis: int, mode: str, scale: float | None, sizes: str, transposed: bool) -> str:
    """The (n_out, n_in) interpolation matrix of ``axis`` ((n_in, n_out) when ``transposed``), float32."""
    f32 = TensorProto.FLOAT
    index = b.const(f"axis{axis}", np.array([axis], np.int64))
    n_in = b.op("Gather", [shape, index], f"n_in{axis}", axis=0)  # [1] int64
    n_in_f = b.op("Cast", [n_in], f"n_in{axis}_f", to=f32)
    if scale is not None:
        s = b.const(f"scale{axis}", np.array([scale], np.float32))
        n_out_f = b.op("Floor", [b.op("Mul", [n_in_f, s], f"scaled{axis}")], f"n_out{axis}_f")
        n_out = b.op("Cast", [n_out_f], f"n_out{axis}", to=TensorProto.INT64)
    else:
        n_out = b.op("Gather", [sizes, index], f"n_out{axis}", axis=0)
        n_out_f = b.op("Cast", [n_out], f"n_out{axis}_f", to=f32)
        s = b.op("Div", [n_out_f, n_in_f], f"scale{axis}")
    zero_i, one_i = b.const("zero_i", np.array(0, np.int64)), b.const("one_i", np.array(1, np.int64))
    squeeze_axes = b.const("axes0", np.array([0], np.int64))
    i = b.op("Cast", [b.op("Range", [zero_i, b.op("Squeeze", [n_out, squeeze_axes], f"n_out{axis}_s"), one_i],
                           f"out_index{axis}")], f"out_index{axis}_f", to=f32)
    one, half, zero = (b.const(k, np.array([v], np.float32)) for k, v in (("one", 1.0), ("half", 0.5), ("zero", 0.0)))
    if mode == "align_corners":
        span_out = b.op("Max", [b.op("Sub", [n_out_f, one], f"span_out{axis}_raw"), one], f"span_out{axis}")
        x = b.op("Div", [b.op("Mul", [i, b.op("Sub", [n_in_f, one], f"span_in{axis}")], f"x{axis}_num"), span_out],
                 f"x{axis}")
    elif mode == "asymmetric":
        x = b.op("Div", [i, s], f"x{axis}")
    else:
        x = b.op("Sub", [b.op("Div", [b.op("Add", [i, half], f"centre{axis}"), s], f"x{axis}_c"), half], f"x{axis}")
        if mode == "pytorch_half_pixel":  # a length-1 output samples coordinate 0
            x = b.op("Where", [b.op("Greater", [n_out_f, one], f"many{axis}"), x, zero], f"x{axis}_pt")
    x = b.op("Min", [b.op("Max", [x, zero], f"x{axis}_lo"), b.op("Sub", [n_in_f, one], f"last{axis}")], f"x{axis}_cl")
    left = b.op("Floor", [x], f"left{axis}")
    w = b.op("Sub", [x, left], f"w{axis}")
    right = b.op("Add", [left, one], f"right{axis}")
    j = b.op("Cast", [b.op("Range", [zero_i, b.op("Squeeze", [n_in, squeeze_axes], f"n_in{axis}_s"), one_i],
                           f"in_index{axis}")], f"in_index{axis}_f", to=f32)
    # (n_out, n_in): output index along rows, input index along columns; transposed the other way round
    j_axis, out_axis = (b.const(f"ax{axis}_{k}", np.array([k], np.int64)) for k in ((1, 0) if transposed else (0, 1)))
    jj = b.op("Unsqueeze", [j, j_axis], f"in_grid{axis}")

    def weight(pick: str, value: str, key: str) -> str:
        hit = b.op("Cast", [b.op("Equal", [b.op("Unsqueeze", [pick, out_axis], f"{key}{axis}_grid"), jj],
                                 f"{key}{axis}_eq")], f"{key}{axis}_hit", to=f32)
        return b.op("Mul", [hit, b.op("Unsqueeze", [value, out_axis], f"{key}{axis}_w")], f"{key}{axis}_m")

    return b.op("Add", [weight(left, b.op("Sub", [one, w], f"one_minus_w{axis}"), "left"), weight(right, w, "right")],
                f"matrix{axis}")


def resize_as_matmul(model: onnx.ModelProto, copy: bool = True) -> tuple[onnx.ModelProto, dict]:
    """Rewrite every eligible Resize (linear, 4-D, N and C unscaled, output reaching a graph output through unary
    elementwise operations) in a copy (in ``model`` itself with ``copy=False``)."""
    out = target(model, copy)
    graph = out.graph
    constants = _constants(graph)
    taken = {n for node in graph.node for n in (*node.input, *node.output)} | {i.name for i in graph.initializer}
    nodes, initializers, rewritten = [], [], []
    for node in graph.node:
        if not _eligible(node, graph, constants):
            nodes.append(node)
            continue
        a = attributes(node)
        mode = a.get("coordinate_transformation_mode", b"half_pixel")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        b = _Builder(taken, fresh_name(taken, (node.name or node.output[0]) + "/matmul"))
        scales = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        sizes = node.input[3] if scales is None else ""
        shape = b.op("Shape", [node.input[0]], "shape")
        rows = _matrix(b, shape, 2, mode, None if scales is None else float(scales[2]), sizes, transposed=False)
        cols = _matrix(b, shape, 3, mode, None if scales is None else float(scales[3]), sizes, transposed=True)
        tall = b.op("MatMul", [rows, node.input[0]], "MatMul_h")
        b.nodes.append(helper.make_node("MatMul", [tall, cols], list(node.output), name=b.stem + "/MatMul_w"))
        nodes.extend(b.nodes)
        initializers.extend(b.initializers)
        rewritten.append(node.name or node.output[0])
    replace_nodes(graph, nodes, initializers)
    return out, {"rewritten": len(rewritten), "resizes": rewritten}


register_pass(GraphPass("resize-matmul", resize_as_matmul,
                        "the output's bilinear Resize as two MatMuls with its interpolation matrices (an f32 tail "
                        "under OpenVINO's bf16 hint)"))
