"""Shared test fixtures. Tests that need ../shared/fixtures skip with a reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

# CUDA kernels run in numba's simulator unless a real GPU run is asked for (REGENRT_REAL_CUDA=1). This must be
# set before numba is first imported.
if not os.environ.get("REGENRT_REAL_CUDA"):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

# The suite's OpenVINO compiles go to a temporary cache (removed at exit), never the user's ~/.cache/regenrt:
# a run used to add ~0.8 GB there. Subprocesses inherit it.
if "REGENRT_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _CACHE = tempfile.mkdtemp(prefix="regenrt-test-cache-")
    os.environ["REGENRT_CACHE_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import numpy as np
import pytest

SHARED_FIXTURES = Path(os.environ.get("REGENRT_SHARED_FIXTURES",
                                      Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
DEEPLAB = "smp_deeplabv3plus_r18_phase"
PIX2PIX = "pix2pix_unet256_ngf16_batch"
CHECKPOINTS = {DEEPLAB: f"{DEEPLAB}.pt", PIX2PIX: f"{PIX2PIX}.pth"}


FIXTURE_REASON = (f"golden fixtures not found at {SHARED_FIXTURES} (a user checkout has no ../shared; set "
                  "REGENRT_SHARED_FIXTURES to point at them)")
_fixture_skips: list[str] = []


def _have_fixtures() -> bool:
    """The fixtures folder is there (a GPU check may carry only some of its files: each fixture skips alone)."""
    return SHARED_FIXTURES.is_dir() and any(SHARED_FIXTURES.glob("*.npz"))


def _fixture(name: str) -> tuple[Path, dict]:
    path = SHARED_FIXTURES / CHECKPOINTS[name]
    if not path.exists():
        pytest.skip(f"{path.name} is not among the fixtures at {SHARED_FIXTURES}")
    return path, dict(np.load(SHARED_FIXTURES / f"{name}.npz"))


def pytest_collection_modifyitems(config, items):
    """Without ../shared, the tests that need the authors' fixtures are left out with one line for all of them
    (pytest -ra would print one skip line per test)."""
    if _have_fixtures():
        return
    drop = [item for item in items if "shared_fixtures" in getattr(item, "fixturenames", ())]
    if drop:
        _fixture_skips.extend(item.nodeid for item in drop)
        items[:] = [item for item in items if item not in drop]
        config.hook.pytest_deselected(items=drop)


def pytest_terminal_summary(terminalreporter):
    if _fixture_skips:
        terminalreporter.write_line(f"regenrt: {len(_fixture_skips)} test(s) that compare against the authors' "
                                    f"golden checkpoints were not run: {FIXTURE_REASON}")


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not _have_fixtures():
        pytest.skip(FIXTURE_REASON)
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def deeplab_fixture(shared_fixtures):
    return _fixture(DEEPLAB)


@pytest.fixture(scope="session")
def pix2pix_fixture(shared_fixtures):
    return _fixture(PIX2PIX)


@pytest.fixture(scope="session")
def deeplab_engine_dir(deeplab_fixture, tmp_path_factory):
    """The shared DeepLabV3+ checkpoint exported once per session (FP32 + FP16 + OpenVINO; INT8 candidates are
    exported and judged in tests/export/test_int8.py, test_fixture_export.py and the demo's export, not by every
    runtime test; the same for the two below)."""
    from regenrt.export.pipeline import export_checkpoint

    out = tmp_path_factory.mktemp("deeplab_engine")
    export_checkpoint(deeplab_fixture[0], out, parity_samples=2, int8="off")
    return out


@pytest.fixture(scope="session")
def pix2pix_engine_dir(pix2pix_fixture, tmp_path_factory):
    from regenrt.export.pipeline import export_checkpoint

    out = tmp_path_factory.mktemp("pix2pix_engine")
    export_checkpoint(pix2pix_fixture[0], out, parity_samples=2, int8="off")
    return out


@pytest.fixture(scope="session")
def segmentation_setup(tmp_path_factory):
    """A small 4-class DeepLabV3+ (no author fixture exists for segmentation) and its exported engine."""
    import torch

    from regenrt.export.pipeline import export_checkpoint
    from regenrt.models import create_model

    torch.manual_seed(0)
    model = create_model("deeplabv3plus_r18", in_channels=3, classes=4).eval()
    root = tmp_path_factory.mktemp("seg")
    torch.save(model.state_dict(), root / "seg.pt")
    export_checkpoint(root / "seg.pt", root / "engine", parity_samples=1, input_shape="1x3x64x64", int8="off")
    return model, root / "engine"
