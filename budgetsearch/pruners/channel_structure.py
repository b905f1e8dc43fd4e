"""The channel structure BAR prunes: its gates, what they keep, how it is priced and compacted.

BAR (:mod:`budgetsearch.pruners.bar`) and channel magnitude pruning talk to their gates only
through :class:`ChannelStructure`. Two structures implement it:

- :class:`PreActStructure`, over :mod:`~budgetsearch.pruners.bar_layout`'s gate layout of a
  budgetsearch :class:`~budgetsearch.models.blocks.PreActResNet`: a gate per conv output, residual
  streams whose width is the union of what their producers write, blocks that read ``I_in`` and
  scatter-add at ``I_out`` (mixed connectivity, BAR supp. section 2), and whole residual branches
  that disappear once their inner channels are all off. Compacts to a
  :class:`~budgetsearch.models.mixed.CompactResNet`.
- :class:`GroupStructure`, over :mod:`~budgetsearch.pruners.channel_gating`'s group gates of any
  CNN: one gate per coupled channel group found by Torch-Pruning's dependency graph (residual
  adds, concatenations, depthwise convs, squeeze-excitation products, linear heads), priced per
  group channel by :mod:`~budgetsearch.pruners.channel_group_cost`. Compacts to a plain, smaller
  copy of the user's own module. Groups it cannot prune are reported with the reason.

Both price through the ungated network's :class:`~budgetsearch.cost.inventory.LayerInventory`:
``hard_kept_channels`` (what :meth:`LayerInventory.price` and ``pruned_configuration`` take) and
``expected_kept_channels`` (differentiable in log α, for :meth:`LayerInventory.expected_cost`).

Example:
    >>> import torchvision
    >>> from budgetsearch.cost import layer_inventory
    >>> model = torchvision.models.resnet18(weights=None, num_classes=10)
    >>> x = torch.zeros(1, 3, 32, 32)
    >>> inventory = layer_inventory(model, x)          # before any gate is attached
    >>> structure = attach_structure(model, x, inventory)
    >>> type(structure).__name__, structure.named_gates()[0][0]
    ('GroupStructure', 'conv1')
    >>> inventory.price(kept_channels=structure.hard_kept_channels()).flops == (
    ...     inventory.total_flops)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from budgetsearch.cost.inventory import LayerInventory
from budgetsearch.models.blocks import PreActResNet
from budgetsearch.pruners.bar_layout import GateLayout, PrunePlan, attach_gates, prune_plan
from budgetsearch.pruners.base import LayerReport
from budgetsearch.pruners.channel_gating import GroupGating, attach_group_gates
from budgetsearch.pruners.channel_group_cost import kept_channels
from budgetsearch.pruners.channel_groups import INPUT_REASON, OUTPUT_REASON, find_channel_groups
from budgetsearch.pruners.compaction import compact_model
from budgetsearch.pruners.hard_concrete import HardConcreteGate

KeptChannels = dict[str, tuple[int, int]]
ExpectedChannels = dict[str, tuple[Any, Any]]
#: Prices ``kept_channels`` on every metric (the pruner's inventory and device profile).
Pricer = Callable[[Mapping[str, tuple[int, int]]], dict[str, float]]


@runtime_checkable
class ChannelStructure(Protocol):
    """What BAR needs of the gated channels of a network.

    ``plan`` is the structure's own snapshot of a hard prune (a
    :class:`~budgetsearch.pruners.bar_layout.PrunePlan`, or a mapping of kept masks): the pruner
    passes it back to :meth:`hard_kept_channels` and never looks inside.
    """

    #: ``"mixed"`` where the structure can price and compact mixed connectivity, else
    #: ``"coupled"`` (every coupled channel is kept or removed together).
    connectivity: str

    def named_gates(self) -> list[tuple[str, HardConcreteGate]]:
        """``(name, gate)`` of every gate, in network order."""
        ...

    def plan(self) -> Any:
        """The hard-pruned structure under the deterministic gates."""
        ...

    def hard_kept_channels(self, plan: Any = None, connectivity: str | None = None
                           ) -> KeptChannels:
        """Kept (in, out) channels per inventory layer after a hard prune (``plan``: default the
        current one), for :meth:`LayerInventory.price`."""
        ...

    def expected_kept_channels(self) -> ExpectedChannels:
        """Expected kept channels under ``P(z > 0)``, differentiable in log α (BAR eq. 6)."""
        ...

    def filter_norms(self) -> dict[str, Tensor]:
        """Per gate, the L1 norm of the filters that write each of its channels."""
        ...

    def compact(self) -> nn.Module:
        """The physically smaller network computing what the gated one does in evaluation."""
        ...

    def report_rows(self) -> list[LayerReport]:
        """Kept/total channels of every gate, then what is not pruned and why."""
        ...

    def report_extra(self, price: Pricer) -> dict[str, Any]:
        """Structure-specific entries of the pruner report's ``extra``."""
        ...

    def remove(self) -> None:
        """Take the gates off the model."""
        ...


def attach_structure(model: nn.Module, example_input: Tensor, inventory: LayerInventory, *,
                     init_log_alpha: float = 3.0) -> ChannelStructure:
    """Gate ``model`` in place: mixed connectivity for a budgetsearch pre-activation ResNet
    (where dropping whole residual branches and scatter-adding saves volume), channel groups for
    every other network.

    Args:
        model: the network; ``inventory`` must have been traced from it before any gate.
        example_input: one batch it accepts.
        inventory: ``layer_inventory(model, example_input)`` of the ungated model.
        init_log_alpha: initial log α of every gate.
    """
    if isinstance(model, PreActResNet):
        return PreActStructure(attach_gates(model, init_log_alpha=init_log_alpha), inventory)
    groups = find_channel_groups(model, example_input)
    if not groups.prunable:
        reasons = "; ".join(f"{u.layers[0] if u.layers else '?'}: {u.reason}"
                            for u in groups.unprunable)
        raise ValueError(f"{type(model).__name__} has no prunable channel group ({reasons})")
    return GroupStructure(attach_group_gates(model, groups, init_log_alpha=init_log_alpha),
                          inventory)


def _gate_row(name: str, gate: HardConcreteGate, **extra: Any) -> LayerReport:
    kept = int(gate.kept_mask().sum())
    return LayerReport(name=name, total=gate.channels, kept=kept,
                       counted=1.0 - kept / gate.channels,
                       estimated=float(1.0 - gate.prob_nonzero().detach().mean()),
                       extra={"min_alive": gate.min_alive, **extra})


def _unpruned_row(name: str, width: int, reason: str, layers: tuple[str, ...]) -> LayerReport:
    return LayerReport(name=name, total=width, kept=width, counted=0.0, pruned=False,
                       reason=reason, extra={"layers": layers})


class PreActStructure:
    """:class:`ChannelStructure` over BAR's gate layout of a pre-activation ResNet (mixed
    connectivity; ``"regular"`` prices the usual residual blocks for comparison)."""

    connectivity = "mixed"

    def __init__(self, layout: GateLayout, inventory: LayerInventory) -> None:
        self.layout = layout
        self.inventory = inventory

    def named_gates(self) -> list[tuple[str, HardConcreteGate]]:
        return self.layout.named_gates()

    def plan(self) -> PrunePlan:
        return prune_plan(self.layout)

    def hard_kept_channels(self, plan: PrunePlan | None = None,
                           connectivity: str | None = None) -> KeptChannels:
        """Kept (in, out) channels of every conv, BatchNorm and the head."""
        layout = self.layout
        plan = plan if plan is not None else self.plan()
        kept = plan.kept_channels(layout, connectivity or self.connectivity)
        widths = [int(s.sum()) for s in plan.streams]
        for gates, block in zip(layout.blocks, plan.blocks, strict=True):
            reads = kept[f"{gates.name}.conv1"][0] if block.branch_alive else None
            if reads is None:
                reads = kept.get(f"{gates.name}.shortcut", (None,))[0]
            if reads is None:  # removed identity block: bn1 is gone too
                reads = 0
            kept[f"{gates.name}.bn1"] = (reads, reads)
            mid = kept[f"{gates.name}.conv1"][1]
            kept[f"{gates.name}.bn2"] = (mid, mid)
        kept["bn"] = (widths[-1], widths[-1])
        kept["pool"] = (widths[-1], widths[-1])
        return {name: value for name, value in kept.items() if name in self.inventory}

    def expected_kept_channels(self) -> ExpectedChannels:
        """Expected kept inputs of a block are the expected live stream channels,
        ``Σ_c 1 − Π_p (1 − P_p,c)`` over the producers p that precede it (mixed connectivity).
        """
        layout = self.layout
        model = layout.model
        prob = {id(g): g.prob_nonzero() for _, g in layout.named_gates()}

        def live(producers: list[Any]) -> Tensor:
            dead = None
            for producer in producers:
                p = prob[id(producer.gate)]
                if producer.branch is not None:  # a block writes only while its branch lives
                    p = p * (1.0 - torch.prod(1.0 - prob[id(producer.branch)]))
                dead = (1.0 - p) if dead is None else dead * (1.0 - p)
            return (1.0 - dead).sum()

        stem = prob[id(layout.stem)].sum()
        kept: ExpectedChannels = {"conv1": (float(model.conv1.in_channels), stem)}
        for gates in layout.blocks:
            reads = live(gates.readers)
            mid = prob[id(gates.mid)].sum()
            kept[f"{gates.name}.bn1"] = (reads, reads)
            kept[f"{gates.name}.conv1"] = (reads, mid)
            kept[f"{gates.name}.bn2"] = (mid, mid)
            kept[f"{gates.name}.conv2"] = (mid, prob[id(gates.out)].sum())
            if gates.shortcut is not None:
                kept[f"{gates.name}.shortcut"] = (reads, prob[id(gates.shortcut)].sum())
        final = live(layout.streams[-1])
        kept["bn"] = (final, final)
        kept["pool"] = (final, final)
        kept["fc"] = (final, float(model.fc.out_features))
        return {name: value for name, value in kept.items() if name in self.inventory}

    def filter_norms(self) -> dict[str, Tensor]:
        """Each gate sits on one conv's output: the L1 norm of that conv's filters."""
        modules = dict(self.layout.model.named_modules())
        return {name: modules[name].weight.detach().abs().reshape(gate.channels, -1).sum(dim=1)
                for name, gate in self.named_gates()}

    def compact(self) -> nn.Module:
        return compact_model(self.layout)

    def report_rows(self) -> list[LayerReport]:
        model = self.layout.model
        rows = [_gate_row(name, gate) for name, gate in self.named_gates()]
        rows.append(_unpruned_row("conv1", model.conv1.in_channels, INPUT_REASON, ("conv1",)))
        rows.append(_unpruned_row("fc", model.fc.out_features, OUTPUT_REASON, ("fc",)))
        return rows

    def report_extra(self, price: Pricer) -> dict[str, Any]:
        plan = self.plan()
        return {
            "structure": "preact-mixed",
            "regular_cost": price(self.hard_kept_channels(plan, "regular")),
            "removed_blocks": [b.name for b in plan.blocks if not b.branch_alive],
            "stream_widths": [int(s.sum()) for s in plan.streams],
        }

    def remove(self) -> None:
        self.layout.remove_hooks()
        if "bar_gates" in self.layout.model._modules:
            delattr(self.layout.model, "bar_gates")


class GroupStructure:
    """:class:`ChannelStructure` over the coupled channel groups of any CNN.

    Every channel of a group is kept or removed together in every member layer, so a residual
    stream keeps one width (no scatter-add) and a block is never dropped as a whole: each group
    keeps ≥ 1 channel (the gates' ``min_alive``).
    """

    connectivity = "coupled"

    def __init__(self, gating: GroupGating, inventory: LayerInventory) -> None:
        self.layout = gating
        self.inventory = inventory

    def named_gates(self) -> list[tuple[str, HardConcreteGate]]:
        return self.layout.named_gates()

    def plan(self) -> dict[str, Tensor]:
        """Group name → boolean mask of its kept channels."""
        return self.layout.kept_masks()

    def hard_kept_channels(self, plan: Mapping[str, Tensor] | None = None,
                           connectivity: str | None = None) -> KeptChannels:
        """Kept channels of every layer a pruned group reaches (the others are whole).
        ``connectivity`` is ignored: coupled groups have one way to be removed."""
        masks = plan if plan is not None else self.plan()
        return kept_channels(self.layout.groups, masks, self.inventory)

    def expected_kept_channels(self) -> ExpectedChannels:
        return self.layout.expected_kept_channels(self.inventory)

    def filter_norms(self) -> dict[str, Tensor]:
        """Sum of |w| over the output slices of every conv and linear that writes the group's
        channels (the root and, through a residual add, the other producers)."""
        modules = dict(self.layout.model.named_modules())
        norms = {}
        for group in self.layout.groups.prunable:
            total = torch.zeros(group.width, dtype=torch.float64)
            for member in group.members:
                if member.dim != "out" or member.op not in ("conv", "linear"):
                    continue
                weight = modules[member.layer].weight.detach()
                rows = weight.index_select(0, torch.as_tensor(member.indices, device=weight.device))
                values = rows.abs().reshape(len(member.indices), -1).sum(dim=1).double().cpu()
                total.index_add_(0, torch.as_tensor(member.group_channels), values)
            norms[group.name] = total
        return norms

    def compact(self) -> nn.Module:
        return self.layout.compact()

    def report_rows(self) -> list[LayerReport]:
        rows = [_gate_row(group.name, self.layout.gate(group.name), layers=group.layers)
                for group in self.layout.groups.prunable]
        rows += [_unpruned_row(u.layers[0] if u.layers else "", u.width, u.reason, u.layers)
                 for u in self.layout.groups.unprunable]
        return rows

    def report_extra(self, price: Pricer) -> dict[str, Any]:
        groups = self.layout.groups
        return {"structure": "channel-groups", "prunable_groups": len(groups.prunable),
                "unprunable_groups": len(groups.unprunable)}

    def remove(self) -> None:
        self.layout.remove()
