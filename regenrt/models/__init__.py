"""Architectures (one module each, registered on import) and checkpoint loading."""
from . import deeplabv3plus, pix2pix_resnet, pix2pix_unet, smp_any, smp_unet, torchvision_seg  # noqa: F401  (registration side effect)
from .checkpoint import Checkpoint, load_checkpoint
from .loading import LoadedModel, build_from_state_dict, detect_architecture
from .registry import Architecture, create_model, list_architectures, resolve_architecture

__all__ = ["Architecture", "Checkpoint", "LoadedModel", "build_from_state_dict", "create_model",
           "detect_architecture", "list_architectures", "load_checkpoint", "resolve_architecture"]
