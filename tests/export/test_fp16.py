"""FP16 graph conversion: sensitive nodes stay FP32, out-of-range nodes stay FP32, I/O stays FP32."""
import numpy as np
import onnx
import torch
from torch import nn

from regenrt.export.fp16 import convert_to_fp16
from regenrt.export.onnx_export import export_onnx
from regenrt.runtime.backends.onnxruntime import OnnxRuntimeRunner


class Sensitive(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.InstanceNorm2d(8)
        self.big = nn.Conv2d(8, 8, 1)
        self.out = nn.Conv2d(8, 2, 1)
        with torch.no_grad():
            self.big.weight.mul_(2000.0)  # activations far beyond FP16's comfortable range

    def forward(self, x):
        y = self.norm(self.conv(x))
        return torch.tanh(self.out(self.big(y) / 4000.0))


def _node_types(model):
    types = {}
    for vi in list(model.graph.value_info) + list(model.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    return {n.name or n.output[0]: (n.op_type, types.get(n.output[0])) for n in model.graph.node}


def test_sensitive_and_out_of_range_nodes_stay_fp32(tmp_path):
    torch.manual_seed(0)
    model = Sensitive().eval()
    export_onnx(model, tmp_path / "m.onnx", example=torch.zeros(1, 3, 16, 16), dynamic_hw=True)
    calib = [{"input": np.random.default_rng(i).uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32)} for i in range(2)]
    fp16, summary = convert_to_fp16(onnx.load(str(tmp_path / "m.onnx")), calib)
    onnx.checker.check_model(fp16, full_check=True)
    nodes = _node_types(fp16)
    by_op = {}
    for op, dtype in nodes.values():
        by_op.setdefault(op, set()).add(dtype)
    assert by_op["InstanceNormalization"] == {onnx.TensorProto.FLOAT}
    assert onnx.TensorProto.FLOAT16 in by_op["Conv"] and onnx.TensorProto.FLOAT in by_op["Conv"]
    assert summary["fp32_nodes"].get("range", 0) >= 1 and summary["fp32_nodes"]["op:InstanceNormalization"] == 1
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    onnx.save(fp16, tmp_path / "m16.onnx")
    x = calib[0]["input"]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = OnnxRuntimeRunner(tmp_path / "m16.onnx").infer({"input": x})["output"]
    assert np.abs(got - ref).max() < 5e-3
