"""Compaction: turn a gated pre-act ResNet into a physically smaller standalone network.

Convolutions, BatchNorms and the linear head are sliced to the kept channels; the deterministic gate
values are folded into the layer that precedes them (``bn2``'s scale and shift for the inner gate,
the rows of ``conv2`` / the 1×1 shortcut / the stem for the gates on conv outputs), so the function
is unchanged; blocks whose branch is fully pruned disappear (automatic depth determination, section
4.1); every remaining block is a :class:`~budgetsearch.models.mixed.MixedBlock` reading ``I_in`` and
scatter-adding at ``I_out`` (supp. section 2).

Example:
    >>> compact = compact_model(layout)        # doctest: +SKIP
    >>> torch.save(compact, "pruned.pt")        # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import nn

from budgetsearch.models.mixed import CompactResNet, MixedBlock
from budgetsearch.pruners.bar_layout import GateLayout, PrunePlan, prune_plan


def _positions(mask: torch.Tensor, within: torch.Tensor) -> torch.Tensor:
    """Indices, within the kept channels ``within``, of the channels kept by ``mask``."""
    order = torch.cumsum(within.long(), 0) - 1
    return order[mask & within].long()


def _full(mask: torch.Tensor, within: torch.Tensor) -> bool:
    return bool(torch.equal(mask & within, within))


def _idx(mask: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask, as_tuple=False).flatten()


def _conv(conv: nn.Conv2d, out_idx: torch.Tensor, in_idx: torch.Tensor,
          scale: torch.Tensor | None = None) -> nn.Conv2d:
    new = nn.Conv2d(len(in_idx), len(out_idx), conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None)
    weight = conv.weight.detach()[out_idx][:, in_idx].clone()
    bias = conv.bias.detach()[out_idx].clone() if conv.bias is not None else None
    if scale is not None:  # a gate on the conv's output: z·(W x + c) = (z W) x + z c
        weight = weight * scale.view(-1, 1, 1, 1)
        bias = bias * scale if bias is not None else None
    new.weight.data.copy_(weight)
    if bias is not None:
        new.bias.data.copy_(bias)
    return new


def _bn(bn: nn.BatchNorm2d, idx: torch.Tensor, scale: torch.Tensor | None = None) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx), eps=bn.eps, momentum=bn.momentum)
    new.running_mean.copy_(bn.running_mean[idx])
    new.running_var.copy_(bn.running_var[idx])
    new.num_batches_tracked.copy_(bn.num_batches_tracked)
    weight, bias = bn.weight.detach()[idx], bn.bias.detach()[idx]
    if scale is not None:  # the gate after BN, folded: z·(γ x̂ + β) = (zγ) x̂ + zβ
        weight, bias = weight * scale, bias * scale
    new.weight.data.copy_(weight)
    new.bias.data.copy_(bias)
    return new


@torch.no_grad()
def compact_model(layout: GateLayout, plan: PrunePlan | None = None) -> CompactResNet:
    """Build the compact network of ``layout`` under its deterministic gates (eval-mode function).

    The result shares no tensor with the gated model and needs no pruning code to run.
    """
    model = layout.model
    plan = plan or prune_plan(layout)
    device = model.conv1.weight.device
    gate_value = {id(g): g.deterministic().detach() for _, g in layout.named_gates()}

    stem_idx = _idx(plan.stem)
    stem = _conv(model.conv1, stem_idx, torch.arange(model.conv1.in_channels, device=device),
                 gate_value[id(layout.stem)][stem_idx])
    stem_positions = _positions(plan.stem, plan.streams[0])

    blocks: list[nn.Module] = []
    for gates, block_plan in zip(layout.blocks, plan.blocks, strict=True):
        block = gates.block
        in_stream = plan.streams[gates.in_stream]
        out_stream = plan.streams[gates.out_stream]
        reads = _idx(block_plan.reads)
        in_index = (None if _full(block_plan.reads, in_stream)
                    else _positions(block_plan.reads, in_stream))
        shortcut = shortcut_index = None
        if gates.shortcut is not None:
            kept = _idx(block_plan.shortcut)
            shortcut = _conv(block.shortcut, kept, reads, gate_value[id(gates.shortcut)][kept])
            shortcut_index = _positions(block_plan.shortcut, out_stream)
        elif not block_plan.branch_alive:
            continue  # identity residual and no branch: the block is removed
        conv1 = bn2 = conv2 = out_index = None
        if block_plan.branch_alive:
            mid = _idx(block_plan.mid)
            out = _idx(block_plan.out)
            conv1 = _conv(block.conv1, mid, reads)
            bn2 = _bn(block.bn2, mid, gate_value[id(gates.mid)][mid])
            conv2 = _conv(block.conv2, out, mid, gate_value[id(gates.out)][out])
            out_index = _positions(block_plan.out, out_stream)
        blocks.append(MixedBlock(
            bn1=_bn(block.bn1, reads), conv1=conv1, bn2=bn2, conv2=conv2, in_index=in_index,
            out_index=out_index, out_width=int(out_stream.sum()), shortcut=shortcut,
            shortcut_index=shortcut_index,
        ))

    final = _idx(plan.streams[-1])
    fc = nn.Linear(len(final), model.fc.out_features, bias=model.fc.bias is not None)
    fc.weight.data.copy_(model.fc.weight.detach()[:, final])
    if model.fc.bias is not None:
        fc.bias.data.copy_(model.fc.bias.detach())
    compact = CompactResNet(stem=stem, blocks=blocks, bn=_bn(model.bn, final), fc=fc,
                            stem_index=stem_positions, stem_width=int(plan.streams[0].sum()))
    return compact.to(device).train(model.training)
