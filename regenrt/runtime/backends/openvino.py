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

import functools
import json
import os
import threading
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from ...errors import MissingDependencyError, RegenrtError

RT_INFO_KEY = "regenrt"
SPECIALIZED_SIZES = 4  # input sizes (H, W) an IR compiled per size keeps compiled at once
# regenrt precision (the claim in the metadata) -> OpenVINO INFERENCE_PRECISION_HINT. An INT8 IR carries its
# quantized layers in the graph (FakeQuantize); the layers NNCF left unquantized run in the precision its
# metadata names (``int8.unquantized_run_in``: fp32, or bf16 on CPUs that have it), f32 when it names none.
PRECISIONS = {"bf16": "bf16", "fp32": "f32", "int8": "f32"}
MODES = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
HEAVY_LAYERS = ("Convolution", "Deconvolution", "FullyConnected", "MatMul", "GroupConvolution")
_MAC_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError("OpenVINO is not installed; install it with `pip install regenrt[openvino]`."
                                     ) from None
    return openvino


def cache_dir() -> Path:
    """Where compiled models are cached: $REGENRT_CACHE_DIR, else $XDG_CACHE_HOME/regenrt, else ~/.cache/regenrt
    (bounded in bytes: regenrt.runtime.disk_cache)."""
    from ..disk_cache import cache_root

    return cache_root() / "openvino"


def cpu_precisions() -> list[str]:
    """Inference precisions this CPU runs natively, best first: ``bf16`` only where a convolution compiled with the
    bf16 hint executes in bf16 (read back from its runtime graph, see :func:`executes_bf16`), then ``fp32``."""
    return (["bf16"] if executes_bf16() else []) + ["fp32"]


@functools.lru_cache(maxsize=1)
def executes_bf16() -> bool:
    """Whether OpenVINO runs bf16 here, read from a compiled probe (one 16-channel 3x3 convolution), not assumed.

    ``OPTIMIZATION_CAPABILITIES`` lists ``BF16`` from the CPU's flags alone: with oneDNN capped below BF16
    (``ONEDNN_MAX_CPU_ISA=AVX2``, e.g. to reproduce an AVX2-only machine) it still does, and a bf16 compile then
    fails ("object is not initialized"). Once per process: oneDNN reads its ISA cap once.
    """
    ov = import_openvino()
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return False
    ops = ov.opset13
    x = ops.parameter([1, 16, 8, 8], np.float32)
    weight = ops.constant(np.full((16, 16, 3, 3), 0.01, np.float32))
    model = ov.Model([ops.convolution(x, weight, [1, 1], [1, 1], [1, 1], [1, 1])], [x], "regenrt_bf16_probe")
    try:
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    except RuntimeError:
        return False
    return any(kind == "Convolution" and precision == "bf16" for _, kind, precision, _ in heavy_layers(compiled))


def heavy_layers(compiled) -> list[tuple[str, str, str, list[str]]]:
    """(name, layer type, runtime precision, original layer names) of every convolution/matmul node of a compiled
    model's runtime (execution) graph: what it really executes, as the proof and the probes read it."""
    layers = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else ""
        if kind not in HEAVY_LAYERS:
            continue
        names = info["originalLayersNames"].astype(str).split(",") if "originalLayersNames" in info else []
        layers.append((op.get_friendly_name(), kind, info["runtimePrecision"].astype(str), names))
    return layers


def cpu_has_int8() -> bool:
    return "INT8" in import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@functools.lru_cache(maxsize=1)
def int8_saturates() -> bool:
    """Whether this CPU's INT8 convolutions saturate u8 x s8 products, measured on a compiled probe.

    Without VNNI (AVX2-only CPUs, AVX-512 without VNNI) oneDNN sums pairs of u8 x s8 products in int16
    (``vpmaddubsw``), which saturates at 32767: 8 inputs of 255 against weights of 127 give 4 x 32767 instead of
    8 x 255 x 127. NNCF's default guards only the first layer against it; a model quantized that way and verified
    on a CPU with VNNI drifts on one without (DeepLabV3+ R50 phase model: 38.8 -> 24.7 dB). See
    :func:`regenrt.export.int8.quantize`, which quantizes with 7-bit weights where this is True.
    """
    ov = import_openvino()
    if not cpu_has_int8():
        return False
    ops = ov.opset13

    def quantized(node, high, levels):
        low_high = [ops.constant(np.array(v, np.float32)) for v in (-high if levels == 255 else 0.0, high)]
        return ops.fake_quantize(node, *low_high, *low_high, levels)

    x = ops.parameter([1, 8, 4, 4], np.float32)
    weight = ops.constant(np.full((16, 8, 1, 1), 127.0, np.float32))
    conv = ops.convolution(quantized(x, 255.0, 256), quantized(weight, 127.0, 255), [1, 1], [0, 0], [0, 0], [1, 1])
    compiled = ov.Core().compile_model(ov.Model([conv], [x], "regenrt_int8_probe"), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    y = compiled.create_infer_request().infer({0: np.full((1, 8, 4, 4), 255.0, np.float32)})[compiled.outputs[0]]
    return float(np.min(y)) < 8 * 255 * 127 - 0.5


def int8_refusal(name: str, metadata: dict) -> str | None:
    """Why the INT8 IR described by ``metadata`` must not run on this CPU (None when it may): quantized with only
    its first layer guarded against saturation — NNCF's default, what regenrt writes on CPUs with VNNI, and wrote
    everywhere before it recorded ``int8.overflow_fix`` — where this CPU's INT8 saturates."""
    if metadata.get("precision") != "int8":
        return None
    if metadata.get("int8", {}).get("overflow_fix", "first_layer_only") != "first_layer_only" or not int8_saturates():
        return None
    return (f"{name} was quantized with only its first layer guarded against INT8 saturation (NNCF's default: what "
            "regenrt writes on CPUs with VNNI, and wrote everywhere before it recorded this); this CPU's INT8 kernels "
            "saturate (no VNNI), so the engine can drift from what its parity gate verified. Re-export it here with "
            "export-engine (it quantizes with 7-bit weights where INT8 saturates).")


def convert(onnx_path: str | os.PathLike, xml_path: str | os.PathLike, metadata: dict,
            precise_tail: bool = False) -> Path:
    """FP32 ONNX -> OpenVINO IR with FP32 weights and ``metadata`` in its rt_info; returns the .xml path.
    ``precise_tail``: the layers from the last convolution(s) to the output keep f32 under a bf16 hint (see
    :func:`mark_precise_tail`); their names are recorded in the metadata (``fp32_tail``)."""
    ov = import_openvino()
    model = ov.convert_model(str(onnx_path))
    model.set_rt_info(json.dumps(metadata, sort_keys=True), [RT_INFO_KEY])
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    if precise_tail:
        mark_precise_tail(Path(xml_path))
    return Path(xml_path)


TAIL_STOPS = {"Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData"}


def mark_precise_tail(xml_path: Path) -> list[str]:
    """Mark every layer on the paths from the output back to (and including) the nearest convolution(s) precise:
    OpenVINO's CPU plugin then keeps them f32 under a bf16 hint (the IR attribute ``precise``, which the IR reader
    turns into a DisablePrecisionConversion mark). The CPU plugin keeps Convolution, MatMul and elementwise layers
    f32 when marked, not Interpolate or Pooling (read back from compiled graphs: ``runtimePrecision``). The file is
    rewritten in place, its regenrt metadata naming the marked layers (``fp32_tail``, sorted); returns them."""
    tree = ElementTree.parse(str(xml_path))
    root = tree.getroot()
    layers = {layer.get("id"): layer for layer in root.iter("layer")}
    producers: dict[str, set[str]] = {}
    for edge in root.iter("edge"):
        producers.setdefault(edge.get("to-layer"), set()).add(edge.get("from-layer"))
    todo = [i for i, layer in layers.items() if layer.get("type") == "Result"]
    seen, marked = set(todo), []
    while todo:
        layer_id = todo.pop()
        layer = layers[layer_id]
        kind = layer.get("type")
        if kind in ("Const", "Parameter"):
            continue
        if kind != "Result":
            info = layer.find("rt_info")
            if info is None:
                info = ElementTree.Element("rt_info")
                layer.insert(0, info)
            ElementTree.SubElement(info, "attribute", name="precise", version="0")
            marked.append(layer.get("name"))
        if kind in TAIL_STOPS:
            continue
        for source in producers.get(layer_id, ()):
            if source not in seen:
                seen.add(source)
                todo.append(source)
    entry = root.find(f"./rt_info/{RT_INFO_KEY}")
    if entry is not None and "value" in entry.attrib:
        entry.set("value", json.dumps({**json.loads(entry.attrib["value"]), "fp32_tail": sorted(marked)},
                                      sort_keys=True))
    tree.write(str(xml_path), encoding="utf-8", xml_declaration=True)
    return sorted(marked)


def save_for_size(xml_path: str | os.PathLike, out_xml: str | os.PathLike, size: tuple[int, int]) -> Path:
    """The IR with its input's H/W fixed to ``size`` (batch stays dynamic), marks and metadata kept: what a server
    that compiles an IR once (Triton's OpenVINO backend) needs to run one made to be compiled per size
    (``specialize_hw``) as regenrt's runner runs it and its gate verified it."""
    ov = import_openvino()
    model = ov.Core().read_model(str(xml_path))
    channels = model.inputs[0].get_partial_shape()[1]
    model.reshape({model.inputs[0]: [-1, channels, *size]})
    ov.save_model(model, str(out_xml), compress_to_fp16=False)
    return Path(out_xml)


def read_metadata(path: str | os.PathLike) -> dict:
    """The regenrt metadata of an IR: the ``<net><rt_info><regenrt>`` entry regenrt writes, and only that one.

    The ONNX frontend copies the source graph's ``metadata_props`` under ``rt_info/framework/regenrt`` (the FP32
    graph's entry, precision ``fp32``); reading "the first ``regenrt`` element" returned that copy, and every
    compile ran f32 while the IR claimed bf16. Read from the .xml alone, weights untouched; {} when it has none.
    """
    _check_weights(Path(path))
    try:
        root = ElementTree.parse(str(path)).getroot()
    except ElementTree.ParseError as exc:
        raise RegenrtError(f"{Path(path).name} is not a readable OpenVINO IR ({exc}); re-export it.") from None
    entry = root.find(f"./rt_info/{RT_INFO_KEY}")
    if entry is None or "value" not in entry.attrib:
        return {}
    try:
        return json.loads(entry.attrib["value"])
    except ValueError as exc:
        raise RegenrtError(f"{Path(path).name}: its regenrt metadata is not JSON ({exc}); re-export it.") from None


def bin_path(xml_path: Path) -> Path:
    return xml_path.with_suffix(".bin")


def _check_weights(xml_path: Path) -> None:
    if not bin_path(xml_path).is_file():
        raise RegenrtError(f"{xml_path.name} has no weights file {bin_path(xml_path).name} beside it; "
                           "copy both files of the engine, or re-export it with export-engine.")


class OpenVinoRunner:
    """A compiled IR, in the precision its metadata claims; ``infer`` is thread-safe (one infer request per
    calling thread). ``mode="throughput"`` compiles with the throughput hint: ``requests`` is the number of infer
    requests OpenVINO asks for, and that many threads may call ``infer`` at once (the pipeline does)."""

    def __init__(self, path: str | os.PathLike, precision: str | None = None, cache: bool = True,
                 mode: str = "latency"):
        ov = import_openvino()
        self.path = Path(path)
        _check_weights(self.path)
        core = ov.Core()
        if cache:
            from ..disk_cache import prune

            cache_dir().mkdir(parents=True, exist_ok=True)
            prune(cache_dir())  # least recently used compiled models go before this one may add its own
            core.set_property({"CACHE_DIR": str(cache_dir())})
        self.metadata = read_metadata(self.path)
        precision = precision or self.metadata.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise RegenrtError(f"{self.path.name}: OpenVINO runs precision {', '.join(PRECISIONS)}; the engine says "
                               f"{precision!r}.")
        rest = self.metadata.get("int8", {}).get("unquantized_run_in", "fp32") if precision == "int8" else None
        if rest not in (None, "fp32", "bf16"):
            raise RegenrtError(f"{self.path.name}: its INT8 metadata names {rest!r} for the unquantized layers; "
                               "re-export it.")
        if "bf16" in (precision, rest) and "bf16" not in cpu_precisions():
            raise RegenrtError(f"{self.path.name} was verified with BF16 inference, which this CPU does not have; "
                               "re-export it here with export-engine (it picks what this CPU runs best).")
        refusal = int8_refusal(self.path.name, {**self.metadata, "precision": precision})
        if refusal:
            raise RegenrtError(refusal)
        if mode not in MODES:
            raise RegenrtError(f"OpenVINO mode must be one of {sorted(MODES)}, got {mode!r}.")
        self.precision, self.mode, self.hint = precision, mode, PRECISIONS[rest or precision]
        # compiled from the model object: the cache key is its content, not its path, so the compile done while
        # exporting (in a temporary directory) is the one later loads find
        self._core, self._source = core, core.read_model(str(self.path))
        self._config = {"INFERENCE_PRECISION_HINT": self.hint, "PERFORMANCE_HINT": MODES[mode]}
        self.specialized = bool(self.metadata.get("specialize_hw"))
        self._by_size: dict[tuple[int, int], Any] = {}
        self._lock = threading.Lock()
        example = self.metadata.get("input", {}).get("example_shape")
        if self.specialized and not example:
            raise RegenrtError(f"{self.path.name} is compiled per input size but records no example shape; re-export "
                               "it with export-engine.")
        self.compiled = (self._compiled_for(tuple(example[2:])) if self.specialized
                         else core.compile_model(self._source, "CPU", self._config))
        self.requests = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) if mode == "throughput" else 1
        self._local = threading.local()

    def _compiled_for(self, size: tuple[int, int]):
        """The model compiled for inputs of ``size`` (H, W), batch left dynamic; at most SPECIALIZED_SIZES kept.
        An IR that is compiled per size (``specialize_hw``): its output tail's interpolation matrices become
        constants of the size, and OpenVINO keeps a MatMul with a constant operand f32 where marked precise
        (one whose operands are both computed at run time it runs bf16)."""
        with self._lock:
            compiled = self._by_size.get(size)
            if compiled is None:
                model = self._source.clone()
                shape = list(self._source.inputs[0].get_partial_shape())
                model.reshape({model.inputs[0]: [-1, shape[1], *size]})
                compiled = self._core.compile_model(model, "CPU", self._config)
                if len(self._by_size) >= SPECIALIZED_SIZES:
                    self._by_size.pop(next(iter(self._by_size)))
                self._by_size[size] = compiled
            return compiled

    def infer(self, x: np.ndarray) -> np.ndarray:
        compiled = self._compiled_for(tuple(x.shape[2:])) if self.specialized else self.compiled
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        kept = requests.get(x.shape[2:])
        if kept is None or kept[0] is not compiled:
            kept = requests[x.shape[2:]] = (compiled, compiled.create_infer_request())
        result = kept[1].infer({0: np.ascontiguousarray(x, np.float32)})
        return np.array(result[compiled.outputs[0]], np.float32, copy=True)

    def proof(self) -> dict:
        """What the compiled model executes, from its runtime (execution) graph: each heavy layer's runtime
        precision, weighted by its MACs at the export's example shape (see :mod:`regenrt.runtime.proof`)."""
        from ..proof import summarize

        macs = _macs_by_name(self.path, self.metadata.get("input", {}).get("example_shape"))
        layers = [(name, kind, precision, sum(macs.get(n, 0) for n in names))
                  for name, kind, precision, names in heavy_layers(self.compiled)]
        return summarize(layers, f"OpenVINO {import_openvino().__version__} runtime model, "
                                 f"INFERENCE_PRECISION_HINT={self.hint}")


def _macs_by_name(xml_path: Path, example_shape) -> dict[str, int]:
    """MACs of every convolution/matmul of the IR at ``example_shape`` (batch 1), by friendly name."""
    if not example_shape:
        return {}
    ov = import_openvino()
    model = ov.Core().read_model(str(xml_path))
    try:
        model.reshape({model.inputs[0]: [1, *example_shape[1:]]})
    except RuntimeError:
        return {}
    macs = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in _MAC_OPS:
            continue
        weight = [int(d) for d in op.input_value(1).get_partial_shape().get_shape()] if \
            op.input_value(1).get_partial_shape().is_static else []
        out = op.get_output_partial_shape(0)
        if not weight or not out.is_static:
            continue
        out_shape = [int(d) for d in out.get_shape()]
        if kind == "ConvolutionBackpropData":  # weight (C_in, C_out, kh, kw): every input pixel meets C_out*kh*kw
            inp = [int(d) for d in op.input_value(0).get_partial_shape().get_shape()]
            macs[op.get_friendly_name()] = int(np.prod(inp)) * int(np.prod(weight[1:]))
        elif kind == "MatMul":
            macs[op.get_friendly_name()] = int(np.prod(out_shape)) * weight[-2 if len(weight) > 1 else 0]
        elif kind == "GroupConvolution":  # weight (groups, C_out/g, C_in/g, kh, kw)
            macs[op.get_friendly_name()] = int(np.prod(out_shape)) * int(np.prod(weight[2:]))
        else:
            macs[op.get_friendly_name()] = int(np.prod(out_shape)) * int(np.prod(weight[1:]))
    return macs
