"""What export-engine says about itself is true: why each candidate was not built (per candidate, the real reason
on this CPU), an artefact named for BF16 that runs FP32 is withheld, and "worst" is of what was published."""
import json

import numpy as np
import pytest
import torch

from regenrt.export.candidates import native_precision
from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model
from regenrt.runtime.proof import check_name


def test_the_not_built_line_gives_each_candidate_its_own_true_reason(tmp_path):
    torch.manual_seed(0)
    torch.save(create_model("deeplabv3plus_r18", in_channels=3, classes=4).state_dict(), tmp_path / "s.pt")
    lines = []
    export_checkpoint(tmp_path / "s.pt", tmp_path / "e", parity_samples=1, int8="off", input_shape="1x3x64x64",
                      log=lines.append)
    line = next(x for x in lines if "not built:" in x)
    assert "subpixel-convtranspose pass finds nothing to rewrite" in line and "--int8 off" in line
    assert "--cpu-aoti" in line
    bf16 = native_precision() == "bf16"
    assert ("runs no BF16" in line) is not bf16  # said only on a CPU that has none (an AVX2-only one)
    published = json.loads((tmp_path / "e" / "parity.json").read_text())["published"]
    assert ("openvino-resize-matmul" in published) is bf16


def test_an_int8_artefact_named_for_bf16_whose_other_layers_run_fp32_is_named_a_broken_claim():
    proof = {"mac_share": {"int8": 0.91, "fp32": 0.09}, "source": "OpenVINO"}
    assert "they execute as fp32 9% of MACs" in check_name("model.openvino.int8-bf16.xml", proof)
    assert check_name("model.openvino.int8-bf16.xml", {"mac_share": {"int8": 0.95, "bf16": 0.05}}) is None
    assert check_name("model.openvino.int8.xml", proof) is None


@pytest.mark.full
def test_worst_is_of_what_was_published_and_refusals_are_listed_apart(tmp_path):
    """An export whose optional INT8 candidate is refused by a strict gate still succeeds: its "worst" row is a
    published artefact's, the refusal sits in "refused"."""
    pytest.importorskip("nncf")
    from regenrt.export.parity import Tolerances

    torch.manual_seed(0)
    torch.save(create_model("unet_128", ngf=8).state_dict(), tmp_path / "u.pt")
    result = export_checkpoint(tmp_path / "u.pt", tmp_path / "e", parity_samples=1, int8="on",
                               calibration_samples=4, tolerances=Tolerances(int8_guard_db=30.0))  # INT8 refused
    report = result.report
    published = set(report["published"].values())
    assert report["refused"] and all(name not in published for name in report["refused"])
    assert report["worst"]["artefact"] in published


def test_an_optional_candidate_that_cannot_run_is_refused_and_the_export_goes_on(tmp_path, monkeypatch):
    """Found on a Segformer: its INT8 IR raised inside OpenVINO on the gate's non-square case, and the whole export
    failed. An optional candidate that raises is refused, with what it raised; the others are published."""
    from regenrt.export import gate

    real = gate._open

    class Raises:
        proof = None

        def infer(self, x):
            raise RuntimeError("[CPU] Subtract node with name 'fq_output_0': Check 'input_shape[j] == 1' failed")

    monkeypatch.setattr(gate, "_open", lambda kind, path: Raises() if "openvino" in path.name else real(kind, path))
    torch.manual_seed(0)
    torch.save(create_model("unet_128", ngf=8).state_dict(), tmp_path / "u.pt")
    result = export_checkpoint(tmp_path / "u.pt", tmp_path / "e", parity_samples=1, int8="off")
    refused = result.report["refused"]
    assert result.report["passed"] and "model.openvino.xml" in refused
    assert "it raised RuntimeError" in refused["model.openvino.xml"]["criterion"]
    assert "model.onnx" in result.report["published"].values()
    assert "it raised RuntimeError" in (tmp_path / "e" / "report.html").read_text()
