"""Shared test fixtures. Tests that need ../shared/fixtures skip with a reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_FIXTURES = Path(os.environ.get("REGENRT_SHARED_FIXTURES",
                                      Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
DEEPLAB = "smp_deeplabv3plus_r18_phase"
PIX2PIX = "pix2pix_unet256_ngf16_batch"
CHECKPOINTS = {DEEPLAB: f"{DEEPLAB}.pt", PIX2PIX: f"{PIX2PIX}.pth"}


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not (SHARED_FIXTURES / CHECKPOINTS[DEEPLAB]).exists():
        pytest.skip(f"golden fixtures not found at {SHARED_FIXTURES} (a user checkout has no ../shared; "
                    "set REGENRT_SHARED_FIXTURES to point at them)")
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def deeplab_fixture(shared_fixtures):
    return shared_fixtures / CHECKPOINTS[DEEPLAB], dict(np.load(shared_fixtures / f"{DEEPLAB}.npz"))


@pytest.fixture(scope="session")
def pix2pix_fixture(shared_fixtures):
    return shared_fixtures / CHECKPOINTS[PIX2PIX], dict(np.load(shared_fixtures / f"{PIX2PIX}.npz"))
