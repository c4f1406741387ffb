"""What an engine really executes, read back from the engine after it was compiled: the precision of each heavy
layer (convolution, transposed convolution, matrix product) and its share of the MACs.

The TensorRT layer reads its engine's layer information the same way; here each CPU backend supplies the list of
``(name, layer type, runtime precision, MACs)`` from its own execution graph (OpenVINO: the compiled model's
runtime model; ONNX Runtime: the session's profile of one run) and :func:`summarize` turns it into the proof
recorded in ``parity.json`` and ``engine.json``.

Example::

    proof = runner.proof()                 # {"executes": "bf16", "mac_share": {"bf16": 0.97, "fp32": 0.03}, ...}
    check_claim("bf16", proof)             # None, or a sentence saying what really runs
"""
from __future__ import annotations

from collections import defaultdict

PRECISION_NAMES = {  # runtime precision spellings of the backends -> regenrt's names
    "f32": "fp32", "fp32": "fp32", "float": "fp32", "float32": "fp32",
    "bf16": "bf16", "bfloat16": "bf16",
    "f16": "fp16", "fp16": "fp16", "float16": "fp16",
    "u8": "int8", "i8": "int8", "int8": "int8", "uint8": "int8",
}
CLAIM_SHARE = 0.5  # a claim holds when the claimed precision carries at least this share of the MACs


def normalize(precision: str) -> str:
    return PRECISION_NAMES.get(precision.lower(), precision.lower())


def summarize(layers: list[tuple[str, str, str, int]], source: str) -> dict:
    """``layers``: (name, layer type, runtime precision, MACs per batch item; 0 when unknown) of every heavy layer."""
    macs, count = defaultdict(int), defaultdict(int)
    for _, _, precision, n in layers:
        macs[normalize(precision)] += n
        count[normalize(precision)] += 1
    total_macs, total = sum(macs.values()), sum(count.values())
    share = {k: round(v / total_macs, 4) for k, v in sorted(macs.items())} if total_macs else {}
    layer_share = {k: round(v / total, 4) for k, v in sorted(count.items())} if total else {}
    basis = share or layer_share
    executes = max(basis, key=basis.get) if basis else "none"
    return {"source": source, "heavy_layers": total, "macs_per_item": total_macs, "mac_share": share,
            "layer_share": layer_share, "executes": executes,
            "by_precision": {k: [name for name, _, p, _ in layers if normalize(p) == k][:12] for k in count
                             if k != executes}}


def check_claim(claim: str, proof: dict) -> str | None:
    """None when ``claim`` is what the engine executes (the claimed precision carries most MACs; for an FP32 claim
    every heavy layer), else a sentence saying what really runs."""
    share = proof.get("mac_share") or proof.get("layer_share") or {}
    got = share.get(claim, 0.0)
    if not proof.get("heavy_layers"):
        return f"no heavy layer found in the execution graph ({proof.get('source')}); the {claim} claim is unproven"
    holds = got >= 0.9999 if claim == "fp32" else got >= CLAIM_SHARE
    if holds:
        return None
    parts = ", ".join(f"{k} {v:.1%}" for k, v in sorted(share.items(), key=lambda kv: -kv[1]))
    return f"claims {claim} but its heavy layers execute as {parts} of MACs ({proof.get('source')})"


def check_name(name: str, proof: dict) -> str | None:
    """The executed-precision rule applied to the artefact's name: an INT8 IR named ``…int8-bf16…`` promises that
    its unquantized layers run BF16; None when most of their MACs do, else a sentence saying what runs instead."""
    if "bf16" not in name or "int8" not in name:
        return None
    share = proof.get("mac_share") or proof.get("layer_share") or {}
    rest = {k: v for k, v in share.items() if k != "int8"}
    if not rest or rest.get("bf16", 0.0) >= sum(rest.values()) / 2:
        return None
    return (f"named for BF16 in its unquantized layers, but they execute as {format_shares(rest)} of MACs "
            f"(all layers: {format_shares(share)}; {proof.get('source')})")


def format_shares(shares: dict[str, float]) -> str:
    """``{"int8": 0.996, "fp32": 0.004}`` -> ``"int8 100%, fp32 <1%"``: largest first, none shown as 0 % (a share
    that exists is never printed as nothing), exact zeros left out."""
    parts = [(k, v) for k, v in sorted(shares.items(), key=lambda kv: -kv[1]) if v > 0]
    return ", ".join(f"{k} {v:.0%}" if v >= 0.005 else f"{k} <1%" for k, v in parts)
