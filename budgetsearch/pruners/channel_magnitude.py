"""Channel magnitude pruning (L1-norm filter pruning, Li et al. 2017; the BAR paper's "WM").

At ``prepare`` every gated channel group is scored by the L1 norm of the filters that write it,
and the lowest are switched off — the same fraction in every group (``scope="uniform"``, the
BAR paper's WM) or the lowest scores across groups, each normalised by its group's mean
(``scope="global"``) — as few as needed for the whole network's cost to meet the target. The
structure is then fixed, training fine-tunes what is left, and :meth:`finalize` returns the
physically smaller network. Given a profile with a ``channel_alignment`` (onnxruntime's), every
group keeps a multiple of it where the budget allows: unaligned widths ran 2–4× slower there.

It shares BAR's channel machinery (where the gates sit, what they keep, how the result is priced
and compacted: mixed connectivity on a budgetsearch pre-act ResNet, coupled channel groups on any
other CNN, see :mod:`~budgetsearch.pruners.channel_structure`) and differs only in how channels
are chosen: by weight magnitude, once, instead of learned Hard-Concrete gates under a budget
barrier. On a channel group a channel's norm sums the filters of every conv or linear that writes
it (a residual add couples several).

Example:
    >>> import torch
    >>> from budgetsearch.cost import Target
    >>> from budgetsearch.models import build_model
    >>> pruner = ChannelMagnitudePruner(target=Target.parse("flops", "50%"))
    >>> model = pruner.prepare(build_model("wrn-10-1"), torch.zeros(1, 1, 28, 28))
    >>> pruner.report().cost["flops"] <= pruner.target.value
    True
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import nn

from budgetsearch.cost import DeviceProfile, Target, is_met
from budgetsearch.pruners.bar import BARConfig, BARPruner, aligned_count
from budgetsearch.pruners.base import register_pruner
from budgetsearch.train_hooks import Phase

Scope = Literal["uniform", "global"]
_BISECTION_STEPS = 30


@register_pruner
class ChannelMagnitudePruner(BARPruner):
    """Keep the channels with the largest filter L1 norms, then fine-tune.

    Args:
        target: the ceiling on any metric (``params``, ``flops``, ``activation_volume``,
            ``latency_ms`` on a profile).
        profile: device profile (latency targets and reporting).
        teacher: optional distillation teacher for the fine-tuning (section 3.5 of BAR).
        budget: without a target: the allowed cost as a fraction of the unpruned network's, on
            ``metric``.
        metric: what ``budget`` counts (default FLOPs).
        scope: ``"uniform"`` (the same kept fraction in every group) or ``"global"``.
    """

    name: ClassVar[str] = "channel-magnitude"
    # searched by default since it beat BAR at equal FLOPs and latency at 2×, 4× and 8×
    # (experiments/README.md, section 9)
    search_rank: ClassVar[int | None] = 2
    param_group_optimizer = None

    def __init__(self, *, target: Target | None = None, profile: DeviceProfile | str | None = None,
                 teacher: nn.Module | None = None, budget: float = 0.5, metric: str = "flops",
                 scope: Scope = "uniform", connectivity: Literal["mixed", "regular"] = "mixed",
                 kd_alpha: float = 0.9, kd_temperature: float = 4.0) -> None:
        if scope not in ("uniform", "global"):
            raise ValueError(f"scope must be 'uniform' or 'global', got {scope!r}")
        config = BARConfig(budget=budget, metric=metric, connectivity=connectivity,
                           kd_alpha=kd_alpha, kd_temperature=kd_temperature,
                           distillation=None, enforce_budget=False)
        super().__init__(config=config, target=target, profile=profile, teacher=teacher)
        self.scope = scope
        self.kept_fraction: float | None = None

    def prepare(self, model: nn.Module, example_input: torch.Tensor) -> nn.Module:
        """Attach the channel gates, choose the channels by magnitude, fix the structure."""
        model = super().prepare(model, example_input)
        with torch.no_grad():
            # widths in multiples of the profile's channel_alignment where the budget allows
            # them, else as they come (a group of 16 channels cannot go below 8 aligned)
            alignment = self.channel_alignment()
            for step in (alignment, 0) if alignment > 1 else (0,):
                if self.scope == "uniform":
                    self._choose_uniform(step)
                else:
                    self._choose_global(step)
                delivered = self.delivered_cost()
                if is_met(delivered, self.budget_value):
                    break
        # each choice ends on the smallest network when none meets the budget: with the
        # gathers and scatters it runs counted, even that one may not
        self._refuse_unless_met(delivered, f"by keeping the channels of largest norm: the "
                                           f"smallest network this pruner delivers costs "
                                           f"{delivered:.4g} (its gathers and scatters counted)")
        self.hard_prune()
        return model

    def phases(self) -> tuple[Phase, ...]:
        """One fine-tuning phase: the structure is fixed at ``prepare``."""
        return (Phase("finetune"),)

    def _norms(self) -> dict[str, torch.Tensor]:
        # per gate: |w| summed over the filters that write each channel (on a channel group,
        # every producing conv/linear output slice the group spans)
        return self._structure().filter_norms()

    def _set(self, keep: dict[str, torch.Tensor]) -> float:
        for name, gate in self._structure().named_gates():
            gate.set_kept(keep[name])
        return self.delivered_cost()

    def _fits(self, keep: dict[str, torch.Tensor]) -> bool:
        return is_met(self._set(keep), self.budget_value)

    def _choose_uniform(self, step: int) -> None:
        """The largest kept fraction (the same in every group) whose cost meets the budget."""
        norms = self._norms()
        gates = dict(self._structure().named_gates())

        def keep_at(fraction: float) -> dict[str, torch.Tensor]:
            keep = {}
            for name, gate in gates.items():
                count = _aligned(max(gate.min_alive, round(fraction * gate.channels), 1),
                                 gate.channels, step)
                keep[name] = torch.topk(norms[name], count).indices
            return keep

        low, high = 0.0, 1.0
        if self._fits(keep_at(high)):
            low = high
        else:
            for _ in range(_BISECTION_STEPS):
                mid = (low + high) / 2
                if self._fits(keep_at(mid)):
                    low = mid
                else:
                    high = mid
        self._set(keep_at(low))
        self.kept_fraction = low

    def _choose_global(self, step: int) -> None:
        """Drop the lowest normalised norms across groups, as few as meet the budget."""
        norms = self._norms()
        gates = dict(self._structure().named_gates())
        entries: list[tuple[float, str, int]] = []
        for name, values in norms.items():
            scale = float(values.mean()) or 1.0
            entries += [(float(v) / scale, name, i) for i, v in enumerate(values)]
        entries.sort()

        def keep_after(dropped: int) -> dict[str, torch.Tensor]:
            off: dict[str, set[int]] = {name: set() for name in gates}
            for _, name, index in entries[:dropped]:
                if gates[name].channels - len(off[name]) > max(gates[name].min_alive, 1):
                    off[name].add(index)
            # a group's kept channels are its largest normalised norms, so the aligned count
            # keeps the largest of them
            return {name: torch.topk(norms[name], _aligned(gate.channels - len(off[name]),
                                                           gate.channels, step)).indices
                    for name, gate in gates.items()}

        low, high = 0, len(entries)
        if not self._fits(keep_after(low)):
            while high - low > 1:  # meets(high) is the smallest network the groups allow
                mid = (low + high) // 2
                if self._fits(keep_after(mid)):
                    high = mid
                else:
                    low = mid
            low = high
        self._set(keep_after(low))
        kept = sum(int(g.kept_mask().sum()) for g in gates.values())
        self.kept_fraction = kept / sum(g.channels for g in gates.values())

    def report(self) -> Any:
        """BAR's report, with the selection rule and kept fraction."""
        report = super().report()
        report.extra.update(selection=f"filter L1 norm, {self.scope}",
                            kept_fraction=self.kept_fraction)
        return report


def _aligned(count: int, channels: int, step: int) -> int:
    """``count`` rounded to the nearest multiple of ``step`` (the profile's
    ``channel_alignment`` while ``prepare`` tries aligned widths; 0: as it is), at least one
    multiple: :func:`~budgetsearch.pruners.bar.aligned_count`, but in onnxruntime a group of 8
    can cost less than one of 1. A channel-pruned MobileNet-v2 ran 2–3× slower at unaligned
    widths than rounded to 8, and slower than unpruned (experiments/README.md, "Depthwise
    convs that oneDNN runs as GEMMs", part 7)."""
    if step <= 1:
        return count
    return max(min(step, channels), aligned_count(count, channels, step))
