"""ONNX graphs of any size: saved, checked and listed the same way under and over protobuf's 2 GiB limit.

A protobuf message cannot be serialized past 2 GiB, so a bigger model is an ``.onnx`` graph plus its weights in
one external data file beside it, ``<name>.onnx.data`` (ONNX's external-data format, location relative to the
graph). Everything in export goes through these helpers: ``save_onnx`` picks the layout by the weights' size,
``check_model`` runs onnx.checker and shape inference on the file (by path, the only way past 2 GiB); the files an
artefact is made of (its external data included) are listed by ``regenrt.runtime.engine.artefact_files``, so
publishing moves them together.

Example::

    save_onnx(graph, work / "model.onnx")          # model.onnx (+ model.onnx.data past ~2 GiB)
    graph = check_model(graph, "the FP16 graph")   # checked and shape-inferred, any size
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import onnx

from ..errors import ExportError

# Weights past this size go to external data (2 GiB less a margin for the graph itself); a module attribute so
# tests can lower it and exercise the external-data path on small models.
EXTERNAL_DATA_BYTES = 2**31 - 2**26
DATA_SUFFIX = ".data"


def weights_bytes(model: onnx.ModelProto) -> int:
    """Bytes the model's tensors take in the proto (initializers and Constant node values; no serialization)."""
    total = sum(t.ByteSize() for t in model.graph.initializer)
    for node in model.graph.node:
        total += sum(a.t.ByteSize() for a in node.attribute if a.type == onnx.AttributeProto.TENSOR)
    return total


def is_large(model: onnx.ModelProto) -> bool:
    return weights_bytes(model) > EXTERNAL_DATA_BYTES


def data_path(path: Path) -> Path:
    return path.with_name(path.name + DATA_SUFFIX)


def save_onnx(model: onnx.ModelProto, path: str | Path) -> None:
    """Write ``model`` to ``path``: one file, or past the limit the graph plus ``<name>.data`` (the in-memory model
    keeps its weights). A data file of an earlier save that is no longer needed is removed."""
    path = Path(path)
    data = data_path(path)
    if not is_large(model):
        onnx.save(model, str(path))
        data.unlink(missing_ok=True)
        return
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # onnx moves the weights out of the proto it saves
    data.unlink(missing_ok=True)  # external data is appended to an existing file
    onnx.save_model(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name,
                    size_threshold=1024)


def check_model(model: onnx.ModelProto, what: str) -> onnx.ModelProto:
    """onnx.checker full check (with shape inference); return the shape-inferred model. Past the limit both run on
    a temporary external-data copy (onnx checks a large model only by path)."""
    try:
        if not is_large(model):
            onnx.checker.check_model(model, full_check=True)
            return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        with tempfile.TemporaryDirectory(prefix="regenrt-check-") as tmp:
            source, inferred = Path(tmp) / "model.onnx", Path(tmp) / "inferred.onnx"
            save_onnx(model, source)
            onnx.checker.check_model(str(source), full_check=True)
            onnx.shape_inference.infer_shapes_path(str(source), str(inferred), check_type=True, strict_mode=True)
            return _load_with(inferred, source)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{what} failed onnx.checker: {str(exc).splitlines()[0]}") from None


def infer_shapes(model: onnx.ModelProto, **kwargs) -> onnx.ModelProto:
    """onnx's shape inference at any size (use the return value). Past the limit the weights are set aside while
    it runs (it reads only their types and dims), and the inferred value_info is written into ``model`` itself —
    no second copy of several GiB."""
    if not is_large(model):
        return onnx.shape_inference.infer_shapes(model, **kwargs)
    aside = []
    try:
        for tensor in model.graph.initializer:
            if tensor.raw_data:
                aside.append((tensor, tensor.raw_data))
                tensor.ClearField("raw_data")
                tensor.data_location = onnx.TensorProto.EXTERNAL
                entry = tensor.external_data.add()
                entry.key, entry.value = "location", "set-aside-for-shape-inference"
        inferred = onnx.shape_inference.infer_shapes(model, **kwargs)
    finally:
        for tensor, raw in aside:
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
            tensor.raw_data = raw
    for field in ("value_info", "output"):
        del getattr(model.graph, field)[:]
        getattr(model.graph, field).extend(getattr(inferred.graph, field))
    return model


@contextmanager
def session_source(model: onnx.ModelProto):
    """What ``onnxruntime.InferenceSession`` takes for an in-memory model of any size: its bytes, or past the limit
    the path of a temporary external-data copy (kept while the ``with`` block runs)."""
    if not is_large(model):
        yield model.SerializeToString()
        return
    with tempfile.TemporaryDirectory(prefix="regenrt-session-") as tmp:
        save_onnx(model, Path(tmp) / "model.onnx")
        yield str(Path(tmp) / "model.onnx")


def _load_with(graph: Path, weights_of: Path) -> onnx.ModelProto:
    """``graph`` (written by shape inference, which keeps the external references of ``weights_of``) with its
    weights read back into memory."""
    model = onnx.load(str(graph), load_external_data=False)
    onnx.load_external_data_for_model(model, str(weights_of.parent))
    return model
