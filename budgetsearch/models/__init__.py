"""Built-in networks with a width multiplier, so every one has a thinner dense twin."""

from __future__ import annotations

from budgetsearch.models import resnet as _resnet  # noqa: F401  (registers the ResNets)
from budgetsearch.models import wrn as _wrn  # noqa: F401  (registers the Wide ResNets)
from budgetsearch.models.blocks import PreActBlock, PreActResNet
from budgetsearch.models.mixed import CompactResNet, MixedBlock
from budgetsearch.models.registry import build_model, describe_models, model_names, register_model
from budgetsearch.models.resnet import cifar_resnet
from budgetsearch.models.width import scale_channels, thinner_dense_width
from budgetsearch.models.wrn import wide_resnet

__all__ = [
    "CompactResNet",
    "MixedBlock",
    "PreActBlock",
    "PreActResNet",
    "build_model",
    "cifar_resnet",
    "describe_models",
    "model_names",
    "register_model",
    "scale_channels",
    "thinner_dense_width",
    "wide_resnet",
]
