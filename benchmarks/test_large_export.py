"""Export of a model over protobuf's 2 GiB limit (issue 13): a pix2pix ``unet_128`` with ngf 240 — 2.2 GiB of FP32
weights — through export-engine (FP32 and FP16 graphs for ONNX Runtime, every artefact gated against PyTorch),
timed once, with the process's peak memory. Heavy (minutes, ~15 GB of memory, ~7 GB of disk): it runs only under
``pytest --benchmark``; the plain test run shows the same code path with the limit lowered
(tests/export/test_large_models.py).
"""
from __future__ import annotations

import resource

import numpy as np
import onnx
import pytest
import torch

from regenrt.export.onnx_io import EXTERNAL_DATA_BYTES
from regenrt.export.pipeline import export_checkpoint
from regenrt.models import create_model
from regenrt.runtime import Engine
from regenrt.runtime.engine import artefact_files

SMOKE = {"ngf": []}  # no smoke case: nothing of this size belongs in the default test run


@pytest.mark.parametrize("ngf", [240])
def test_large_export(benchmark, tmp_path, ngf):
    torch.manual_seed(0)
    model = create_model("unet_128", ngf=ngf).eval()
    weights = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    assert weights > 2**31  # over protobuf's limit: the case under test
    ckpt = tmp_path / "big.pt"
    torch.save(model.state_dict(), ckpt)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    del model
    out = tmp_path / "engine"
    result = benchmark.pedantic(lambda: export_checkpoint(ckpt, out, parity_samples=1, cpu_engine="onnxruntime",
                                                          int8="off"), rounds=1, iterations=1)
    graph = out / "model.onnx"
    files = artefact_files(graph)
    assert files == [graph, out / "model.onnx.data"] and graph.stat().st_size < 2**24
    onnx.checker.check_model(str(graph), full_check=True)
    fp16 = out / "model.fp16.onnx"  # half the bytes: under the limit, one file
    assert fp16.stat().st_size < EXTERNAL_DATA_BYTES and artefact_files(fp16) == [fp16]
    got = Engine.load(graph, device="cpu").infer(x)
    assert np.abs(got - ref).max() <= 1e-4 * (ref.max() - ref.min())
    benchmark.extra_info.update({
        "large_export": f"unet_128 ngf {ngf}", "weights_gib": weights / 2**30,
        "published": sorted(result.report["published"].values()),
        "onnx_bytes": {p.name: p.stat().st_size for p in files + [fp16]},
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    })
