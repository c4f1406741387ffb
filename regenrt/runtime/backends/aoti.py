"""AOTInductor backend (``*.pt2``): a package PyTorch Inductor compiled ahead of time for this machine
(:mod:`regenrt.export.aoti`). Its fingerprint is checked before the package is loaded (torch version, device,
compute capability or CPU ISA, sha256, parity verdict); the device it runs on is read back from the loaded package.

Example::

    runner = AotiRunner("engine/model.aoti-cpu.pt2", "cpu")
    y = runner.infer(x)          # float32 NCHW in and out
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...errors import InputError, RegenrtError


def read_metadata(path: Path) -> dict:
    from ...export.aoti import read_fingerprint

    return read_fingerprint(path)["metadata"]


def aoti_devices() -> list[str]:
    try:
        import torch
    except ImportError:
        return []
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class AotiRunner:
    def __init__(self, path: str | Path, device: str = "cpu", allow_unverified: bool = False):
        import torch

        from ...export.aoti import check_fingerprint

        self.path = Path(path)
        self.fingerprint = check_fingerprint(self.path, device, allow_unverified=allow_unverified)
        self.device = device
        self.metadata = self.fingerprint["metadata"]
        try:
            self.model = torch._inductor.aoti_load_package(str(self.path))
        except Exception as exc:
            raise RegenrtError(f"{self.path.name} could not be loaded by this torch ({type(exc).__name__}: {exc}); "
                               f"rebuild it: {self.fingerprint['rebuild']}") from None
        built_for = self.model.get_metadata().get("AOTI_DEVICE_KEY")
        if built_for != device:  # read back from the package itself, not from the fingerprint
            raise RegenrtError(f"{self.path.name} holds code for {built_for!r}, not {device!r}; rebuild it: "
                               f"{self.fingerprint['rebuild']}")
        self.runs_on = built_for
        shapes = self.fingerprint.get("shapes", {})
        self.max_batch = int(shapes.get("max_batch", 1))  # larger batches are split (the pipeline reads this too)
        self._hw = (tuple(shapes.get("h_range", (0, 1 << 30))), tuple(shapes.get("w_range", (0, 1 << 30))))
        self._lock = threading.Lock()  # one call at a time into the compiled model's buffers

    def _check(self, x: np.ndarray) -> None:
        """The compiled code checks no shapes (AOTInductor checks inputs only under AOTI_RUNTIME_CHECK_INPUTS):
        a size outside the range it was compiled for is refused here, before it runs."""
        (h_lo, h_hi), (w_lo, w_hi) = self._hw
        if x.ndim != 4 or not (h_lo <= x.shape[2] <= h_hi and w_lo <= x.shape[3] <= w_hi):
            raise InputError(f"{self.path.name} was compiled for NxCxHxW inputs with H in [{h_lo}, {h_hi}] and W in "
                             f"[{w_lo}, {w_hi}], got {tuple(x.shape)}; re-export with a larger --input-shape "
                             f"(the range is 2 .. 2x its blocks): {self.fingerprint['rebuild']}")

    def infer(self, x: np.ndarray) -> np.ndarray:
        import torch

        self._check(x)
        if len(x) > self.max_batch:
            return np.concatenate([self.infer(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)])
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if self.device == "cuda":
            t = t.to("cuda", non_blocking=False)
        with self._lock, torch.no_grad():
            y = self.model(t)
        return np.ascontiguousarray(y.detach().float().cpu().numpy())  # channels_last outputs made NCHW-contiguous

    def proof(self) -> dict:
        """What runs: the device read back from the loaded package, the precision of its convolutions from the
        program it was compiled from (recorded at build; AOTInductor exposes no per-layer report at run time)."""
        layers = self.fingerprint.get("layers") or {}
        return {**layers, "executes": max(layers.get("layer_share") or {"unknown": 1}, key=(layers.get(
                "layer_share") or {"unknown": 1}).get),
                "source": f"{layers.get('source', 'no layer record')}; runs on {self.runs_on} (package metadata)"}
