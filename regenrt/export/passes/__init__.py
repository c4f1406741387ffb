"""Graph passes applied to the CPU engine's graph (never to ``model.onnx``); see :mod:`.base`."""
from .base import GraphPass, get_pass, list_passes, register_pass
from . import resize_matmul, subpixel  # noqa: F401  (register their passes)

__all__ = ["GraphPass", "get_pass", "list_passes", "register_pass"]
