"""InstanceNorm running statistics in a pix2pix checkpoint, decided from the checkpoint: tracked ones
(num_batches_tracked saved, PyTorch >= 0.4.1) are the model's eval-mode statistics and are kept; ones saved by
PyTorch < 0.4 (no num_batches_tracked; it always normalized per instance) are dropped. Checked against
torch.nn.InstanceNorm2d's own eval-mode behaviour, and through the export."""
import numpy as np
import pytest
import torch
from torch import nn

from regenrt.export.pipeline import export_checkpoint
from regenrt.models import build_from_state_dict, create_model


def _tracked_model():
    torch.manual_seed(0)
    model = create_model("unet_128", ngf=4, norm="instance", instance_stats="running")
    for m in model.modules():
        if isinstance(m, nn.InstanceNorm2d):
            assert m.track_running_stats  # torch's own layer, tracking statistics
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.3, 3.0)
    return model.eval()


def _torch_reference(model):
    """The same model with every norm layer replaced by torch's own nn.InstanceNorm2d (tracking statistics)."""
    import copy

    ref = copy.deepcopy(model)
    for parent in list(ref.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d):
                plain = nn.InstanceNorm2d(child.num_features, affine=False, track_running_stats=True)
                plain.load_state_dict(child.state_dict())
                setattr(parent, name, plain)
    assert not any(type(m).__name__ == "RunningInstanceNorm2d" for m in ref.modules())
    return ref.eval()


def _per_instance(model):
    """The same weights, every InstanceNorm2d normalizing with each instance's statistics."""
    twin = create_model("unet_128", ngf=4, norm="instance")
    twin.load_state_dict({k: v for k, v in model.state_dict().items()
                          if not k.endswith((".running_mean", ".running_var", ".num_batches_tracked"))})
    return twin.eval()


X = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 3, 128, 128)).astype(np.float32))


def test_tracked_statistics_are_kept_and_match_torch_eval():
    model = _tracked_model()
    loaded = build_from_state_dict(model.state_dict())
    assert loaded.config["instance_stats"] == "running" and "num_batches_tracked" in loaded.assumed["instance_stats"]
    with torch.no_grad():
        expected, got = _torch_reference(model)(X), loaded.model.eval()(X)
        dropped = _per_instance(model)(X)
    assert (got - expected).abs().max() <= 1e-6
    span = float(expected.max() - expected.min())
    assert float((dropped - expected).abs().max()) > 0.1 * span  # dropping them (what main did) changes the output


def test_statistics_without_num_batches_tracked_are_dropped_and_overridable():
    model = _tracked_model()
    old = {k: v for k, v in model.state_dict().items() if not k.endswith(".num_batches_tracked")}  # PyTorch < 0.4
    loaded = build_from_state_dict(old)
    assert loaded.config["instance_stats"] == "instance" and "dropped" in loaded.assumed["instance_stats"]
    with torch.no_grad():
        assert (loaded.model.eval()(X) - _per_instance(model)(X)).abs().max() <= 1e-6
    forced = build_from_state_dict(model.state_dict(), overrides={"instance_stats": "instance"})
    with torch.no_grad():
        assert (forced.model.eval()(X) - _per_instance(model)(X)).abs().max() <= 1e-6


def test_export_of_a_tracked_checkpoint_matches_its_eval_outputs(tmp_path):
    model = _tracked_model()
    torch.save(model.state_dict(), tmp_path / "g.pth")
    result = export_checkpoint(tmp_path / "g.pth", tmp_path / "e", parity_samples=1, precision="fp32",
                               cpu_engine="onnxruntime", int8="off")
    assert result.metadata["config"]["instance_stats"] == "running"
    assert "instance_stats" in result.metadata["assumed"]
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "e" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: X.numpy()})[0]
    with torch.no_grad():
        expected = _torch_reference(model)(X).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * (expected.max() - expected.min())
