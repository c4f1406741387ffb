"""Graph passes are exact identities in FP32 (checked with ONNX Runtime against PyTorch and the original graph)."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from regenrt.export.onnx_export import export_onnx
from regenrt.export.passes import get_pass
from regenrt.export.passes.subpixel import phase_kernels


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cin,cout,hw", [(3, 5, (8, 8)), (16, 4, (6, 10))])
def test_subpixel_rewrite_is_identity(tmp_path, bias, cin, cout, hw):
    torch.manual_seed(0)
    net = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias), nn.Tanh()).eval()
    x = torch.randn(2, cin, *hw)
    graph = export_onnx(net, tmp_path / "m.onnx", example=x, dynamic_hw=True)
    rewritten, summary = get_pass("subpixel-convtranspose").apply(graph)
    assert summary == {"rewritten": 1}
    assert "ConvTranspose" not in {n.op_type for n in rewritten.graph.node}
    assert "ConvTranspose" in {n.op_type for n in graph.graph.node}  # the input graph is untouched
    onnx.checker.check_model(rewritten, full_check=True)
    for shape in [(2, cin, *hw), (1, cin, hw[0] + 2, hw[1] * 2)]:  # dynamic H/W: the slices are shape-free
        xi = torch.randn(*shape)
        with torch.no_grad():
            ref = net(xi).numpy()
        got = _run(rewritten, xi.numpy())
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-5 * (np.abs(ref).max() + 1)


def test_phase_kernels_match_the_transposed_taps():
    w = np.arange(2 * 3 * 16, dtype=np.float32).reshape(2, 3, 4, 4)
    k = phase_kernels(w)
    assert k.shape == (12, 2, 2, 2)
    # phase (0, 0) output channel 1, input channel 0, tap (0, 0) is W[0, 1, 3, 3]; phase (1, 1) tap (1, 1) is W[., ., 0, 0]
    assert k[1, 0, 0, 0] == w[0, 1, 3, 3] and k[9 + 1, 0, 1, 1] == w[0, 1, 0, 0]


def test_pass_leaves_other_convtransposes_alone(tmp_path):
    net = nn.Sequential(nn.ConvTranspose2d(3, 4, 3, 2, 1), nn.ConvTranspose2d(4, 2, 4, 2, 1, groups=2)).eval()
    graph = export_onnx(net, tmp_path / "m.onnx", example=torch.zeros(1, 3, 8, 8), dynamic_hw=True)
    rewritten, summary = get_pass("subpixel-convtranspose").apply(graph)
    assert summary["rewritten"] == 0
    assert [n.op_type for n in rewritten.graph.node] == [n.op_type for n in graph.graph.node]


def test_in_place_rewrite_for_a_caller_that_owns_the_model(tmp_path):
    """copy=False (the export's own use: a model loaded for the pass alone) rewrites that model, with no copy of
    its weights; the result is the same graph as the copying form's."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose2d(3, 4, 4, 2, 1), nn.Tanh()).eval()
    graph = export_onnx(net, tmp_path / "m.onnx", example=torch.zeros(1, 3, 8, 8), dynamic_hw=True)
    copied, _ = get_pass("subpixel-convtranspose").apply(graph)
    owned = onnx.load(str(tmp_path / "m.onnx"))
    rewritten, summary = get_pass("subpixel-convtranspose").apply(owned, copy=False)
    assert rewritten is owned and summary == {"rewritten": 1}
    assert rewritten.SerializeToString() == copied.SerializeToString()
