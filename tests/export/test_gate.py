"""The parity gate refuses drifting artefacts, publishes atomically and survives interruption."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from regenrt.errors import InputError, ParityError
from regenrt.export.parity import Tolerances, compare, judge
from regenrt.export.pipeline import export_checkpoint, parse_input_shape
from regenrt.models import create_model


@pytest.fixture(scope="module")
def small_unet(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "unet.pth"
    torch.save(create_model("unet_128", ngf=8, norm="batch").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def small_deeplab(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "seg.pt"
    torch.save(create_model("deeplabv3plus_r18", in_channels=3, classes=4).state_dict(), path)
    return path


@pytest.mark.full
def test_breach_rejects_only_the_drifting_artefacts_and_removes_stale_copy(small_unet, tmp_path):
    """A 200 dB gate: every artefact that does not compute in FP32 breaches it (the FP16 graph always; the OpenVINO
    candidates too where they run bf16 or int8 -- which depends on the CPU, so the expectation is read from what
    each artefact claims), every FP32 artefact passes. Holds on AVX2-only and BF16 CPUs alike."""
    stale = tmp_path / "model.fp16.onnx"
    stale.write_bytes(b"an older export")
    with pytest.raises(ParityError, match=r"model.fp16.onnx output 'output' on .* breaks PSNR >= 200") as err:
        export_checkpoint(small_unet, tmp_path, tolerances=Tolerances(min_psnr_db=200.0), parity_samples=2)
    assert not stale.exists()  # nothing under the final name of the rejected artefact
    report = json.loads((tmp_path / "parity.json").read_text())
    claims = {r["artefact"]: r["precision"] for r in report["rows"]}
    assert report["passed"] is False
    assert sorted(report["rejected"]) == sorted(a for a, p in claims.items() if p != "fp32")
    assert "model.fp16.onnx" in report["rejected"]
    for artefact, precision in claims.items():  # published exactly when it passed
        assert (tmp_path / artefact).exists() == (precision == "fp32")
    assert report["worst"]["passed"] is False and err.value.report["worst"]["passed"] is False
    assert not list(tmp_path.glob(".regenrt-export-*"))


def test_interrupt_leaves_nothing_under_final_names(small_unet, tmp_path):
    def interrupt_at_parity(line):
        if "parity gate" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(small_unet, tmp_path, log=interrupt_at_parity)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_segmentation_gate_uses_argmax_and_user_samples(small_deeplab, tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(samples / "street.png")
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(samples / "calib.png")
    np.save(samples / "ready.npy", rng.standard_normal((3, 64, 64)).astype(np.float32))
    calibrated = []
    from regenrt.export import pipeline

    original = pipeline._calibration
    pipeline._calibration = lambda p, cases: (calibrated.extend(n for n, _ in cases), original(p, cases))[1]
    try:
        result = export_checkpoint(small_deeplab, tmp_path / "out", samples=samples,
                                   input_shape="input:1x3x128x128", parity_samples=2)
    finally:
        pipeline._calibration = original
    rows = result.report["rows"]
    # sorted: calib.png (judged), ready.npy (calibrates), street.png (judged): the gate never judges what calibrated
    assert {r["case"] for r in rows} >= {"sample street.png", "sample calib.png"}
    assert not any("ready.npy" in r["case"] for r in rows) and "calibration ready.npy" in calibrated
    assert all("argmax" in r["criterion"] for r in rows if r["precision"] == "fp16")
    assert result.metadata["task"] == "segmentation"


def test_bad_sample_is_named(small_deeplab, tmp_path):
    (tmp_path / "s").mkdir()
    np.save(tmp_path / "s" / "gray.npy", np.zeros((1, 64, 64), np.float32))
    with pytest.raises(InputError, match="sample gray.npy: the model takes 3 input channel"):
        export_checkpoint(small_deeplab, tmp_path / "out", samples=tmp_path / "s")
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_input_shape_validation(small_deeplab, tmp_path):
    with pytest.raises(InputError, match="multiples of 16, got 100x128; the nearest valid size is 96x128"):
        export_checkpoint(small_deeplab, tmp_path, input_shape="1x3x100x128")
    with pytest.raises(InputError, match="expected NxCxHxW"):
        parse_input_shape("input:1x3x256")
    assert parse_input_shape("input:2x3x64x32") == (2, 3, 64, 32)


def test_judge_rules():
    ref = np.linspace(-1, 1, 2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    assert judge(compare(ref, ref), "fp32", "image", Tolerances())[0]
    noisy = ref + np.float32(1e-3)
    assert not judge(compare(ref, noisy), "fp32", "image", Tolerances())[0]
    assert judge(compare(ref, noisy), "fp16", "image", Tolerances())[0]  # 1e-3 on a range of 2 is 66 dB
    bad = ref.copy()
    bad[0, 0, 0, 0] = np.nan
    ok, criterion, _ = judge(compare(ref, bad), "fp16", "image", Tolerances())
    assert not ok and "NaN/Inf" in criterion


def test_int8_must_clear_the_gate_by_its_guard_band():
    """INT8 error varies with picture content, so INT8 engines clear the gate by a guard band (0.25 dB, 0.1 % of
    labels); float engines are judged at the gate itself."""
    from regenrt.export.parity import Tolerances, judge

    row = {"nonfinite": 0, "psnr_db": 40.1, "argmax_agreement": 0.9955, "rel_max": 1.0}
    tol = Tolerances()
    assert judge(row, "bf16", "image", tol)[0] and not judge(row, "int8", "image", tol)[0]
    assert "40.25 dB (INT8: 40 + 0.25 dB guard)" in judge(row, "int8", "image", tol)[1]
    assert judge(row, "bf16", "segmentation", tol)[0] and not judge(row, "int8", "segmentation", tol)[0]
    assert judge({**row, "psnr_db": 40.3}, "int8", "image", tol)[0]
