"""export_checkpoint on the authors' checkpoints: ONNX FP32 reproduces their outputs, FP16 passes the gate.

The quick tests read the session's exports of the two checkpoints (tests/conftest.py: no INT8); the parity report
of a whole export, INT8 candidates included, is a test of the full set."""
import json
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from regenrt.export.metadata import read_metadata
from regenrt.export.parity import compare
from regenrt.export.pipeline import export_checkpoint
from regenrt.runtime.backends.onnxruntime import OnnxRuntimeRunner


def _published(engine_dir):
    """An export directory as ``export_checkpoint``'s result: ``artefacts`` (kind -> path) from parity.json."""
    report = json.loads((engine_dir / "parity.json").read_text())
    return SimpleNamespace(artefacts={kind: engine_dir / name for kind, name in report["published"].items()},
                           output_dir=engine_dir)


@pytest.fixture(scope="module")
def deeplab_export(deeplab_fixture, deeplab_engine_dir):
    path, ref = deeplab_fixture
    return _published(deeplab_engine_dir), ref, path


@pytest.fixture(scope="module")
def pix2pix_export(pix2pix_fixture, pix2pix_engine_dir):
    path, ref = pix2pix_fixture
    return _published(pix2pix_engine_dir), ref, path


@pytest.fixture(scope="module")
def deeplab_whole_export(deeplab_fixture, tmp_path_factory):
    """Every default, INT8 candidates included."""
    path, ref = deeplab_fixture
    return export_checkpoint(path, tmp_path_factory.mktemp("deeplab")), ref, path


def _ort(path, x):
    return OnnxRuntimeRunner(path).infer({"input": x})["output"]


def test_deeplab_onnx_fp32_matches_smp_reference(deeplab_export):
    result, ref, _ = deeplab_export
    assert np.abs(_ort(result.artefacts["fp32"], ref["x"]) - ref["y"]).max() <= 1e-4
    assert np.abs(_ort(result.artefacts["fp32"], ref["x_nonsquare"]) - ref["y_nonsquare"]).max() <= 1e-4


def test_deeplab_fp16_within_gate_of_smp_reference(deeplab_export):
    result, ref, _ = deeplab_export
    for x, y in ((ref["x"], ref["y"]), (ref["x_nonsquare"], ref["y_nonsquare"])):
        metrics = compare(y, _ort(result.artefacts["fp16"], x))
        assert metrics["psnr_db"] >= 40 and metrics["nonfinite"] == 0


def test_pix2pix_onnx_matches_reference(pix2pix_export):
    result, ref, _ = pix2pix_export
    assert np.abs(_ort(result.artefacts["fp32"], ref["x"]) - ref["y"]).max() <= 1e-4
    assert compare(ref["y"], _ort(result.artefacts["fp16"], ref["x"]))["psnr_db"] >= 40


def test_graphs_are_checked_typed_and_dynamic(deeplab_export, pix2pix_export):
    for result, dynamic_hw in ((deeplab_export[0], True), (pix2pix_export[0], False)):
        for precision, path in result.artefacts.items():
            if path.suffix != ".onnx":
                continue  # the OpenVINO IR: tests/export/test_cpu_engine.py
            model = onnx.load(str(path))
            onnx.checker.check_model(model, full_check=True)
            assert model.opset_import[0].version >= 17
            (inp,), (out,) = model.graph.input, model.graph.output
            assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
            dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
            assert dims[0] == "batch"
            assert (dims[2:] == ["height", "width"]) == dynamic_hw
            if precision == "fp16":
                inits = {i.data_type for i in model.graph.initializer}
                assert onnx.TensorProto.FLOAT16 in inits  # the weights really are half precision


def test_metadata_describes_the_artefact(deeplab_export):
    result, _, path = deeplab_export
    import hashlib

    meta = read_metadata(result.artefacts["fp16"])
    assert meta["task"] == "phase-recovery" and meta["arch"] == "deeplabv3plus"
    assert meta["config"]["encoder"] == "resnet18" and meta["mode"] == "eval"
    assert meta["precision"] == "fp16" and meta["fp16"]["fp16_nodes"] > 0
    assert meta["source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["input"]["range"] == [-1.0, 1.0] and "phase / pi" in meta["input"]["normalization"]
    assert meta["input"]["spatial_multiple"] == 16 and meta["regenrt_version"]
    assert "output_stride" in meta["assumed"]
    assert read_metadata(result.artefacts["fp32"])["precision"] == "fp32"


@pytest.mark.full
def test_report_saved_with_every_artefact_and_case(deeplab_whole_export):
    result, _, _ = deeplab_whole_export
    report = json.loads((result.output_dir / "parity.json").read_text())
    required = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "openvino": "model.openvino.xml"}
    assert report["passed"] and report["published"].items() >= required.items()
    # published: exactly the candidates that passed (an INT8 candidate may be refused; DeepLabV3+ has nothing to
    # rewrite, so no subpixel variant)
    assert set(report["published"].values()) == {c["artefact"] for c in report["candidates"].values() if c["passed"]}
    assert not any("subpixel" in name for name in report["published"].values())
    cases = {(r["artefact"], r["case"].split()[0]) for r in report["rows"]}
    gated = {r["artefact"] for r in report["rows"]}
    int8 = {r["artefact"] for r in report["rows"] if r["precision"] == "int8"}
    assert cases == {(a, c) for a in gated for c in ("synthetic", "batch-1", "non-square")} | {
        (a, "content") for a in int8}  # INT8 candidates: 16 more pictures
    assert not list(result.output_dir.glob(".regenrt-export-*"))  # no temporary leftovers
