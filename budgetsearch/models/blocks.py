"""Pre-activation residual block shared by the Wide ResNets and the CIFAR ResNets."""

from __future__ import annotations

import torch
from torch import nn


class PreActBlock(nn.Module):
    """BN-ReLU-conv3×3-BN-ReLU-conv3×3 with an identity or 1×1-projection shortcut.

    The layout follows Zagoruyko & Komodakis' Wide ResNet: when the shape changes, the shortcut
    projects the pre-activated input. The inner channels (``conv1`` out, ``bn2``) are the ones a
    channel pruner gates after ``bn2`` (BAR paper, section 4).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        residual = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.relu(self.bn2(out))
        out = self.conv2(out)
        return out + residual


class PreActResNet(nn.Module):
    """Stem conv, three groups of :class:`PreActBlock`, BN-ReLU, global pooling, linear head."""

    def __init__(
        self,
        *,
        widths: tuple[int, int, int, int],
        blocks_per_group: int,
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        stem, *group_widths = widths
        self.conv1 = nn.Conv2d(in_channels, stem, 3, padding=1, bias=False)
        groups = []
        in_planes = stem
        for index, planes in enumerate(group_widths):
            stride = 1 if index == 0 else 2
            blocks = []
            for block_index in range(blocks_per_group):
                blocks.append(PreActBlock(in_planes, planes, stride if block_index == 0 else 1))
                in_planes = planes
            groups.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = groups
        self.bn = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer3(self.layer2(self.layer1(out)))
        out = self.pool(self.relu(self.bn(out)))
        return self.fc(torch.flatten(out, 1))


def _init_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
