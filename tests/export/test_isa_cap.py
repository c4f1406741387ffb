"""An AVX2-only machine reproduced on any CPU: oneDNN capped with ``ONEDNN_MAX_CPU_ISA=AVX2`` (OpenVINO's CPU plugin
honours it: its convolutions run ``brgconv_avx2_f32``). OpenVINO still lists ``BF16`` among the CPU's capabilities
then, and a bf16 compile fails; regenrt reads what runs from a compiled probe instead, so the export claims and
executes f32 there. Before the probe this export failed on a BF16 CPU; on an AVX2-only CPU the cap changes nothing
and the test holds the same way."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("openvino")

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    from regenrt.export.pipeline import export_checkpoint
    from regenrt.models import create_model
    from regenrt.runtime.backends.openvino import cpu_precisions

    root = Path(sys.argv[1])
    torch.manual_seed(0)
    torch.save(create_model("deeplabv3plus_r18", in_channels=1, classes=1).eval().state_dict(), root / "m.pt")
    result = export_checkpoint(root / "m.pt", root / "e", parity_samples=1, input_shape="1x1x64x64")
    print(json.dumps({"precisions": cpu_precisions(), "passed": result.report["passed"]}))
""")


def test_export_under_an_avx2_cap_claims_and_executes_f32(tmp_path):
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "REGENRT_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts == {"precisions": ["fp32"], "passed": True}
    report = json.loads((tmp_path / "e" / "parity.json").read_text())
    record = json.loads((tmp_path / "e" / "engine.json").read_text())
    openvino = [c for c in report["candidates"].values() if c["artefact"].endswith(".xml")]
    assert openvino, "no OpenVINO candidate was built"
    for entry in openvino:  # no bf16 anywhere, and what each IR claims is what its runtime graph executes
        assert "bf16" not in (entry["precision"], entry.get("executes"))
        assert entry["claim_broken"] is None
        assert set(entry["proof"]["mac_share"]) <= {"fp32", "int8"}
    assert record["precision"] in ("fp32", "int8") and "bf16" not in json.dumps(record["executes"])
