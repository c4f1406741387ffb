"""Honest precision: every CPU artefact runs in the precision its metadata claims, and the proof is read from the
engine's own execution graph. These tests hold on AVX2-only and on BF16 CPUs alike."""
import json

import numpy as np
import onnx
import pytest
import torch

from regenrt.export.metadata import embed_metadata, read_metadata
from regenrt.export.onnx_export import export_onnx
from regenrt.runtime.backends.openvino import OpenVinoRunner, convert, cpu_precisions
from regenrt.runtime.proof import check_claim, summarize

pytest.importorskip("openvino")
NATIVE = cpu_precisions()[0]  # bf16 on a CPU with BF16, else fp32


@pytest.fixture(scope="module")
def onnx_with_metadata(tmp_path_factory):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 2, 3, padding=1))
    root = tmp_path_factory.mktemp("proof")
    graph = export_onnx(net.eval(), root / "m.onnx", example=torch.zeros(1, 3, 32, 32), dynamic_hw=True)
    embed_metadata(graph, {"precision": "fp32", "task": "segmentation", "input": {"example_shape": [1, 3, 32, 32]}})
    onnx.save(graph, str(root / "m.onnx"))
    return root / "m.onnx"


def test_ir_metadata_is_regenrts_own_entry_not_the_converters_copy(onnx_with_metadata, tmp_path):
    """The ONNX frontend nests the source graph's metadata (precision fp32) under rt_info/framework; the reader
    returned that copy, so a bf16 IR was compiled in f32. This failed on every machine before the fix."""
    xml = convert(onnx_with_metadata, tmp_path / "m.xml", {"precision": "bf16", "task": "segmentation"})
    text = xml.read_text()
    assert text.count('&quot;precision&quot;: &quot;fp32&quot;') == 1  # the converter's nested copy is really there
    assert read_metadata(xml)["precision"] == "bf16"  # one reader for every kind (the backend registry)
    assert read_metadata(onnx_with_metadata)["precision"] == "fp32"


def test_openvino_proof_matches_claim_on_this_cpu(onnx_with_metadata, tmp_path):
    xml = convert(onnx_with_metadata, tmp_path / "m.xml",
                  {"precision": NATIVE, "task": "segmentation", "input": {"example_shape": [1, 3, 32, 32]}})
    runner = OpenVinoRunner(xml, cache=False)
    assert runner.precision == NATIVE
    proof = runner.proof()
    assert proof["heavy_layers"] == 2 and proof["macs_per_item"] == 32 * 32 * (16 * 27 + 2 * 144)
    assert proof["executes"] == NATIVE  # AVX2-only: f32 claimed and executed; BF16 CPU: bf16
    assert check_claim(NATIVE, proof) is None
    if NATIVE == "fp32":
        with pytest.raises(Exception, match="BF16 inference, which this CPU does not have"):
            OpenVinoRunner(xml, precision="bf16", cache=False)
    else:  # the same IR compiled in f32 executes f32, and a bf16 claim would be caught
        f32 = OpenVinoRunner(xml, precision="fp32", cache=False).proof()
        assert f32["executes"] == "fp32" and check_claim("bf16", f32) is not None


def test_onnxruntime_proof_reads_the_profile(onnx_with_metadata):
    from regenrt.runtime.backends.onnxruntime import OnnxRuntimeRunner

    proof = OnnxRuntimeRunner(onnx_with_metadata).proof(np.zeros((1, 3, 32, 32), np.float32))
    assert proof["executes"] == "fp32" and proof["mac_share"] == {"fp32": 1.0}
    assert proof["macs_per_item"] == 32 * 32 * (16 * 27 + 2 * 144)


def test_claim_checker_says_what_really_runs():
    proof = summarize([("a", "Convolution", "f32", 600), ("b", "Convolution", "bf16", 400)], "test")
    assert proof["executes"] == "fp32" and proof["mac_share"] == {"bf16": 0.4, "fp32": 0.6}
    message = check_claim("bf16", proof)
    assert message and "fp32 60.0%" in message
    assert check_claim("fp32", proof) is not None  # an FP32 claim needs every heavy layer in f32
    assert check_claim("int8", summarize([("a", "Convolution", "u8", 9), ("b", "Convolution", "f32", 1)], "t")) is None


def test_export_records_proof_and_never_chooses_a_broken_claim(deeplab_engine_dir):
    report = json.loads((deeplab_engine_dir / "parity.json").read_text())
    record = json.loads((deeplab_engine_dir / "engine.json").read_text())
    chosen = report["candidates"][next(k for k, v in report["candidates"].items() if v["artefact"] == record["engine"])]
    assert chosen["claim_broken"] is None and chosen["executes"] == record["precision"]
    for entry in report["candidates"].values():
        assert entry["proof"]["heavy_layers"] > 0
        assert entry["executes"] == max(entry["proof"]["mac_share"], key=entry["proof"]["mac_share"].get)
    ov = report["candidates"]["openvino"]
    assert ov["precision"] == NATIVE and ov["executes"] == NATIVE  # DeepLabV3+ has no transposed convolution
    assert record["cpu_flags"] and "throughput_items_per_s" in record and record["run_batch"] >= 1


def test_an_artefact_whose_claim_breaks_is_not_published(tmp_path):
    """A U-Net's float IR on a BF16 CPU claims bf16, but OpenVINO runs its ConvTranspose layers in fp32 (two thirds
    of the MACs of a small U-Net): it passes the gate, yet a file recorded as bf16 that runs mostly fp32 would
    mislead whoever picks it by hand. It is withheld, with the reason in parity.json; the sub-pixel IR (all bf16)
    is published. Where the CPU has no BF16 the claim is fp32 and holds: everything that passed is published."""
    from regenrt.export.pipeline import export_checkpoint
    from regenrt.models import create_model

    torch.manual_seed(0)
    torch.save(create_model("unet_128", ngf=8).state_dict(), tmp_path / "g.pt")
    lines = []
    result = export_checkpoint(tmp_path / "g.pt", tmp_path / "e", cpu_engine="openvino", parity_samples=1, int8="off",
                               log=lines.append)
    report = json.loads((tmp_path / "e" / "parity.json").read_text())
    for key, entry in report["candidates"].items():
        published = (tmp_path / "e" / entry["artefact"]).exists()
        broken = entry.get("claim_broken")
        assert published == (entry["passed"] and not broken), (key, entry)
        if broken:
            assert report["withheld"][entry["artefact"]] == broken
            assert any(entry["artefact"] in line and f"not published: {broken}" in line for line in lines)
    assert set(report["withheld"]) == {e["artefact"] for e in report["candidates"].values() if e.get("claim_broken")}
    assert not set(report["withheld"]) & {p.name for p in result.artefacts.values()}
    if NATIVE == "bf16":
        assert "model.openvino.xml" in report["withheld"] and "fp32" in report["withheld"]["model.openvino.xml"]
        assert (tmp_path / "e" / "model.openvino.subpixel.xml").exists()
    else:
        assert report["withheld"] == {}


def test_shares_never_print_a_present_precision_as_zero():
    from regenrt.runtime.proof import format_shares

    assert format_shares({"fp32": 0.004, "int8": 0.996}) == "int8 100%, fp32 <1%"
    assert format_shares({"fp32": 0.0, "int8": 1.0}) == "int8 100%"
    assert format_shares({"bf16": 0.334, "fp32": 0.666}) == "fp32 67%, bf16 33%"
