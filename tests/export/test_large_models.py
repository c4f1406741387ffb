"""Models over protobuf's 2 GiB: every graph export writes is saved, checked (by path) and published with its
external data. Shown here with the size limit lowered to 64 KiB, so a small U-Net takes the same path a > 2 GiB
model takes; ``benchmarks/test_large_export.py`` exports a real 2.2 GiB model."""
import numpy as np
import onnx
import pytest
import torch

import regenrt.export.onnx_io as onnx_io
from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model
from regenrt.runtime import Engine
from regenrt.runtime.engine import artefact_files


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 64 * 1024)


def _checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("unet_128", ngf=8).eval()  # ~0.9 MB of weights
    path = tmp_path / "g.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_export_past_the_limit_writes_checks_and_publishes_external_data(small_limit, tmp_path):
    model, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "engine"
    result = export_checkpoint(ckpt, out, parity_samples=1, int8="off")  # FP32 + FP16 graphs (+ OpenVINO)
    for name in ("model.onnx", "model.fp16.onnx"):
        graph = out / name
        assert result.report["published"]  # the gate passed on every artefact (ParityError otherwise)
        data = out / (name + ".data")
        assert data.is_file() and graph.stat().st_size < 64 * 1024 < data.stat().st_size
        assert artefact_files(graph) == [graph, data]  # referenced by a relative location, inside the directory
        proto = onnx.load(str(graph), load_external_data=False)
        assert max(len(t.raw_data) for t in proto.graph.initializer) <= 1024  # only tiny tensors stay inline
        assert sum(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer) > 10
        onnx.checker.check_model(str(graph), full_check=True)  # a valid model, read by path as onnx reads large ones
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = Engine.load(out / "model.onnx", device="cpu").infer(x)
    assert np.abs(got - ref).max() <= 1e-4 * (ref.max() - ref.min())
    assert not list(tmp_path.glob("**/regenrt-check-*"))  # the checker's temporary copies are gone


def test_reexport_under_the_limit_removes_the_earlier_external_data(monkeypatch, tmp_path):
    _, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "engine"
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 64 * 1024)
    export_checkpoint(ckpt, out, parity_samples=1, precision="fp32", cpu_engine="onnxruntime", int8="off")
    assert (out / "model.onnx.data").is_file()
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 2**31 - 2**26)
    export_checkpoint(ckpt, out, parity_samples=1, precision="fp32", cpu_engine="onnxruntime", int8="off")
    assert not (out / "model.onnx.data").exists() and artefact_files(out / "model.onnx") == [out / "model.onnx"]


def test_save_and_check_keep_the_in_memory_model_whole(small_limit, tmp_path):
    model, _ = _checkpoint(tmp_path)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 128, 128),), str(path), dynamo=False, opset_version=18)
    graph = onnx.load(str(path))
    assert onnx_io.is_large(graph)
    checked = onnx_io.check_model(graph, "test graph")  # through a temporary external-data copy, by path
    weights = {t.name: t.raw_data for t in graph.graph.initializer}
    assert {t.name: t.raw_data for t in checked.graph.initializer} == weights  # weights read back into memory
    assert any(v.type.tensor_type.shape.dim for v in checked.graph.value_info)  # shape-inferred
    onnx_io.save_onnx(checked, tmp_path / "a.onnx")
    assert {t.name: t.raw_data for t in checked.graph.initializer} == weights  # saving did not strip them
    onnx_io.save_onnx(checked, tmp_path / "a.onnx")  # saving twice does not append to the data file
    assert (tmp_path / "a.onnx.data").stat().st_size <= sum(map(len, weights.values())) + 4096 * len(weights)


def test_triton_repository_carries_the_external_data(small_limit, tmp_path):
    from regenrt.integrations.triton import write_repository

    _, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "engine"
    export_checkpoint(ckpt, out, parity_samples=1, precision="fp32", cpu_engine="onnxruntime", int8="off")
    write_repository(out / "model.onnx", tmp_path / "repo", name="g")
    served = tmp_path / "repo" / "g_engine" / "1" / "model.onnx"  # the ensemble's engine model
    assert (served.parent / "model.onnx.data").is_file()
    import onnxruntime as ort

    x = np.zeros((1, 3, 128, 128), np.float32)
    got = ort.InferenceSession(str(served), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.array_equal(got, Engine.load(out / "model.onnx", device="cpu").infer(x))


def test_shape_inference_and_sessions_past_the_limit(small_limit, tmp_path):
    """Shape inference sets the weights aside (and puts them back); ONNX Runtime gets a path, not bytes."""
    import onnxruntime as ort

    model, _ = _checkpoint(tmp_path)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 128, 128),), str(path), dynamo=False, opset_version=18)
    graph = onnx.load(str(path))
    weights = {t.name: t.raw_data for t in graph.graph.initializer}
    expected = onnx.shape_inference.infer_shapes(graph)  # onnx itself, on a model it can still serialize
    inferred = onnx_io.infer_shapes(graph)
    assert [v.SerializeToString() for v in inferred.graph.value_info] == \
        [v.SerializeToString() for v in expected.graph.value_info]
    assert {t.name: t.raw_data for t in graph.graph.initializer} == weights
    assert all(t.data_location == onnx.TensorProto.DEFAULT and not t.external_data for t in graph.graph.initializer)
    x = np.ones((1, 3, 128, 128), np.float32)
    with onnx_io.session_source(graph) as source:
        assert isinstance(source, str)  # a path: past the limit the bytes could not be made
        session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        got = session.run(None, {graph.graph.input[0].name: x})[0]
    with torch.no_grad():
        assert np.abs(got - model(torch.from_numpy(x)).numpy()).max() < 1e-4
