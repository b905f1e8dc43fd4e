"""BAR: budget-aware structured pruning (Lemaire et al., CVPR 2019) ending in a smaller network.

Pieces, each in its own module:

- :mod:`~budgetsearch.pruners.hard_concrete`: Hard-Concrete gates (supp. eqs. 2–5);
- :mod:`~budgetsearch.pruners.bar_layout`: where the gates go in a pre-act ResNet (inner channels
  after ``bn2``, every block's delta, the stem and the pooling shortcuts), and what they keep;
- :mod:`~budgetsearch.pruners.bar_schedule`: the barrier f(V, a, b) (eq. 5) and the budget
  schedule (eq. 7, supp. eq. 1);
- :mod:`~budgetsearch.pruners.compaction`: the physically smaller mixed-connectivity network.

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
    >>> pruner = BARPruner(budget=0.25, metric="activation_volume")      # doctest: +SKIP
    >>> model = pruner.prepare(build_model("wrn-16-2"), example)         # doctest: +SKIP
    >>> results = pruner.fit(model, data, TrainConfig(epochs=2))         # doctest: +SKIP
    >>> compact = pruner.finalize(); torch.save(compact, "pruned.pt")    # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from budgetsearch.cost import DeviceProfile, layer_inventory, load_profile
from budgetsearch.data import DatasetSplits
from budgetsearch.pruners.bar_layout import GateLayout, PrunePlan, attach_gates, prune_plan
from budgetsearch.pruners.bar_schedule import BARRIER_CAP, TransitionName, barrier, budget_margins
from budgetsearch.pruners.base import LayerReport, Pruner, PrunerReport, register_pruner
from budgetsearch.pruners.compaction import compact_model
from budgetsearch.pruners.hard_concrete import LOG_ALPHA_LIMIT
from budgetsearch.train import StepContext, TrainConfig, TrainResult, train

Metric = Literal["activation_volume", "flops", "params", "latency"]
_METRICS = ("activation_volume", "flops", "params", "latency")
_COST_KEYS = {"activation_volume": "activation_volume", "flops": "flops", "params": "params",
              "latency": "latency_ms"}


@dataclass(frozen=True)
class BARConfig:
    """Settings of a BAR run.

    Attributes:
        budget: the allowed cost as a fraction of the unpruned network's (0.25 = 4× reduction).
        metric: what the budget counts: ``"activation_volume"`` (eq. 4, the paper's), ``"flops"``
            (fvcore: 1 FLOP = 1 fused multiply-add), ``"params"`` or ``"latency"`` (needs
            ``profile``).
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
        distillation: knowledge distillation from the unpruned network (section 3.5).
        kd_alpha, kd_temperature: α and T of the distillation loss (0.9 and 4 in the paper).
        connectivity: structure priced for V: ``"mixed"`` (supp. section 2) or ``"regular"``.
        enforce_budget: at the hard prune, if V still exceeds the budget, switch off the gates of
            lowest log α until it does not (reported as ``projected_channels``).
        barrier_cap: value of f at and past the asymptote.
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
    metric: Metric = "activation_volume"
    profile: str | None = None
    lam: float = 1.0
    hardness: float = 10.0
    transition: TransitionName = "sigmoid"
    start_factor: float = 1.01
    gate_lr: float = 1e-3
    init_log_alpha: float = 3.0
    distillation: bool = True
    kd_alpha: float = 0.9
    kd_temperature: float = 4.0
    connectivity: Literal["mixed", "regular"] = "mixed"
    enforce_budget: bool = True
    barrier_cap: float = BARRIER_CAP
    pull: Literal["cost", "separate", "adam"] = "cost"

    def __post_init__(self) -> None:
        if not 0.0 < self.budget <= 1.0:
            raise ValueError(
                f"budget must be a fraction of the full cost in (0, 1], got {self.budget}"
            )
        if self.metric not in _METRICS:
            raise ValueError(f"metric must be one of {', '.join(_METRICS)}, got {self.metric!r}")
        if self.metric == "latency" and self.profile is None:
            raise ValueError("metric 'latency' needs profile= (a name in hw_profiles/ or a path)")
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


@dataclass(frozen=True)
class BARPhases:
    """Epochs of the three phases (supp. section 3.1: 80 / 40 / 10 on CIFAR).

    1. ``prune_epochs``: train and prune (gates learn, b moves from C_F to B);
    2. hard prune and freeze the gates, then ``frozen_epochs`` at the same learning rate;
    3. ``finetune_epochs`` at ``finetune_lr_factor`` × the learning rate.
    """

    prune_epochs: float = 80.0
    frozen_epochs: float = 40.0
    finetune_epochs: float = 10.0
    finetune_lr_factor: float = 0.1

    def __post_init__(self) -> None:
        if not self.prune_epochs > 0:
            raise ValueError(f"prune_epochs must be positive, got {self.prune_epochs}")
        if self.frozen_epochs < 0 or self.finetune_epochs < 0:
            raise ValueError(
                f"frozen_epochs and finetune_epochs must be ≥ 0, got {self.frozen_epochs}, "
                f"{self.finetune_epochs}"
            )
        if not 0 < self.finetune_lr_factor <= 1:
            raise ValueError(f"finetune_lr_factor must be in (0, 1], got {self.finetune_lr_factor}")


@register_pruner
class BARPruner(Pruner):
    """Budget-Aware Regularization with Hard-Concrete channel gates.

    Options are the fields of :class:`BARConfig` (keyword-only), or ``config=BARConfig(...)``;
    ``teacher=`` gives the distillation teacher (default: a frozen copy of the model as
    ``prepare`` receives it, so prepare a trained network for KD to help).

    Example:
        >>> pruner = BARPruner(budget=0.5, lam=10.0)
        >>> pruner.config.metric
        'activation_volume'
    """

    name: ClassVar[str] = "bar"
    granularity: ClassVar[Literal["channel"]] = "channel"

    def __init__(self, *, config: BARConfig | None = None, teacher: nn.Module | None = None,
                 **options: Any) -> None:
        known = {f.name for f in fields(BARConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown BAR option(s) {unknown}; valid: {sorted(known)}")
        self.config = replace(config or BARConfig(), **options)
        self.teacher = teacher
        self.profile: DeviceProfile | None = (
            load_profile(self.config.profile) if self.config.profile is not None else None
        )
        self.layout: GateLayout | None = None
        self.compact: nn.Module | None = None
        self.hard_pruned = False
        self.projected_channels = 0
        self.last_barrier: dict[str, float] = {}
        self.full_cost: dict[str, float] = {}
        self._pull: tuple[list[torch.Tensor], float] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def prepare(self, model: nn.Module, example_input: torch.Tensor) -> nn.Module:
        """Trace the model with the cost model, snapshot the teacher, attach the gates."""
        if self.layout is not None:
            raise ValueError("this BAR pruner is already prepared; build a new one per model")
        was_training = model.training
        self.inventory = layer_inventory(model, example_input)
        model.train(was_training)
        full = self.inventory.price(profile=self.profile)
        self.full_cost = {m: float(getattr(full, _COST_KEYS[m]) or 0.0) for m in _METRICS}
        if self.config.distillation and self.teacher is None:
            self.teacher = copy.deepcopy(model)
        if self.teacher is not None:
            self.teacher.eval().requires_grad_(False)
        self.layout = attach_gates(model, init_log_alpha=self.config.init_log_alpha)
        gated = sum(g.channels for _, g in self.layout.named_gates())
        self.channel_cost = max(self.full_cost[self.config.metric], 1e-12) / gated
        smallest = self.minimum_cost()
        if smallest > self.budget_value * (1 + 1e-9):
            # Known before any training: the budget's projection at the hard prune would fail.
            raise ValueError(
                f"the budget {self.config.metric} ≤ {self.budget_value:.4g} cannot be met even "
                f"with every prunable channel removed (the smallest network costs {smallest:.4g})")
        return model

    @torch.no_grad()
    def minimum_cost(self) -> float:
        """The hard cost with every gate at its fatal-pruning minimum (the smallest network the
        gates can express); the gates are left as they were."""
        gates = [g for _, g in self._layout().named_gates()]
        saved = [g.log_alpha.detach().clone() for g in gates]
        try:
            for gate in gates:
                gate.log_alpha.fill_(-LOG_ALPHA_LIMIT)
                gate.clamp_alive()
            return self.hard_cost(prune_plan(self._layout()))
        finally:
            for gate, values in zip(gates, saved, strict=True):
                gate.log_alpha.copy_(values)

    @property
    def budget_value(self) -> float:
        """The budget B in the metric's unit."""
        return self.config.budget * self.full_cost[self.config.metric]

    def param_groups(self) -> list[dict[str, Any]]:
        """log α on Adam at ``gate_lr`` with no weight decay (none once the gates are frozen)."""
        if self.hard_pruned:
            return []
        params = [g.log_alpha for _, g in self._layout().named_gates()]
        return [{"params": params, "optimizer": "adam", "lr": self.config.gate_lr,
                 "weight_decay": 0.0}]

    def loss_terms(self, context: StepContext) -> dict[str, torch.Tensor]:
        """KD-weighted task loss and, while pruning, ``"bar"`` = λ f(V, a, b) L_S / C_F."""
        terms = {"task": self._task_loss(context)}
        if self.hard_pruned:
            return terms
        cfg = self.config
        full = self.full_cost[cfg.metric]
        hard = self.hard_cost(prune_plan(self._layout()))
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
        params = [g.log_alpha for _, g in self._layout().named_gates()]
        grads = torch.autograd.grad(expected, params)
        strength = cfg.lam * f / (1.0 + cfg.lam * f)
        self._pull = ([g.detach() for g in grads], strength)
        terms["bar"] = (cfg.lam * f * expected).detach()  # reported; its step is in after_step
        return terms

    def after_step(self, context: StepContext) -> None:
        """The separate budget pull (see ``BARConfig.pull``), then the fatal-pruning clamp
        (section 4.1) on the stem and the pooling shortcuts."""
        gates = [g for _, g in self._layout().named_gates()]
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
        for gate in gates:
            gate.clamp_alive()

    def finalize(self) -> nn.Module:
        """Hard-prune (if not done) and return the compact mixed-connectivity network."""
        if not self.hard_pruned:
            self.hard_prune()
        self.compact = compact_model(self._layout())
        return self.compact

    # -- phases --------------------------------------------------------------------------------

    def hard_prune(self) -> PrunePlan:
        """End of the pruning phase: clamp, enforce the budget, freeze the gates."""
        layout = self._layout()
        for _, gate in layout.named_gates():
            gate.clamp_alive()
        if self.config.enforce_budget:
            self._project_to_budget()
        for _, gate in layout.named_gates():
            gate.freeze()
        self.hard_pruned = True
        return prune_plan(layout)

    def fit(self, model: nn.Module, data: DatasetSplits, config: TrainConfig,
            phases: BARPhases | None = None) -> list[TrainResult]:
        """Run the three phases with :func:`budgetsearch.train.train` (``config.epochs`` is
        ignored; ``phases`` sets them). Stops after a failed phase."""
        phases = phases or BARPhases()
        results = [train(model, data, replace(config, epochs=phases.prune_epochs), hooks=self)]
        if results[-1].status != "ok":
            return results
        self.hard_prune()
        if phases.frozen_epochs > 0:
            results.append(train(model, data, replace(config, epochs=phases.frozen_epochs),
                                 hooks=self))
            if results[-1].status != "ok":
                return results
        if phases.finetune_epochs > 0:
            finetune = replace(config, epochs=phases.finetune_epochs,
                               lr=config.lr * phases.finetune_lr_factor)
            results.append(train(model, data, finetune, hooks=self))
        return results

    # -- costs ---------------------------------------------------------------------------------

    def kept_channels(self, plan: PrunePlan, connectivity: str | None = None
                      ) -> dict[str, tuple[int, int]]:
        """Kept (in, out) channels of every conv, BatchNorm and the head, for the cost model."""
        layout = self._layout()
        kept = plan.kept_channels(layout, connectivity or self.config.connectivity)
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

    def hard_cost(self, plan: PrunePlan, metric: str | None = None,
                  connectivity: str | None = None) -> float:
        """V: the cost of the hard-pruned network (eq. 4 for the volume)."""
        metric = metric or self.config.metric
        cost = self.inventory.price(kept_channels=self.kept_channels(plan, connectivity),
                                    profile=self.profile)
        return float(getattr(cost, _COST_KEYS[metric]))

    def expected_cost(self) -> torch.Tensor:
        """L_S: the expected cost under the gates' ``P(z > 0)``, differentiable in log α.

        Expected kept inputs of a block are the expected live stream channels,
        ``Σ_c 1 − Π_p (1 − P_p,c)`` over the producers p that precede it (mixed connectivity).
        """
        layout = self._layout()
        model = layout.model
        prob = {id(g): g.prob_nonzero() for _, g in layout.named_gates()}

        def live(producers: list[Any]) -> torch.Tensor:
            dead = None
            for producer in producers:
                p = prob[id(producer.gate)]
                if producer.branch is not None:  # a block writes only while its branch lives
                    p = p * (1.0 - torch.prod(1.0 - prob[id(producer.branch)]))
                dead = (1.0 - p) if dead is None else dead * (1.0 - p)
            return (1.0 - dead).sum()

        stem = prob[id(layout.stem)].sum()
        kept: dict[str, tuple[Any, Any]] = {"conv1": (float(model.conv1.in_channels), stem)}
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
        kept = {name: value for name, value in kept.items() if name in self.inventory}
        return self.inventory.expected_cost(self.config.metric, kept_channels=kept,
                                            profile=self.profile).float()

    # -- report --------------------------------------------------------------------------------

    def report(self) -> PrunerReport:
        """Kept channels per gated layer, achieved cost per metric (mixed and regular blocks)."""
        layout = self._layout()
        plan = prune_plan(layout)
        layers = []
        for name, gate in layout.named_gates():
            kept = int(gate.kept_mask().sum())
            layers.append(LayerReport(
                name=name, total=gate.channels, kept=kept, counted=1.0 - kept / gate.channels,
                estimated=float(1.0 - gate.prob_nonzero().mean()),
                extra={"min_alive": gate.min_alive},
            ))
        mixed = self.inventory.price(kept_channels=self.kept_channels(plan, "mixed"),
                                     profile=self.profile)
        regular = self.inventory.price(kept_channels=self.kept_channels(plan, "regular"),
                                       profile=self.profile)
        cost = {k: float(v) for k, v in mixed.as_dict().items() if v is not None}
        extra: dict[str, Any] = {
            "regular_cost": {k: float(v) for k, v in regular.as_dict().items() if v is not None},
            "full_cost": dict(self.full_cost),
            "removed_blocks": [b.name for b in plan.blocks if not b.branch_alive],
            "stream_widths": [int(s.sum()) for s in plan.streams],
            "projected_channels": self.projected_channels,
            "hard_pruned": self.hard_pruned,
        }
        if self.compact is not None:
            extra["compact_params_counted"] = sum(p.numel() for p in self.compact.parameters())
        budget = {"metric_value": self.budget_value, "fraction": self.config.budget,
                  "full": self.full_cost[self.config.metric]}
        return PrunerReport(self.name, self.granularity, layers, cost,
                            budget={self.config.metric: self.budget_value, **budget}, extra=extra)

    # -- internals -----------------------------------------------------------------------------

    def _layout(self) -> GateLayout:
        if self.layout is None:
            raise RuntimeError("call prepare(model, example_input) first")
        return self.layout

    def _task_loss(self, context: StepContext) -> torch.Tensor:
        """Section 3.5: (1 − α) CE + α T² KL(teacher ‖ student) at temperature T.

        KL differs from the paper's soft cross-entropy by the teacher's entropy, a constant in the
        student, so the gradients are the same and the term is 0 when the student matches.
        """
        cfg = self.config
        if not cfg.distillation or self.teacher is None:
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

    @torch.no_grad()
    def _project_to_budget(self) -> None:
        """Switch off the lowest-log-α channels until V ≤ B (a safety net; counted)."""
        layout = self._layout()
        budget = self.budget_value
        if self.hard_cost(prune_plan(layout)) <= budget:
            return
        candidates = []
        for _, gate in layout.named_gates():
            for channel in torch.nonzero(gate.kept_mask()).flatten().tolist():
                candidates.append((float(gate.log_alpha[channel]), channel, gate))
        candidates.sort(key=lambda item: item[0])
        for _, channel, gate in candidates:
            if int(gate.kept_mask().sum()) <= gate.min_alive:
                continue
            gate.log_alpha[channel] = -LOG_ALPHA_LIMIT
            self.projected_channels += 1
            if self.hard_cost(prune_plan(layout)) <= budget:
                return
        raise ValueError(
            f"the budget {self.config.metric} ≤ {budget:.4g} cannot be met even with every "
            f"prunable channel removed (got {self.hard_cost(prune_plan(layout)):.4g})"
        )
