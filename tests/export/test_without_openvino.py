"""An export on a machine without OpenVINO (a GPU machine, a user who installed only the core): every default
(``--cpu-engine auto``, ``--int8 auto``) works, the ONNX Runtime artefacts are gated and chosen, and nothing asks
OpenVINO anything. Found on the first GPU run (H200, no OpenVINO): the INT8-with-bf16-rest candidate asked OpenVINO
for the CPU's precisions before checking that an INT8 IR had been built, and every export failed."""
import json
import sys

from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model


def test_export_with_every_default_when_openvino_cannot_be_imported(tmp_path, monkeypatch):
    import torch

    for name in [m for m in sys.modules if m == "openvino" or m.startswith("openvino.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    from regenrt.runtime.backends import openvino as backend

    # the process may have asked OpenVINO already (its answer is cached): ask again, as a process without it would
    monkeypatch.setattr(backend, "executes_bf16", lambda: backend.import_openvino() and False)
    torch.manual_seed(0)
    torch.save(create_model("deeplabv3plus_r18", in_channels=1, classes=1).eval().state_dict(), tmp_path / "m.pt")
    result = export_checkpoint(tmp_path / "m.pt", tmp_path / "e", parity_samples=1, input_shape="1x1x64x64")
    assert result.report["passed"]
    assert json.loads((tmp_path / "e" / "engine.json").read_text())["engine"].endswith(".onnx")
    assert not list((tmp_path / "e").glob("*.xml"))
