"""A small residual CNN with squeeze-excitation and a depthwise stage: a network budgetsearch does
not ship, for trying the CLI and the Python API on "your own" model.

    budgetsearch run --model examples/se_resnet.py:se_resnet --pruner bar --target-flops 50% \\
        --device jetson --trials 4 --out runs/example
"""

from __future__ import annotations

from torch import Tensor, nn


class SqueezeExcite(nn.Module):
    """Channel gating from global context (Hu et al.): x · σ(W₂ δ(W₁ mean(x)))."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(4, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.fc2(nn.functional.relu(self.fc1(self.pool(x))))
        return x * scale.sigmoid()


class Block(nn.Module):
    """conv-BN-ReLU, depthwise conv-BN-ReLU, conv-BN, SE, plus a (projected) shortcut."""

    def __init__(self, inp: int, out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.dw = nn.Conv2d(out, out, 3, stride, 1, groups=out, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = SqueezeExcite(out)
        self.shortcut = (nn.Identity() if stride == 1 and inp == out else nn.Sequential(
            nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out)))

    def forward(self, x: Tensor) -> Tensor:
        y = nn.functional.relu(self.bn1(self.conv1(x)))
        y = nn.functional.relu(self.bn2(self.dw(y)))
        y = self.se(self.bn3(self.conv2(y)))
        return nn.functional.relu(y + self.shortcut(x))


def se_resnet(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Stem 32 → blocks 32, 64 (stride 2), 128 (stride 2) → pool → linear."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        Block(32, 32, 1), Block(32, 64, 2), Block(64, 128, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))
