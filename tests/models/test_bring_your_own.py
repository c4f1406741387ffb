"""Bring your own model: smp checkpoints of any architecture and encoder (built with smp itself, matched on the
meta device), the pix2pix repo's ResNet generators, and what a refusal says. The authors' fixtures are exported
with no architecture flags and their FP32 model.onnx reproduces the authors' outputs within 1e-4 of the range."""
import json

import numpy as np
import pytest
import torch

from regenrt.errors import ArchitectureError, MissingDependencyError
from regenrt.export.pipeline import export_checkpoint
from regenrt.models import build_from_state_dict, create_model, load_checkpoint
from regenrt.runtime.backends.onnxruntime import OnnxRuntimeRunner

from ..conftest import SHARED_FIXTURES

smp = pytest.importorskip("segmentation_models_pytorch", reason="smp is not installed (pip install regenrt[smp])")

FIXTURES = {  # the authors' checkpoints beyond the built-in architectures -> what regenrt must find
    "smp_deeplabv3plus_tu_mobilenetv3_seg3": ("smp", {"smp_arch": "deeplabv3plus",
                                                      "encoder_name": "tu-mobilenetv3_small_100"}),
    "smp_pspnet_r18_seg4": ("smp", {"smp_arch": "pspnet", "encoder_name": "resnet18", "encoder_depth": 3}),
    "pix2pix_resnet9_ngf16_batch": ("pix2pix_resnet", {"n_blocks": 9, "ngf": 16, "norm": "batch"}),
}


def _fixture_path(name):
    for suffix in (".pt", ".pth"):
        if (SHARED_FIXTURES / f"{name}{suffix}").exists():
            return SHARED_FIXTURES / f"{name}{suffix}"
    pytest.skip(f"{name} is not among the fixtures at {SHARED_FIXTURES}")


@pytest.mark.full(cases=["smp_deeplabv3plus_tu_mobilenetv3_seg3"])
@pytest.mark.parametrize("name", list(FIXTURES))
def test_the_authors_checkpoints_export_with_no_flags_and_reproduce_their_outputs(shared_fixtures, tmp_path, name):
    path = _fixture_path(name)
    data = np.load(SHARED_FIXTURES / f"{name}.npz")
    result = export_checkpoint(path, tmp_path / "e", precision="fp32", cpu_engine="onnxruntime", int8="off",
                               parity_samples=1, input_shape="x".join(map(str, (1, *data["x"].shape[1:]))))
    arch, config = FIXTURES[name]
    meta = result.metadata
    assert meta["arch"] == arch and all(meta["config"][k] == v for k, v in config.items()), meta["config"]
    runner = OnnxRuntimeRunner(result.artefacts["fp32"])
    fixed = [d for d in meta["input"]["shape"][2:] if isinstance(d, int)]  # PSPNet: one size (its pyramid pooling)
    for suffix in ("", "_nonsquare"):
        if f"x{suffix}" in data and (not fixed or tuple(data[f"x{suffix}"].shape[2:]) == tuple(fixed)):
            x, y = data[f"x{suffix}"], data[f"y{suffix}"]
            got = runner.infer({"input": x.astype(np.float32)})["output"]
            assert np.abs(got - y).max() <= 1e-4 * (y.max() - y.min()), name


def _runs(engine_dir, task):
    """The export runs as any other: run-infer's pipeline over two pictures of sizes the model was not exported at."""
    from regenrt.runtime import Engine, RunOptions, run_directory
    from regenrt.tasks.synthetic import box_masks, synthetic_pictures

    from ..runtime.helpers import read_png, save_png

    root = engine_dir.parent / "run"
    (root / "in").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (h, w) in enumerate([(100, 140), (256, 256)]):
        save_png(root / "in" / f"p{i}.png", synthetic_pictures(1, h, w, 3, seed=i)[0])
        save_png(root / "masks" / f"p{i}.png", box_masks(1, h, w, seed=i)[0][0] * 255)
    options = RunOptions(masks=root / "masks") if task == "inpainting" else RunOptions()
    summary = run_directory(Engine.load(engine_dir, device="cpu"), root / "in", root / "out", options)
    assert (summary.done, summary.failed) == (2, 0), summary.errors
    suffix = ".png" if task == "inpainting" else "_label.png"
    assert read_png(root / "out" / f"p0{suffix}").shape[:2] == (100, 140)


@pytest.mark.full
def test_identical_encoders_name_the_match_and_the_runner_up(shared_fixtures):
    loaded = build_from_state_dict(load_checkpoint(_fixture_path("smp_deeplabv3plus_tu_mobilenetv3_seg3")).state_dict)
    assert loaded.config["encoder_name"] == "tu-mobilenetv3_small_100"
    assert "tu-tf_mobilenetv3_small_100" in loaded.assumed["encoder_name"]
    assert "encoder_output_stride" in loaded.assumed and "--set" in loaded.assumed["encoder_output_stride"]


CASES = [  # (smp architecture, encoder, constructor arguments) -> built with smp, found again from the weights
    ("unet", "mobilenet_v2", {"classes": 2}),
    ("deeplabv3plus", "efficientnet-b0", {"classes": 3}),
    ("fpn", "resnet18", {"classes": 2, "decoder_merge_policy": "cat", "decoder_pyramid_channels": 64}),
    ("linknet", "resnet18", {"classes": 2, "in_channels": 1}),
    ("unetplusplus", "resnet18", {"classes": 2, "decoder_channels": (64, 32, 16, 8, 8)}),
    ("upernet", "resnet18", {"classes": 2, "decoder_channels": 64}),
    ("segformer", "mit_b0", {"classes": 2}),  # MiT cannot be built on the meta device: built on the CPU instead
    ("unet", "resnet18", {"classes": 2, "decoder_attention_type": "scse", "encoder_depth": 4,
                          "decoder_channels": (128, 64, 32, 16)}),
]


@pytest.mark.full(cases=["unet-resnet18", "unet-mobilenet_v2", "linknet-resnet18", "unetplusplus-resnet18"])
@pytest.mark.parametrize("arch,encoder,kwargs", CASES, ids=[f"{a}-{e}" for a, e, _ in CASES])
def test_any_smp_model_is_found_from_its_weights_and_built_with_smp(arch, encoder, kwargs):
    torch.manual_seed(0)
    model = smp.create_model(arch, encoder_name=encoder, encoder_weights=None, **kwargs).eval()
    loaded = build_from_state_dict(model.state_dict())
    assert loaded.arch.name in ("smp", "smp_unet") and loaded.config.get("smp_arch", arch) == arch
    assert loaded.config.get("encoder_name", loaded.config.get("encoder")) == encoder
    x = torch.randn(1, kwargs.get("in_channels", 3), 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


@pytest.mark.full
def test_a_resnext_deeplab_the_built_in_takes_for_a_resnet_is_built_with_smp():
    """The built-in ResNet DeepLabV3+ recognises the keys of a ResNeXt one, not its grouped convolutions: smp
    builds it instead (it used to be refused as 'saved incompletely')."""
    model = smp.create_model("deeplabv3plus", encoder_name="resnext50_32x4d", encoder_weights=None, classes=2).eval()
    loaded = build_from_state_dict(model.state_dict())
    assert loaded.arch.name == "smp" and loaded.config["encoder_name"] == "resnext50_32x4d"


@pytest.mark.full
def test_a_save_pretrained_folder_of_any_class_and_a_wrapped_float16_training_dict(tmp_path):
    model = smp.create_model("fpn", encoder_name="resnet18", encoder_weights=None, classes=3,
                             encoder_output_stride=32).eval()
    model.save_pretrained(tmp_path / "run")
    result = export_checkpoint(tmp_path / "run", tmp_path / "e", precision="fp32", cpu_engine="onnxruntime",
                               int8="off", parity_samples=1)
    assert result.metadata["arch"] == "smp" and result.metadata["config"]["smp_arch"] == "fpn"
    _runs(tmp_path / "e", "segmentation")
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v.half() if v.is_floating_point() else v
                                          for k, v in model.state_dict().items()}}
    torch.save(wrapped, tmp_path / "train.ckpt")
    ckpt = load_checkpoint(tmp_path / "train.ckpt")
    loaded = build_from_state_dict(ckpt.state_dict)
    assert loaded.config["smp_arch"] == "fpn" and ckpt.source_dtypes[0] == "float16"


def test_unknown_and_unmatched_smp_weights_say_what_was_recognised_and_the_way_forward():
    model = smp.create_model("unet", encoder_name="resnet18", encoder_weights=None, classes=2)
    sd = {k: v for k, v in model.state_dict().items()}
    sd["encoder.layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)  # no smp encoder has this
    with pytest.raises(ArchitectureError) as err:
        build_from_state_dict(sd)
    message = str(err.value)
    assert "resnet" in message.lower() or "smp" in message
    assert "torch.export.save" in message and "re-save" not in message


def test_without_smp_an_smp_checkpoint_is_refused_with_the_extra(monkeypatch):
    from regenrt.models import smp_any

    monkeypatch.setattr(smp_any, "have_smp", lambda: False)
    model = smp.create_model("fpn", encoder_name="resnet18", encoder_weights=None, classes=2)
    with pytest.raises(MissingDependencyError, match=r"regenrt\[smp\]"):
        build_from_state_dict(model.state_dict())
    # a built-in architecture keeps working with no extra
    assert build_from_state_dict(create_model("deeplabv3plus_r18", classes=2).state_dict()).arch.name == \
        "deeplabv3plus"


@pytest.mark.parametrize("norm,padding,dropout,affine", [("batch", "reflect", False, False),
                                                         ("instance", "reflect", True, False),
                                                         ("instance", "zero", False, True),
                                                         ("none", "zero", True, False)])
def test_pix2pix_resnet_generators_are_read_from_their_keys(norm, padding, dropout, affine):
    model = create_model("resnet_6blocks", ngf=8, norm=norm, padding_type=padding, use_dropout=dropout,
                         instance_affine=affine).eval()
    loaded = build_from_state_dict(model.state_dict())
    c = loaded.config
    assert (loaded.arch.name, c["n_blocks"], c["norm"], c["padding_type"], c["use_dropout"]) == \
        ("pix2pix_resnet", 6, norm, padding, dropout)
    assert c.get("instance_affine", False) == affine
    x = torch.rand(1, 3, 36, 44) * 2 - 1  # any multiple of 4
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
