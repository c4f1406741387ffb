"""smp save_pretrained directories (config.json + model.safetensors, or the older pytorch_model.bin): the config's
options are used (nothing assumed), a weights file beside its config works too, and a config that disagrees with
the weights is an error naming both. The directories are written the way smp's hub mixin writes them."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from regenrt.errors import ArchitectureError
from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model

CONFIG = {"_model_class": "DeepLabV3Plus", "encoder_name": "resnet18", "encoder_depth": 5, "encoder_weights": None,
          "encoder_output_stride": 8, "decoder_channels": 64, "decoder_atrous_rates": [6, 12, 18],
          "decoder_aspp_separable": True, "decoder_aspp_dropout": 0.5, "in_channels": 1, "classes": 1,
          "activation": None, "upsampling": 4, "aux_params": None}


def _save_pretrained(directory, config, weights="model.safetensors"):
    directory.mkdir(parents=True)
    torch.manual_seed(0)
    model = create_model("deeplabv3plus", encoder="resnet18", in_channels=config["in_channels"], classes=1,
                         output_stride=8, decoder_channels=64, atrous_rates=[6, 12, 18])
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if weights.endswith(".safetensors"):
        save_file(sd, str(directory / weights))
    else:
        torch.save(sd, directory / weights)
    (directory / "config.json").write_text(json.dumps(config))
    return model


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_a_save_pretrained_directory_is_a_checkpoint_with_nothing_assumed(tmp_path, weights):
    _save_pretrained(tmp_path / "run", CONFIG, weights)
    result = export_checkpoint(tmp_path / "run", tmp_path / "e", parity_samples=1, precision="fp32",
                               cpu_engine="onnxruntime", int8="off", input_shape="1x1x64x64")
    config = result.metadata["config"]
    assert (config["output_stride"], config["atrous_rates"], config["decoder_channels"]) == (8, [6, 12, 18], 64)
    assert "output_stride" not in result.metadata["assumed"] and "atrous_rates" not in result.metadata["assumed"]
    assert result.report["passed"] and result.metadata["source"]["file"] == weights


def test_a_weights_file_beside_its_config_and_the_cli(tmp_path):
    _save_pretrained(tmp_path / "run", CONFIG)
    out = subprocess.run([sys.executable, "-m", "regenrt.cli.export_engine", str(tmp_path / "run" / "model.safetensors"),
                          "-o", str(tmp_path / "e"), "--precision", "fp32", "--cpu-engine", "onnxruntime",
                          "--int8", "off", "--input-shape", "1x1x64x64"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "assumed output_stride" not in out.stderr and "output_stride': 8" in out.stderr


def test_config_and_weights_that_disagree_name_both(tmp_path):
    _save_pretrained(tmp_path / "run", {**CONFIG, "decoder_channels": 128})
    with pytest.raises(ArchitectureError, match=r"config.json and model.safetensors disagree"):
        export_checkpoint(tmp_path / "run", tmp_path / "e", parity_samples=1)


def test_unsupported_options_are_refused_with_the_reason(tmp_path):
    _save_pretrained(tmp_path / "run", {**CONFIG, "activation": "sigmoid"})
    with pytest.raises(ArchitectureError, match="activation='sigmoid' is not supported"):
        export_checkpoint(tmp_path / "run", tmp_path / "e", parity_samples=1)
