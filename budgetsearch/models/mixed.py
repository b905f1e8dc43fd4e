"""The mixed-connectivity residual block (BAR supp. section 2) and the compact pre-act ResNet.

A pruned residual network keeps, per stage, a residual stream of some width ``S``. A block reads
only the stream channels ``I_in`` it needs and adds its output ("delta") only to the channels
``I_out`` it computes:

    Δ = f(h[I_in]);  h_out = scatterAdd(h, Δ, I_out)

so a pruned feature of the stream passes through untouched (Fig. 4b), a new one is created
(Fig. 4c), or both (Fig. 4d). A pooling block (stride / width change) starts a new stream from its
1×1 shortcut, scattered to ``I_sc``. These modules are plain PyTorch: ``torch.save(model)`` and
``torch.load`` round-trip them.

Example:
    >>> import torch
    >>> block = MixedBlock(bn1=nn.BatchNorm2d(2), conv1=nn.Conv2d(2, 3, 3, padding=1),
    ...                    bn2=nn.BatchNorm2d(3), conv2=nn.Conv2d(3, 1, 3, padding=1),
    ...                    in_index=torch.tensor([0, 2]), out_index=torch.tensor([1]), out_width=4)
    >>> block(torch.randn(1, 4, 5, 5)).shape
    torch.Size([1, 4, 5, 5])
"""

from __future__ import annotations

import torch
from torch import nn


class MixedBlock(nn.Module):
    """Pre-activation block with mixed connectivity.

    ``pre = relu(bn1(h[I_in]))``; the branch ``conv2(relu(bn2(conv1(pre))))`` (absent when fully
    pruned) is index-added at ``I_out``; the residual is ``h`` itself (``shortcut is None``) or a
    new stream of width ``out_width`` holding ``shortcut(pre)`` at ``I_sc`` (pooling block).
    ``in_index=None`` reads every channel (no copy).
    """

    def __init__(
        self,
        *,
        bn1: nn.BatchNorm2d,
        conv1: nn.Conv2d | None,
        bn2: nn.BatchNorm2d | None,
        conv2: nn.Conv2d | None,
        in_index: torch.Tensor | None,
        out_index: torch.Tensor | None,
        out_width: int,
        shortcut: nn.Conv2d | None = None,
        shortcut_index: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if (conv1 is None) != (conv2 is None) or (conv2 is None) != (out_index is None):
            raise ValueError("conv1, bn2, conv2 and out_index are all given or all None")
        if (shortcut is None) != (shortcut_index is None):
            raise ValueError("shortcut and shortcut_index are given together")
        self.bn1 = bn1
        self.conv1 = conv1
        self.bn2 = bn2
        self.conv2 = conv2
        self.shortcut = shortcut
        self.relu = nn.ReLU(inplace=False)
        self.out_width = out_width
        self.register_buffer("in_index", in_index)
        self.register_buffer("out_index", out_index)
        self.register_buffer("shortcut_index", shortcut_index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        selected = x if self.in_index is None else x.index_select(1, self.in_index)
        pre = self.relu(self.bn1(selected))
        if self.shortcut is None:
            out = x
        else:
            projected = self.shortcut(pre)
            if self.shortcut_index is not None and projected.shape[1] == self.out_width:
                out = projected  # the shortcut writes the whole new stream, in order
            else:
                shape = (projected.shape[0], self.out_width, *projected.shape[2:])
                out = projected.new_zeros(shape).index_copy(1, self.shortcut_index, projected)
        if self.conv1 is not None:
            delta = self.conv2(self.relu(self.bn2(self.conv1(pre))))
            if delta.shape[1] == self.out_width:
                out = out + delta
            else:
                out = out.index_add(1, self.out_index, delta)
        return out


class CompactResNet(nn.Module):
    """Stem conv, a sequence of :class:`MixedBlock` (or any blocks), BN-ReLU, pooling, linear.

    The stem writes its kept channels at ``stem_index`` of a stream of ``stem_width`` channels
    (wider when later blocks of the first stage create channels of their own, Fig. 4c).
    """

    def __init__(self, *, stem: nn.Conv2d, blocks: list[nn.Module], bn: nn.BatchNorm2d,
                 fc: nn.Linear, stem_index: torch.Tensor | None = None,
                 stem_width: int | None = None) -> None:
        super().__init__()
        self.conv1 = stem
        self.stem_width = stem_width if stem_width is not None else stem.out_channels
        self.register_buffer("stem_index", stem_index)
        self.blocks = nn.Sequential(*blocks)
        self.bn = bn
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if out.shape[1] != self.stem_width:
            shape = (out.shape[0], self.stem_width, *out.shape[2:])
            out = out.new_zeros(shape).index_copy(1, self.stem_index, out)
        out = self.blocks(out)
        out = self.pool(self.relu(self.bn(out)))
        return self.fc(torch.flatten(out, 1))
