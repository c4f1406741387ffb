"""The regenrt metadata embedded in every ONNX artefact (``metadata_props["regenrt"]``, JSON).

Example::

    meta = read_metadata("model.onnx")
    meta["task"], meta["input"]["normalization"], meta["mode"]
"""
from __future__ import annotations

import json
import os

import onnx

METADATA_KEY = "regenrt"
SCHEMA_VERSION = 1


def embed_metadata(model: onnx.ModelProto, metadata: dict) -> None:
    """Replace the regenrt entry of ``model.metadata_props`` with ``metadata`` as JSON."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps({"schema": SCHEMA_VERSION, **metadata}, sort_keys=True)


def read_metadata(path: str | os.PathLike) -> dict:
    """The regenrt metadata of any artefact (ONNX, OpenVINO IR, TensorRT engine, torch artefact), read through
    the backend registry; an empty dict when it has none."""
    from ..runtime.engine import read_metadata as read_any

    return read_any(path)


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The regenrt metadata of an ONNX file (``metadata_props["regenrt"]``); an empty dict when it has none."""
    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return {}
