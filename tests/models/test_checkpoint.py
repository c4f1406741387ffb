"""Checkpoint loading: wrappers, prefixes, dtypes, safetensors, refusal of pickled code, clear errors."""
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from regenrt.errors import ArchitectureError, CheckpointError, SecurityWarning, UnsafeCheckpointError
from regenrt.models import build_from_state_dict, create_model, load_checkpoint


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return create_model("unet_128", ngf=4, norm="batch").eval()


def _same_outputs(a, b, side=128):
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-6)


@pytest.mark.parametrize("wrap", [
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {"model": sd, "optimizer": {"lr": 1e-3}},
    lambda sd: {"net_G": sd, "net_D": {"w": torch.zeros(1)}},
    lambda sd: {"ema": sd},
    lambda sd: {"checkpoint": 1, "model_state_dict": {f"module.{k}": v for k, v in sd.items()}},
    lambda sd: {f"module._orig_mod.{k}": v for k, v in sd.items()},
    lambda sd: {f"model.{k}": v for k, v in sd.items()},  # Lightning-style prefix
], ids=["state_dict", "model", "net_G", "ema", "ddp-in-model_state_dict", "ddp+compile", "lightning"])
def test_training_wrappers_unwrapped(tmp_path, unet, wrap):
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(unet.state_dict()), path)
    loaded = build_from_state_dict(load_checkpoint(path).state_dict)
    assert loaded.config["num_downs"] == 7
    assert _same_outputs(loaded.model, unet)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights(tmp_path, unet, dtype):
    path = tmp_path / "half.pt"
    torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in unet.state_dict().items()}, path)
    ckpt = load_checkpoint(path)
    assert ckpt.source_dtypes[0] == str(dtype).split(".")[1]
    assert all(v.dtype == torch.float32 for v in ckpt.state_dict.values() if v.is_floating_point())
    build_from_state_dict(ckpt.state_dict)


def test_safetensors(tmp_path, unet):
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(path))
    assert _same_outputs(build_from_state_dict(load_checkpoint(path).state_dict).model, unet)


def test_old_instance_norm_running_stats_are_patched(tmp_path):
    model = create_model("unet_128", ngf=4, norm="instance").eval()
    sd = dict(model.state_dict())
    # PyTorch < 0.4 saved running stats for InstanceNorm2d; the reference repo deletes them on load.
    sd["model.model.1.model.2.running_mean"] = torch.zeros(8)
    sd["model.model.1.model.2.running_var"] = torch.ones(8)
    torch.save(sd, tmp_path / "old.pth")
    loaded = build_from_state_dict(load_checkpoint(tmp_path / "old.pth").state_dict)
    assert loaded.config["norm"] == "instance"
    assert _same_outputs(loaded.model, model)


class Boom:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_pickle_payload_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Boom(marker)}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # an environment override must not downgrade
    with pytest.raises(UnsafeCheckpointError, match="--trust-pickle"):
        load_checkpoint(path)
    assert not marker.exists()


def test_whole_module_pickle_needs_opt_in(tmp_path, unet):
    path = tmp_path / "full.pt"
    torch.save(unet, path)
    with pytest.raises(UnsafeCheckpointError, match="executing pickled code"):
        load_checkpoint(path)
    with pytest.warns(SecurityWarning, match="unpickled with --trust-pickle"):
        ckpt = load_checkpoint(path, trust_pickle=True)
    assert ckpt.warnings and "trust-pickle" in ckpt.warnings[0]
    assert _same_outputs(build_from_state_dict(ckpt.state_dict).model, unet)


def test_argparse_namespace_in_training_dict_is_allowed(tmp_path, unet):
    import argparse

    torch.save({"opt": argparse.Namespace(lr=0.1), "state_dict": unet.state_dict()}, tmp_path / "c.pt")
    build_from_state_dict(load_checkpoint(tmp_path / "c.pt").state_dict)


@pytest.mark.parametrize("make,match", [
    (lambda p: p, "does not exist"),
    (lambda p: (p.mkdir(), p)[1], "is a directory"),
    (lambda p: (p.write_bytes(b""), p)[1], "empty"),
    (lambda p: (p.write_bytes(os.urandom(4096)), p)[1], "not a readable PyTorch file"),
    (lambda p: (p.write_bytes(pickle.dumps([1, 2, 3])), p)[1], "not a readable PyTorch file"),
    (lambda p: (torch.save([1, 2, 3], p), p)[1], "expected a state_dict"),
    (lambda p: (torch.save({"epoch": 3, "lr": 0.1}, p), p)[1], "no state_dict found.*--state-key"),
], ids=["missing", "directory", "empty", "random-bytes", "plain-pickle", "list", "no-weights"])
@pytest.mark.filterwarnings("error")  # (a plain pickle: torch's own warning about its protocol stays inside)
def test_bad_paths(tmp_path, make, match):
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(make(tmp_path / "ckpt.pt"))


def test_truncated(tmp_path, unet):
    path = tmp_path / "t.pt"
    torch.save(unet.state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_mismatch_lists_missing_unexpected_and_shapes(unet):
    sd = dict(unet.state_dict())
    sd.pop("model.model.3.bias")
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(ArchitectureError) as err:
        build_from_state_dict(sd)
    assert "1 missing key: model.model.3.bias" in str(err.value)
    assert "1 unexpected key: extra.weight" in str(err.value)
    with pytest.raises(ArchitectureError, match="shape conflicts?: .*checkpoint .* vs model"):
        build_from_state_dict(unet.state_dict(), overrides={"ngf": 8})


def test_wrong_architecture_named(unet):
    with pytest.raises(ArchitectureError, match="do not look like a deeplabv3plus checkpoint"):
        build_from_state_dict(unet.state_dict(), "deeplabv3plus")
    with pytest.raises(ArchitectureError, match="it builds: deeplabv3plus, pix2pix_unet") as err:
        build_from_state_dict({"fc.weight": torch.zeros(2, 2)})
    assert "torch.export.save" in str(err.value) and "re-save" not in str(err.value)  # a way forward, no blame


def test_unknown_resnet_depth_explained():
    sd = create_model("deeplabv3plus_r18", in_channels=1).state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("encoder.layer3.1.")}
    with pytest.raises(ArchitectureError, match=r"basic blocks \[2, 2, 1, 2\].*no supported encoder"):
        build_from_state_dict(sd)


@pytest.mark.parametrize("version,unsafe", [("2.9.1+cu126", True), ("2.6.0", True), ("2.10.0", False),
                                            ("2.13.0+cpu", False), ("stub", True)])
def test_old_torch_unpickler_is_refused_unless_accepted(tmp_path, monkeypatch, recwarn, version, unsafe):
    """CVE-2026-24747 (GHSA-63cw-57p8-fm3p): weights_only loading before torch 2.10 can corrupt memory on a crafted
    file; pyproject allows torch >= 2.6 (safetensors), so a .pt is refused there unless the user accepts the risk —
    then the warning is shown (a SecurityWarning, whatever quiet mode says) and recorded in every artefact."""
    from regenrt.errors import SecurityWarning, UnsafeTorchError
    from regenrt.models import checkpoint

    monkeypatch.setattr(checkpoint.torch, "__version__", version)
    path = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(2)}, path)
    if unsafe:
        with pytest.raises(UnsafeTorchError, match="refusing to unpickle m.pt.*--accept-unsafe-torch"):
            checkpoint.load_checkpoint(path)
    loaded = checkpoint.load_checkpoint(path, accept_unsafe_torch=True)
    assert any("CVE-2026-24747" in w for w in loaded.warnings) == unsafe
    shown = [w for w in recwarn if issubclass(w.category, SecurityWarning)]
    assert bool(shown) == unsafe and all("CVE-2026-24747" in str(w.message) for w in shown)
    if version != "stub":  # (safetensors itself parses torch's version)
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, tmp_path / "m.safetensors")  # no unpickler: any torch
        assert not checkpoint.load_checkpoint(tmp_path / "m.safetensors").warnings


@pytest.mark.full
def test_quiet_export_still_prints_the_security_warning(tmp_path):
    """A security warning is never silenced by -q: the export with an old torch (and the flag) prints it."""
    import subprocess
    import sys

    from regenrt.models import create_model

    path = tmp_path / "m.pt"
    torch.save(create_model("pix2pix_unet", num_downs=5, ngf=4).state_dict(), path)
    old_torch = ("import sys, torch; torch.__version__ = '2.9.1'; from regenrt.cli.export_engine import main; "
                 "sys.exit(main(sys.argv[1:]))")
    common = [str(path), "-o", str(tmp_path / "e"), "-q", "--precision", "fp32", "--cpu-engine", "onnxruntime",
              "--int8", "off", "--parity-samples", "1", "--input-shape", "1x3x32x32"]
    refused = subprocess.run([sys.executable, "-c", old_torch, *common], capture_output=True, text=True)
    assert refused.returncode == 3 and "--accept-unsafe-torch" in refused.stderr and not (tmp_path / "e").exists()
    accepted = subprocess.run([sys.executable, "-c", old_torch, *common, "--accept-unsafe-torch"],
                              capture_output=True, text=True)
    assert accepted.returncode == 0, accepted.stderr
    assert "SecurityWarning" in accepted.stderr and "CVE-2026-24747" in accepted.stderr


def _without(sd, *keys):
    return {k: v for k, v in sd.items() if k not in keys}


@pytest.mark.parametrize("case", ["unet_first_bn_stats", "unet_all_running_means", "unet_deep_weight",
                                  "deeplab_deep_weight", "deeplab_bn_stats", "deeplab_head"])
def test_a_missing_key_is_named_with_the_architecture_the_rest_matched(case):
    """A checkpoint missing a deep weight or a BatchNorm's running statistics: the error names the missing key(s)
    and the architecture the rest matched (it used to be "cannot tell the norm layer" or "no known
    architecture")."""
    from regenrt.models import build_from_state_dict, create_model

    if case.startswith("unet"):
        sd = create_model("pix2pix_unet", num_downs=5, ngf=4).state_dict()
        means = [k for k in sd if k.endswith("running_mean")]
        drop = {"unet_first_bn_stats": [means[0], means[0].replace("mean", "var")],
                "unet_all_running_means": means,
                "unet_deep_weight": ["model.model.1.model.3.model.3.model.5.weight"]}[case]
        arch = "pix2pix_unet"
    else:
        sd = create_model("deeplabv3plus_r18", in_channels=1, classes=1).state_dict()
        drop = {"deeplab_deep_weight": ["encoder.layer4.1.conv2.weight"],
                "deeplab_bn_stats": ["encoder.layer3.0.bn1.running_var"],
                "deeplab_head": ["segmentation_head.0.weight"]}[case]
        arch = "DeepLabV3+" if case == "deeplab_head" else "deeplabv3plus"
    with pytest.raises(ArchitectureError) as err:
        build_from_state_dict(_without(sd, *drop))
    message = str(err.value)
    assert f"match {arch}" in message or f"built-in {arch}" in message, message
    assert all(k in message for k in drop[:10]), message
    assert "cannot tell the norm" not in message and "any known architecture" not in message
