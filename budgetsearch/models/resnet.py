"""CIFAR-style pre-activation ResNets (He et al.): ResNet-20/32/56, 16-32-64 channels."""

from __future__ import annotations

from torch import nn

from budgetsearch.models.blocks import PreActResNet
from budgetsearch.models.registry import register_model
from budgetsearch.models.width import scale_channels


def cifar_resnet(
    depth: int,
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    width_multiplier: float = 1.0,
) -> PreActResNet:
    """ResNet-``depth`` with (depth−2)/6 basic blocks per group and 16, 32, 64 channels."""
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(
            f"CIFAR ResNet depth must be 6n+2 with n ≥ 1 (8, 14, 20, ...), got {depth}"
        )
    widths = tuple(scale_channels(c, width_multiplier) for c in (16, 16, 32, 64))
    return PreActResNet(
        widths=widths,  # type: ignore[arg-type]
        blocks_per_group=(depth - 2) // 6,
        num_classes=num_classes,
        in_channels=in_channels,
    )


def _register(depth: int) -> None:
    @register_model(f"resnet-{depth}", f"CIFAR pre-activation ResNet-{depth}")
    def factory(*, num_classes: int = 10, in_channels: int = 1,
                width_multiplier: float = 1.0) -> nn.Module:
        return cifar_resnet(depth, num_classes=num_classes, in_channels=in_channels,
                            width_multiplier=width_multiplier)


for _depth in (20, 32, 56):
    _register(_depth)
