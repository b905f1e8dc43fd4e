"""Built-in networks with a width multiplier, so every one has a thinner dense twin; model specs
(a built-in name, ``file.py:FACTORY`` or ``package.module:FACTORY``) resolved in one place."""

from __future__ import annotations

from budgetsearch.models import resnet as _resnet  # noqa: F401  (registers the ResNets)
from budgetsearch.models import wrn as _wrn  # noqa: F401  (registers the Wide ResNets)
from budgetsearch.models.blocks import PreActBlock, PreActResNet
from budgetsearch.models.mixed import CompactResNet, MixedBlock
from budgetsearch.models.registry import describe_models, model_names, register_model
from budgetsearch.models.resnet import cifar_resnet
from budgetsearch.models.spec import (
    build_model,
    canonical_model_spec,
    model_label,
    resolve_model_spec,
)
from budgetsearch.models.width import scale_channels, thinner_dense_width
from budgetsearch.models.wrn import wide_resnet

__all__ = [
    "CompactResNet",
    "MixedBlock",
    "PreActBlock",
    "PreActResNet",
    "build_model",
    "canonical_model_spec",
    "cifar_resnet",
    "describe_models",
    "model_label",
    "model_names",
    "register_model",
    "resolve_model_spec",
    "scale_channels",
    "thinner_dense_width",
    "wide_resnet",
]
