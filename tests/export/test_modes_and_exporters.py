"""batch-stats mode reproduces BatchNorm in train mode; the dynamo exporter gives the same graph contract."""
import copy

import numpy as np
import pytest
import torch

from regenrt.export.metadata import read_metadata
from regenrt.export.pipeline import export_checkpoint
from regenrt.runtime.backends.onnxruntime import OnnxRuntimeRunner


def _train_mode_bn_reference(path, x):
    """Independent reference: torch's own BatchNorm in train mode (batch statistics), everything else eval."""
    from regenrt.models import build_from_state_dict, load_checkpoint

    model = copy.deepcopy(build_from_state_dict(load_checkpoint(path).state_dict).model)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.train()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_batch_stats_mode_matches_train_mode_batchnorm(pix2pix_fixture, tmp_path):
    path, ref = pix2pix_fixture
    result = export_checkpoint(path, tmp_path, mode="batch-stats", parity_samples=2, calibration_samples=4,
                               cpu_engine="onnxruntime", int8="off")  # the ONNX graphs are what is checked
    meta = read_metadata(result.artefacts["fp16"])
    assert meta["mode"] == "batch-stats" and meta["batch_dependent"] is True
    expected = _train_mode_bn_reference(path, ref["x"])
    got = OnnxRuntimeRunner(result.artefacts["fp32"]).infer({"input": ref["x"]})["output"]
    assert np.abs(got - expected).max() <= 1e-4
    assert np.abs(expected - ref["y"]).max() > 1e-2  # the modes really differ on this checkpoint


@pytest.mark.full
def test_dynamo_exporter(deeplab_fixture, tmp_path):
    path, ref = deeplab_fixture
    result = export_checkpoint(path, tmp_path, exporter="dynamo", precision="fp32", parity_samples=2,
                               cpu_engine="onnxruntime", int8="off")  # the ONNX graph is what is checked
    assert read_metadata(result.artefacts["fp32"])["exporter"] == "dynamo"
    runner = OnnxRuntimeRunner(result.artefacts["fp32"])
    assert np.abs(runner.infer({"input": ref["x"]})["output"] - ref["y"]).max() <= 1e-4
    assert np.abs(runner.infer({"input": ref["x_nonsquare"]})["output"] - ref["y_nonsquare"]).max() <= 1e-4
    assert "fp16" not in result.artefacts and not (tmp_path / "model.fp16.onnx").exists()
