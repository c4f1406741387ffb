"""PyTorch module -> checked ONNX graph (FP32) with dynamic batch and, where the model allows, dynamic H/W.

Example::

    export_onnx(model, "model.onnx", example=torch.zeros(1, 1, 256, 256), dynamic_hw=True)
"""
from __future__ import annotations

import os
import warnings

import onnx
import torch

from ..errors import ExportError
from .onnx_io import check_model, save_onnx

OPSET = 18
EXPORTERS = ("torchscript", "dynamo")
INPUT_NAME, OUTPUT_NAME = "input", "output"


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, *, example: torch.Tensor, dynamic_hw: bool,
                spatial_multiple: int = 1, exporter: str = "torchscript") -> onnx.ModelProto:
    """Export ``model`` to ``path`` and return the checked, shape-inferred graph (also written to ``path``).

    ``torchscript`` (default) is torch's mature exporter and ~10x faster on these CNNs; ``dynamo`` is
    torch.export-based. Both give opset 18 and the same I/O names.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    axes = {0: "batch"}
    if dynamic_hw:
        axes.update({2: "height", 3: "width"})
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, do_constant_folding=True)
            else:
                _export_dynamo(model, path, example, dynamic_hw, spatial_multiple)
    except ExportError:
        raise
    except Exception as exc:  # torch raises many unrelated types here; the message is what matters
        raise ExportError(f"torch.onnx.export ({exporter}) failed: {type(exc).__name__}: {exc}") from None
    checked = check_model(onnx.load(str(path)), "the exported FP32 graph")  # torch's external data read back
    save_onnx(checked, path)
    return checked


def _export_dynamo(model, path, example, dynamic_hw, multiple) -> None:
    from torch.export import Dim

    if example.shape[0] < 2:  # torch.export specializes a dimension of size 1 to a constant
        example = example.repeat(2, 1, 1, 1)
    spec = {0: Dim("batch", min=1, max=4096)}
    if dynamic_hw:
        spec[2] = multiple * Dim("h_units", min=1, max=16384 // multiple)
        spec[3] = multiple * Dim("w_units", min=1, max=16384 // multiple)
    program = torch.onnx.export(model, (example,), None, dynamo=True, opset_version=OPSET,
                                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                dynamic_shapes={next(iter(_arg_names(model))): spec})
    program.save(str(path))


def _arg_names(model: torch.nn.Module) -> list[str]:
    import inspect

    return [p for p in inspect.signature(model.forward).parameters]
