"""Wide ResNets WRN-d-k (Zagoruyko & Komodakis), the erf-loss paper's WRN-16-8 among them."""

from __future__ import annotations

from torch import nn

from budgetsearch.models.blocks import PreActResNet
from budgetsearch.models.registry import register_model
from budgetsearch.models.width import scale_channels


def wide_resnet(
    depth: int,
    widen_factor: int,
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    width_multiplier: float = 1.0,
) -> PreActResNet:
    """WRN-``depth``-``widen_factor``: groups of 16k, 32k, 64k channels, (depth−4)/6 blocks each.

    ``width_multiplier`` scales every layer's channels (eq. 12 of the erf-loss paper).
    """
    if depth < 10 or (depth - 4) % 6 != 0:
        raise ValueError(f"WRN depth must be 6n+4 with n ≥ 1 (10, 16, 22, 28, ...), got {depth}")
    if widen_factor < 1:
        raise ValueError(f"WRN widen_factor must be a positive integer, got {widen_factor}")
    base = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
    widths = tuple(scale_channels(c, width_multiplier) for c in base)
    return PreActResNet(
        widths=widths,  # type: ignore[arg-type]
        blocks_per_group=(depth - 4) // 6,
        num_classes=num_classes,
        in_channels=in_channels,
    )


def _register(depth: int, widen_factor: int) -> None:
    @register_model(
        f"wrn-{depth}-{widen_factor}", f"Wide ResNet, depth {depth}, widen factor {widen_factor}"
    )
    def factory(*, num_classes: int = 10, in_channels: int = 1,
                width_multiplier: float = 1.0) -> nn.Module:
        return wide_resnet(depth, widen_factor, num_classes=num_classes, in_channels=in_channels,
                           width_multiplier=width_multiplier)


for _depth, _k in ((10, 1), (16, 1), (22, 1), (16, 2), (16, 4), (16, 8), (22, 2), (28, 10)):
    _register(_depth, _k)
