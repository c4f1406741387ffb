"""Test-environment workaround, never the product's path: the PyPI torchvision installed beside the CPU build of
torch ships compiled ops that do not match it, and its ``_meta_registrations`` fails on import. An empty module in
its place lets segmentation_models_pytorch and timm import (they need torchvision's Python only). The test
conftest puts this folder on PYTHONPATH, so subprocesses the tests start (export-engine, run-infer) get it too."""
import sys
import types

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
