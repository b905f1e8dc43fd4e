"""Where BAR puts its gates in a pre-activation ResNet, and what a set of gates keeps.

Gated channels (one :class:`HardConcreteGate` each; all are outputs of a convolution, which is
what eq. (4) counts):

- ``conv1`` (stem) output: the first residual stream; must keep ≥ 1 channel (fatal pruning);
- every block's inner channels, gated **after ``bn2``** (before its ReLU), as in the paper;
- every block's ``conv2`` output, i.e. the channels its delta adds to the stream (``I_out``);
- every pooling block's 1×1 ``shortcut`` output, which starts a new stream; ≥ 1 channel kept
  (section 4.1: "at least one feature map is kept in the 1×1 conv operation").

A stream channel is *live* when some producer (stem, shortcut, or a block whose branch is alive)
writes it. Each block reads only the live channels (``I_in``): its ``bn1`` output is multiplied by
the live mask, so a dead stream channel contributes nothing, not ``relu(bn1(0))``. This makes the
gated network compute exactly what the compact mixed-connectivity network computes.

Gates are registered on the model as ``model.bar_gates`` (a ``ModuleDict``), so that ``.to()``,
``.train()`` and ``.eval()`` reach them. ``PreActBlock`` itself is unchanged: the gated modules get
a replacement ``forward`` (an instance attribute, removed by :meth:`GateLayout.remove_hooks`) that
folds the gate into the module's own small parameters instead of multiplying its full-size output:
``conv(x, W)·z = conv(x, W·z)`` for a conv without bias, and ``BN(x)·z`` is batch norm with scale
``γ·z`` and shift ``β·z`` (the same for the live mask on ``bn1``). The result and the gradients are
the same (up to rounding), but the forward and backward passes save a full-size multiply per gate
and the ``(N, C, H, W)`` reduction that the gate's gradient needs otherwise (the training-step
overhead of BAR vs dense fell from about 17% to a few per cent on WRN-16-2, CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from budgetsearch.models.blocks import PreActBlock, PreActResNet
from budgetsearch.pruners.hard_concrete import HardConcreteGate

GateValues = Callable[[HardConcreteGate], torch.Tensor]


@dataclass
class Producer:
    """A gate whose kept channels are written to a stream; a block output only while the block's
    branch is alive (some inner channel kept)."""

    gate: HardConcreteGate
    branch: HardConcreteGate | None = None

    def live(self, values: GateValues) -> torch.Tensor:
        """Boolean mask of the stream channels this producer writes."""
        mask = values(self.gate) > 0
        if self.branch is not None and not bool((values(self.branch) > 0).any()):
            return torch.zeros_like(mask)
        return mask


@dataclass
class BlockGates:
    """The gates of one residual block and the stream it reads and writes."""

    name: str
    block: PreActBlock
    mid: HardConcreteGate
    out: HardConcreteGate
    shortcut: HardConcreteGate | None
    in_stream: int
    out_stream: int
    readers: list[Producer]  # producers of ``in_stream`` that precede this block


@dataclass
class GateLayout:
    """All gates of a :class:`PreActResNet` and the stream structure they imply."""

    model: PreActResNet
    stem: HardConcreteGate
    blocks: list[BlockGates]
    streams: list[list[Producer]]
    handles: list[_GatedForward] = field(default_factory=list)

    def named_gates(self) -> list[tuple[str, HardConcreteGate]]:
        """``(conv name, gate)`` of every gate in network order (the conv whose output it gates)."""
        named = [("conv1", self.stem)]
        for plan in self.blocks:
            if plan.shortcut is not None:
                named.append((f"{plan.name}.shortcut", plan.shortcut))
            named.append((f"{plan.name}.conv1", plan.mid))
            named.append((f"{plan.name}.conv2", plan.out))
        return named

    def remove_hooks(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def live_mask(producers: list[Producer], values: GateValues, width: int) -> torch.Tensor:
    """Union of the channels the ``producers`` write (boolean, ``width`` channels)."""
    mask = torch.zeros(width, dtype=torch.bool)
    for producer in producers:
        mask = mask.to(producer.gate.log_alpha.device) | producer.live(values)
    return mask


class _GatedForward:
    """Replacement ``forward`` of a gated conv or BatchNorm: the gate is folded into its
    parameters (see the module docstring). A plain object, not a closure, so that the model still
    deep-copies (the copy gets its own gate) and pickles."""

    def __init__(self, module: nn.Module, gate: HardConcreteGate | None = None,
                 producers: list[Producer] | None = None) -> None:
        self.module = module
        self.gate = gate
        self.producers = producers

    def scale(self) -> torch.Tensor:
        if self.gate is not None:
            z = self.gate.sample()
            self.gate.last_gate = z
            return z
        # live mask of a block's input: the channels written by the producers so far this pass
        producers = self.producers or []
        width = producers[0].gate.channels
        return live_mask(producers, _last_gate, width).to(self.module.weight.dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        module = self.module
        z = self.scale()
        if isinstance(module, nn.Conv2d):
            bias = None if module.bias is None else module.bias * z
            return module._conv_forward(x, module.weight * z.view(-1, 1, 1, 1), bias)
        return _batch_norm(module, x, module.weight * z, module.bias * z)

    def remove(self) -> None:
        if self.module.__dict__.get("forward") is self:
            del self.module.__dict__["forward"]


def _batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` with the affine ``weight`` and ``bias`` given (``_BatchNorm.forward``'s logic:
    running statistics, momentum or cumulative average, eval mode)."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch = bn.training or (bn.running_mean is None and bn.running_var is None)
    track = not bn.training or bn.track_running_stats
    return F.batch_norm(x, bn.running_mean if track else None, bn.running_var if track else None,
                        weight, bias, use_batch, factor, bn.eps)


def _fold(module: nn.Module, gate: HardConcreteGate | None = None,
          producers: list[Producer] | None = None) -> _GatedForward:
    if not (isinstance(module, nn.Conv2d) or isinstance(module, nn.modules.batchnorm._BatchNorm)
            and module.affine):
        raise TypeError(f"BAR gates fold into a Conv2d or an affine BatchNorm, got {module}")
    forward = _GatedForward(module, gate, producers)
    module.forward = forward  # type: ignore[method-assign]
    return forward


def _last_gate(gate: HardConcreteGate) -> torch.Tensor:
    if gate.last_gate is None:  # not run yet in this pass: its deterministic value
        return gate.deterministic().detach()
    return gate.last_gate.detach()


def attach_gates(model: nn.Module, *, init_log_alpha: float = 0.0) -> GateLayout:
    """Add BAR's gates to a :class:`PreActResNet` in place and return their layout.

    Raises:
        TypeError: ``model`` is not a pre-activation ResNet built by ``budgetsearch.models``.
        ValueError: the model already carries gates.
    """
    if not isinstance(model, PreActResNet):
        raise TypeError(
            "BAR prunes budgetsearch PreActResNet models (wrn-*, resnet-*), "
            f"got {type(model).__name__}"
        )
    if hasattr(model, "bar_gates"):
        raise ValueError("model already carries BAR gates (prepare was called twice?)")
    gates = nn.ModuleDict()
    stem = HardConcreteGate(model.conv1.out_channels, init_log_alpha=init_log_alpha, min_alive=1)
    gates["conv1"] = stem
    streams: list[list[Producer]] = [[Producer(stem)]]
    plans: list[BlockGates] = []
    handles = [_fold(model.conv1, stem)]
    for group_name in ("layer1", "layer2", "layer3"):
        for index, block in enumerate(getattr(model, group_name)):
            name = f"{group_name}.{index}"
            key = name.replace(".", "-")
            planes = block.conv2.out_channels
            in_stream = len(streams) - 1
            readers = list(streams[in_stream])
            shortcut = None
            if block.shortcut is not None:
                shortcut = HardConcreteGate(planes, init_log_alpha=init_log_alpha, min_alive=1)
                gates[f"{key}-shortcut"] = shortcut
                streams.append([Producer(shortcut)])
                handles.append(_fold(block.shortcut, shortcut))
            mid = HardConcreteGate(block.conv1.out_channels, init_log_alpha=init_log_alpha)
            out = HardConcreteGate(planes, init_log_alpha=init_log_alpha)
            gates[f"{key}-mid"] = mid
            gates[f"{key}-out"] = out
            out_stream = len(streams) - 1
            handles.append(_fold(block.bn1, producers=readers))
            handles.append(_fold(block.bn2, mid))
            handles.append(_fold(block.conv2, out))
            streams[out_stream].append(Producer(out, branch=mid))
            plans.append(
                BlockGates(name, block, mid, out, shortcut, in_stream, out_stream, readers))
    handles.append(_fold(model.bn, producers=list(streams[-1])))
    model.bar_gates = gates
    return GateLayout(model, stem, plans, streams, handles)


@dataclass
class BlockPlan:
    """What one block keeps under a set of gate values (boolean masks over channels)."""

    name: str
    reads: torch.Tensor  # live stream channels before the block (I_in), over the input stream
    mid: torch.Tensor  # kept inner channels
    out: torch.Tensor  # kept delta channels (all False when the branch is removed)
    shortcut: torch.Tensor | None  # kept channels of the new stream's 1×1 projection

    @property
    def branch_alive(self) -> bool:
        return bool(self.mid.any()) and bool(self.out.any()) and bool(self.reads.any())


@dataclass
class PrunePlan:
    """Kept channels of every gated layer and the width of every residual stream."""

    stem: torch.Tensor
    blocks: list[BlockPlan]
    streams: list[torch.Tensor]  # live channels of each stream (union of its producers)
    in_streams: list[int]
    out_streams: list[int]

    def kept_channels(
        self, layout: GateLayout, connectivity: str = "mixed"
    ) -> dict[str, tuple[int, int]]:
        """``{conv name: (kept in, kept out)}`` of the pruned network, for the cost model.

        ``"mixed"``: each block reads ``|I_in|`` and writes ``|I_out|`` channels (supp. section 2).
        ``"regular"``: a usual ResBlock, whose reads and writes span the whole live stream, so
        that tensors summed together match in width (section 4.2); only a block whose inner
        channels are all pruned disappears.
        """
        if connectivity not in ("mixed", "regular"):
            raise ValueError(f"connectivity must be 'mixed' or 'regular', got {connectivity!r}")
        model = layout.model
        widths = [int(s.sum()) for s in self.streams]
        stem = (model.conv1.in_channels, int(self.stem.sum()))
        kept: dict[str, tuple[int, int]] = {"conv1": stem}
        if connectivity == "regular":
            kept["conv1"] = (model.conv1.in_channels, widths[0])
        for plan, in_s, out_s in zip(self.blocks, self.in_streams, self.out_streams, strict=True):
            reads = int(plan.reads.sum()) if connectivity == "mixed" else widths[in_s]
            if plan.shortcut is not None:
                written = int(plan.shortcut.sum()) if connectivity == "mixed" else widths[out_s]
                kept[f"{plan.name}.shortcut"] = (reads, written)
            if plan.branch_alive:
                out = int(plan.out.sum()) if connectivity == "mixed" else widths[out_s]
                kept[f"{plan.name}.conv1"] = (reads, int(plan.mid.sum()))
                kept[f"{plan.name}.conv2"] = (int(plan.mid.sum()), out)
            else:
                kept[f"{plan.name}.conv1"] = (0, 0)
                kept[f"{plan.name}.conv2"] = (0, 0)
        kept["fc"] = (widths[-1], model.fc.out_features)
        return kept


def prune_plan(layout: GateLayout, values: GateValues | None = None) -> PrunePlan:
    """The hard-pruned structure under gate ``values`` (default: the deterministic gates)."""
    if values is None:
        with torch.no_grad():  # each gate's deterministic value, computed once
            cache = {id(g): g.deterministic() for _, g in layout.named_gates()}

        def values(gate: HardConcreteGate) -> torch.Tensor:
            return cache[id(gate)]
    streams = [live_mask(producers, values, producers[0].gate.channels)
               for producers in layout.streams]
    blocks = []
    for plan in layout.blocks:
        width = layout.streams[plan.in_stream][0].gate.channels
        reads = live_mask(plan.readers, values, width)
        mid = values(plan.mid) > 0
        out = Producer(plan.out, branch=plan.mid).live(values)
        shortcut = None if plan.shortcut is None else values(plan.shortcut) > 0
        blocks.append(BlockPlan(plan.name, reads, mid, out, shortcut))
    return PrunePlan(
        stem=values(layout.stem) > 0,
        blocks=blocks,
        streams=streams,
        in_streams=[p.in_stream for p in layout.blocks],
        out_streams=[p.out_stream for p in layout.blocks],
    )
