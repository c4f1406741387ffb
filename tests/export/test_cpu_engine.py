"""The fastest CPU engine: OpenVINO IR under the same parity gate, the choice timed and recorded in engine.json."""
import json

import numpy as np
import pytest
import torch

from regenrt.errors import ParityError, RegenrtError
from regenrt.export.parity import Tolerances, compare
from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model
from regenrt.runtime import Engine
from regenrt.runtime.backends.openvino import OpenVinoRunner, cpu_precisions

OV_PRECISION = cpu_precisions()[0]  # bf16 where this CPU has it, else fp32


@pytest.fixture(scope="module")
def tiny_unet(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "unet.pth"
    torch.save(create_model("unet_128", ngf=8).state_dict(), path)
    return path


def test_openvino_verified_and_fastest_recorded(deeplab_fixture, deeplab_engine_dir):
    report = json.loads((deeplab_engine_dir / "parity.json").read_text())
    ov_rows = [r for r in report["rows"] if r["artefact"] == "model.openvino.xml"]
    assert ov_rows and all(r["passed"] and r["precision"] == OV_PRECISION for r in ov_rows)
    record = json.loads((deeplab_engine_dir / "engine.json").read_text())
    # every verified CPU-engine candidate timed (not the FP16 graph, the GPU engines' source, nor a rewrite's FP32
    # proof such as model.resize-matmul.onnx)
    from regenrt.export.candidates import list_candidates

    not_engines = {c.artefact for c in list_candidates() if not c.cpu_engine}
    assert {"model.fp16.onnx", "model.resize-matmul.onnx"} <= not_engines
    timed = {a for a, c in record["candidates"].items() if c["passed"] and not c["claim_broken"]} - not_engines
    assert set(record["latency_ms"]) == set(record["throughput_items_per_s"]) == timed
    assert {"model.onnx", "model.openvino.xml"} <= timed
    items_s = record["throughput_items_per_s"]  # (recorded rounded: two candidates can tie at 0.01 items/s)
    assert items_s[record["engine"]] == max(items_s.values())
    assert record == report["engine"]

    fastest = record["latency_engine"]  # the batch-1 choice, by the latency measured beside the throughput
    assert record["latency_ms"][fastest["engine"]] == min(record["latency_ms"].values())
    assert fastest["precision"] == record["candidates"][fastest["engine"]]["precision"]

    engine = Engine.load(deeplab_engine_dir, mode="throughput")  # the directory: engine.json decides (run-infer's)
    assert engine.path.name == record["engine"] and engine.backend.name == record["backend"]
    one = Engine.load(deeplab_engine_dir)  # one request at a time: the batch-1 engine
    assert one.path.name == fastest["engine"] and one.backend.name == fastest["backend"]
    _, ref = deeplab_fixture
    ov = Engine.load(deeplab_engine_dir / "model.openvino.xml")
    assert ov.backend.name == "openvino" and ov.task == "phase-recovery" and ov.metadata["precision"] == OV_PRECISION
    got = ov.infer(ref["x"].astype(np.float32))
    stats = compare(ref["y"], got)  # against the authors' outputs
    assert stats["rel_max"] <= 1e-4 if OV_PRECISION == "fp32" else stats["psnr_db"] >= 40


@pytest.mark.full
def test_cpu_engine_choice_can_be_forced(tiny_unet, tmp_path):
    result = export_checkpoint(tiny_unet, tmp_path / "ort", cpu_engine="onnxruntime", parity_samples=1)
    assert not list((tmp_path / "ort").glob("*.xml")) and result.engine["backend"] == "onnxruntime"
    assert result.engine["engine"] in ("model.onnx", "model.subpixel.onnx")  # FP32 graphs; FP16 is not a CPU engine
    result = export_checkpoint(tiny_unet, tmp_path / "ov", cpu_engine="openvino", parity_samples=1)
    assert result.engine["backend"] == "openvino" and result.engine["engine"].startswith("model.openvino.")
    assert (tmp_path / "ov" / result.engine["engine"]).with_suffix(".bin").is_file()
    assert json.loads((tmp_path / "ov" / "engine.json").read_text())["engine"] == result.engine["engine"]


def test_drifting_openvino_artefact_is_refused_and_stale_files_removed(tiny_unet, tmp_path):
    for name in ("model.openvino.xml", "model.openvino.bin", "engine.json"):
        (tmp_path / name).write_text("an older export")
    tight = Tolerances(fp32_rel_max=1e-15, min_psnr_db=300.0)  # nothing but bit-exact passes
    with pytest.raises(ParityError) as err:
        export_checkpoint(tiny_unet, tmp_path, tolerances=tight, parity_samples=1)
    assert "model.openvino.xml" in err.value.report["rejected"]
    assert not (tmp_path / "model.openvino.xml").exists() and not (tmp_path / "model.openvino.bin").exists()
    assert not (tmp_path / "engine.json").exists()  # nothing verified: no engine recorded


@pytest.mark.full
def test_compiled_model_cache_is_reused(tiny_unet, tmp_path, monkeypatch):
    monkeypatch.setenv("REGENRT_CACHE_DIR", str(tmp_path / "cache"))
    export_checkpoint(tiny_unet, tmp_path / "e", cpu_engine="openvino", parity_samples=1)
    blobs = sorted((tmp_path / "cache" / "openvino").iterdir())
    assert blobs  # the export's compile left a cached blob
    stamps = {p: p.stat().st_mtime_ns for p in blobs}
    x = np.zeros((1, 3, 128, 128), np.float32)
    xml = next(tmp_path.glob("e/model.openvino*.xml"))  # (model.openvino.xml is withheld where its claim breaks)
    OpenVinoRunner(xml).infer(x)
    assert sorted((tmp_path / "cache" / "openvino").iterdir()) == blobs  # loaded, not compiled again
    assert {p: p.stat().st_mtime_ns for p in blobs} == stamps


def test_engine_directory_and_ir_errors_say_what_to_do(tiny_unet, tmp_path):
    with pytest.raises(RegenrtError, match="directory without engine.json; pass an artefact file"):
        Engine.load(tmp_path)
    (tmp_path / "engine.json").write_text("{not json")
    with pytest.raises(RegenrtError, match="damaged: not valid JSON .*line 1 column 2"):
        Engine.load(tmp_path)
    (tmp_path / "engine.json").write_text('{"precision": "fp32"}')  # the entry naming the engine is missing
    with pytest.raises(RegenrtError, match="it has no 'engine' entry; re-export with export-engine"):
        Engine.load(tmp_path)
    (tmp_path / "engine.json").write_text('["model.onnx"]')
    with pytest.raises(RegenrtError, match="a JSON list, not an object"):
        Engine.load(tmp_path)
    export_checkpoint(tiny_unet, tmp_path / "e", cpu_engine="openvino", parity_samples=1, precision="fp32")
    (tmp_path / "e" / "model.openvino.bin").unlink()
    with pytest.raises(RegenrtError, match="no weights file model.openvino.bin"):
        Engine.load(tmp_path / "e" / "model.openvino.xml")


@pytest.mark.parametrize("gpu", [False, True])
def test_each_mode_runs_the_engine_recorded_for_it(tmp_path, gpu):
    """run-infer and serving (throughput) run engine.json's engine; one request at a time (latency) its batch-1
    engine, which can differ (e.g. OpenVINO FP32 beats ONNX Runtime at batch 1 on an AVX2-only CPU while ONNX Runtime
    has the higher throughput at batch 8); with a GPU engine the same holds for the CPU record beside it."""
    from regenrt.runtime.engine import resolve_engine_path

    cpu = {"engine": "model.onnx", "latency_engine": {"engine": "model.openvino.xml"}}
    record = {"engine": "model.torch.pt", "device": "cuda", "cpu_engine": cpu} if gpu else cpu
    (tmp_path / "engine.json").write_text(json.dumps(record))
    assert resolve_engine_path(tmp_path, "cpu", "throughput").name == "model.onnx"
    assert resolve_engine_path(tmp_path, "cpu", "latency").name == "model.openvino.xml"
    cpu.pop("latency_engine")  # an export from before engine.json recorded one: its engine, in both modes
    (tmp_path / "engine.json").write_text(json.dumps(record))
    assert resolve_engine_path(tmp_path, "cpu", "latency").name == "model.onnx"


def test_candidates_are_timed_round_robin():
    """Latency is timed one call of each candidate per round (after a warm-up each), so a slow spell of a shared
    machine lands on every candidate alike; each candidate's median is its own calls'."""
    from regenrt.export.selection import interleaved_ms

    calls = []

    def runner(key, seconds):
        def run(x):
            calls.append(key)
            import time

            time.sleep(seconds)
        return run

    timed = interleaved_ms({"a": runner("a", 0.002), "b": runner("b", 0.006)}, np.zeros(1), rounds=3)
    assert calls == ["a", "b"] * 4  # warm-ups, then three rounds
    assert 1.5 <= timed["a"] < timed["b"] and timed["b"] >= 5.5
