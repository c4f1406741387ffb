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
                 intra_op_threads: int | None = None):
        self.path = Path(path)
        self.providers = providers
        self.intra_op_threads = intra_op_threads
        self.session = None

    def __enter__(self) -> "OnnxRuntimeRunner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.log_severity_level = 3
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


class SingleTensorRunner:
    def __init__(self, runner: OnnxRuntimeRunner):
        self.runner, self.input_name = runner, runner.input_names[0]

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
            "Not falling back silently: fix the installation, or run with --device cpu.")
