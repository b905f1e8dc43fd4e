"""Physically smaller variants of the built-in networks: the oracles the cost model is checked on.

:func:`prune_block_channels` removes inner channels of :class:`~budgetsearch.models.PreActBlock`
(``conv1`` outputs, ``bn2``, ``conv2`` inputs: the channels BAR gates) by building smaller layers,
so fvcore can count, and a clock can time, the network a channel configuration describes.
:func:`kept_channels_of` reads such a network's channel counts back as the ``kept_channels``
mapping of :meth:`LayerInventory.price`.

Example:
    >>> from budgetsearch.models import build_model
    >>> small = prune_block_channels(build_model("wrn-16-2"), {"layer1.0": 7})
    >>> small.layer1[0].conv1.out_channels
    7
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from torch import nn

from budgetsearch.cost.inventory import LayerInventory
from budgetsearch.models.blocks import PreActBlock


def block_names(model: nn.Module) -> list[str]:
    """Qualified names of the :class:`PreActBlock` modules of ``model``, in order."""
    return [name for name, module in model.named_modules() if isinstance(module, PreActBlock)]


def prune_block_channels(model: nn.Module, kept: Mapping[str, int]) -> nn.Module:
    """A copy of ``model`` whose blocks keep ``kept[block]`` inner channels (the first ones).

    Raises:
        ValueError: a name that is not a block, or a count outside ``1..planes``.
    """
    small = copy.deepcopy(model)
    modules = dict(small.named_modules())
    for name, channels in kept.items():
        block = modules.get(name)
        if not isinstance(block, PreActBlock):
            raise ValueError(
                f"kept names blocks ({', '.join(block_names(model))}), got {name!r}"
            )
        planes = block.conv1.out_channels
        if not 1 <= channels <= planes:
            raise ValueError(f"kept[{name!r}] must be in 1..{planes}, got {channels}")
        conv1, conv2 = block.conv1, block.conv2
        block.conv1 = nn.Conv2d(conv1.in_channels, channels, 3, stride=conv1.stride, padding=1,
                                bias=False)
        block.bn2 = nn.BatchNorm2d(channels)
        block.conv2 = nn.Conv2d(channels, conv2.out_channels, 3, padding=1, bias=False)
        block.conv1.weight.data.copy_(conv1.weight.data[:channels])
        block.conv2.weight.data.copy_(conv2.weight.data[:, :channels])
    return small


def kept_channels_of(small: LayerInventory, full: LayerInventory) -> dict[str, tuple[int, int]]:
    """``kept_channels`` for ``full.price`` describing the same-named, smaller network ``small``.

    Raises:
        ValueError: the two inventories do not hold the same layer names.
    """
    if small.names() != full.names():
        raise ValueError("the two inventories must come from networks with the same layer names")
    return {
        r.name: (r.in_channels, r.out_channels)
        for r in small.layers
        if (r.in_channels, r.out_channels) != (full[r.name].in_channels, full[r.name].out_channels)
    }
