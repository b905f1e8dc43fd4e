"""BAR: budget-aware structured pruning (Lemaire et al., CVPR 2019) ending in a smaller network.

Pieces, each in its own module:

- :mod:`~budgetsearch.pruners.hard_concrete`: Hard-Concrete gates (supp. eqs. 2–5);
- :mod:`~budgetsearch.pruners.channel_structure`: the gated channels BAR prunes, one protocol over
  two structures: :mod:`~budgetsearch.pruners.bar_layout` for a budgetsearch pre-act ResNet (inner
  channels after ``bn2``, every block's delta, the stem and the pooling shortcuts; mixed
  connectivity, compacted by :mod:`~budgetsearch.pruners.compaction`), and the coupled channel
  groups of any other CNN (:mod:`~budgetsearch.pruners.channel_groups`, gated after their
  normalisation layer by :mod:`~budgetsearch.pruners.channel_gating`, compacted to a plain
  smaller copy of the user's module);
- :mod:`~budgetsearch.pruners.bar_schedule`: the barrier f(V, a, b) (eq. 5) and the budget
  schedule (eq. 7, supp. eq. 1);

The loss of one step (section 3.5):

    (1 − α) CE(P_s, Y) + α T² KL(P_t ‖ P_s) + λ · f(V, a, b) · L_S / C_F

``L_S`` is the expected cost of the gated network under the chosen metric (activation volume,
eq. 4, by default; FLOPs, parameters or latency on a device profile), priced by the cost model from
the expected kept channels ``Σ P(z > 0)`` (eq. 6 and the text after it); ``V`` is the hard cost
under the deterministic gates. ``L_S`` is expressed in units of the mean cost of one gated channel,
``C_F / N`` (N gated channels), so that λ sets the pull on one typical gate whatever the metric and
the network size: the paper's λ = 1e-5 on raw volume pulls a gate of area A with 1e-5·A, which is
λ ≈ 1e-5·V_F/N here. ``f`` is a plain, non-differentiated float (V has no gradient), capped at
1e10 past the asymptote (as the public re-implementation), so the term stays finite; its gradient
reaches only the gates, which Adam updates with bounded steps whatever the scale.

Example:
    >>> import torch
    >>> from budgetsearch.cost import Target
    >>> from budgetsearch.data import load_dataset
    >>> from budgetsearch.models import build_model
    >>> from budgetsearch.train import TrainConfig, train_phases
    >>> pruner = BARPruner(target=Target.parse("activation_volume", "50%"), lam=2.0)
    >>> model = pruner.prepare(build_model("wrn-10-1"), torch.zeros(1, 1, 28, 28))
    >>> [phase.name for phase in pruner.phases()]
    ['prune', 'frozen', 'finetune']
    >>> data = load_dataset("synthetic", train_subset=64)
    >>> result = train_phases(model, data, TrainConfig(epochs=1, progress=False), pruner)
    >>> compact = pruner.finalize()
    >>> pruner.report().cost["activation_volume"] <= pruner.target.value
    True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from budgetsearch.cost import (
    DeviceProfile,
    Target,
    TargetMetric,
    canonical_metric,
    index_op_elements,
    layer_inventory,
)
from budgetsearch.cost.metrics import TARGET_METRICS, is_met
from budgetsearch.pruners.bar_schedule import BARRIER_CAP, TransitionName, barrier, budget_margins
from budgetsearch.pruners.base import (
    BudgetInfeasible,
    PrunedConfiguration,
    Pruner,
    PrunerReport,
    register_pruner,
)
from budgetsearch.pruners.channel_structure import ChannelStructure, attach_structure
from budgetsearch.pruners.hard_concrete import LOG_ALPHA_LIMIT
from budgetsearch.train_hooks import Phase, StepContext

_METRICS = TARGET_METRICS
#: The paper's λ (1e-5 on raw activation volume, per sample) in mean-channel units on WRN-16-2
#: at 28×28 with batch 64: 1e-5 · (V_F / N = 204) / 64 (see :meth:`BARConfig.paper`).
PAPER_LAM = 3e-5


def aligned_count(count: int, channels: int, step: int,
                  rounding: Any = round) -> int:
    """``count`` kept channels of ``channels`` rounded (``round`` to the nearest, or
    ``math.floor``) to a multiple of ``step``, at most ``channels``; as it is when ``step`` ≤ 1,
    every channel is kept, or it rounds to no channel (a group narrower than one multiple)."""
    multiple = step * int(rounding(count / step)) if step > 1 else 0
    if count >= channels or multiple == 0:
        return min(count, channels)
    return min(channels, multiple)


@dataclass(frozen=True)
class BARConfig:
    """Settings of a BAR run.

    Attributes:
        budget: the allowed cost as a fraction of the whole unpruned network's (0.25 = 4×
            reduction). With a ``target`` (the protocol's way) the budget is derived from it at
            ``prepare`` and this value is not used.
        metric: what the budget counts: ``"activation_volume"`` (eq. 4, the paper's), ``"flops"``
            (fvcore: 1 FLOP = 1 fused multiply-add), ``"params"`` or ``"latency_ms"`` (needs
            ``profile``); aliases such as ``"latency"`` are accepted. A target sets it.
        profile: device profile (name, path) for the latency metric and for reporting latency.
        lam: λ of the budget term, on L_S in units of the mean cost of one gated channel (see the
            module docstring).
        hardness: d of the sigmoidal transition (supp. eq. 1); 10 in the paper.
        transition: ``"sigmoid"`` (the paper's), ``"linear"`` or ``"exponential"`` (ablations).
        start_factor: b starts at ``start_factor · C_F`` (1.01, as the public re-implementation).
        gate_lr: Adam learning rate of log α (no weight decay); the paper uses 1e-3 with 80 epochs,
            short runs need more.
        init_log_alpha: mean of log α at the start (plus U(0, 0.01), supp. section 4). 3 (gates
            start at 1, P(z = 0) ≈ 1%) rather than the paper's 0: we prune a trained network,
            and at log α = 0 every gate is 0.5 at evaluation and drops 17% of the channels in
            training, which throws away what the network learned before any pruning
            (4× volume, as above: 0.672 from 0, 0.688 from 3). The paper starts CIFAR from
            random weights, where it does not matter.
        distillation: knowledge distillation from the unpruned network (section 3.5). None
            (default): distil when a ``teacher`` is given. True without a teacher: distil from a
            frozen copy of the model as ``prepare`` receives it (prepare a trained network).
        kd_alpha, kd_temperature: α and T of the distillation loss (0.9 and 4 in the paper).
        connectivity: structure priced for V on a pre-act ResNet: ``"mixed"`` (supp. section 2)
            or ``"regular"``. Other networks are pruned by coupled channel groups (a residual
            stream keeps one width), whatever this says.
        enforce_budget: at the hard prune, if V still exceeds the budget, switch off the gates of
            lowest log α until it does not (reported as ``projected_channels``).
        barrier_cap: value of f at and past the asymptote.
        mode: ``"paper"`` for the settings of :meth:`paper` (what ``mode="paper"`` builds);
            ``"library"`` otherwise. A label: the other fields are what the pruner uses.
        prune_fraction: when set, the pruning phase's share of training; the frozen and
            fine-tune phases share the rest in the proportions ``phase_fractions`` gives them
            (a plain number, so that a YAML search space can hold it fixed).
        rewind: at the hard prune, put back the weights (and BatchNorm statistics) the model had
            at ``prepare`` and open the kept gates fully: the pruning phase chooses the channels,
            the frozen and fine-tune phases train them from the start point (Frankle et al.'s
            rewinding, to the trained reference here). Measured in ``experiments/README.md``
            section 9: the pruning phase's stochastic gates leave the kept weights worse than the
            reference's (WRN-16-2, 4× FLOPs: 0.792 rewound vs 0.753 not, same training).
        gate_anneal: anneal the training gates from Hard-Concrete samples to the deterministic
            gates over the pruning phase (step k of K draws ``(1 − k/K)·sample + k/K·det``)
            instead of switching at the hard prune; False (the paper's switch) by default.
        pull: how the gradient of ``λ f L_S`` reaches the gates. ``"adam"``: summed with the task
            loss and stepped by the gates' Adam (the paper, and the public re-implementation).
            ``"cost"`` (default) and ``"separate"``: the task gradient alone goes through Adam,
            and the budget pull is a separate step ``gate_lr · s · w_i`` after it, with
            ``g = ∂L_S/∂log α``, ``s = λf / (1 + λf)`` ∈ [0, 1) and ``w_i = clamp(g_i / mean|g|,
            −1, 1)`` (``"cost"``: a channel is pulled in proportion to what removing it saves,
            relative to the mean channel, never faster than ``gate_lr``) or ``w_i = sign(g_i)``
            (``"separate"``: every gate at the same rate). Why not Adam: once f is large (always,
            past the asymptote) Adam's per-gate normalisation makes every gate step by the same
            ``gate_lr``, the task gradient is drowned, and all gates cross the pruning threshold
            at the same step (WRN-16-2 at 4× volume: 1,136 → 4 kept channels within 40 steps).
            Why capped: uncapped (g_i / mean|g|) crushed the 28×28 stem and first stage to one
            channel under the volume metric (accuracy 10% at 4×). ``"cost"`` over ``"separate"``:
            the uniform pull cuts the cheap 7×7 stage as fast as the costly 28×28 one. WRN-16-2
            from a 1-epoch reference (0.754), 4,000 Fashion-MNIST images, 4× volume, 2 + 0.5 +
            0.5 epochs, gate_lr 0.1, one seed, test accuracy on 1,000 images after BatchNorm
            re-estimation: 0.688 vs 0.640 (log α from 3), 0.672 vs 0.542 (log α from 0).
    """

    budget: float = 0.5
    metric: TargetMetric = "activation_volume"
    profile: str | None = None
    lam: float = 1.0
    hardness: float = 10.0
    transition: TransitionName = "sigmoid"
    start_factor: float = 1.01
    gate_lr: float = 1e-3
    init_log_alpha: float = 3.0
    distillation: bool | None = None
    kd_alpha: float = 0.9
    kd_temperature: float = 4.0
    connectivity: Literal["mixed", "regular"] = "mixed"
    enforce_budget: bool = True
    barrier_cap: float = BARRIER_CAP
    pull: Literal["cost", "separate", "adam"] = "cost"
    phase_fractions: tuple[float, float, float] = (0.6, 0.25, 0.15)
    finetune_lr_factor: float = 0.1
    mode: Literal["library", "paper"] = "library"
    rewind: bool = False
    prune_fraction: float | None = None
    gate_anneal: bool = False

    @classmethod
    def paper(cls, **overrides: Any) -> BARConfig:
        """The paper's optimiser (``mode="paper"``), with each departure measured.

        As the paper: the budget term ``λ f(V, a, b) L_S`` is summed with the task loss and log α
        is stepped by Adam (``pull="adam"``); log α starts at 0 plus U(0, 0.01) (supp. section 4);
        sigmoid schedule of hardness 10; KD with α 0.9, T 4; phases 80 / 40 / 10 (supp. section
        3.1) with the last at lr / 10. λ = :data:`PAPER_LAM`: the paper's 1e-5 on raw volume for
        a per-sample loss (the public re-implementation divides it by the batch size) in this
        module's mean-channel units (WRN-16-2 at 28×28: V_F / N = 204, batch 64 → 3.2e-5).

        Departures (``experiments/bar_collapse.py``, README "Why the Adam coupling collapsed"):
        ``start_factor`` 1.01 (at 1.0, V = V_F = b at the first step and f is infinite);
        ``gate_lr`` 0.3 instead of 1e-3 (the paper's 80 epochs give a gate 62,000 steps; at
        1e-3 in 126 steps no gate reaches the pruning threshold, V stays at V_F and the
        projection does all the pruning); f capped at 1e10 past the asymptote (the public
        re-implementation; ∞ is not a number an optimiser can take); the projection at the
        hard prune (``enforce_budget``) as a safety net so that the budget is always met.
        """
        values: dict[str, Any] = {
            "mode": "paper", "pull": "adam", "lam": PAPER_LAM, "init_log_alpha": 0.0,
            "start_factor": 1.01, "gate_lr": 0.3, "hardness": 10.0, "transition": "sigmoid",
            "kd_alpha": 0.9, "kd_temperature": 4.0,
            "phase_fractions": (80 / 130, 40 / 130, 10 / 130), "finetune_lr_factor": 0.1}
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        if not 0.0 < self.budget <= 1.0:
            raise ValueError(
                f"budget must be a fraction of the full cost in (0, 1], got {self.budget}"
            )
        metric = canonical_metric(self.metric)
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {', '.join(_METRICS)}, got {self.metric!r}")
        object.__setattr__(self, "metric", metric)
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ValueError(f"lam must be a finite number ≥ 0, got {self.lam}")
        if self.hardness <= 0:
            raise ValueError(f"hardness must be positive, got {self.hardness}")
        if self.transition not in ("sigmoid", "linear", "exponential"):
            raise ValueError(
                f"transition must be 'sigmoid', 'linear' or 'exponential', got {self.transition!r}"
            )
        if self.start_factor < 1.0:
            raise ValueError(f"start_factor must be ≥ 1, got {self.start_factor}")
        if not self.gate_lr > 0:
            raise ValueError(f"gate_lr must be positive, got {self.gate_lr}")
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise ValueError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        if self.kd_temperature < 1.0:
            raise ValueError(f"kd_temperature must be ≥ 1, got {self.kd_temperature}")
        if self.connectivity not in ("mixed", "regular"):
            raise ValueError(
                f"connectivity must be 'mixed' or 'regular', got {self.connectivity!r}"
            )
        if self.pull not in ("separate", "cost", "adam"):
            raise ValueError(f"pull must be 'separate', 'cost' or 'adam', got {self.pull!r}")
        if not self.barrier_cap > 0:
            raise ValueError(f"barrier_cap must be positive, got {self.barrier_cap}")
        fractions = tuple(float(f) for f in self.phase_fractions)
        if self.prune_fraction is not None:
            share = float(self.prune_fraction)
            if not 0.0 < share <= 1.0:
                raise ValueError(f"prune_fraction must be in (0, 1], got {self.prune_fraction}")
            after = sum(fractions[1:]) if len(fractions) == 3 else 0.0
            split = fractions[1:] if after > 0 else (1.0, 0.0)
            total = after if after > 0 else 1.0
            fractions = (share, (1 - share) * split[0] / total, (1 - share) * split[1] / total)
        if (len(fractions) != 3 or fractions[0] <= 0 or min(fractions) < 0
                or abs(sum(fractions) - 1.0) > 1e-6):
            raise ValueError("phase_fractions must be three shares (prune, frozen, finetune) "
                             f"≥ 0 summing to 1, the first > 0, got {self.phase_fractions!r}")
        object.__setattr__(self, "phase_fractions", fractions)
        if self.mode not in ("library", "paper"):
            raise ValueError(f"mode must be 'library' or 'paper', got {self.mode!r}")
        if not isinstance(self.gate_anneal, bool):
            raise TypeError(f"gate_anneal must be True or False, got {self.gate_anneal!r}")
        if not 0 < self.finetune_lr_factor <= 1:
            raise ValueError(f"finetune_lr_factor must be in (0, 1], got "
                             f"{self.finetune_lr_factor}")


@register_pruner
class BARPruner(Pruner):
    """Budget-Aware Regularization with Hard-Concrete channel gates.

    Options are the fields of :class:`BARConfig` (keyword-only), or ``config=BARConfig(...)``;
    ``target`` (a :class:`~budgetsearch.cost.Target`) sets the budget's metric and value at
    ``prepare``; ``profile`` prices latency; ``teacher`` is the distillation teacher (see
    ``BARConfig.distillation``).

    Example:
        >>> pruner = BARPruner(budget=0.5, lam=10.0)
        >>> pruner.config.metric
        'activation_volume'
    """

    name: ClassVar[str] = "bar"
    granularity: ClassVar[Literal["channel"]] = "channel"
    search_rank: ClassVar[int | None] = 0
    param_group_optimizer = "adam"

    def __init__(self, *, config: BARConfig | None = None, target: Target | None = None,
                 profile: DeviceProfile | str | None = None, teacher: nn.Module | None = None,
                 **options: Any) -> None:
        known = {f.name for f in fields(BARConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown BAR option(s) {unknown}; valid: {sorted(known)}")
        mode = options.pop("mode", None)
        if config is None:
            # mode="paper" starts from the paper's settings; the other options override them
            config = BARConfig.paper() if mode == "paper" else BARConfig(
                **({} if mode is None else {"mode": mode}))
        elif mode is not None:
            config = replace(config, mode=mode)
        config = replace(config, **options)
        if target is not None:
            config = replace(config, metric=target.metric)
        if profile is None:
            profile = config.profile
        elif config.profile is None and isinstance(profile, str):
            config = replace(config, profile=profile)
        super().__init__(target=target, profile=profile, teacher=teacher)
        if config.metric == "latency_ms" and self.profile is None:
            raise ValueError("metric 'latency_ms' needs profile= (a name in hw_profiles/ or a "
                             "path)")
        self.config = config
        self.structure: ChannelStructure | None = None
        self.compact: nn.Module | None = None
        self.hard_pruned = False
        self.projected_channels = 0
        # the alignment the kept widths were rounded to (0: none; a width under one multiple
        # stays as it is)
        self.aligned_widths = 0
        self.last_barrier: dict[str, float] = {}
        self.full_cost: dict[str, float] = {}
        self._pull: tuple[list[torch.Tensor], float] | None = None
        self._model: nn.Module | None = None
        self._example: torch.Tensor | None = None  # zeros shaped like prepare's example input
        self._start_state: dict[str, torch.Tensor] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def prepare(self, model: nn.Module, example_input: torch.Tensor) -> nn.Module:
        """Trace the model with the cost model, turn the target into the budget, snapshot the
        teacher, attach the gates.

        Raises:
            BudgetInfeasible: the budget is below the smallest network the gates can express.
        """
        if self.structure is not None:
            raise ValueError("this BAR pruner is already prepared; build a new one per model")
        was_training = model.training
        self.inventory = layer_inventory(model, example_input)
        model.train(was_training)
        full = self.inventory.price(profile=self.profile).as_dict()
        self.full_cost = {m: float(full.get(m) or 0.0) for m in _METRICS}
        target = self.resolve_target(full)
        if target is not None:
            # The target is the budget: a fraction of the whole network's cost on its metric
            # (a target the unpruned network already meets asks for no pruning).
            fraction = min(1.0, target.limit() / max(self.full_cost[target.metric], 1e-30))
            self.config = replace(self.config, metric=target.metric, budget=fraction)
        distil = self.config.distillation
        if distil and self.teacher is None:
            self.teacher = copy.deepcopy(model)
        if not distil and distil is not None:
            self.teacher = None
        if self.teacher is not None:
            self.teacher.eval().requires_grad_(False)
        self._model = model
        self._example = torch.zeros_like(example_input[:1])
        self._start_state = ({k: v.detach().clone() for k, v in model.state_dict().items()}
                             if self.config.rewind else None)
        self.structure = attach_structure(model, example_input, self.inventory,
                                          init_log_alpha=self.config.init_log_alpha)
        gated = sum(g.channels for _, g in self.structure.named_gates())
        self.channel_cost = max(self.full_cost[self.config.metric], 1e-12) / gated
        # Known before any training: the budget's projection at the hard prune would fail.
        smallest = self.minimum_cost()
        self._refuse_unless_met(smallest, f"even with every prunable channel removed (the "
                                          f"smallest network BAR can express costs "
                                          f"{smallest:.4g})")
        return model

    def _refuse_unless_met(self, minimum: float, how: str) -> None:
        """From :meth:`prepare`: when even the smallest channel choice, costing ``minimum``,
        misses the budget, detach the gates and raise :class:`BudgetInfeasible` ("the budget …
        cannot be met ``how``")."""
        if is_met(minimum, self.budget_value):
            return
        if self.structure is not None:
            self.structure.remove()
            self.structure = None
        raise BudgetInfeasible(
            f"the budget {self.config.metric} ≤ {self.budget_value:.4g} cannot be met {how}",
            metric=self.config.metric, target=self.budget_value, minimum=minimum)

    @torch.no_grad()
    def minimum_cost(self) -> float:
        """The hard cost with every gate at its fatal-pruning minimum (the smallest network the
        gates can express); the gates are left as they were.

        On a pre-act ResNet (mixed connectivity) only the stem and the pooling shortcuts keep a
        channel: every other gate may close, and a block whose inner channels are all off
        disappears with its whole residual branch (automatic depth determination, section 4.1).
        Coupled channel groups cannot do that: a group spans every layer its channels reach
        (a residual add couples the branch's last conv with the stream), and removing all its
        channels would cut the stream or leave a layer without inputs, so each group keeps one
        channel (the gates' ``min_alive``): the minimum is the network one channel wide per
        group, plus what is unprunable at full width.
        """
        gates = [g for _, g in self._structure().named_gates()]
        saved = [g.log_alpha.detach().clone() for g in gates]
        try:
            for gate in gates:
                gate.log_alpha.fill_(-LOG_ALPHA_LIMIT)
                gate.clamp_alive()
            smallest = self.hard_cost()
            if self.channel_alignment() > 1:
                # an aligned price can make a group of one multiple cheaper than of one channel
                # (onnxruntime's blocked kernels): that network is the minimum then
                self._keep_aligned_minimum(gates, saved)
                smallest = min(smallest, self.hard_cost())
            return smallest
        finally:
            for gate, values in zip(gates, saved, strict=True):
                gate.log_alpha.copy_(values)

    def _keep_aligned_minimum(self, gates: list[Any], ranks: list[torch.Tensor]) -> None:
        """Every gate keeps one multiple of the profile's ``channel_alignment`` (all its
        channels if it has fewer), those of highest ``ranks``."""
        step = self.channel_alignment()
        for gate, rank in zip(gates, ranks, strict=True):
            gate.set_kept(torch.topk(rank, min(step, gate.channels)).indices)

    @property
    def budget_value(self) -> float:
        """The budget B in the metric's unit."""
        return self.config.budget * self.full_cost[self.config.metric]

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """log α at ``gate_lr`` (absolute, tuned for Adam) with no weight decay; none once the
        gates are frozen."""
        if self.hard_pruned:
            return []
        params = [g.log_alpha for _, g in self._structure().named_gates()]
        return [{"params": params, "lr": self.config.gate_lr, "weight_decay": 0.0}]

    def phases(self) -> tuple[Phase, ...]:
        """Prune (gates learn, b moves from C_F to B), frozen (hard-pruned, same learning rate),
        fine-tune (at ``finetune_lr_factor``): supp. section 3.1 (80 / 40 / 10 epochs on CIFAR)."""
        prune, frozen, finetune = self.config.phase_fractions
        phases = [Phase("prune", prune)]
        if frozen > 0:
            phases.append(Phase("frozen", frozen))
        if finetune > 0:
            phases.append(Phase("finetune", finetune, self.config.finetune_lr_factor))
        return tuple(phases)

    def begin_phase(self, phase: Phase) -> None:
        """Hard-prune and freeze the gates when the pruning phase is over."""
        if phase.name != "prune" and not self.hard_pruned:
            self.hard_prune()

    def loss_terms(self, context: StepContext) -> dict[str, torch.Tensor]:
        """KD-weighted task loss and, while pruning, ``"bar"`` = λ f(V, a, b) L_S / C_F."""
        terms = {"task": self._task_loss(context)}
        if self.hard_pruned:
            return terms
        cfg = self.config
        full = self.full_cost[cfg.metric]
        hard = self.hard_cost()
        lower, upper = budget_margins(context.progress, full, self.budget_value,
                                      hardness=cfg.hardness, kind=cfg.transition,
                                      start_factor=cfg.start_factor)
        f = barrier(hard, lower, upper, cap=cfg.barrier_cap)  # eq. (5), a constant multiplier
        self.last_barrier = {"V": hard, "a": lower, "b": upper, "f": f}
        self._pull = None
        if f == 0.0:
            terms["bar"] = torch.zeros((), device=context.task_loss.device)
            return terms
        expected = self.expected_cost() / self.channel_cost  # L_S in mean-channel units
        if cfg.pull == "adam":
            terms["bar"] = cfg.lam * f * expected  # eq. (6), weighted by λ
            return terms
        params = [g.log_alpha for _, g in self._structure().named_gates()]
        grads = torch.autograd.grad(expected, params)
        strength = cfg.lam * f / (1.0 + cfg.lam * f)
        self._pull = ([g.detach() for g in grads], strength)
        terms["bar"] = (cfg.lam * f * expected).detach()  # reported; its step is in after_step
        return terms

    def after_step(self, context: StepContext) -> None:
        """The separate budget pull (see ``BARConfig.pull``), then the fatal-pruning clamp
        (section 4.1) on the stem and the pooling shortcuts."""
        gates = [g for _, g in self._structure().named_gates()]
        if self._pull is not None:
            grads, strength = self._pull
            step = self.config.gate_lr * strength
            with torch.no_grad():
                if self.config.pull == "cost":
                    # A channel's pull in proportion to what removing it saves, relative to the
                    # mean channel, capped at the uniform step (eq. 6 keeps BAR cost-aware).
                    mean = torch.cat([g.abs() for g in grads]).mean().clamp_min(1e-30)
                    grads = [(g / mean).clamp(-1.0, 1.0) for g in grads]
                else:
                    grads = [torch.sign(g) for g in grads]
                for gate, grad in zip(gates, grads, strict=True):
                    gate.log_alpha.sub_(step * grad)
            self._pull = None
        if self.config.gate_anneal and not self.hard_pruned:
            # the next step's share of the deterministic gate (no hook runs before a forward)
            share = min(1.0, (context.step + 1) / max(1, context.total_steps))
            for gate in gates:
                gate.determinism = share
        for gate in gates:
            gate.clamp_alive()

    def finalize(self) -> nn.Module:
        """Hard-prune (if not done) and return the physically smaller network: mixed
        connectivity for a pre-act ResNet, otherwise a plain copy of the model with the pruned
        channels removed."""
        if not self.hard_pruned:
            self.hard_prune()
        self.compact = self._structure().compact()
        return self.compact

    # -- phases --------------------------------------------------------------------------------

    def hard_prune(self) -> Any:
        """End of the pruning phase: clamp, enforce the budget, freeze the gates. Returns the
        structure's plan (a :class:`~budgetsearch.pruners.bar_layout.PrunePlan` on a pre-act
        ResNet, the kept masks of the channel groups otherwise)."""
        structure = self._structure()
        for _, gate in structure.named_gates():
            gate.clamp_alive()
        aligning = self.channel_alignment() > 1
        trained = [gate.log_alpha.detach().clone() for _, gate in structure.named_gates()
                   ] if aligning else []
        if self.config.enforce_budget:
            self._project_to_budget()
        if aligning:
            self._align_widths(trained)
        if self._start_state is not None and self._model is not None:
            self._rewind(self._model, self._start_state)
        for _, gate in structure.named_gates():
            gate.freeze()
        self.hard_pruned = True
        return structure.plan()

    @torch.no_grad()
    def _rewind(self, model: nn.Module, start: Mapping[str, torch.Tensor]) -> None:
        """``rewind``: the weights and BatchNorm statistics of ``prepare`` back, kept gates at 1
        (the channels the pruning phase chose, computed as the start point computed them)."""
        missing = [k for k in start if k not in model.state_dict()]
        if missing:
            raise RuntimeError(f"cannot rewind: the model lost {missing[:3]} since prepare")
        model.load_state_dict(start, strict=False)
        for _, gate in self._structure().named_gates():
            gate.set_kept(gate.kept_mask())
        self._start_state = None

    # -- costs ---------------------------------------------------------------------------------

    def kept_channels(self, plan: Any = None, connectivity: str | None = None
                      ) -> dict[str, tuple[int, int]]:
        """Kept (in, out) channels of every layer the hard prune changed, for the cost model
        (``plan``: from :meth:`hard_prune`; default the current deterministic gates)."""
        return self._structure().hard_kept_channels(plan, connectivity or self.config.connectivity)

    def hard_cost(self, plan: Any = None, metric: str | None = None,
                  connectivity: str | None = None) -> float:
        """V: the cost of the hard-pruned network (eq. 4 for the volume)."""
        metric = metric or self.config.metric
        cost = self.inventory.price(kept_channels=self.kept_channels(plan, connectivity),
                                    profile=self.profile)
        return float(cost.as_dict()[canonical_metric(metric)])  # type: ignore[arg-type]

    def delivered_cost(self) -> float:
        """:meth:`hard_cost` of the current gates plus, on the latency metric, the gathers the
        delivered network runs that the full one at its kept channels does not (the
        index_select / index_add of mixed-connectivity blocks, ~10% of a compact WRN's time):
        the cost a trial is priced at. Builds and traces the compact network, so it meets the
        budget at the end of pruning only; training steps use :meth:`hard_cost`."""
        if (canonical_metric(self.config.metric) != "latency_ms" or self.profile is None
                or self._example is None or self.profile.extra_op_latency("index") is None):
            return self.hard_cost()  # (a datasheet roofline prices no gathers: nothing to trace)
        gathers = index_op_elements(self._structure().compact(), self._example)
        cost = self.inventory.price(kept_channels=self.kept_channels(), index_ops=gathers,
                                    profile=self.profile)
        return float(cost.latency_ms)  # type: ignore[arg-type]

    def expected_cost(self) -> torch.Tensor:
        """L_S: the expected cost under the gates' ``P(z > 0)``, differentiable in log α (eq. 6),
        from the structure's expected kept channels."""
        kept = self._structure().expected_kept_channels()
        return self.inventory.expected_cost(self.config.metric, kept_channels=kept,
                                            profile=self.profile).float()

    # -- report --------------------------------------------------------------------------------

    def report(self) -> PrunerReport:
        """Kept channels per gate (a conv output, or a coupled channel group), what is not
        pruned and why, and the achieved cost per metric."""
        structure = self._structure()

        def price(kept: Mapping[str, tuple[int, int]]) -> dict[str, float]:
            cost = self.inventory.price(kept_channels=kept, profile=self.profile)
            return {k: float(v) for k, v in cost.as_dict().items() if v is not None}

        cost = price(self.kept_channels())
        extra: dict[str, Any] = {
            **structure.report_extra(price),
            "full_cost": dict(self.full_cost),
            "projected_channels": self.projected_channels,
            "hard_pruned": self.hard_pruned,
            "aligned_widths": self.aligned_widths,
        }
        if self.compact is not None:
            extra["compact_params_counted"] = sum(p.numel() for p in self.compact.parameters())
        budget = {"metric": self.config.metric, "value": self.budget_value,
                  "fraction": self.config.budget, "full": self.full_cost[self.config.metric],
                  "scope": "network"}
        return PrunerReport(self.name, self.granularity, structure.report_rows(), cost,
                            budget=budget, extra=extra)

    def pruned_configuration(self) -> PrunedConfiguration:
        """Kept (in, out) channels of every conv, BatchNorm and the head (hard gates)."""
        kept = self.kept_channels()
        return {"kept_channels": {k: [int(a), int(b)] for k, (a, b) in kept.items()}}

    def state_dict(self) -> dict[str, Any]:
        """Phase flags and counters (log α is in the model's ``state_dict``, ``bar_gates``)."""
        return {"hard_pruned": self.hard_pruned, "projected_channels": self.projected_channels,
                "aligned_widths": self.aligned_widths,
                "budget": self.config.budget, "metric": self.config.metric}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (after ``prepare`` and the model's ``load_state_dict``)."""
        structure = self._structure()
        unknown = sorted(set(state) - {"hard_pruned", "projected_channels", "aligned_widths",
                                       "budget", "metric"})
        if unknown:
            raise ValueError(f"unknown BAR state key(s) {unknown}")
        self.config = replace(self.config, budget=float(state.get("budget", self.config.budget)),
                              metric=state.get("metric", self.config.metric))
        self.projected_channels = int(state.get("projected_channels", 0))
        self.aligned_widths = int(state.get("aligned_widths", 0))
        if state.get("hard_pruned") and not self.hard_pruned:
            for _, gate in structure.named_gates():
                gate.freeze()
            self.hard_pruned = True

    # -- internals -----------------------------------------------------------------------------

    @property
    def layout(self) -> Any:
        """The gates on the model: a :class:`~budgetsearch.pruners.bar_layout.GateLayout` (pre-act
        ResNet) or a :class:`~budgetsearch.pruners.channel_gating.GroupGating`; None before
        ``prepare``."""
        return None if self.structure is None else self.structure.layout

    def _structure(self) -> ChannelStructure:
        if self.structure is None:
            raise RuntimeError("call prepare(model, example_input) first")
        return self.structure

    def _task_loss(self, context: StepContext) -> torch.Tensor:
        """Section 3.5: (1 − α) CE + α T² KL(teacher ‖ student) at temperature T.

        KL differs from the paper's soft cross-entropy by the teacher's entropy, a constant in the
        student, so the gradients are the same and the term is 0 when the student matches.
        """
        cfg = self.config
        if self.teacher is None:  # prepare() kept a teacher only where distillation is on
            return context.task_loss
        device = context.inputs.device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        with torch.no_grad():
            teacher_logits = self.teacher(context.inputs)
        t = cfg.kd_temperature
        soft = F.kl_div(F.log_softmax(context.logits / t, dim=1),
                        F.log_softmax(teacher_logits / t, dim=1),
                        reduction="batchmean", log_target=True)
        return (1.0 - cfg.kd_alpha) * context.task_loss + cfg.kd_alpha * t * t * soft

    def channel_alignment(self) -> int:
        """The profile's ``channel_alignment`` (0 without a profile or one)."""
        return self.profile.channel_alignment if self.profile is not None else 0

    @torch.no_grad()
    def _align_widths(self, trained: list[torch.Tensor]) -> None:
        """Round every group's kept channels to a multiple of the profile's
        ``channel_alignment``, keeping the channels of highest log α (``trained``: as training
        left them, before the projection): to the nearest multiple,
        else down to one, whichever first meets the budget (down always does once the
        projection has met it: a group keeps fewer channels or as many); a group narrower than
        one multiple stays as it is. onnxruntime ran unaligned channel-pruned networks 2–4×
        slower than aligned ones at the same FLOPs (experiments/README.md, "Depthwise convs
        that oneDNN runs as GEMMs", parts 7–8)."""
        step = self.channel_alignment()
        gates = [gate for _, gate in self._structure().named_gates()]
        saved = [gate.log_alpha.detach().clone() for gate in gates]
        counts = [int(gate.kept_mask().sum()) for gate in gates]
        # kept channels first, then the rest by the log α training left (the projection shut
        # its channels at one value, which cannot rank them)
        ranks = [values.double() + 4.0 * LOG_ALPHA_LIMIT * gate.kept_mask().double()
                 for gate, values in zip(gates, trained, strict=True)]
        for rounding in (round, math.floor):
            for gate, values, rank, count in zip(gates, saved, ranks, counts, strict=True):
                gate.log_alpha.copy_(values)
                aligned = aligned_count(count, gate.channels, step, rounding)
                if aligned != count:
                    gate.set_kept(torch.topk(rank, aligned).indices)
            if is_met(self.delivered_cost(), self.budget_value):
                self.aligned_widths = step
                return
        for gate, values in zip(gates, saved, strict=True):
            gate.log_alpha.copy_(values)

    @torch.no_grad()
    def _project_to_budget(self) -> None:
        """Switch off the lowest-log-α channels until V ≤ B (a safety net; counted).

        Channels go in ascending log α, skipping those whose gate is down to ``min_alive``; the
        fewest that meet the budget are found by bisection on how many go (V only falls as
        channels go), which is what switching them off one by one would stop at.
        """
        structure = self._structure()
        budget = self.budget_value
        if self.delivered_cost() <= budget:
            return
        gates = [gate for _, gate in structure.named_gates()]
        candidates = []
        for gate in gates:
            for channel in torch.nonzero(gate.kept_mask()).flatten().tolist():
                candidates.append((float(gate.log_alpha[channel]), channel, gate))
        candidates.sort(key=lambda item: item[0])
        saved = [gate.log_alpha.detach().clone() for gate in gates]
        kept = {id(gate): int(gate.kept_mask().sum()) for gate in gates}

        def switch_off(count: int) -> tuple[float, int]:
            for gate, values in zip(gates, saved, strict=True):
                gate.log_alpha.copy_(values)
            left = dict(kept)
            switched = 0
            for _, channel, gate in candidates[:count]:
                if left[id(gate)] <= gate.min_alive:
                    continue
                gate.log_alpha[channel] = -LOG_ALPHA_LIMIT
                left[id(gate)] -= 1
                switched += 1
            return self.delivered_cost(), switched

        smallest, _ = switch_off(len(candidates))
        if smallest > budget and self.channel_alignment() > 1:
            self._keep_aligned_minimum(gates, saved)
            if self.delivered_cost() <= budget:  # aligned kernels made it the cheaper one
                self.projected_channels += sum(kept.values()) - sum(
                    int(g.kept_mask().sum()) for g in gates)
                return
        if smallest > budget:
            for gate, values in zip(gates, saved, strict=True):
                gate.log_alpha.copy_(values)
            raise BudgetInfeasible(
                f"the budget {self.config.metric} ≤ {budget:.4g} cannot be met even with every "
                f"prunable channel removed (got {smallest:.4g})",
                metric=self.config.metric, target=budget, minimum=smallest)
        low, high = 0, len(candidates)  # V(low) > B ≥ V(high)
        while high - low > 1:
            middle = (low + high) // 2
            if switch_off(middle)[0] <= budget:
                high = middle
            else:
                low = middle
        _, switched = switch_off(high)
        self.projected_channels += switched
