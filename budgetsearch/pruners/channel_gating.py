"""Hard-Concrete gates on the channel groups of any CNN, and compaction to a smaller plain module.

:func:`attach_group_gates` gives each prunable :class:`~budgetsearch.pruners.channel_groups.
ChannelGroup` one :class:`~budgetsearch.pruners.hard_concrete.HardConcreteGate` of the group's
width, registered as the ``ModuleDict`` ``channel_group_gates`` under the first gate site (a leaf
layer, so that a container that calls its children in turn does not call it; ``.to()``,
``.train()`` and ``state_dict()`` reach them). Forward hooks multiply the output of each gate site
(the group's BatchNorms, or a producing conv/linear without one) by the gate: one draw per model
forward, shared by all sites of a group. This equals BatchNorm with scale ``γ·z`` and shift
``β·z`` (bar_layout's fold), which :meth:`GroupGating.compact` writes into the weights before
Torch-Pruning removes the channels whose gate is 0; in eval mode the compact network computes what
the gated one does.

Example:
    >>> import torch, torchvision
    >>> from budgetsearch.cost import layer_inventory
    >>> from budgetsearch.pruners.channel_groups import find_channel_groups
    >>> model = torchvision.models.mobilenet_v2(weights=None, num_classes=10)
    >>> x = torch.zeros(1, 3, 32, 32)
    >>> inventory = layer_inventory(model, x)               # before gating
    >>> gating = attach_group_gates(model, find_channel_groups(model, x))
    >>> loss = inventory.expected_cost("flops",
    ...                                kept_channels=gating.expected_kept_channels(inventory))
    >>> compact = gating.compact()                           # a plain, smaller nn.Module
    >>> inventory.price(kept_channels=gating.kept_channels(inventory)).params == sum(
    ...     p.numel() for p in compact.parameters())
    True
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from budgetsearch.cost.inventory import LayerInventory
from budgetsearch.pruners.channel_group_cost import expected_kept_channels, kept_channels
from budgetsearch.pruners.channel_groups import (
    ChannelGroup,
    ChannelGroups,
    build_dependency_graph,
)
from budgetsearch.pruners.hard_concrete import HardConcreteGate

#: Attribute of the model that holds the gates (a ``ModuleDict``, keys ``g0``, ``g1``, …).
GATES_ATTRIBUTE = "channel_group_gates"


@dataclass(frozen=True)
class GroupReport:
    """Kept channels of one group (``reason`` is None for a prunable group)."""

    name: str
    kept: int
    total: int
    layers: tuple[str, ...]
    reason: str | None = None


@dataclass(frozen=True)
class _SiteEntry:
    key: str  # gate key in the ModuleDict
    indices: Tensor  # the site's channel indices
    group_channels: Tensor  # the group channel of each
    identity: bool  # site channel j is group channel j, for all of them


class GroupGating:
    """Gates on a model's channel groups; see the module docstring. Made by
    :func:`attach_group_gates`."""

    def __init__(self, model: nn.Module, groups: ChannelGroups, gates: nn.ModuleDict,
                 holder: nn.Module) -> None:
        self.model = model
        self.holder = holder
        self.groups = groups
        self.gates = gates
        self._keys = {group.name: f"g{i}" for i, group in enumerate(groups.prunable)}
        self._sites: dict[str, list[_SiteEntry]] = {}
        for group in groups.prunable:
            for member in group.members:
                if member.layer in group.gate_sites and (member.dim != "in"):
                    every = tuple(range(group.width))
                    self._sites.setdefault(member.layer, []).append(_SiteEntry(
                        self._keys[group.name],
                        torch.as_tensor(member.indices, dtype=torch.long),
                        torch.as_tensor(member.group_channels, dtype=torch.long),
                        member.indices == every and member.group_channels == every,
                    ))
        self._handles: list[RemovableHandle] = []
        self._install()

    # -- gates -------------------------------------------------------------------------------

    def gate(self, group: str) -> HardConcreteGate:
        """The gate of the group named ``group`` (its root layer)."""
        try:
            return self.gates[self._keys[group]]
        except KeyError:
            raise KeyError(f"no gated group named {group!r}") from None

    def named_gates(self) -> list[tuple[str, HardConcreteGate]]:
        """``(group name, gate)`` pairs, in group order."""
        return [(name, self.gates[key]) for name, key in self._keys.items()]

    def kept_masks(self) -> dict[str, Tensor]:
        """Group name → boolean mask of the channels a hard prune keeps."""
        return {name: gate.kept_mask() for name, gate in self.named_gates()}

    def kept_channels(self, inventory: LayerInventory) -> dict[str, tuple[int, int]]:
        """Hard kept (in, out) channels per inventory layer, for ``inventory.price``."""
        return kept_channels(self.groups, self.kept_masks(), inventory)

    def expected_kept_channels(self, inventory: LayerInventory) -> dict[str, tuple[Tensor, Tensor]]:
        """Expected kept channels from ``P(z > 0)``, differentiable in log α, for
        ``inventory.expected_cost`` (BAR's L_S)."""
        probs = {name: gate.prob_nonzero() for name, gate in self.named_gates()}
        return expected_kept_channels(self.groups, probs, inventory)

    def report(self) -> list[GroupReport]:
        """Kept/total channels of every group, then the unprunable ones with their reason."""
        rows = [
            GroupReport(g.name, int(self.gate(g.name).kept_mask().sum()), g.width, g.layers)
            for g in self.groups.prunable
        ]
        rows += [GroupReport(u.layers[0] if u.layers else "", u.width, u.width, u.layers, u.reason)
                 for u in self.groups.unprunable]
        return rows

    # -- hooks -------------------------------------------------------------------------------

    def _install(self) -> None:
        self._handles.append(self.model.register_forward_pre_hook(self._draw))
        for layer in self._sites:
            module = self.model.get_submodule(layer)
            self._handles.append(module.register_forward_hook(self._site_hook(layer)))

    def _uninstall(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def remove(self) -> None:
        """Take the gates and hooks off the model (it computes as before attaching)."""
        self._uninstall()
        if GATES_ATTRIBUTE in self.holder._modules:
            delattr(self.holder, GATES_ATTRIBUTE)

    def _draw(self, module: nn.Module, inputs: Any) -> None:
        # one draw per forward pass, shared by every site of a group (sampled in training)
        for gate in self.gates.values():
            gate.last_gate = gate.sample()

    def _scale(self, layer: str, channels: int, values: dict[str, Tensor]) -> Tensor:
        entries = self._sites[layer]
        first = values[entries[0].key]
        if len(entries) == 1 and entries[0].identity and first.numel() == channels:
            return first
        scale = torch.ones(channels, dtype=first.dtype, device=first.device)
        for entry in entries:
            z = values[entry.key]
            scale = scale.index_put(
                (entry.indices.to(z.device),), z.index_select(0, entry.group_channels.to(z.device))
            )
        return scale

    def _site_hook(self, layer: str):  # noqa: ANN202 - a forward hook
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
            values = {}
            for entry in self._sites[layer]:
                gate = self.gates[entry.key]
                values[entry.key] = gate.last_gate if gate.last_gate is not None else gate.sample()
            axis = output.dim() - 1 if isinstance(module, nn.Linear) else 1
            scale = self._scale(layer, output.shape[axis], values)
            shape = [1] * output.dim()
            shape[axis] = -1
            return output * scale.view(shape)

        return hook

    # -- compaction --------------------------------------------------------------------------

    @torch.no_grad()
    def compact(self) -> nn.Module:
        """A physically smaller copy of the model: deterministic gate values folded into the
        BatchNorm affine (or the producing conv/linear), channels whose gate is 0 removed with
        Torch-Pruning, no gates and no hooks. The gated model is not changed.

        Raises:
            ValueError: a group keeps no channel (use ``gate.clamp_alive()`` first).
        """
        masks = self.kept_masks()
        empty = [name for name, mask in masks.items() if not bool(mask.any())]
        if empty:
            raise ValueError(f"groups {empty} keep no channel; call clamp_alive() on their gates "
                             f"(min_alive=1) before compacting")
        values = {self._keys[name]: gate.deterministic().detach()
                  for name, gate in self.named_gates()}
        self._uninstall()
        gates = self.holder._modules.pop(GATES_ATTRIBUTE)
        try:
            compact = copy.deepcopy(self.model)
        finally:
            self.holder._modules[GATES_ATTRIBUTE] = gates
            self._install()
        for layer in self._sites:
            module = compact.get_submodule(layer)
            channels = module.weight.shape[0]
            scale = self._scale(layer, channels, values).to(module.weight.dtype)
            module.weight.mul_(scale.view(-1, *[1] * (module.weight.dim() - 1)))
            if module.bias is not None:
                module.bias.mul_(scale)
        device = next((p.device for p in compact.parameters()), torch.device("cpu"))
        graph, _ = build_dependency_graph(compact, self.groups.example_input.to(device))
        for group in self.groups.prunable:
            off = (~masks[group.name]).nonzero().flatten().tolist()
            if off:
                _prune(graph, compact.get_submodule(group.name), group, off)
        return compact


def _prune(graph: Any, root: nn.Module, group: ChannelGroup, off: list[int]) -> None:
    pruner = graph.get_pruner_of_module(root)
    if pruner.get_out_channels(root) != group.width:
        raise RuntimeError(f"group {group.name!r} changed width while compacting")
    graph.get_pruning_group(root, pruner.prune_out_channels, off).prune()


def attach_group_gates(
    model: nn.Module, groups: ChannelGroups, *, init_log_alpha: float = 3.0
) -> GroupGating:
    """Gate every prunable group of ``model`` (see the module docstring).

    Args:
        model: the model ``groups`` was found on.
        groups: from :func:`~budgetsearch.pruners.channel_groups.find_channel_groups`.
        init_log_alpha: initial log α of every gate (3.0: ``P(z > 0)`` ≈ 0.99).

    Raises:
        ValueError: the model already has gates, or ``groups`` names layers it does not have.
    """
    if gates_holder(model) is not None:
        raise ValueError(f"model already has {GATES_ATTRIBUTE!r}; call remove() on its gating "
                         f"before attaching new gates")
    modules = dict(model.named_modules())
    for group in groups.prunable:
        for site in group.gate_sites:
            if site not in modules:
                raise ValueError(f"groups name layer {site!r}, which the model does not have "
                                 f"(groups must come from find_channel_groups on this model)")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    gates = nn.ModuleDict({
        f"g{i}": HardConcreteGate(g.width, init_log_alpha=init_log_alpha, min_alive=1)
        for i, g in enumerate(groups.prunable)
    }).to(device)
    # The gates hang under the first gate site (a leaf layer), not under the model: a container
    # whose forward runs its children in turn (nn.Sequential, a user's own) would call them.
    first = next((site for g in groups.prunable for site in g.gate_sites), None)
    holder = modules[first] if first is not None else model
    holder.add_module(GATES_ATTRIBUTE, gates)
    return GroupGating(model, groups, gates, holder)


def gates_holder(model: nn.Module) -> nn.Module | None:
    """The module that holds ``model``'s group gates (``GATES_ATTRIBUTE``), or None."""
    return next((m for m in model.modules() if GATES_ATTRIBUTE in m._modules), None)
