"""build_engine against a stand-in for TensorRT 10 and 11 that behaves as their documentation says (see
fake_tensorrt.py): the FP16 proof of a dynamic-profile engine, TensorRT 11's split layer fields, version-
compatible engines, the timing cache per TensorRT version and GPU. Each was a defect found by review."""
import sys

import pytest

from regenrt.errors import ExportError
from regenrt.export.tensorrt import build_engine, optimization_profile, timing_cache_path

from . import fake_tensorrt


@pytest.fixture(params=["10.13.0", "11.4.0"])
def trt(request, monkeypatch):
    module = fake_tensorrt.make(request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


DYNAMIC = optimization_profile((2, 1, 256, 256), dynamic_hw=True, multiple=16, max_batch=8)


def test_fp16_proof_of_a_dynamic_profile_engine_on_tensorrt_10_and_11(trt, tmp_path):
    """Without an execution context at the opt shape the inspector shows no formats (every build refused);
    on TensorRT 11 the data type is its own field (every layer counted as "other" by a 10-only parser)."""
    counts = build_engine(tmp_path / "model.fp16.onnx", tmp_path / "model.engine", DYNAMIC)
    assert counts == {"fp16": 2, "fp32": 1, "other": 0}


def test_version_compatible_engine_is_deserialized_with_host_code_allowed(trt, tmp_path):
    counts = build_engine(tmp_path / "m.onnx", tmp_path / "model.engine", DYNAMIC, version_compatible=True)
    assert counts["fp16"] == 2
    runtime = trt.Runtime(trt.Logger())
    assert runtime.deserialize_cuda_engine((tmp_path / "model.engine").read_bytes()) is None  # the documented trap


def test_timing_cache_is_per_version_and_gpu_and_a_stale_one_is_replaced(trt, tmp_path):
    path = timing_cache_path(tmp_path, trt.__version__, "9.0")
    assert path.name == f"timing-trt{trt.__version__}-sm90.cache"
    assert timing_cache_path(tmp_path, "10.13.0", "8.9") != timing_cache_path(tmp_path, "11.4.0", "8.9")
    path.write_bytes(b"9.9.9/sm80")  # a cache TensorRT rejects (another version / GPU)
    build_engine(tmp_path / "m.onnx", tmp_path / "model.engine", DYNAMIC, timing_cache=path)
    assert trt.calls == [("set_timing_cache", "9.9.9/sm80"), ("set_timing_cache", f"{trt.__version__}/sm90")]
    assert path.read_bytes() == f"{trt.__version__}/sm90".encode()  # rewritten with the accepted cache
    trt.calls.clear()
    build_engine(tmp_path / "m.onnx", tmp_path / "model.engine", DYNAMIC, timing_cache=path)
    assert trt.calls == [("set_timing_cache", f"{trt.__version__}/sm90")]  # reused as is
