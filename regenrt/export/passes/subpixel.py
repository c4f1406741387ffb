"""``ConvTranspose(k=4, s=2, p=1)`` -> its exact sub-pixel equivalent.

OpenVINO's CPU plugin runs ``ConvolutionBackpropData`` in f32 even under a bf16 inference hint (its per-layer
profile shows ``brgconv_avx512_f32``), and the layers around it follow. The same arithmetic as a plain
convolution runs in bf16 (or int8): for output row ``2m + a`` only two kernel taps meet an input row, so the
transposed convolution is one 2x2 convolution over the 1-padded input that computes all four phases (a, b) at
once (4 x C_out channels), four phase slices (phase a starts at row a) and a depth-to-space that interleaves them.
In FP32 it is the same sum of the same products (in another order): an identity up to rounding.

Kernel of phase (a, b), tap (u, v): ``W[:, :, 3 - a - 2u, 3 - b - 2v]`` of the transposed kernel (C_in, C_out,
4, 4), transposed to (C_out, C_in).

Example::

    graph, summary = subpixel_conv_transpose(onnx.load("model.onnx"))   # summary["rewritten"] == 8 for unet_256
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .base import GraphPass, attributes, fresh_name, register_pass, replace_nodes, target

PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))  # channel order DepthToSpace(mode=DCR, blocksize=2) interleaves


def phase_kernels(weight: np.ndarray) -> np.ndarray:
    """(C_in, C_out, 4, 4) transposed-convolution kernel -> (4 * C_out, C_in, 2, 2) phase kernels, phase-major."""
    taps = np.array([[3, 1], [2, 0]])  # taps[a][u] = 3 - a - 2u
    blocks = [weight[:, :, taps[a]][:, :, :, taps[b]].transpose(1, 0, 2, 3) for a, b in PHASES]
    return np.ascontiguousarray(np.concatenate(blocks, axis=0))


def _eligible(node: onnx.NodeProto, weights: dict[str, np.ndarray]) -> bool:
    if node.op_type != "ConvTranspose" or len(node.input) < 2 or node.input[1] not in weights:
        return False
    a = attributes(node)
    w = weights[node.input[1]]
    return (w.ndim == 4 and w.shape[2:] == (4, 4) and a.get("strides") == [2, 2] and a.get("pads", [0] * 4) == [1] * 4
            and a.get("group", 1) == 1 and a.get("dilations", [1, 1]) == [1, 1]
            and not any(a.get(k) for k in ("output_padding", "output_shape"))
            and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def subpixel_conv_transpose(model: onnx.ModelProto, copy: bool = True) -> tuple[onnx.ModelProto, dict]:
    """Rewrite every eligible ConvTranspose (k=4, s=2, p=1, group 1, constant kernel) in a copy (in ``model`` itself
    with ``copy=False``)."""
    out = target(model, copy)
    graph = out.graph
    wanted = {name for node in graph.node if node.op_type == "ConvTranspose" for name in node.input[1:3]}
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer if init.name in wanted}
    taken = {n for node in graph.node for n in (*node.input, *node.output)} | {i.name for i in graph.initializer}
    nodes, rewritten, initializers = [], 0, []
    for node in graph.node:
        if not _eligible(node, weights):
            nodes.append(node)
            continue
        rewritten += 1
        stem = fresh_name(taken, (node.name or node.output[0]) + "/subpixel")
        kernel = phase_kernels(weights[node.input[1]])
        initializers.append(numpy_helper.from_array(kernel, stem + "/kernel"))
        conv_inputs = [node.input[0], stem + "/kernel"]
        if len(node.input) > 2 and node.input[2]:
            bias = weights.get(node.input[2])
            if bias is None:
                nodes.append(node)  # a computed bias: leave this node alone
                rewritten -= 1
                initializers.pop()
                continue
            initializers.append(numpy_helper.from_array(np.tile(bias, 4), stem + "/bias"))
            conv_inputs.append(stem + "/bias")
        nodes.append(helper.make_node("Conv", conv_inputs, [stem + "/phases"], name=stem + "/Conv",
                                      kernel_shape=[2, 2], pads=[1, 1, 1, 1], strides=[1, 1]))
        # phase (a, b) is rows a .. a+H-1 and columns b .. b+W-1 of its C_out channels (the conv output is H+1)
        cout = kernel.shape[0] // 4
        slices = []
        for i, (a, b) in enumerate(PHASES):
            consts = {"starts": [i * cout, a, b], "ends": [(i + 1) * cout, -1 if a == 0 else 2 ** 62,
                                                            -1 if b == 0 else 2 ** 62], "axes": [1, 2, 3]}
            names = []
            for key, value in consts.items():
                initializers.append(numpy_helper.from_array(np.array(value, np.int64), f"{stem}/{key}{i}"))
                names.append(f"{stem}/{key}{i}")
            slices.append(f"{stem}/phase{a}{b}")
            nodes.append(helper.make_node("Slice", [stem + "/phases", *names], [slices[-1]], name=f"{stem}/Slice{i}"))
        nodes.append(helper.make_node("Concat", slices, [stem + "/stacked"], name=stem + "/Concat", axis=1))
        nodes.append(helper.make_node("DepthToSpace", [stem + "/stacked"], list(node.output), name=stem + "/D2S",
                                      blocksize=2, mode="DCR"))
    replace_nodes(graph, nodes, initializers)
    return out, {"rewritten": rewritten}


register_pass(GraphPass("subpixel-convtranspose", subpixel_conv_transpose,
                        "ConvTranspose(k4 s2 p1) as 2x2 conv + phase slices + depth-to-space (bf16/int8 on OpenVINO CPU)"))
