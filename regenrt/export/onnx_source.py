"""An ONNX file given to export-engine as the model: its FP32 artefact is the same graph with regenrt's input and
output names (``input``, ``output``), only the first output kept, its shapes inferred and checked.

Example::

    graph = renamed_graph(Path("user.onnx"), work / "model.onnx")
"""
from __future__ import annotations

from pathlib import Path

import onnx

from ..errors import InputError
from .metadata import METADATA_KEY
from .onnx_export import INPUT_NAME, OUTPUT_NAME
from .onnx_io import check_model, save_onnx


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    if old == new:
        return
    if any(new in (*n.input, *n.output) for n in graph.node) or new in {t.name for t in graph.initializer}:
        raise InputError(f"the graph already has a tensor named {new!r} that is not its {'input' if new == INPUT_NAME else 'output'}; "
                         "rename it in the export (input_names/output_names).")
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
        for attribute in node.attribute:  # subgraphs (If, Loop) read outer names too
            for sub in [attribute.g, *attribute.graphs]:
                _rename(sub, old, new)
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new


def renamed_graph(source: Path, destination: Path) -> onnx.ModelProto:
    model = onnx.load(str(source), load_external_data=True)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    _rename(graph, inputs[0].name, INPUT_NAME)
    del graph.output[1:]
    _rename(graph, graph.output[0].name, OUTPUT_NAME)
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]  # an earlier export's record goes
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    checked = check_model(model, f"the graph of {source.name}")
    save_onnx(checked, destination)
    return checked
