"""Price the channels of channel groups in the cost inventory.

:func:`kept_channels` and :func:`expected_kept_channels` turn per-group masks or keep
probabilities into the ``kept_channels`` mapping of
:meth:`~budgetsearch.cost.inventory.LayerInventory.price` /
:meth:`~budgetsearch.cost.inventory.LayerInventory.expected_cost`: each member layer dimension
loses the (expected) number of its group channels that are off, summed over the groups that feed
it (a conv after a concatenation reads several); a depthwise conv, a BatchNorm and a pooling op
keep as many inputs as outputs. Layers not named keep all their channels.

Example:
    >>> import torch, torchvision
    >>> from budgetsearch.cost import layer_inventory
    >>> from budgetsearch.pruners.channel_groups import find_channel_groups
    >>> model, x = torchvision.models.resnet18(num_classes=10), torch.zeros(1, 3, 32, 32)
    >>> inventory = layer_inventory(model, x)
    >>> groups = find_channel_groups(model, x)
    >>> keep = {g.name: torch.ones(g.width) for g in groups.prunable}
    >>> price = inventory.price(kept_channels=kept_channels(groups, keep, inventory))
    >>> price.params == inventory.total_params
    True
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from budgetsearch.cost.inventory import LayerInventory
from budgetsearch.pruners.channel_groups import ChannelGroups


def _removed(
    groups: ChannelGroups, dropped: Mapping[str, Tensor], inventory: LayerInventory
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Removed (or expected removed) input and output channels per inventory layer."""
    removed_in: dict[str, Tensor] = {}
    removed_out: dict[str, Tensor] = {}
    for group in groups.prunable:
        try:
            drop = dropped[group.name]
        except KeyError:
            raise ValueError(f"no keep values for group {group.name!r}") from None
        if drop.shape != (group.width,):
            raise ValueError(
                f"keep values of group {group.name!r} must have shape ({group.width},), "
                f"got {tuple(drop.shape)}"
            )
        for member in group.members:
            if member.layer not in inventory or inventory[member.layer].out_channels == 0:
                continue  # an op without cost (max pool) or of unknown channels
            index = torch.as_tensor(member.group_channels, device=drop.device, dtype=torch.long)
            count = drop.index_select(0, index).sum()
            if member.dim in ("in", "both"):
                removed_in[member.layer] = removed_in.get(member.layer, 0) + count
            if member.dim in ("out", "both"):
                removed_out[member.layer] = removed_out.get(member.layer, 0) + count
    return removed_in, removed_out


def expected_kept_channels(
    groups: ChannelGroups, keep_prob: Mapping[str, Tensor], inventory: LayerInventory
) -> dict[str, tuple[Tensor, Tensor]]:
    """Expected kept (input, output) channels per inventory layer, differentiable in
    ``keep_prob``: for :meth:`LayerInventory.expected_cost` (BAR's L_S, eq. (5)).

    Args:
        groups: from :func:`find_channel_groups` on the model ``inventory`` was traced from.
        keep_prob: group name → per-channel probability of being kept, shape ``(width,)``.
        inventory: the ungated model's :func:`~budgetsearch.cost.inventory.layer_inventory`.

    Raises:
        ValueError: a group without keep values, or values of the wrong shape.
    """
    dropped = {name: 1.0 - prob for name, prob in keep_prob.items()}
    removed_in, removed_out = _removed(groups, dropped, inventory)
    kept: dict[str, tuple[Tensor, Tensor]] = {}
    for layer in dict.fromkeys([*removed_in, *removed_out]):
        record = inventory[layer]
        zero = torch.zeros((), dtype=next(iter(dropped.values())).dtype)
        kept_out = record.out_channels - removed_out.get(layer, zero)
        kept_in = kept_out if record.depthwise else record.in_channels - removed_in.get(layer, zero)
        kept[layer] = (kept_in, kept_out)
    return kept


def kept_channels(
    groups: ChannelGroups, masks: Mapping[str, Tensor], inventory: LayerInventory
) -> dict[str, tuple[int, int]]:
    """Kept (input, output) channels per inventory layer after a hard prune, for
    :meth:`LayerInventory.price`: equals the compacted network's own count.

    Args:
        groups: from :func:`find_channel_groups`.
        masks: group name → boolean mask of kept channels, shape ``(width,)``.
        inventory: the ungated model's inventory.
    """
    probs = {name: mask.detach().to(torch.float64) for name, mask in masks.items()}
    return {
        layer: (round(float(kin)), round(float(kout)))
        for layer, (kin, kout) in expected_kept_channels(groups, probs, inventory).items()
    }
