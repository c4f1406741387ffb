"""ONNX Runtime runner (CPU execution provider unless told otherwise).

Example::

    with OnnxRuntimeRunner("model.onnx") as runner:
        outputs = runner.infer({"input": batch})     # {"output": array}
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import MissingDependencyError, RegenrtError


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(
            "ONNX Runtime is not installed; install it with `pip install regenrt[onnx]` (or `pip install onnxruntime`)."
        ) from None
    return onnxruntime


class OnnxRuntimeRunner:
    """Runs one ONNX graph; validates input names, ranks and dtypes before each call."""

    def __init__(self, path: str | os.PathLike, providers: tuple[str, ...] = ("CPUExecutionProvider",),
                 intra_op_threads: int | None = None, spinning: bool = False):
        self.path = Path(path)
        self.providers = providers
        self.intra_op_threads = intra_op_threads
        # idle intra-op threads spin by default, stealing the cores the pipeline's decode/encode workers need
        self.spinning = spinning
        self.session = None
        self.requests = 1

    def __enter__(self) -> "OnnxRuntimeRunner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if self.intra_op_threads:
            options.intra_op_num_threads = self.intra_op_threads
        available = ort.get_available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise MissingDependencyError(
                f"ONNX Runtime provider(s) {missing} are not available here (this onnxruntime offers {available}); "
                "install `pip install regenrt[onnx-gpu]` (onnxruntime-gpu, with CUDA and cuDNN) on a machine with "
                "an NVIDIA GPU, or run on CPU.")
        self.session = ort.InferenceSession(str(self.path), options, providers=list(self.providers))
        check_providers(self.providers, self.session.get_providers(), self.path.name)

    def single(self) -> "SingleTensorRunner":
        """This runner as ``infer(array) -> array`` for a one-input, one-output graph."""
        return SingleTensorRunner(self)

    def deactivate(self) -> None:
        self.session = None

    def proof(self, x: np.ndarray) -> dict:
        """What a session of this graph executes: one profiled run on ``x`` (a batch-1 model input); each
        convolution/matmul kernel's input type as ONNX Runtime ran it, weighted by its MACs (see
        :mod:`regenrt.runtime.proof`). ONNX Runtime's CPU provider, for one, wraps FP16 nodes it has no kernel
        for in casts and runs them in FP32: the proof says so."""
        import json
        import tempfile

        from ..proof import summarize

        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.enable_profiling = True
        with tempfile.TemporaryDirectory() as tmp:
            options.profile_file_prefix = str(Path(tmp) / "profile")
            session = ort.InferenceSession(str(self.path), options, providers=list(self.providers))
            session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})
            events = json.loads(Path(session.end_profiling()).read_text())
        graph_macs = _graph_macs(self.path, x.shape)
        layers = []
        for event in events:
            args = event.get("args", {})
            if event.get("cat") != "Node" or args.get("op_name") not in HEAVY_OPS:
                continue
            inputs, outputs = args.get("input_type_shape", []), args.get("output_type_shape", [])
            if len(inputs) < 2 or not outputs:
                continue
            (dtype, shape), = inputs[0].items()
            (_, weight), = inputs[1].items()
            (_, out), = outputs[0].items()
            name = event["name"].removesuffix("_kernel_time")
            layers.append((name, args["op_name"], dtype, graph_macs.get(name.removesuffix("_nchwc"),
                                                                        _macs(args["op_name"], shape, weight, out))))
        return summarize(layers, f"ONNX Runtime {ort.__version__} profile, {', '.join(self.providers)}")

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self._session().get_inputs()]

    def _session(self):
        if self.session is None:
            self.activate()
        return self.session

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._session()
        for spec in session.get_inputs():
            if spec.name not in feed:
                raise RegenrtError(f"input {spec.name!r} missing; the graph takes {self.input_names}.")
            arr = feed[spec.name]
            if arr.ndim != len(spec.shape):
                raise RegenrtError(f"input {spec.name!r}: expected rank {len(spec.shape)} {spec.shape}, got {arr.shape}.")
            if spec.type == "tensor(float)" and arr.dtype != np.float32:
                raise RegenrtError(f"input {spec.name!r}: expected float32, got {arr.dtype}.")
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feed)))


HEAVY_OPS = ("Conv", "FusedConv", "ConvTranspose", "MatMul", "Gemm", "FusedMatMul", "NhwcFusedConv")


def _graph_macs(path: Path, shape: tuple[int, ...]) -> dict[str, int]:
    """MACs of every Conv/ConvTranspose of the graph at input ``shape``, by node name and by output name (the
    profile names a node by either; ONNX Runtime prepacks ConvTranspose kernels, so its profile lacks their shape)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # shapes only: weights (maybe > 2 GiB) stay on disk
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, size in zip(dims, shape):
        dim.ClearField("dim_param")
        dim.dim_value = int(size)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - no MACs is a weaker proof, not a failure
        return {}
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    shapes.update({init.name: list(init.dims) for init in model.graph.initializer})
    macs = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 2:
            continue
        x, weight, out = shapes.get(node.input[0]), shapes.get(node.input[1]), shapes.get(node.output[0])
        if x and weight and out and all(x) and all(out):
            macs[node.name] = macs[node.output[0]] = _macs(node.op_type, x, weight, out)
    return macs


def _macs(op: str, x: list[int], weight: list[int], out: list[int]) -> int:
    prod = lambda dims: int(np.prod(dims)) if dims else 0  # noqa: E731
    if op == "ConvTranspose":  # weight (C_in, C_out/g, kh, kw): every input pixel meets C_out/g*kh*kw
        return prod(x) * prod(weight[1:])
    if "Conv" in op:
        return prod(out) * prod(weight[1:])
    return prod(out) * (weight[0] if len(weight) else 0)


class SingleTensorRunner:
    def __init__(self, runner: OnnxRuntimeRunner):
        self.runner, self.input_name = runner, runner.input_names[0]
        self.requests = runner.requests

    def proof(self, x: np.ndarray) -> dict:
        return self.runner.proof(x)

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.runner.infer({self.input_name: x})["output"]


def check_providers(requested: tuple[str, ...], active: list[str], name: str) -> None:
    """ONNX Runtime drops a provider that fails to initialise (missing CUDA/cuDNN/TensorRT libraries) and runs on
    the next one, usually the CPU, with only a log line. Refuse that: the caller asked for this provider."""
    dropped = [p for p in requested if p not in active]
    if dropped:
        raise MissingDependencyError(
            f"ONNX Runtime could not start {dropped} for {name} (the session runs on {active} instead); the CUDA, "
            "cuDNN or TensorRT libraries that provider needs are missing or do not match this onnxruntime-gpu. "
            "Not falling back silently: fix the installation, or run with --device cpu (Python: device='cpu').")
