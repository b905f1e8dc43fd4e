"""Coupled channel groups of any CNN, found with Torch-Pruning's dependency graph, and their cost.

Removing output channel ``j`` of a conv also removes input channel ``j`` of every layer that reads
it, the matching BatchNorm channel, and, through a residual add or a squeeze-excitation product,
the matching output channel of every other layer added to or multiplied with it. Torch-Pruning's
``DependencyGraph`` (Fang et al., "DepGraph", CVPR 2023) traces these couplings through adds,
concatenations, splits, depthwise convolutions and flattens; :func:`find_channel_groups` turns its
groups into plain data: for each group, the member layers and which of their dimensions
(``"out"``, ``"in"``, or ``"both"`` for BatchNorm, depthwise convs and pooling), the layer channel
indices each group channel maps to, and the *gate sites*: the layers after which a BAR gate
multiplies the group's channels (every BatchNorm in the group, and each producing conv or linear
whose output goes to no BatchNorm of the group).

Groups that must keep all their channels go to :attr:`ChannelGroups.unprunable` with the reason:
the network output (class scores), the network input, grouped (not depthwise) convolutions,
channel reshapes Torch-Pruning cannot map (ShuffleNet's channel shuffle), and layers the gates
cannot fold into (a BatchNorm without affine, LayerNorm, transposed convs, …).

:mod:`budgetsearch.pruners.channel_group_cost` prices the groups' channels in the cost inventory;
:mod:`budgetsearch.pruners.channel_gating` gates and compacts them.

Example:
    >>> import torchvision
    >>> model = torchvision.models.resnet18(weights=None, num_classes=10)
    >>> groups = find_channel_groups(model, torch.zeros(1, 3, 32, 32))
    >>> groups.prunable[0].name, groups.prunable[0].width, groups.prunable[0].gate_sites[:2]
    ('conv1', 64, ('bn1', 'layer1.0.bn2'))
    >>> [(u.layers, u.reason[:25]) for u in groups.unprunable]
    [(('fc',), 'its channels are the netw'), (('conv1',), 'its input channels are th')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from budgetsearch.cost.ops import POOL_MODULES

#: Functional pooling ops the cost inventory prices per channel (``"<module>#<operator>"``).
FUNCTIONAL_POOLS = frozenset({
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
})
OUTPUT_REASON = "its channels are the network outputs (e.g. class scores)"
INPUT_REASON = "its input channels are the network input"


@dataclass(frozen=True)
class GroupMember:
    """One layer dimension in a channel group.

    Attributes:
        layer: module name as in ``model.named_modules()``, or ``"<module>#<operator>"`` for a
            functional pooling call (the cost inventory's name for it).
        dim: ``"out"``, ``"in"`` or ``"both"`` (BatchNorm, depthwise conv, pooling: one channel
            axis).
        op: ``"conv"``, ``"depthwise"``, ``"linear"``, ``"batchnorm"`` or ``"pool"`` (in an
            unprunable group also the lower-case class name of a layer it cannot prune).
        indices: the layer's channel indices (along ``dim``) that belong to the group.
        group_channels: the group channel of each of ``indices`` (same length).
    """

    layer: str
    dim: str
    op: str
    indices: tuple[int, ...]
    group_channels: tuple[int, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that are kept or removed together, named after the layer whose outputs they are.

    Attributes:
        name: the root layer (a conv or linear; its output channel ``j`` is group channel ``j``).
        width: number of channels in the group.
        members: every conv, linear, BatchNorm and pooling dimension the group spans.
        gate_sites: layers after which the group's gate multiplies its channels: the group's
            BatchNorms, and producing convs/linears whose output feeds no BatchNorm of the group.
    """

    name: str
    width: int
    members: tuple[GroupMember, ...]
    gate_sites: tuple[str, ...]

    @property
    def layers(self) -> tuple[str, ...]:
        """Names of the member layers, in group order, without repeats."""
        return tuple(dict.fromkeys(m.layer for m in self.members))


@dataclass(frozen=True)
class UnprunableGroup:
    """Channels that keep their full width, and why."""

    layers: tuple[str, ...]
    width: int
    reason: str


@dataclass(frozen=True)
class ChannelGroups:
    """Result of :func:`find_channel_groups`: prunable groups and those that are not."""

    prunable: tuple[ChannelGroup, ...]
    unprunable: tuple[UnprunableGroup, ...]
    example_input: Tensor = field(repr=False, compare=False)

    def __getitem__(self, name: str) -> ChannelGroup:
        for group in self.prunable:
            if group.name == name:
                return group
        raise KeyError(
            f"no prunable group named {name!r}; groups: {', '.join(g.name for g in self.prunable)}"
        )


class _DependencyGraph(tp.DependencyGraph):
    """Torch-Pruning's graph, with channel-reordering reshapes left without an index mapping.

    Torch-Pruning 1.6 maps a reshape's channel indices as a flatten. It means to skip other
    reshapes (it checks ``grad_fn._saved_self_sizes``, which torch 2 renamed), so a channel
    shuffle (``view`` to 5-D, ``transpose``, ``view`` back) gets a wrong mapping or a
    ZeroDivisionError. Here every reshape that is not a flatten (``N×C×H×W ↔ N×(C·H·W)``) or
    channel-preserving becomes an element-wise node without mapping, and is remembered in
    ``opaque_reshapes``; :func:`find_channel_groups` marks every group through one unprunable.
    """

    def __init__(self, output_shapes: Mapping[Any, tuple[int, ...]]) -> None:
        super().__init__()
        self._output_shapes = output_shapes
        self.opaque_reshapes: set[Any] = set()

    def _trace(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        module2node = super()._trace(*args, **kwargs)
        for node in module2node.values():
            if node.type == tp.ops.OPTYPE.RESHAPE and not self._maps_channels(node):
                node.type = tp.ops.OPTYPE.ELEMENTWISE
                self.opaque_reshapes.add(node)
        return module2node

    def _maps_channels(self, node: Any) -> bool:
        sizes = getattr(node.grad_fn, "_saved_self_sym_sizes", None)
        if sizes is None:
            sizes = getattr(node.grad_fn, "_saved_self_sizes", None)
        out = self._output_shapes.get(node.grad_fn)
        if sizes is None or out is None:
            return False
        before, after = tuple(int(s) for s in sizes), tuple(out)
        if len(before) < 2 or len(after) < 2 or before[0] != after[0]:
            return False
        if before[1] == after[1]:
            return math.prod(before[2:]) == math.prod(after[2:]) == 1 or before == after
        flat, spatial = (after, before) if len(after) == 2 else (before, after)
        return len(flat) == 2 and flat[1] == math.prod(spatial[1:])


class _TraceRecorder(TorchFunctionMode):
    """Names the cost-bearing ops Torch-Pruning sees only as autograd nodes (pooling), and
    records every op's output shape, while the dependency graph traces the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.stack: list[str] = []
        self.layer_of: dict[Any, str] = {}
        self.shapes: dict[Any, tuple[int, ...]] = {}
        self.outputs: set[Any] = set()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> _TraceRecorder:
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._enter(name)))
            self._handles.append(module.register_forward_hook(self._leave(name, module)))
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        super().__exit__(*exc)

    def _enter(self, name: str):  # noqa: ANN202 - a forward pre-hook
        def pre_hook(module: nn.Module, inputs: Any) -> None:
            self.stack.append(name)

        return pre_hook

    def _leave(self, name: str, module: nn.Module):  # noqa: ANN202 - a forward hook
        def hook(mod: nn.Module, inputs: Any, output: Any) -> None:
            self.stack.pop()
            if not name:  # the model's outputs: their channels are never pruned
                self.outputs.update(t.grad_fn for t in _tensors(output) if t.grad_fn is not None)
            if isinstance(module, POOL_MODULES) and isinstance(output, Tensor):
                self.layer_of[output.grad_fn] = name

        return hook

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        result = func(*args, **(kwargs or {}))
        if isinstance(result, Tensor) and result.grad_fn is not None:
            self.shapes[result.grad_fn] = tuple(result.shape)
            operator = getattr(func, "__name__", "")
            if operator in FUNCTIONAL_POOLS and self.stack:
                layer = f"{self.stack[-1] or '<model>'}#{operator}"
                self.layer_of.setdefault(result.grad_fn, layer)
        return result


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    return []


def build_dependency_graph(
    model: nn.Module, example_input: Tensor
) -> tuple[_DependencyGraph, _TraceRecorder]:
    """Torch-Pruning's dependency graph of ``model`` (its training mode is kept)."""
    was_training = model.training
    recorder = _TraceRecorder(model)
    graph = _DependencyGraph(recorder.shapes)
    try:
        with torch.enable_grad(), recorder:
            graph.build_dependency(model, example_inputs=example_input,
                                   forward_fn=lambda m, x: m(x), verbose=False)
    finally:
        model.train(was_training)
    return graph, recorder


def _unsupported(name: str, module: nn.Module) -> str | None:
    """Why a member layer stops its group from being pruned, or None."""
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.transposed:
            return f"transposed conv {name!r}: gates do not fold into it"
        if module.groups > 1 and not _depthwise(module):
            return (f"grouped conv {name!r} (groups={module.groups}): removing channels would "
                    f"unbalance its groups")
        return None
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return None if module.affine else f"BatchNorm {name!r} has no affine for the gate to fold"
    if isinstance(module, nn.Linear):
        return None
    return f"{name!r} ({type(module).__name__}) is not a conv, linear or BatchNorm"


def _depthwise(module: nn.modules.conv._ConvNd) -> bool:
    return module.groups > 1 and module.groups == module.in_channels == module.out_channels


def find_channel_groups(model: nn.Module, example_input: Tensor) -> ChannelGroups:
    """Coupled channel groups of ``model``, found by tracing it once on ``example_input``.

    Every conv and linear output starts a group (unless an earlier group already holds it), in
    ``model.named_modules()`` order. The model is not changed (its mode is restored).

    Args:
        model: any ``nn.Module`` built from torch layers.
        example_input: one batch the model accepts, e.g. ``torch.zeros(1, 3, 32, 32)``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``example_input`` not a tensor.

    Example:
        >>> import torchvision
        >>> model = torchvision.models.resnet18(weights=None, num_classes=10)
        >>> groups = find_channel_groups(model, torch.zeros(1, 3, 32, 32))
        >>> [(g.name, g.width) for g in groups.prunable][:2]
        [('conv1', 64), ('layer1.0.conv1', 64)]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, Tensor):
        raise TypeError(f"example_input must be a torch.Tensor, got {type(example_input).__name__}")
    graph, recorder = build_dependency_graph(model, example_input)
    names = {module: name for name, module in model.named_modules()}
    produced: set[nn.Module] = set()
    read: set[str] = set()
    prunable: list[ChannelGroup] = []
    unprunable: list[UnprunableGroup] = []
    layers = [(n, m) for n, m in model.named_modules()
              if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    for name, module in layers:
        if module in produced or module not in graph.module2node:
            continue
        pruner = graph.get_pruner_of_module(module)
        width = pruner.get_out_channels(module)
        try:
            group = graph.get_pruning_group(module, pruner.prune_out_channels, list(range(width)))
        except (IndexError, ValueError, ZeroDivisionError) as error:  # a mapping TP gets wrong
            produced.add(module)
            unprunable.append(UnprunableGroup(
                (name,), width, f"Torch-Pruning cannot map its channel indices ({error!r})"))
            continue
        members, reasons, bn_nodes, producers = [], [], set(), []
        for item in group:
            node = item.dep.target
            target = node.module
            if isinstance(target, tp.ops._OutputOp):
                reasons.append(OUTPUT_REASON)
                continue
            if node in graph.opaque_reshapes:
                reasons.append("it passes a channel reshape Torch-Pruning cannot map "
                               "(e.g. ShuffleNet's channel shuffle)")
            member = _member(item, target, names, recorder, reasons)
            if node.grad_fn in recorder.outputs and (member is None or member.dim != "in"):
                reasons.append(OUTPUT_REASON)
            if member is None:
                continue
            members.append(member)
            if member.dim in ("in", "both"):
                read.add(member.layer)
            if member.op == "batchnorm":
                bn_nodes.add(node)
            elif isinstance(target, (nn.modules.conv._ConvNd, nn.Linear)) and member.dim != "in":
                produced.add(target)
                producers.append((member.layer, node))
        layer_names = tuple(dict.fromkeys(m.layer for m in members))
        if reasons:
            reason = "; ".join(dict.fromkeys(reasons))
            unprunable.append(UnprunableGroup(layer_names, width, reason))
            continue
        sites = [m.layer for m in members if m.op == "batchnorm"]
        sites += [layer for layer, node in producers
                  if not node.outputs or not all(out in bn_nodes for out in node.outputs)]
        prunable.append(ChannelGroup(name, width, tuple(members), tuple(dict.fromkeys(sites))))
    for name, module in layers:
        if name not in read:
            channels = module.in_channels if isinstance(module, nn.modules.conv._ConvNd) \
                else module.in_features
            node = graph.module2node.get(module)
            reason = INPUT_REASON if node is None or not node.inputs else (
                "its input channels are in no group Torch-Pruning could build")
            unprunable.append(UnprunableGroup((name,), channels, reason))
    return ChannelGroups(tuple(prunable), tuple(unprunable), example_input.detach().clone())


def _member(
    item: Any, target: Any, names: Mapping[nn.Module, str], recorder: _TraceRecorder,
    reasons: list[str],
) -> GroupMember | None:
    """The group member of one dependency-graph item, or None for a cost-free op (ReLU, add…)."""
    indices, roots = tuple(int(i) for i in item.idxs), tuple(int(i) for i in item.root_idxs)
    if isinstance(target, nn.Parameter):
        reasons.append(f"it reaches a parameter outside any layer, shape {tuple(target.shape)}")
        return None
    name = names.get(target) if isinstance(target, nn.Module) else None
    if name is None:
        layer = recorder.layer_of.get(item.dep.target.grad_fn)
        return None if layer is None else GroupMember(layer, "both", "pool", indices, roots)
    if isinstance(target, POOL_MODULES):
        return GroupMember(name, "both", "pool", indices, roots)
    reason = _unsupported(name, target)
    dim = "out" if item.dep.handler.__name__ == "prune_out_channels" else "in"
    if reason is not None:  # listed in the unprunable group, with the reason
        reasons.append(reason)
        return GroupMember(name, dim, type(target).__name__.lower(), indices, roots)
    if isinstance(target, nn.modules.batchnorm._BatchNorm):
        return GroupMember(name, "both", "batchnorm", indices, roots)
    if isinstance(target, nn.modules.conv._ConvNd) and _depthwise(target):
        return GroupMember(name, "both", "depthwise", indices, roots)
    op = "conv" if isinstance(target, nn.modules.conv._ConvNd) else "linear"
    return GroupMember(name, dim, op, indices, roots)
