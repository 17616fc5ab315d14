"""darkseg.models: AWD, SCB, DSL and the Mask R-CNN detector built on torchvision.

Public API::

    from darkseg.models import (ModelConfig, DSLConfig, build_model, param_groups, save_checkpoint,
                                load_model, load_torchvision_state_dict, AWD, SCB, SCBConv, dsl_loss)
"""

from __future__ import annotations

from .awd import AWD
from .checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    check_finite_weights,
    load_model,
    read_checkpoint,
    safe_torch_load,
    save_checkpoint,
)
from .config import DSLConfig, ModelConfig, ModelConfigError
from .detector import DarkBackbone, DarkMaskRCNN, DarkTransform, InputError, build_backbone, build_model
from .dsl import DSLLoss, dsl_loss
from .param_groups import param_groups, param_lr_mults
from .resnet import FrozenBatchNorm2d, ResNetBody
from .scb import LLPF, SCB, SCBConv, count_scb, fuse_scb
from .torchvision_weights import LoadReport, load_torchvision_state_dict

__all__ = [
    "AWD",
    "LLPF",
    "SCB",
    "SCBConv",
    "fuse_scb",
    "count_scb",
    "dsl_loss",
    "DSLLoss",
    "ModelConfig",
    "DSLConfig",
    "ModelConfigError",
    "ResNetBody",
    "FrozenBatchNorm2d",
    "DarkBackbone",
    "DarkTransform",
    "DarkMaskRCNN",
    "InputError",
    "build_backbone",
    "build_model",
    "param_groups",
    "param_lr_mults",
    "save_checkpoint",
    "load_model",
    "check_finite_weights",
    "read_checkpoint",
    "UnsafeCheckpointError",
    "safe_torch_load",
    "CheckpointError",
    "load_torchvision_state_dict",
    "LoadReport",
]
