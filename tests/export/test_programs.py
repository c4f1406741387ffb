"""Any network as a torch.export program (.pt2) or an ONNX file: export-engine takes the file with only its task,
builds and gates the candidates against the program's own module (or the given graph on ONNX Runtime) in FP32,
and run-infer runs the result; a program is read without executing pickled code (a canary proves it); what the
engines cannot take is refused with the way forward."""
import json
import zipfile

import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim

from regenrt.errors import InputError, RegenrtError, UnsafeCheckpointError
from regenrt.export.pipeline import export_checkpoint
from regenrt.runtime import Engine, RunOptions, run_directory

from ..runtime.helpers import read_png, save_png


class Net(nn.Module):
    """Any architecture regenrt has never seen: an encoder-decoder with a skip, 4 classes."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.GELU())
        self.mid = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1), nn.SiLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, 2)
        self.head = nn.Conv2d(8 + 3, classes, 1)

    def forward(self, x):
        return self.head(torch.cat([self.up(self.mid(self.down(x))), x], 1))


def _net():
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.down[1].running_mean.uniform_(-0.2, 0.2)
        net.down[1].running_var.uniform_(0.5, 2)
    return net


def _program(path, batch_dynamic=True, extra=None):
    spec = {2: 8 * Dim("h"), 3: 8 * Dim("w")}
    if batch_dynamic:
        spec[0] = Dim("batch")
    program = torch.export.export(_net(), (torch.randn(2, 3, 64, 64),), dynamic_shapes=(spec,))
    torch.export.save(program, path, extra_files=extra)
    return path


def _pictures(folder, n=3, size=(64, 96)):
    rng = np.random.default_rng(0)
    for i in range(n):
        save_png(folder / f"p{i}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))


@pytest.mark.parametrize("kind", ["pt2", "onnx"])
def test_a_program_or_an_onnx_file_exports_with_only_its_task_and_runs(tmp_path, kind):
    net = _net()
    if kind == "pt2":
        model = _program(tmp_path / "net.pt2")
    else:
        model = tmp_path / "net.onnx"
        torch.onnx.export(net, (torch.randn(1, 3, 64, 64),), str(model), dynamo=False, opset_version=17,
                          input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}})
    result = export_checkpoint(model, tmp_path / "engine", task="segmentation", parity_samples=2, int8="off",
                               input_shape="1x3x64x64")
    meta = result.metadata
    assert meta["task"] == "segmentation" and meta["arch"] == ("torch.export" if kind == "pt2" else "onnx")
    assert meta["input"]["shape"][0] == "batch" and meta["output"]["channels"] == 4
    assert result.report["passed"] and {r["artefact"] for r in result.report["rows"]} >= {"model.onnx"}
    x = np.random.default_rng(1).standard_normal((3, 3, 64, 96)).astype(np.float32)  # another batch and size
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    fp32 = Engine.load(tmp_path / "engine" / "model.onnx", device="cpu")
    assert np.abs(fp32.infer(x) - expected).max() <= 1e-4 * (expected.max() - expected.min())
    (tmp_path / "in").mkdir()
    _pictures(tmp_path / "in")
    summary = run_directory(Engine.load(tmp_path / "engine", device="cpu"), tmp_path / "in", tmp_path / "out",
                            RunOptions(batch_size=2))
    assert (summary.done, summary.failed) == (3, 0)
    assert read_png(tmp_path / "out" / "p0_label.png").shape == (64, 96)


def test_a_program_with_a_pickled_payload_is_refused_before_anything_is_unpickled(tmp_path):
    """A canary: the program's weight is replaced by a pickle that would create a file when unpickled."""
    path = _program(tmp_path / "net.pt2")
    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self):
            return (open, (str(canary), "w"))

    evil = tmp_path / "evil.pt2"
    buffer = __import__("io").BytesIO()
    torch.save(Payload(), buffer)
    with zipfile.ZipFile(path) as src:
        config_name = next(n for n in src.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(src.read(config_name))
        first = next(iter(config["config"]))
        config["config"][first]["use_pickle"] = True
        target = config_name.rsplit("/", 1)[0] + "/" + config["config"][first]["path_name"]
        with zipfile.ZipFile(evil, "w") as dst:
            for item in src.infolist():
                data = {config_name: json.dumps(config).encode(), target: buffer.getvalue()}.get(item.filename)
                dst.writestr(item, src.read(item.filename) if data is None else data)
    with pytest.raises(UnsafeCheckpointError, match="pickled") as err:
        export_checkpoint(evil, tmp_path / "e", task="segmentation", parity_samples=1)
    assert "--trust-pickle" in str(err.value) and not canary.exists()
    assert not (tmp_path / "e" / "model.onnx").exists()
    # the canary is live: torch.export.load itself runs it (which is why regenrt reads the archive first)
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", f"import torch; torch.export.load({str(evil)!r})"], capture_output=True)
    assert canary.exists()


def test_the_task_comes_from_the_flag_or_from_what_the_program_stores(tmp_path):
    with pytest.raises(InputError, match="--task") as err:
        export_checkpoint(_program(tmp_path / "a.pt2"), tmp_path / "a", parity_samples=1)
    assert "regenrt.json" in str(err.value)
    stored = _program(tmp_path / "b.pt2", extra={"regenrt.json": json.dumps({"task": "segmentation"})})
    result = export_checkpoint(stored, tmp_path / "b", parity_samples=1, precision="fp32", int8="off",
                               cpu_engine="onnxruntime", input_shape="1x3x64x64")
    assert result.metadata["task"] == "segmentation"


def test_what_the_engines_cannot_take_is_refused_with_the_way_forward(tmp_path):
    with pytest.raises(InputError, match="fixed batch") as err:
        export_checkpoint(_program(tmp_path / "fixed.pt2", batch_dynamic=False), tmp_path / "e", task="segmentation")
    assert "Dim('batch')" in str(err.value)
    fixed = tmp_path / "fixed.onnx"
    torch.onnx.export(_net(), (torch.randn(1, 3, 64, 64),), str(fixed), dynamo=False, opset_version=17)
    with pytest.raises(InputError, match="fixed batch of 1") as err:
        export_checkpoint(fixed, tmp_path / "e", task="segmentation")
    assert "dynamic_axes" in str(err.value)
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("FancyOp", ["x"], ["y"], name="my_fancy_node", domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 8, 8])])
    custom = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("com.example", 1)]), str(custom))
    with pytest.raises(RegenrtError, match="FancyOp|my_fancy_node") as err:
        export_checkpoint(custom, tmp_path / "e", task="segmentation")
    assert "ONNX Runtime" in str(err.value)
    with pytest.raises(InputError, match="--arch applies to checkpoints"):
        export_checkpoint(_program(tmp_path / "c.pt2"), tmp_path / "e", task="segmentation", arch="deeplabv3plus")


@pytest.mark.parametrize("extra", ["aotinductor", "duplicate"])
def test_a_program_carrying_code_or_duplicate_entries_is_refused_before_loading(tmp_path, extra):
    """torch.export.load loads a packaged AOTInductor library under data/aotinductor/ as code, and a zip with two
    entries of one name reads differently in different readers: both are refused before torch reads the file."""
    path = _program(tmp_path / "net.pt2")
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        top = src.namelist()[0].split("/")[0]
        contents = {item.filename: src.read(item.filename) for item in src.infolist()}
        for name, data in contents.items():
            dst.writestr(name, data)
        if extra == "aotinductor":
            dst.writestr(f"{top}/data/aotinductor/model/model.so", b"\x7fELF")
        else:
            name = next(n for n in src.namelist() if n.endswith("model_weights_config.json"))
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that is the point
                dst.writestr(name, contents[name])
    with pytest.raises(UnsafeCheckpointError, match="aotinductor|several entries"):
        export_checkpoint(bad, tmp_path / "e", task="segmentation", parity_samples=1)
