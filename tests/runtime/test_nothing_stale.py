"""Nothing wrong written or kept: a re-run with other options leaves no outputs of the earlier options; an export
directory keeps no artefact of an earlier export (and a leftover is refused at load); an OpenVINO engine is
identified by its .xml and .bin; an output directory inside the input directory is refused."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from regenrt.errors import RegenrtError
from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model
from regenrt.runtime import Engine, RunOptions, run_directory
from regenrt.runtime.manifest import MANIFEST_NAME


def _phase_inputs(directory, n):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        np.save(directory / f"p{i}.npy", rng.uniform(-np.pi, np.pi, (64, 64)))


def test_rerun_with_other_options_removes_the_earlier_outputs(deeplab_engine_dir, tmp_path):
    _phase_inputs(tmp_path / "in", 3)
    engine = Engine.load(deeplab_engine_dir / "model.onnx", device="cpu")
    run_directory(engine, tmp_path / "in", tmp_path / "o", RunOptions(save_npy=True))
    assert len(list((tmp_path / "o").glob("*.npy"))) == 3
    summary = run_directory(engine, tmp_path / "in", tmp_path / "o", RunOptions(save_npy=False))
    assert summary.done == 3
    assert not list((tmp_path / "o").glob("*.npy"))  # the manifest lists PNGs only now, and so does the directory
    listed = {name for line in (tmp_path / "o" / MANIFEST_NAME).read_text().splitlines()
              for name in json.loads(line)["outputs"]}
    assert {p.name for p in (tmp_path / "o").glob("p*")} <= listed


def test_output_inside_input_is_refused(deeplab_engine_dir, tmp_path):
    _phase_inputs(tmp_path / "in", 1)
    engine = Engine.load(deeplab_engine_dir / "model.onnx", device="cpu")
    for out in (tmp_path / "in" / "out", tmp_path / "in"):
        with pytest.raises(RegenrtError, match="inside the input directory"):
            run_directory(engine, tmp_path / "in", out)
    assert not (tmp_path / "in" / "out").exists()


def test_swapped_openvino_weights_are_a_new_engine(deeplab_engine_dir, tmp_path):
    if not (deeplab_engine_dir / "model.openvino.xml").exists():
        pytest.skip("no OpenVINO artefact in this export (OpenVINO missing or its gate refused it on this CPU)")
    copy = tmp_path / "e"
    shutil.copytree(deeplab_engine_dir, copy)
    _phase_inputs(tmp_path / "in", 2)
    first = run_directory(Engine.load(copy / "model.openvino.xml", device="cpu"), tmp_path / "in", tmp_path / "o")
    assert first.done == 2
    weights = bytearray((copy / "model.openvino.bin").read_bytes())
    weights[-64:] = bytes(64)  # other weights, same .xml
    (copy / "model.openvino.bin").write_bytes(bytes(weights))
    again = run_directory(Engine.load(copy / "model.openvino.xml", device="cpu"), tmp_path / "in", tmp_path / "o")
    assert (again.done, again.skipped) == (2, 0)


def test_reexport_leaves_no_artefact_of_the_earlier_export(tmp_path):
    torch.manual_seed(0)
    first = tmp_path / "a.pt"
    torch.save(create_model("unet_128", ngf=4).state_dict(), first)
    torch.manual_seed(1)
    second = tmp_path / "b.pt"
    torch.save(create_model("unet_128", ngf=4).state_dict(), second)
    out = tmp_path / "engine"
    export_checkpoint(first, out, parity_samples=1, int8="off")  # FP32 + FP16 (+ OpenVINO where installed)
    assert (out / "model.fp16.onnx").exists()
    kept = out / "kept.fp16.onnx"
    shutil.copy(out / "model.fp16.onnx", kept)  # a leftover under another name, as a user might keep one
    result = export_checkpoint(second, out, parity_samples=1, precision="fp32", cpu_engine="onnxruntime", int8="off")
    published = set(result.report["published"].values())
    artefacts = {p.name for p in out.iterdir() if p.name.startswith("model.")}
    assert artefacts == published | {Path(n).with_suffix(".bin").name for n in published if n.endswith(".xml")}
    assert "model.fp16.onnx" not in artefacts
    with pytest.raises(RegenrtError, match="leftover of an earlier export"):
        Engine.load(kept, device="cpu")



