"""Graph passes: small ONNX -> ONNX functions, each an exact identity in FP32, registered by name.

A pass returns the rewritten copy and a summary (``{"rewritten": n, ...}``); the input model is not modified —
unless the caller, owning a model it will not use again, passes ``copy=False`` (one copy of the weights less). A
pass that finds nothing to rewrite returns ``rewritten == 0`` and the caller drops that graph variant.

Example::

    graph, summary = get_pass("subpixel-convtranspose").apply(onnx.load("model.onnx"))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import onnx
from onnx import helper

from ...errors import RegenrtError


@dataclass(frozen=True)
class GraphPass:
    name: str
    apply: Callable[..., tuple[onnx.ModelProto, dict]]  # (model, copy=True) -> (rewritten, summary)
    description: str


_PASSES: dict[str, GraphPass] = {}


def register_pass(graph_pass: GraphPass) -> GraphPass:
    _PASSES[graph_pass.name] = graph_pass
    return graph_pass


def get_pass(name: str) -> GraphPass:
    if name not in _PASSES:
        raise RegenrtError(f"unknown graph pass {name!r}; known: {', '.join(_PASSES)}.")
    return _PASSES[name]


def list_passes() -> list[GraphPass]:
    return list(_PASSES.values())


def attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def fresh_name(taken: set[str], stem: str) -> str:
    """``stem`` or ``stem_1``, ``stem_2``, ... whichever is not yet a name in the graph; reserves it."""
    name, i = stem, 0
    while name in taken:
        i += 1
        name = f"{stem}_{i}"
    taken.add(name)
    return name


def replace_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto]) -> None:
    """The graph's nodes become ``nodes`` (in order), ``initializers`` are added, and every initializer no node
    or graph output reads any more (a rewritten node's weights) is dropped."""
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    used = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def target(model: onnx.ModelProto, copy: bool) -> onnx.ModelProto:
    """What a pass rewrites: a copy of ``model``, or (``copy=False``, a caller that owns it) the model itself."""
    if not copy:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out
