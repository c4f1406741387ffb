"""The parts of the TensorRT layer that run without TensorRT: profiles, the FP16 proof, the engine fingerprint.

Tests that need TensorRT itself are marked ``trt`` and skip here.
"""
import importlib.util
import json

import pytest

from regenrt.errors import ExportError, MissingDependencyError, RegenrtError
from regenrt.export.tensorrt import (Profile, check_fingerprint, layer_precisions, optimization_profile,
                                     require_fp16, sidecar_path, write_fingerprint)
from regenrt.runtime import Engine

ENV = {"tensorrt": "10.13.0", "cuda": "12.8", "driver": "570.1", "gpu": "NVIDIA H100", "compute_capability": "9.0"}


def test_profiles_batch_only_for_fixed_size_models():
    assert optimization_profile((4, 3, 256, 256), dynamic_hw=False, multiple=256, max_batch=16) == \
        Profile((1, 3, 256, 256), (4, 3, 256, 256), (16, 3, 256, 256))
    p = optimization_profile((2, 1, 256, 384), dynamic_hw=True, multiple=16, max_batch=8)
    assert p == Profile((1, 1, 16, 16), (2, 1, 256, 384), (8, 1, 512, 768))
    with pytest.raises(RegenrtError, match="exceeds the profile's maximum batch"):
        optimization_profile((32, 1, 64, 64), dynamic_hw=True, multiple=16, max_batch=16)
    with pytest.raises(RegenrtError, match="multiples of 16"):
        optimization_profile((1, 1, 64, 64), dynamic_hw=True, multiple=16, max_hw=(100, 100))


def _layers(*formats):
    return json.dumps({"Layers": [{"Name": f"l{i}", "Outputs": [{"Name": "t", "Format/Datatype": f}]}
                                  for i, f in enumerate(formats)]})


def test_fp16_proof_from_layer_information():
    counts = layer_precisions(_layers("Row major linear FP16 format (kLINEAR)", "Channel major FP16 format where "
                                      "channel % 8 == 0 (kHWC8)", "Row major linear FP32", "Int32"))
    assert counts == {"fp16": 2, "fp32": 1, "other": 1}
    require_fp16(counts)
    with pytest.raises(ExportError, match="silently fell back to FP32"):
        require_fp16(layer_precisions(_layers("Row major linear FP32", "Row major linear FP32")))
    with pytest.raises(ExportError, match="DETAILED"):
        layer_precisions(json.dumps({"Layers": ["conv1", "relu1"]}))  # LAYER_NAMES_ONLY verbosity


@pytest.fixture()
def fingerprinted(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized engine bytes")
    onnx_path = tmp_path / "model.fp16.onnx"
    onnx_path.write_bytes(b"onnx")
    meta = {"task": "inpainting", "arch": "unet_256", "mode": "eval", "input": {"channels": 3, "shape": ["batch", 3, 256, 256]}}
    write_fingerprint(engine, metadata=meta, onnx_path=onnx_path, parity={"passed": True}, environment=ENV,
                      profile=Profile((1, 3, 256, 256), (1, 3, 256, 256), (8, 3, 256, 256)),
                      precisions={"fp16": 10, "fp32": 2, "other": 0},
                      rebuild_command="export-engine ckpt.pt --engine tensorrt", compatibility={})
    return engine


def test_fingerprint_round_trip_and_machine_checks(fingerprinted):
    fp = check_fingerprint(fingerprinted, ENV)
    assert fp["metadata"]["precision"] == "fp16" and fp["verified"] and fp["layer_precisions"]["fp16"] == 10
    with pytest.raises(RegenrtError, match=r"TensorRT 10.13.0 built it, this machine has 11.0.*Rebuild it here: "
                                           r"export-engine ckpt.pt --engine tensorrt"):
        check_fingerprint(fingerprinted, {**ENV, "tensorrt": "11.0.0"})
    with pytest.raises(RegenrtError, match="compute capability 9.0 GPU"):
        check_fingerprint(fingerprinted, {**ENV, "compute_capability": "8.0", "gpu": "A100"})


def test_tampered_unverified_and_unfingerprinted_engines_are_refused(fingerprinted):
    fingerprinted.write_bytes(b"something else")
    with pytest.raises(RegenrtError, match="sha256 differs: replaced or tampered with"):
        check_fingerprint(fingerprinted, ENV)
    with pytest.raises(RegenrtError, match="sha256 differs"):
        Engine.load(fingerprinted)  # refused before TensorRT is even looked for
    sidecar_path(fingerprinted).unlink()
    with pytest.raises(RegenrtError, match="has no fingerprint"):
        check_fingerprint(fingerprinted, ENV)
    assert check_fingerprint(fingerprinted, ENV, allow_unverified=True) == {}


def test_failed_gate_engine_refused(fingerprinted):
    sidecar = sidecar_path(fingerprinted)
    fp = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**fp, "verified": False}))
    with pytest.raises(RegenrtError, match="did not pass the parity gate"):
        check_fingerprint(fingerprinted, ENV)
    sidecar.write_text("{")
    with pytest.raises(RegenrtError, match="damaged: not valid JSON"):
        check_fingerprint(fingerprinted, ENV)
    for key in ("rebuild", "engine_sha256"):  # each missing entry is named
        sidecar.write_text(json.dumps({k: v for k, v in fp.items() if k != key}))
        with pytest.raises(RegenrtError, match=f"it has no '{key}' entry; rebuild the engine"):
            check_fingerprint(fingerprinted, ENV)
    sidecar.write_text(json.dumps({**fp, "engine_sha256": None}))
    with pytest.raises(RegenrtError, match="has a NoneType as its 'engine_sha256' entry"):
        check_fingerprint(fingerprinted, ENV)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_verified_engine_without_tensorrt_is_a_clear_error(fingerprinted):
    with pytest.raises(MissingDependencyError, match=r"needs the tensorrt backend.*regenrt\[tensorrt\]"):
        Engine.load(fingerprinted)
