"""The output tail in f32 under OpenVINO's bf16 hint: the ``resize-matmul`` pass (an exact identity in FP32), the
IR marks that keep the tail f32 (read back from the compiled runtime graph), and the runner that compiles such an
IR per input size. On a CPU without BF16 the candidate is not built, and the test says which branch it checked."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regenrt.export.onnx_export import export_onnx
from regenrt.export.passes import get_pass

pytest.importorskip("openvino")

from regenrt.runtime.backends.openvino import (SPECIALIZED_SIZES, OpenVinoRunner, convert,  # noqa: E402
                                               cpu_precisions, read_metadata)


class Head(nn.Module):
    """Convolutions, a 1x1 head, a bilinear upsampling (scale or size), an activation: DeepLabV3+'s tail shape."""

    def __init__(self, resize: dict, act=torch.sigmoid):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2, padding=1),
                                  nn.ReLU())
        self.head, self.resize, self.act = nn.Conv2d(16, 2, 1), resize, act

    def forward(self, x):
        y = self.head(self.body(x))
        size = x.shape[-2:] if self.resize.get("size") == "input" else None
        kwargs = {k: v for k, v in self.resize.items() if k != "size"}
        return self.act(F.interpolate(y, size=size, mode="bilinear", **kwargs))


RESIZES = {"x4 align_corners": {"scale_factor": 4, "align_corners": True},
           "x4 half_pixel": {"scale_factor": 4, "align_corners": False},
           "to input size": {"size": "input", "align_corners": False}}


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _net(resize: str) -> nn.Module:
    torch.manual_seed(0)
    return Head(RESIZES[resize]).eval()


@pytest.mark.parametrize("resize", list(RESIZES))
def test_resize_as_matmul_is_identity_at_every_size(tmp_path, resize):
    net = _net(resize)
    graph = export_onnx(net, tmp_path / "m.onnx", example=torch.zeros(1, 3, 16, 16), dynamic_hw=True)
    rewritten, summary = get_pass("resize-matmul").apply(graph)
    assert summary["rewritten"] == 1 and len(summary["resizes"]) == 1
    assert "Resize" not in {n.op_type for n in rewritten.graph.node}
    assert "Resize" in {n.op_type for n in graph.graph.node}  # the input graph is untouched
    onnx.checker.check_model(rewritten, full_check=True)
    for shape in [(1, 3, 16, 16), (2, 3, 10, 22), (1, 3, 2, 34)]:  # dynamic H/W: the matrices follow the shape
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = net(x).numpy()
        got = _ort(rewritten, x.numpy())
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-5 * (np.abs(ref).max() + 1)


def test_only_the_output_tail_is_rewritten(tmp_path):
    """A Resize inside the network (another layer reads it) or a nearest-neighbour one stays a Resize."""
    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            y = F.interpolate(self.a(x), scale_factor=2, mode="bilinear", align_corners=False)
            return F.interpolate(self.b(y), scale_factor=2, mode="nearest")

    graph = export_onnx(Inner().eval(), tmp_path / "m.onnx", example=torch.zeros(1, 3, 8, 8), dynamic_hw=True)
    rewritten, summary = get_pass("resize-matmul").apply(graph)
    assert summary["rewritten"] == 0
    assert [n.op_type for n in rewritten.graph.node] == [n.op_type for n in graph.graph.node]


def _tail_ir(tmp_path, resize: str = "x4 align_corners") -> tuple[nn.Module, object]:
    net = _net(resize)
    graph = export_onnx(net, tmp_path / "m.onnx", example=torch.zeros(1, 3, 16, 16), dynamic_hw=True)
    rewritten, _ = get_pass("resize-matmul").apply(graph)
    onnx.save(rewritten, tmp_path / "r.onnx")
    meta = {"task": "phase-recovery", "arch": "test", "mode": "batch-stats", "precision": cpu_precisions()[0],
            "input": {"example_shape": [1, 3, 16, 16]}, "specialize_hw": True}
    return net, convert(tmp_path / "r.onnx", tmp_path / "r.xml", meta, precise_tail=True)


def test_per_size_runner_matches_pytorch_at_every_size_and_keeps_a_few(tmp_path):
    """Compiled per input size (batch dynamic), at most SPECIALIZED_SIZES kept; fp32 here so the numbers are exact
    on any CPU."""
    net, xml = _tail_ir(tmp_path)
    tail = read_metadata(xml)["fp32_tail"]
    assert any("MatMul" in name or name == "output" for name in tail) and any("head" in name for name in tail)
    assert not any("body" in name for name in tail)  # the tail stops at the last convolution
    runner = OpenVinoRunner(xml, precision="fp32", cache=False)
    assert runner.specialized and list(runner._by_size) == [(16, 16)]  # the export's size, compiled up front
    sizes = [(16, 16), (8, 24), (32, 32), (20, 12), (40, 8), (16, 16)]
    for i, size in enumerate(sizes):
        x = torch.randn(1 + i % 3, 3, *size)
        with torch.no_grad():
            ref = net(x).numpy()
        got = runner.infer(x.numpy())
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4
        assert len(runner._by_size) <= SPECIALIZED_SIZES
    assert (16, 16) in runner._by_size and (8, 24) not in runner._by_size  # the oldest sizes were dropped


def test_the_tail_runs_fp32_under_the_bf16_hint(tmp_path):
    """Read back from OpenVINO's compiled runtime graph: the head convolution and the MatMuls f32, the body bf16."""
    if cpu_precisions()[0] != "bf16":  # the AVX2 branch: no candidate to check, and the export builds none
        from regenrt.export.candidates import BuildContext, get_candidate

        ctx = BuildContext(tmp_path, tmp_path / "m.onnx", {}, np.zeros((1, 3, 8, 8), np.float32), ("fp32",),
                           openvino=True, int8=False)
        for key in ("fp32-resize-matmul", "openvino-resize-matmul"):
            assert get_candidate(key).build(ctx, get_candidate(key)) is None
        return
    net, xml = _tail_ir(tmp_path)
    runner = OpenVinoRunner(xml, cache=False)
    precisions = {}
    for op in runner._compiled_for((24, 24)).get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in ("Convolution", "MatMul", "FullyConnected"):
            names = info["originalLayersNames"].astype(str)
            precisions[names] = (kind, info["runtimePrecision"].astype(str))
    tail = {p for names, (_, p) in precisions.items() if "head" in names or "MatMul" in names or "output" in names}
    body = {p for names, (_, p) in precisions.items() if "body" in names}
    assert tail == {"f32"} and body == {"bf16"}, precisions
    assert json.loads(json.dumps(runner.proof()))["mac_share"].get("bf16", 0) > 0.5
