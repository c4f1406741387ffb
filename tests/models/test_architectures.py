"""Every supported variant builds, is recognised from its own state_dict, and runs at valid shapes."""
import pytest
import torch

from regenrt.errors import ArchitectureError
from regenrt.models import build_from_state_dict, create_model, list_architectures, resolve_architecture
from regenrt.models.resnet import RESNET_SPECS

DEEPLAB_CASES = [
    ("resnet18", 1, 1, 16), ("resnet34", 3, 21, 8), ("resnet50", 3, 4, 16), ("resnet101", 2, 1, 16),
]


@pytest.mark.parametrize("encoder,cin,classes,stride", DEEPLAB_CASES)
def test_deeplab_variants_detected(encoder, cin, classes, stride):
    model = create_model("deeplabv3plus", encoder=encoder, in_channels=cin, classes=classes, output_stride=stride)
    loaded = build_from_state_dict(model.state_dict(), overrides={"output_stride": stride})
    assert {k: loaded.config[k] for k in ("encoder", "in_channels", "classes", "output_stride")} == {
        "encoder": encoder, "in_channels": cin, "classes": classes, "output_stride": stride}
    assert "output_stride" not in loaded.assumed  # the flag decided it


def test_deeplab_output_shapes_and_stride_8_dilation():
    model = create_model("deeplabv3plus_r18", in_channels=1, classes=3, output_stride=8).eval()
    with torch.no_grad():
        y = model(torch.zeros(1, 1, 64, 96))
    assert y.shape == (1, 3, 64, 96)
    layer3 = model.encoder.layer3[0].conv1
    assert layer3.stride == (1, 1) and layer3.dilation == (2, 2)  # smp dilates every conv of the stage
    assert model.encoder.layer4[0].downsample[0].dilation == (4, 4)


@pytest.mark.parametrize("num_downs,norm,ngf", [(7, "batch", 8), (8, "instance", 8), (8, "batch", 16)])
def test_unet_variants_detected(num_downs, norm, ngf):
    model = create_model("pix2pix_unet", num_downs=num_downs, norm=norm, ngf=ngf, input_nc=4, output_nc=1)
    loaded = build_from_state_dict(model.state_dict())
    assert {k: loaded.config[k] for k in ("num_downs", "norm", "ngf", "input_nc", "output_nc")} == {
        "num_downs": num_downs, "norm": norm, "ngf": ngf, "input_nc": 4, "output_nc": 1}
    side = 2 ** num_downs
    with torch.no_grad():
        assert loaded.model(torch.zeros(1, 4, side, side)).shape == (1, 1, side, side)


def test_aliases_and_close_matches():
    assert resolve_architecture("unet_128")[1] == {"num_downs": 7}
    assert resolve_architecture("deeplabv3plus_r50")[1] == {"encoder": "resnet50"}
    assert set(RESNET_SPECS) <= {a.split("_", 1)[1] for a in list_architectures() if a.startswith("deeplabv3plus_")}
    with pytest.raises(ArchitectureError, match="Did you mean unet_256"):
        resolve_architecture("unet256")
