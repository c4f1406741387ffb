"""OpenVINO CPU backend: IR artefacts (``model.openvino.xml`` + ``.bin``) converted from the verified FP32 ONNX.

The IR keeps FP32 weights; the inference precision the parity gate verified (``bf16`` on CPUs that have it,
else ``f32``) is part of the regenrt metadata in the IR's ``rt_info`` and is the precision every later compile
uses. Compiled models are cached on disk (``REGENRT_CACHE_DIR``, default ``~/.cache/regenrt``), so a second
load does not recompile.

Example::

    runner = OpenVinoRunner("engine/model.openvino.xml")
    y = runner.infer(x)          # NxCxHxW float32
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from ...errors import MissingDependencyError, RegenrtError

RT_INFO_KEY = "regenrt"
PRECISIONS = {"bf16": "bf16", "fp32": "f32"}  # regenrt precision -> OpenVINO INFERENCE_PRECISION_HINT


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError("OpenVINO is not installed; install it with `pip install regenrt[openvino]`."
                                     ) from None
    return openvino


def cache_dir() -> Path:
    """Where compiled models are cached: $REGENRT_CACHE_DIR, else $XDG_CACHE_HOME/regenrt, else ~/.cache/regenrt."""
    root = os.environ.get("REGENRT_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "regenrt"
    return Path(root) / "openvino"


def cpu_precisions() -> list[str]:
    """Inference precisions this CPU runs natively, best first (``bf16`` only where the CPU has BF16)."""
    ov = import_openvino()
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return (["bf16"] if "BF16" in capabilities else []) + ["fp32"]


def convert(onnx_path: str | os.PathLike, xml_path: str | os.PathLike, metadata: dict) -> Path:
    """FP32 ONNX -> OpenVINO IR with FP32 weights and ``metadata`` in its rt_info; returns the .xml path."""
    ov = import_openvino()
    model = ov.convert_model(str(onnx_path))
    model.set_rt_info(json.dumps(metadata, sort_keys=True), [RT_INFO_KEY])
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return Path(xml_path)


def read_metadata(path: str | os.PathLike) -> dict:
    """The regenrt metadata of an IR (read from the .xml alone, weights untouched); {} when it has none."""
    _check_weights(Path(path))
    try:
        for _, element in ElementTree.iterparse(str(path)):
            if element.tag == RT_INFO_KEY and "value" in element.attrib:
                return json.loads(element.attrib["value"])
    except (ElementTree.ParseError, ValueError) as exc:
        raise RegenrtError(f"{Path(path).name} is not a readable OpenVINO IR ({exc}); re-export it.") from None
    return {}


def bin_path(xml_path: Path) -> Path:
    return xml_path.with_suffix(".bin")


def _check_weights(xml_path: Path) -> None:
    if not bin_path(xml_path).is_file():
        raise RegenrtError(f"{xml_path.name} has no weights file {bin_path(xml_path).name} beside it; "
                           "copy both files of the engine, or re-export it with export-engine.")


class OpenVinoRunner:
    """A compiled IR; ``infer`` is thread-safe (one infer request per calling thread)."""

    def __init__(self, path: str | os.PathLike, precision: str | None = None, cache: bool = True):
        ov = import_openvino()
        self.path = Path(path)
        _check_weights(self.path)
        core = ov.Core()
        if cache:
            cache_dir().mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir())})
        if precision is None:
            precision = read_metadata(self.path).get("precision", "fp32")
        if precision not in PRECISIONS:
            raise RegenrtError(f"{self.path.name}: OpenVINO runs precision bf16 or fp32, the engine says {precision!r}.")
        if precision == "bf16" and "bf16" not in cpu_precisions():
            raise RegenrtError(f"{self.path.name} was verified with BF16 inference, which this CPU does not have; "
                               "re-export it here with export-engine (it picks what this CPU runs best).")
        self.precision = precision
        # compiled from the model object: the cache key is its content, not its path, so the compile done while
        # exporting (in a temporary directory) is the one later loads find
        self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", {"INFERENCE_PRECISION_HINT": PRECISIONS[precision]})
        self._local = threading.local()

    def infer(self, x: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer({0: np.ascontiguousarray(x, np.float32)})
        return np.array(result[self.compiled.outputs[0]], np.float32, copy=True)
