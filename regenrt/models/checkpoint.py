"""Safe checkpoint loading: never executes pickled code unless the caller opts in.

``load_checkpoint`` reads ``.pt/.pth/.ckpt`` with ``torch.load(weights_only=True)`` passed explicitly (an explicit
argument wins over ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``) and ``.safetensors`` with safetensors, unwraps training
dicts and ``module.`` prefixes, and returns float32 tensors with what it did recorded.

Example::

    ckpt = load_checkpoint("ckpt.pt")
    ckpt.state_dict["encoder.conv1.weight"].shape
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, MissingCheckpointError, SecurityWarning, UnsafeCheckpointError, UnsafeTorchError
from ..hashing import sha256_file
from ..wording import shorten

# Keys under which training scripts keep the weights, most specific first (pix2pix's own files are plain).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model_state", "net_G", "netG", "generator", "model",
                "ema", "model_ema", "state_dict_ema", "params", "weights", "net")
# Prefixes added by wrappers around a module: DataParallel/DDP and torch.compile.
STRIP_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class Checkpoint:
    path: Path
    sha256: str
    state_dict: dict[str, torch.Tensor]
    source_dtypes: list[str]
    wrapper_key: str | None = None
    stripped_prefixes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # an smp save_pretrained directory (or a weights file beside its config.json): the architecture and the
    # options its config.json states (the caller's flags still win)
    arch: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    config_path: Path | None = None


def _check_path(path: Path) -> None:
    if not path.exists():
        raise MissingCheckpointError(f"checkpoint {str(path)!r} does not exist; check the path.")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a directory; pass the checkpoint file inside it.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes); it was probably not written fully.")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"checkpoint {str(path)!r} is not readable by this user (permission denied); "
                              "fix its permissions (chmod) or run as a user who can read it.")


# torch.load(weights_only=True) of releases before 2.10 has a heap memory-corruption flaw a crafted checkpoint can
# reach (CVE-2026-24747, GHSA-63cw-57p8-fm3p; fixed in 2.10.0)
SAFE_UNPICKLER_TORCH = (2, 10)


def torch_unpickler_warning() -> str | None:
    """A warning when this torch's weights-only unpickler is one the advisory lists as exploitable."""
    found = re.match(r"(\d+)\.(\d+)", torch.__version__)
    if found is None:
        return f"torch {torch.__version__!r} has no readable version: cannot tell whether its weights-only " \
               "unpickler has the CVE-2026-24747 fix (torch >= 2.10); load only checkpoints you trust"
    if tuple(map(int, found.groups())) < SAFE_UNPICKLER_TORCH:
        return (f"torch {torch.__version__} predates the fix of CVE-2026-24747 (GHSA-63cw-57p8-fm3p): a crafted "
                "checkpoint can corrupt memory even with weights_only=True. Upgrade to torch >= 2.10 before loading "
                "checkpoints you do not trust")
    return None


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    if trust_pickle:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        # argparse.Namespace is how many training scripts store their options; it runs no code when rebuilt.
        # A plain pickle (not torch.save) makes torch warn of its protocol and ask for a bug report before it
        # fails: the failure is reported as what it is (not a PyTorch file), the warning would only mislead.
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL\s+([\w.]+)", str(exc))
        if found:
            raise UnsafeCheckpointError(
                f"checkpoint {str(path)!r} can only be loaded by executing pickled code (it references "
                f"{found.group(1)}). regenrt refuses that by default because loading it could run arbitrary code. "
                "Re-save it as a plain state_dict (torch.save(model.state_dict(), ...)) or, only if you trust its "
                "origin, pass --trust-pickle (Python: trust_pickle=True; recorded as a warning in every artefact)."
            ) from None
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a readable PyTorch file ({_short(exc)}); it may be truncated or "
            "corrupted — copy it again from its source (a file this user may not read is reported as such)."
        ) from None
    except Exception as exc:  # garbage bytes make the unpickler fail in any number of ways; none ran code
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a readable PyTorch file ({_short(exc)}); it may be truncated or "
            "corrupted — copy it again from its source (a file this user may not read is reported as such)."
        ) from None


def _short(exc: BaseException) -> str:
    """The informative line of an exception (torch's weights_only errors start with a generic paragraph)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    specific = [ln for ln in lines if not ln.startswith(("Weights only load failed", "Check the documentation",
                                                         "Please file an issue"))]
    text = (specific or lines or [type(exc).__name__])[0]
    return shorten(text.replace("WeightsUnpickler error: ", ""), 200)


def _safetensors_load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a readable safetensors file ({_short(exc)}).") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _unwrap(obj: Any, chosen: str | None) -> tuple[dict[str, torch.Tensor], str | None]:
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict(), None
    if _is_state_dict(obj):
        return obj, None
    if not isinstance(obj, dict):
        raise CheckpointError(f"expected a state_dict or a dict wrapping one, found {type(obj).__name__}.")
    keys = [chosen] if chosen else [k for k in WRAPPER_KEYS if k in obj]
    for key in keys:
        if key not in obj:
            raise CheckpointError(f"--state-key {key!r} is not in the checkpoint; its keys are {sorted(map(str, obj))}.")
        try:
            inner, deeper = _unwrap(obj[key], None)
        except CheckpointError:
            continue
        return inner, key if deeper is None else f"{key}.{deeper}"
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and all(isinstance(k, str) for k in tensors) and len(tensors) >= len(obj) // 2:
        return tensors, None  # a state_dict with a few stray entries (e.g. an epoch counter) beside it
    raise CheckpointError(
        f"no state_dict found in the checkpoint: its top-level keys are {sorted(map(str, obj))[:20]}. "
        "Pass --state-key NAME to say which entry holds the weights."
    )


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    stripped = []
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                stripped.append(prefix)
                changed = True
    return sd, stripped


def check_unpickler(path: Path, accept_unsafe_torch: bool) -> str | None:
    """Refuse to unpickle with a torch the advisory lists (:class:`UnsafeTorchError`), unless the caller accepted
    the risk: then the warning, also shown as a :class:`SecurityWarning` (stderr, whatever the quiet mode)."""
    warning = torch_unpickler_warning() if path.suffix != ".safetensors" else None
    if warning is None:
        return None
    if not accept_unsafe_torch:
        raise UnsafeTorchError(
            f"refusing to unpickle {path.name}: {warning}. Upgrade torch (pip install 'torch>=2.10'), or give the "
            "weights as .safetensors (no unpickler involved), or — only for a checkpoint you trust — pass "
            "--accept-unsafe-torch (Python: accept_unsafe_torch=True); the risk is then recorded in every artefact.")
    _warn(f"{warning} (accepted with --accept-unsafe-torch)")
    return warning


def _warn(message: str) -> None:
    warnings.warn(message, SecurityWarning, stacklevel=3)


def load_checkpoint(path: str | os.PathLike, *, trust_pickle: bool = False, state_key: str | None = None,
                    accept_unsafe_torch: bool = False) -> Checkpoint:
    """Read a checkpoint without executing code; raise :class:`CheckpointError` with a fix on any problem. A .pt
    with a torch older than the unpickler's security fix is refused unless ``accept_unsafe_torch``."""
    path = Path(path)
    from .smp_pretrained import find_pretrained

    pretrained = find_pretrained(path) if path.exists() else None
    if pretrained is not None:
        path = pretrained.weights
    _check_path(path)
    unsafe = check_unpickler(path, accept_unsafe_torch)
    if trust_pickle:
        _warn(f"{path.name} is unpickled with --trust-pickle: its code runs with your permissions")
    if path.suffix == ".safetensors":
        obj: Any = _safetensors_load(path)
    else:
        obj = _torch_load(path, trust_pickle)
    sd, key = _unwrap(obj, state_key)
    sd, stripped = _strip_prefixes(dict(sd))
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in sd.values()})
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    cautions = [w for w in [unsafe] if w]
    if trust_pickle:
        cautions.append("loaded with --trust-pickle: the checkpoint was unpickled with code execution allowed")
    if pretrained is None:
        return Checkpoint(path, sha256_file(path), sd, dtypes, key, stripped, cautions)
    return Checkpoint(path, sha256_file(path), sd, dtypes, key, stripped, cautions, pretrained.arch,
                      pretrained.overrides, pretrained.config_path)
