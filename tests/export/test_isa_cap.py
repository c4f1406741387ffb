"""An AVX2-only machine reproduced on any CPU: oneDNN capped with ``ONEDNN_MAX_CPU_ISA=AVX2`` (OpenVINO's CPU plugin
honours it: its convolutions run ``brgconv_avx2_f32``, its INT8 ones ``jit_avx2_I8``). OpenVINO still lists ``BF16``
among the CPU's capabilities then, and a bf16 compile fails; regenrt reads what runs from compiled probes instead,
so the export claims and executes f32 there. Before the probe this export failed on a BF16 CPU; on an AVX2-only CPU
the cap changes nothing and the tests hold the same way.

INT8 without VNNI saturates (u8 x s8 pairs summed in int16): an IR quantized with NNCF's default (only the first
layer guarded) and verified on a VNNI CPU drifts there, so the export quantizes with 7-bit weights where the probe
sees saturation, and such an IR from a VNNI machine is refused where INT8 saturates."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("openvino")

CAP = {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def _run_capped(script: str, *args: str, tmp_path) -> dict:
    env = {**os.environ, **CAP, "REGENRT_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _flags() -> set[str]:
    for line in open("/proc/cpuinfo").read().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


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
    lines = []
    result = export_checkpoint(root / "m.pt", root / "e", parity_samples=1, input_shape="1x1x64x64", log=lines.append)
    print(json.dumps({"precisions": cpu_precisions(), "passed": result.report["passed"],
                      "said_7bit": sum("quantizing with 7-bit weights" in line for line in lines)}))
""")


def test_export_under_an_avx2_cap_claims_and_executes_f32(tmp_path):
    facts = _run_capped(SCRIPT, str(tmp_path), tmp_path=tmp_path)
    assert facts == {"precisions": ["fp32"], "passed": True, "said_7bit": 1}  # said once, in the build step
    report = json.loads((tmp_path / "e" / "parity.json").read_text())
    record = json.loads((tmp_path / "e" / "engine.json").read_text())
    openvino = [c for c in report["candidates"].values() if c["artefact"].endswith(".xml")]
    assert openvino, "no OpenVINO candidate was built"
    for entry in openvino:  # no bf16 anywhere, and what each IR claims is what its runtime graph executes
        assert "bf16" not in (entry["precision"], entry.get("executes"))
        assert entry["claim_broken"] is None
        assert set(entry["proof"]["mac_share"]) <= {"fp32", "int8"}
    assert record["precision"] in ("fp32", "int8") and "bf16" not in json.dumps(record["executes"])
    from regenrt.runtime.backends.openvino import read_metadata

    for xml in (tmp_path / "e").glob("*int8*.xml"):  # quantized there with 7-bit weights
        assert read_metadata(xml)["int8"]["overflow_fix"] == "enable"


def test_probes_read_what_runs_natively_and_under_the_cap(tmp_path):
    from regenrt.runtime.backends.openvino import executes_bf16, int8_saturates

    flags = _flags()
    if not os.environ.get("ONEDNN_MAX_CPU_ISA"):  # the suite itself may run capped (how AVX2 is reproduced here)
        assert executes_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})
        assert int8_saturates() == (not flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    capped = _run_capped("""
        import json
        from regenrt.runtime.backends.openvino import executes_bf16, int8_saturates
        print(json.dumps({"bf16": executes_bf16(), "saturates": int8_saturates()}))
    """, tmp_path=tmp_path)
    assert capped == {"bf16": False, "saturates": True}


QUANTIZE = """
    import json, sys
    from pathlib import Path
    import numpy as np, torch
    from regenrt.export.int8 import quantize
    from regenrt.export.onnx_export import export_onnx
    from regenrt.runtime.backends.openvino import read_metadata

    class Ctx:
        calibration = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
        def derived(self, precision, **extra):
            return {"precision": precision, "input": {"example_shape": [1, 3, 32, 32]}, **extra}

    root = Path(sys.argv[1])
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1),
                              torch.nn.ReLU(), torch.nn.Conv2d(16, 2, 3, padding=1)).eval()
    export_onnx(net, root / "m.onnx", example=torch.zeros(1, 3, 32, 32), dynamic_hw=True)
    xml = quantize(root / "m.onnx", root / sys.argv[2], Ctx(), ignored=())
    print(json.dumps({"overflow_fix": read_metadata(xml)["int8"]["overflow_fix"]}))
"""

OPEN = """
    import json, sys
    from regenrt.errors import RegenrtError
    from regenrt.runtime.backends.openvino import OpenVinoRunner
    try:
        OpenVinoRunner(sys.argv[1], cache=False)
        print(json.dumps({"opened": True}))
    except RegenrtError as exc:
        print(json.dumps({"opened": False, "message": str(exc)}))
"""


@pytest.mark.full
def test_int8_quantized_for_the_cpu_and_a_vnni_ir_refused_where_int8_saturates(tmp_path):
    """Natively the quantization guards what this CPU needs; under the cap it always takes 7-bit weights; an IR
    quantized with only the first layer guarded (what a VNNI machine writes) is refused under the cap, the 7-bit
    one opens."""
    from regenrt.runtime.backends.openvino import int8_saturates

    native = subprocess.run([sys.executable, "-c", textwrap.dedent(QUANTIZE), str(tmp_path), "native.xml"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "REGENRT_CACHE_DIR": str(tmp_path)})
    assert native.returncode == 0, native.stderr[-3000:]
    expected = "enable" if int8_saturates() else "first_layer_only"
    assert json.loads(native.stdout.strip().splitlines()[-1]) == {"overflow_fix": expected}
    assert _run_capped(QUANTIZE, str(tmp_path), "capped.xml", tmp_path=tmp_path) == {"overflow_fix": "enable"}
    import openvino as ov

    from regenrt.runtime.backends.openvino import RT_INFO_KEY, read_metadata

    for fix in ("first_layer_only", "enable", None):  # the same IR labelled as each machine would have written it
        meta = read_metadata(tmp_path / "capped.xml")  # (None: written before regenrt recorded it, NNCF's default)
        meta["int8"]["overflow_fix"] = fix
        if fix is None:
            del meta["int8"]["overflow_fix"]
        model = ov.Core().read_model(str(tmp_path / "capped.xml"))
        model.set_rt_info(json.dumps(meta), [RT_INFO_KEY])
        ov.save_model(model, str(tmp_path / f"{fix}.xml"), compress_to_fp16=False)
        opened = _run_capped(OPEN, str(tmp_path / f"{fix}.xml"), tmp_path=tmp_path)
        if fix == "enable":
            assert opened == {"opened": True}
        else:
            assert not opened["opened"] and "Re-export it here" in opened["message"]
