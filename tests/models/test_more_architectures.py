"""smp Unet and torchvision FCN / DeepLabV3: detected from their keys with no flags, reproducing the outputs their
own libraries computed (../shared/fixtures) through PyTorch and ONNX Runtime FP32, square and non-square, and
run end to end by run-infer; DeepLabV3 (no fixture here) by its torchvision key layout and the export gate."""
import numpy as np
import onnxruntime as ort
import pytest
import torch

from regenrt.export.pipeline import export_checkpoint
from regenrt.kernels import reference as ref
from regenrt.models import build_from_state_dict, create_model, load_checkpoint
from regenrt.runtime import Engine, RunOptions, run_directory
from regenrt.tasks.synthetic import synthetic_pictures

from ..runtime.helpers import read_png, save_png

FIXTURES = {"smp_unet_r18_seg3": ("smp_unet", {"encoder": "resnet18", "classes": 3, "aux": None}),
            "torchvision_fcn_resnet50_seg4": ("torchvision_segmentation",
                                              {"head": "fcn", "encoder": "resnet50", "classes": 4, "aux": True})}


def _rel(got, want):
    return float(np.abs(got - want).max() / (want.max() - want.min()))


@pytest.fixture(scope="module", params=sorted(FIXTURES))
def fixture(request, shared_fixtures, tmp_path_factory):
    name = request.param
    path = shared_fixtures / f"{name}.pt"
    data = dict(np.load(shared_fixtures / f"{name}.npz"))
    out = tmp_path_factory.mktemp(name)
    result = export_checkpoint(path, out, parity_samples=1, precision="fp32", cpu_engine="onnxruntime", int8="off")
    return name, path, data, out, result


@pytest.mark.full(cases=["torchvision_fcn_resnet50_seg4"])
def test_detected_without_flags_and_reproduces_its_library(fixture):
    name, path, data, _, result = fixture
    arch, expected = FIXTURES[name]
    loaded = build_from_state_dict(load_checkpoint(path).state_dict)
    assert loaded.arch.name == arch
    assert {k: loaded.config[k] for k in expected if expected[k] is not None} == \
        {k: v for k, v in expected.items() if v is not None}
    assert result.metadata["task"] == "segmentation"
    with torch.no_grad():
        for xs, ys in (("x", "y"), ("x_nonsquare", "y_nonsquare")):
            assert _rel(loaded.model(torch.from_numpy(data[xs])).numpy(), data[ys]) <= 1e-4, xs


@pytest.mark.full(cases=["torchvision_fcn_resnet50_seg4"])
def test_onnx_runtime_fp32_reproduces_its_library(fixture):
    _, _, data, out, _ = fixture
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for xs, ys in (("x", "y"), ("x_nonsquare", "y_nonsquare")):
        assert _rel(session.run(None, {name: data[xs]})[0], data[ys]) <= 1e-4, xs


@pytest.mark.full(cases=["torchvision_fcn_resnet50_seg4"])
def test_run_infer_segments_pictures_end_to_end(fixture, tmp_path):
    _, path, _, out, _ = fixture
    pictures = synthetic_pictures(3, 96, 128, 3, seed=4)
    for i, pic in enumerate(pictures):
        save_png(tmp_path / "in" / f"s{i}.png", pic)
    summary = run_directory(Engine.load(out / "model.onnx", device="cpu"), tmp_path / "in", tmp_path / "o",
                            RunOptions(batch_size=2))
    assert (summary.done, summary.failed) == (3, 0)
    model = build_from_state_dict(load_checkpoint(path).state_dict).model
    for i, pic in enumerate(pictures):
        x = ref.normalize_rgb(pic)[None].astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()[0].argmax(0)
        assert np.mean(read_png(tmp_path / "o" / f"s{i}_label.png") == expected) >= 0.995


@pytest.mark.full
def test_deeplabv3_has_torchvisions_layout_and_passes_the_gate(tmp_path):
    torch.manual_seed(0)
    model = create_model("deeplabv3_resnet50", classes=3, aux=True)
    keys = set(model.state_dict())
    for key in ("backbone.conv1.weight", "backbone.layer4.2.conv3.weight", "classifier.0.convs.0.0.weight",
                "classifier.0.convs.3.0.weight", "classifier.0.convs.4.1.weight", "classifier.0.project.0.weight",
                "classifier.1.weight", "classifier.2.running_var", "classifier.4.bias", "aux_classifier.0.weight",
                "aux_classifier.4.weight"):  # torchvision's deeplabv3_resnet50(aux_loss=True) names
        assert key in keys, key
    convs = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert convs["backbone.layer3.0.conv2"].dilation == (1, 1)  # the first block keeps the previous dilation
    assert convs["backbone.layer3.1.conv2"].dilation == (2, 2) and convs["backbone.layer4.0.conv2"].dilation == (2, 2)
    assert convs["backbone.layer4.1.conv2"].dilation == (4, 4)
    loaded = build_from_state_dict(model.state_dict())
    assert loaded.config == {"head": "deeplabv3", "encoder": "resnet50", "in_channels": 3, "classes": 3, "aux": True}
    torch.save(model.state_dict(), tmp_path / "dl3.pt")
    result = export_checkpoint(tmp_path / "dl3.pt", tmp_path / "e", parity_samples=1, precision="fp32",
                               cpu_engine="onnxruntime", int8="off", input_shape="1x3x128x128")
    assert result.report["passed"] and result.metadata["task"] == "segmentation"


@pytest.mark.parametrize("encoder,norm", [("resnet50", True), ("resnet34", False)])
def test_unet_variants_round_trip(encoder, norm):
    torch.manual_seed(0)
    model = create_model(f"unet_{encoder}", in_channels=1, classes=1, decoder_use_norm=norm).eval()
    loaded = build_from_state_dict(model.state_dict())
    assert loaded.config["encoder"] == encoder and loaded.config["decoder_use_norm"] is norm
    assert loaded.arch.default_task(loaded.config) == "phase-recovery"
    x = torch.randn(1, 1, 96, 160)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x)) and model(x).shape == (1, 1, 96, 160)
