"""The erf-loss pruner: unstructured magnitude pruning inside training (Retsinas et al.).

Every variant of *Weight pruning via adaptive sparsity loss*:

- fixed sparsity per layer, bound by binary search (``method="bs"``, eq. 2) or by the Gaussian
  assumption (``method="ga"``, eq. 3); one target for every pruned layer or a per-layer dict;
- adaptive sparsity (``method="adaptive"``): one trainable bound per layer, stored in σ units
  (``b = r·σ``, ``r`` clamped to [0, ``max_ratio``] in the forward, σ the detached weight std),
  trained through the sparsity loss of eqs. 6/8 with contribution weights ``c_i`` from the cost
  model (``avg``; ``params`` a.k.a. ``wavg``, eq. 9; ``flops``; ``latency`` on a device profile
  that declares a sparse speed-up), used ``unconstrained`` (eq. 7), against a ``budget`` squared
  (eq. 10, with an optional FLOPs term λ_f) or as ``budget-max`` (eq. 11).

The forward uses the pruned weights; every weight is updated through a Straight-Through Estimator
(section 3.3.3, eq. 16) and the bound's gradient follows eq. 18 (see
:mod:`budgetsearch.pruners.erf_functional`). :meth:`ErfPruner.finalize` writes real zeros into
the weights and keeps a persistent ``torch.nn.utils.prune`` mask (``weight_orig`` ×
``weight_mask``), so that further training does not refill them; :func:`make_pruning_permanent`
turns the masks into plain ``weight`` parameters for export.

Example:
    >>> import torch
    >>> from budgetsearch.models import build_model
    >>> pruner = ErfPruner(method="ga", sparsity=0.8)
    >>> model = pruner.prepare(build_model("wrn-10-1"), torch.zeros(1, 1, 28, 28))
    >>> final = pruner.finalize()
    >>> round(pruner.report().overall_sparsity, 1)
    0.8
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from budgetsearch.cost import DeviceProfile, LayerInventory, Target, layer_inventory
from budgetsearch.cost.metrics import is_met
from budgetsearch.pruners.base import (
    BudgetInfeasible,
    LayerReport,
    PrunedConfiguration,
    Pruner,
    PrunerReport,
    register_pruner,
)
from budgetsearch.pruners.erf_functional import (
    binary_search_bound,
    erf_sparsity_loss,
    relative_bound_for_sparsity,
    ste_prune,
    ste_prune_relative,
)
from budgetsearch.pruners.weight_masks import drop_smallest_until
from budgetsearch.train_hooks import StepContext

__all__ = ["BUDGET_LAM", "ErfConfig", "ErfPruner", "make_pruning_permanent", "prunable_layers"]

Method = Literal["bs", "ga", "adaptive"]
LossVariant = Literal["unconstrained", "budget", "budget-max"]
Weighting = Literal["avg", "wavg", "params", "flops", "latency"]

#: Default λ_p of the budget losses (eqs. 10/11): see ``ErfConfig.lam``.
BUDGET_LAM = 50.0

_METHODS = ("bs", "ga", "adaptive")
_LOSSES = ("unconstrained", "budget", "budget-max")
_WEIGHTINGS = ("avg", "wavg", "params", "flops", "latency")
_LAYER_TYPES: dict[str, tuple[type[nn.Module], ...]] = {
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    "linear": (nn.Linear,),
}


def _fraction(name: str, value: Any, *, upper_open: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        0.0 <= value < 1.0 if upper_open else 0.0 < value <= 1.0)
    if not ok:
        rule = "in [0, 1)" if upper_open else "in (0, 1]"
        raise ValueError(f"{name} must be a fraction {rule}, got {value!r}")


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        rule = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {rule}, got {value!r}")


@dataclass(frozen=True)
class ErfConfig:
    """Options of :class:`ErfPruner` (validated here; pass them as keywords to the pruner).

    Attributes:
        method: ``"bs"`` (binary search, eq. 2), ``"ga"`` (Gaussian assumption, eq. 3) or
            ``"adaptive"`` (trainable bounds and the sparsity loss, section 3.4).
        sparsity: fixed methods: the target sparsity of every pruned layer, or a dict
            ``{layer name: sparsity}`` (then exactly those layers are pruned).
        loss: adaptive: ``"unconstrained"`` (λ·L_s, eq. 7), ``"budget"`` (λ·(L_s − B)², eq. 10)
            or ``"budget-max"`` (λ·max(L_s − B, 0), eq. 11).
        weighting: contribution weights ``c_i`` of the sparsity loss (eq. 8): ``"avg"`` (all 1,
            eq. 6), ``"params"``/``"wavg"`` (eq. 9), ``"flops"`` (fvcore: 1 FLOP = 1 fused
            multiply-add) or ``"latency"`` (needs ``profile`` with a sparse speed-up).
        budget: budget variants: ``B`` of eq. 10/11, the fraction of the ``weighting`` cost of
            the *pruned layers* to keep (0.15 keeps 15 %, i.e. 85 % sparsity). With a ``target``
            (the protocol's way, counting the whole network) it is derived at ``prepare``:
            ``B = (T − U) / (C − U)`` with ``C`` the network's cost and ``U`` what stays when
            every pruned layer is empty (unpruned layers, BatchNorm, biases).
        lam: λ (λ_p in eq. 10/11) of the sparsity term, ≥ 0. Default (None): 1 for
            ``unconstrained`` (eq. 7, where λ *is* the accuracy/sparsity trade-off) and
            :data:`BUDGET_LAM` = 50 for ``budget``/``budget-max``. Why 50: the quadratic
            penalty of eq. 10 is a soft constraint; its minimum with the task loss sits where
            ``2λ·(L_s − B)·c_i·φ(r_i)/N`` (eq. 19 times the penalty's slope) balances the task
            gradient of eq. 18 on ``r_i``, so the density settles ``∝ 1/λ`` above the budget:
            measured 2.0–2.2 % of parameter density at λ = 5 on WRN-16-2 / Fashion-MNIST
            (``experiments/bench_erf.py precision``), ~0.2 % expected at λ = 50. Bounds live in
            σ units and Adam normalises their steps, so a stiffer penalty does not destabilise
            them.
        flops_budget: optional second budget term on FLOPs (λ_f term of eq. 10/11).
        flops_lam: λ_f (default: the λ in effect, see ``lam``).
        profile: device profile name/path or :class:`DeviceProfile`, for ``weighting="latency"``
            and for ``latency_ms`` in the report.
        initial_sparsity: adaptive: sparsity every bound starts at (default: the budget's
            sparsity, so that eq. 10/11 is satisfied at step 0 for any weighting, since the
            ``c_i`` average to 1; 0.3 for ``unconstrained``). The authors' code starts at 60 %
            of the target: in a 120-epoch run the bounds have time to travel, but a bound on
            Adam moves at most ~``bound_lr`` σ-units a step and the cosine schedule halves the
            total, so a short run ended rate-limited below the budget (78 % for an 85 %
            target in 80 steps); fixed BS/GA also prune at the target from step 0.
        max_ratio: the bound ``r`` (σ units) is clamped to [0, max_ratio] in the forward.
        bound_lr_scale: the bounds' learning rate as a multiple of the weights' (authors: 0.01).
        bound_lr: absolute learning rate of the bounds (overrides ``bound_lr_scale``).
        bound_optimizer: ``"sgd"`` or ``"adam"`` for the bounds.
        bound_weight_decay: weight decay of the bounds (0: the authors use none).
        epsilon: margin ε of the binary search (eq. 2).
        min_weights: layers with fewer weights stay dense (the authors' stem rule).
        layer_types: which module types are pruned: ``"conv"``, ``"linear"``.
        include: if given, prune exactly these layer names (other rules still validated).
        exclude: layer names never pruned.
        enforce_budget: with a target, :meth:`ErfPruner.finalize` checks the counted zeros
            against it (the Gaussian estimate can be off on weights that are not bell-shaped)
            and, if over, zeroes the smallest remaining weights (by ``|w|/σ``, the bounds'
            unit) until the whole network meets it (reported as ``projected_weights``).
    """

    method: Method = "adaptive"
    sparsity: float | Mapping[str, float] | None = None
    loss: LossVariant = "budget"
    weighting: Weighting = "params"
    budget: float | None = None
    lam: float | None = None
    flops_budget: float | None = None
    flops_lam: float | None = None
    profile: str | DeviceProfile | None = None
    initial_sparsity: float | None = None
    max_ratio: float = 5.0
    bound_lr_scale: float = 0.01
    bound_lr: float | None = None
    bound_optimizer: Literal["sgd", "adam"] = "sgd"
    bound_weight_decay: float = 0.0
    epsilon: float = 5e-4
    min_weights: int = 1000
    layer_types: tuple[str, ...] = ("conv", "linear")
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = field(default_factory=tuple)
    enforce_budget: bool = True

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {self.method!r}")
        if self.method in ("bs", "ga"):
            if self.sparsity is None:
                raise ValueError(f"method={self.method!r} needs sparsity (a fraction or a dict "
                                 f"{{layer name: fraction}}), got None")
            if isinstance(self.sparsity, Mapping):
                if not self.sparsity:
                    raise ValueError("sparsity dict must name at least one layer, got {}")
                for name, value in self.sparsity.items():
                    _fraction(f"sparsity[{name!r}]", value)
            else:
                _fraction("sparsity", self.sparsity)
        else:
            if self.sparsity is not None:
                raise ValueError("sparsity is the fixed target of method 'bs'/'ga'; the adaptive "
                                 f"method takes budget (fraction kept), got sparsity="
                                 f"{self.sparsity!r}")
            if self.loss not in _LOSSES:
                raise ValueError(f"loss must be one of {', '.join(_LOSSES)}, got {self.loss!r}")
            if self.weighting not in _WEIGHTINGS:
                raise ValueError(
                    f"weighting must be one of {', '.join(_WEIGHTINGS)}, got {self.weighting!r}")
            if self.loss == "unconstrained":
                if self.budget is not None or self.flops_budget is not None:
                    raise ValueError("loss='unconstrained' (eq. 7) takes no budget; use "
                                     f"loss='budget' or 'budget-max', got budget={self.budget!r}")
            elif self.budget is None and self.flops_budget is None:
                raise ValueError(f"loss={self.loss!r} needs budget (fraction of the "
                                 f"{self.weighting} cost to keep, e.g. 0.15), got None")
            if self.budget is not None:
                _fraction("budget", self.budget, upper_open=False)
            if self.flops_budget is not None:
                _fraction("flops_budget", self.flops_budget, upper_open=False)
            if self.lam is not None:
                _positive("lam", self.lam, allow_zero=True)
            if self.flops_lam is not None:
                _positive("flops_lam", self.flops_lam, allow_zero=True)
            if self.initial_sparsity is not None:
                _fraction("initial_sparsity", self.initial_sparsity)
        _positive("max_ratio", self.max_ratio)
        _positive("bound_lr_scale", self.bound_lr_scale)
        if self.bound_lr is not None:
            _positive("bound_lr", self.bound_lr)
        if self.bound_optimizer not in ("sgd", "adam"):
            raise ValueError(f"bound_optimizer must be 'sgd' or 'adam', got "
                             f"{self.bound_optimizer!r}")
        _positive("bound_weight_decay", self.bound_weight_decay, allow_zero=True)
        _positive("epsilon", self.epsilon)
        if not isinstance(self.min_weights, int) or self.min_weights < 0:
            raise ValueError(f"min_weights must be an integer ≥ 0, got {self.min_weights!r}")
        layer_types = (self.layer_types,) if isinstance(self.layer_types, str) else self.layer_types
        bad = [t for t in layer_types if t not in _LAYER_TYPES]
        if bad or not layer_types:
            raise ValueError(f"layer_types must be a non-empty subset of "
                             f"{', '.join(_LAYER_TYPES)}, got {self.layer_types!r}")
        object.__setattr__(self, "layer_types", tuple(layer_types))
        if self.include is not None:
            object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if self.weighting == "latency" and self.method == "adaptive" and self.profile is None:
            raise ValueError("weighting='latency' needs profile (a device profile that declares "
                             "a sparse speed-up), got None")

    @property
    def cost_metric(self) -> str | None:
        """The cost-model metric behind ``weighting`` (None for ``avg``)."""
        return {"avg": None, "wavg": "params"}.get(self.weighting, self.weighting)

    @property
    def effective_lam(self) -> float:
        """λ in effect: ``lam``, else 1 for ``unconstrained`` and :data:`BUDGET_LAM` for the
        budget losses (see ``lam``)."""
        if self.lam is not None:
            return float(self.lam)
        return 1.0 if self.loss == "unconstrained" else BUDGET_LAM

    @property
    def budget_sparsity(self) -> float | None:
        """The sparsity the budget asks for (1 − budget), if any."""
        budget = self.budget if self.budget is not None else self.flops_budget
        return None if budget is None else 1.0 - budget


def prunable_layers(
    model: nn.Module,
    *,
    layer_types: Sequence[str] = ("conv", "linear"),
    min_weights: int = 1000,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> list[str]:
    """Qualified names of the layers whose ``weight`` the erf-loss pruner prunes (biases never).

    Default: every conv and linear layer with at least 1000 weights (the stem stays dense).

    Raises:
        ValueError: ``include``/``exclude`` names a module that is not a prunable layer.

    Example:
        >>> from budgetsearch.models import build_model
        >>> prunable_layers(build_model("wrn-10-1"))[:2]
        ['layer1.0.conv1', 'layer1.0.conv2']
    """
    types = tuple(t for name in layer_types for t in _LAYER_TYPES[name])
    modules = dict(model.named_modules())
    eligible = [
        name for name, module in modules.items()
        if isinstance(module, types) and isinstance(getattr(module, "weight", None), nn.Parameter)
    ]
    for option, names in (("include", include or ()), ("exclude", exclude)):
        unknown = [n for n in names if n not in eligible]
        if unknown:
            raise ValueError(f"{option} names layer(s) {unknown} that are not prunable "
                             f"{'/'.join(layer_types)} layers of this model; valid: {eligible}")
    if include is not None:
        chosen = [n for n in eligible if n in set(include)]
    else:
        chosen = [n for n in eligible if modules[n].weight.numel() >= min_weights]
    return [n for n in chosen if n not in set(exclude)]


def _skipped_layers(model: nn.Module, chosen: Sequence[str], cfg: ErfConfig,
                    include: Sequence[str] | None) -> dict[str, tuple[int, str]]:
    """Every conv/linear layer the pruner leaves dense: name → (weights, why)."""
    types = tuple(t for name in cfg.layer_types for t in _LAYER_TYPES[name])
    every = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    skipped: dict[str, tuple[int, str]] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(module, every) or name in chosen or weight is None:
            continue
        if not isinstance(module, types):
            reason = f"layer type not in layer_types {list(cfg.layer_types)}"
        elif name in cfg.exclude:
            reason = "excluded (exclude option)"
        elif include is not None:
            reason = "not named in include / the sparsity dict"
        else:
            reason = (f"fewer than min_weights = {cfg.min_weights} weights (left dense, the "
                      "authors' rule for the stem and small layers)")
        skipped[name] = (weight.numel(), reason)
    return skipped


class _ErfPrune(nn.Module):
    """Parametrization of one layer's weight: ``w ↦ w̃`` by the layer's bound (eqs. 1, 14/15)."""

    ratio: nn.Parameter | None

    def __init__(self, method: str, *, target: float | None, initial_ratio: float,
                 max_ratio: float, epsilon: float) -> None:
        super().__init__()
        self.method = method
        self.target = target
        self.max_ratio = max_ratio
        self.epsilon = epsilon
        self.target_ratio = relative_bound_for_sparsity(target) if target is not None else 0.0
        if method == "adaptive":
            self.ratio = nn.Parameter(torch.tensor(float(initial_ratio)))
        else:
            self.ratio = None
        self.last_bound: float | None = None  # absolute bound of the last forward (BS bracket)
        self.last_sigma: torch.Tensor | None = None
        self.bs_passes = 0

    def clamped_ratio(self) -> torch.Tensor:
        assert self.ratio is not None
        return self.ratio.clamp(0.0, self.max_ratio)

    def bound(self, weight: torch.Tensor) -> torch.Tensor:
        """The absolute bound for ``weight`` now (detached), with the same rule as the forward."""
        sigma = weight.detach().std()
        if self.method == "adaptive":
            return self.clamped_ratio().detach() * sigma
        if self.method == "ga":
            return sigma * self.target_ratio  # eq. (3)
        assert self.target is not None
        # eq. (2), bracketed from the last step's bound (DESIGN.md).
        result = binary_search_bound(weight, self.target, epsilon=self.epsilon,
                                     start=self.last_bound)
        self.last_bound = result.bound
        self.bs_passes = result.passes
        return torch.tensor(result.bound, dtype=weight.dtype, device=weight.device)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        sigma = weight.detach().std()
        self.last_sigma = sigma
        if self.method == "adaptive":
            # eqs. (14)/(15) with r clamped, σ detached (appendix, Remark); gradients eqs. 16/18.
            return ste_prune_relative(weight, self.clamped_ratio(), sigma)
        if self.method == "ga":
            return ste_prune(weight, sigma * self.target_ratio)
        return ste_prune(weight, self.bound(weight))


@register_pruner
class ErfPruner(Pruner):
    """Unstructured magnitude pruner of the adaptive-sparsity-loss paper (all variants).

    Construct with keyword options (see :class:`ErfConfig`), or ``config=ErfConfig(...)`` plus
    overrides. The pruner is the training hooks object: ``train(model, data, cfg, hooks=pruner)``.

    Example:
        >>> pruner = ErfPruner(method="adaptive", loss="budget", weighting="wavg", budget=0.15,
        ...                    lam=5.0)
        >>> pruner.config.cost_metric
        'params'
    """

    name = "erf"
    granularity = "unstructured"
    search_rank = 1

    def __init__(self, *, config: ErfConfig | None = None, target: Target | None = None,
                 profile: DeviceProfile | str | None = None, teacher: nn.Module | None = None,
                 **options: Any) -> None:
        known = {f.name for f in fields(ErfConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown erf option(s) {unknown}; valid: {sorted(known)}")
        if target is not None:
            if options.get("budget") is not None or options.get("sparsity") is not None:
                raise ValueError("with a target the budget is derived from it at prepare; give "
                                 "target or budget/sparsity, not both")
            options.setdefault("method", "adaptive")
            options.setdefault("loss", "budget")
            # eq. 8: the c_i count the target's metric; the budget is set at prepare.
            options["weighting"] = {"latency_ms": "latency"}.get(target.metric, target.metric)
            options["budget"] = 1.0
        if profile is not None:
            options.setdefault("profile", profile)
        if config is not None:
            self.config = replace(config, **options)
        elif target is not None and target.metric == "activation_volume":
            # Zeroed weights leave every activation in place: no volume budget to weight by.
            self.config = ErfConfig(**{**options, "weighting": "params"})
        else:
            self.config = ErfConfig(**options)
        given = self.config.profile
        super().__init__(target=target, profile=given, teacher=teacher)
        sparse_fast = self.profile is not None and self.profile.supports_sparse_speedup
        if target is not None and self.config.weighting == "latency" and not sparse_fast:
            # Zeros buy no time on this profile: prepare() says so (BudgetInfeasible) unless the
            # unpruned network already meets the target; the loss weights parameters meanwhile.
            self.config = replace(self.config, weighting="params")
        if (self.config.method == "adaptive" and self.config.weighting == "latency"
                and self.profile is not None and not sparse_fast):
            raise ValueError(
                f"weighting='latency' needs a device profile that declares a sparse speed-up; "
                f"profile {self.profile.name!r} has sparse_speedup={self.profile.sparse_speedup}: "
                f"unstructured sparsity does not make it faster. For a latency target there, "
                f"use a channel pruner (build_pruner('bar', target=...)), which removes "
                f"whole channels")
        self.model: nn.Module | None = None
        self.inventory: LayerInventory | None = None
        self.layers: dict[str, nn.Module] = {}
        self.contributions: torch.Tensor | None = None
        self.flops_contributions: torch.Tensor | None = None
        self.finalized = False
        self._final_info: dict[str, dict[str, Any]] = {}
        self.last_loss: dict[str, float] = {}
        self.skipped: dict[str, tuple[int, str]] = {}
        self.target_scope: dict[str, float] = {}
        self.projected_weights = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def prepare(self, model: nn.Module, example_input: torch.Tensor) -> nn.Module:
        """Price the model with the cost model, turn the target into the budget and parametrize
        each pruned layer's weight.

        Raises:
            BudgetInfeasible: the target is below the cost of what this pruner leaves dense (or,
                on a metric zeros do not lower, below the unpruned cost).
        """
        if self.model is not None:
            raise ValueError("this erf pruner is already prepared; build a new one per model")
        cfg = self.config
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.inventory = layer_inventory(model, example_input)
        model.train(was_training)
        targets = cfg.sparsity if isinstance(cfg.sparsity, Mapping) else None
        include = tuple(targets) if targets is not None else cfg.include
        names = prunable_layers(model, layer_types=cfg.layer_types, min_weights=cfg.min_weights,
                                include=include, exclude=cfg.exclude)
        self.skipped = _skipped_layers(model, names, cfg, include)
        if not names:
            raise ValueError(f"no layer to prune: no {'/'.join(cfg.layer_types)} layer of this "
                             f"model has ≥ {cfg.min_weights} weights (lower min_weights)")
        if self.target is not None:
            self._budget_from_target(names)
            cfg = self.config
        initial = cfg.initial_sparsity
        if initial is None:
            wanted = cfg.budget_sparsity
            initial = 0.3 if wanted is None else wanted  # start at the budget (see config)
        modules = dict(model.named_modules())
        for name in names:
            if targets is not None:
                target: float | None = float(targets[name])
            elif cfg.method in ("bs", "ga"):
                target = float(cfg.sparsity)  # type: ignore[arg-type]
            else:
                target = None
            module = modules[name]
            param = _ErfPrune(cfg.method, target=target,
                              initial_ratio=relative_bound_for_sparsity(initial),
                              max_ratio=cfg.max_ratio, epsilon=cfg.epsilon)
            param.to(module.weight.device)
            parametrize.register_parametrization(module, "weight", param, unsafe=True)
            self.layers[name] = module
        self.model = model
        if cfg.method == "adaptive":
            self.contributions = self._contributions(cfg.cost_metric)
            if cfg.flops_budget is not None and cfg.budget is not None:
                self.flops_contributions = self._contributions("flops")
        return model

    def _budget_from_target(self, names: Sequence[str]) -> None:
        """``B = (T − U) / (C − U)`` (see ``ErfConfig.budget``), on the target's metric."""
        inventory = self._inventory()
        full = inventory.price(profile=self.profile).as_dict()
        target = self.resolve_target(full)
        assert target is not None
        empty = {n: 0.0 for n in names}
        floor = float(inventory.price(densities=empty, profile=self.profile).as_dict()[  # type: ignore[arg-type]
            target.metric])
        whole = float(full[target.metric])  # type: ignore[arg-type]
        limit = target.limit()
        if is_met(whole, target):
            fraction = 1.0
        elif whole - floor <= whole * 1e-12 or not is_met(floor, target):
            why = ("zeroed weights do not lower it on this profile (no sparse speed-up)"
                   if target.metric == "latency_ms" else
                   "zeroed weights leave every activation in place"
                   if target.metric == "activation_volume" else
                   "the layers it leaves dense (and BatchNorm, biases) cost that much")
            raise BudgetInfeasible(
                f"{self.name} cannot bring {target.metric} to {target.describe()}: the smallest "
                f"it reaches is {target.describe(floor)} ({why})",
                metric=target.metric, target=limit, minimum=floor)
        else:
            fraction = (limit - floor) / (whole - floor)
        self.config = replace(self.config, budget=min(1.0, max(fraction, 1e-9)))
        self.target_scope = {"metric": target.metric, "value": limit, "full": whole,
                             "dense_part": floor}

    def finalize(self) -> nn.Module:
        """Write real zeros and keep a persistent mask; returns the (same) model.

        Each pruned layer's ``weight`` becomes ``weight_orig × weight_mask`` (a
        ``torch.nn.utils.prune`` mask) with zeros already in ``weight_orig``: further training
        cannot refill them. :func:`make_pruning_permanent` removes the masks for export.
        """
        model = self._model()
        if self.finalized:
            return model
        masks: dict[str, torch.Tensor] = {}
        for name, module in self.layers.items():
            with torch.no_grad():
                param = self._param(module)
                original = module.parametrizations.weight.original
                masks[name] = (original.abs() >= param.bound(original)).to(original.dtype)
        if self.target is not None and self.config.enforce_budget:
            self._project_to_target(masks)
        for name, module in self.layers.items():
            with torch.no_grad():
                param = self._param(module)
                mask = masks[name]
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            with torch.no_grad():
                module.weight.mul_(mask)  # real zeros
            prune.custom_from_mask(module, "weight", mask)
            self._final_info[name] = {
                "target": param.target,
                "estimated": self._estimate(param),
                "ratio": (float(param.clamped_ratio().detach()) if param.ratio is not None
                          else None),
            }
        self.finalized = True
        return model

    @torch.no_grad()
    def _project_to_target(self, masks: dict[str, torch.Tensor]) -> None:
        """Zero the smallest kept weights (by ``|w|/σ``, the bounds' unit) until the counted
        cost of the whole network meets the target."""
        assert self.target is not None
        target, inventory = self.target, self._inventory()

        def meets(densities: dict[str, float]) -> bool:
            cost = inventory.price(densities=densities, profile=self.profile).as_dict()
            return target.is_met(cost[target.metric])

        scores = {}
        for name in masks:
            original = self.layers[name].parametrizations.weight.original.detach()
            scores[name] = original.abs() / (float(original.std()) or 1.0)
        self.projected_weights = drop_smallest_until(masks, scores, meets)

    def report(self) -> PrunerReport:
        """Per layer: target, Gaussian-estimated and counted sparsity; cost of the pruned model.
        Layers it leaves dense are listed too, with the reason."""
        self._model()
        inventory = self._inventory()
        layers: list[LayerReport] = []
        for name, module in self.layers.items():
            if self.finalized:
                weight = module.weight.detach()
                kept = int(torch.count_nonzero(weight))
                info = self._final_info[name]
            else:
                with torch.no_grad():
                    param = self._param(module)
                    original = module.parametrizations.weight.original
                    kept = int(torch.count_nonzero(original.abs() >= param.bound(original)))
                info = {"target": param.target, "estimated": self._estimate(param),
                        "ratio": float(param.clamped_ratio().detach()) if param.ratio is not None
                        else None}
            total = module.weight.numel()
            layers.append(LayerReport(
                name=name, total=total, kept=kept, counted=1.0 - kept / total,
                target=info["target"], estimated=info["estimated"],
                extra={"ratio": info["ratio"]} if info["ratio"] is not None else {},
            ))
        densities = {layer.name: layer.kept / layer.total for layer in layers}
        for name, (total, reason) in self.skipped.items():
            layers.append(LayerReport(name=name, total=total, kept=total, counted=0.0,
                                      pruned=False, reason=reason))
        priced = inventory.price(densities=densities, profile=self.profile)
        dense = inventory.price(profile=self.profile)
        cost = {k: float(v) for k, v in priced.as_dict().items() if v is not None}
        cfg = self.config
        budget: dict[str, Any] = {}
        if cfg.method == "adaptive" and cfg.budget is not None:
            budget = {"metric": cfg.cost_metric or "avg", "fraction": cfg.budget,
                      "scope": "pruned layers (eq. 8)"}
            if self.target_scope:
                budget.update(value=self.target_scope["value"], full=self.target_scope["full"],
                              dense_part=self.target_scope["dense_part"],
                              target_scope="network")
        if cfg.method == "adaptive" and cfg.flops_budget is not None:
            budget["flops_fraction"] = cfg.flops_budget
        prunable = {m: self._prunable_cost(m, densities) for m in ("params", "flops")}
        extra: dict[str, Any] = {
            "method": cfg.method,
            "dense_cost": {k: float(v) for k, v in dense.as_dict().items() if v is not None},
            "flop_convention": "fvcore: 1 FLOP = 1 fused multiply-add",
            # Fraction of the pruned layers' params/FLOPs kept (what a budget constrains).
            "kept_fraction": {m: kept / full for m, (kept, full) in prunable.items() if full},
            "finalized": self.finalized,
            "last_loss": dict(self.last_loss),
            "projected_weights": self.projected_weights,
        }
        if cfg.method == "adaptive":
            extra["loss"] = cfg.loss
            extra["lam"] = cfg.effective_lam
            extra["weighting"] = cfg.weighting
        return PrunerReport(self.name, self.granularity, layers, cost, budget=budget, extra=extra)

    # -- training hooks ------------------------------------------------------------------------

    @property
    def param_group_optimizer(self) -> str:  # type: ignore[override]
        """The bounds' optimizer (``bound_optimizer``)."""
        return self.config.bound_optimizer

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The adaptive bounds as a plain torch group: ``bound_lr``, else ``bound_lr_scale × lr``
        (the authors: 1/100 of the weights' rate), and their weight decay; none if fixed."""
        if self.config.method != "adaptive" or self.finalized:
            return []
        cfg = self.config
        rate = cfg.bound_lr if cfg.bound_lr is not None else cfg.bound_lr_scale * float(lr)
        return [{"params": [self._param(m).ratio for m in self.layers.values()],
                 "lr": rate, "weight_decay": cfg.bound_weight_decay}]

    def pruned_configuration(self) -> PrunedConfiguration:
        """Weight density of every pruned layer (counted from the model)."""
        return {"densities": {r.name: (r.kept / r.total if r.total else 1.0)
                              for r in self.report().layers if r.pruned}}

    def state_dict(self) -> dict[str, Any]:
        """The derived budget and phase flag (the bounds are in the model's ``state_dict``)."""
        return {"budget": self.config.budget, "finalized": self.finalized}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` on a pruner prepared the same way (before finalize)."""
        unknown = sorted(set(state) - {"budget", "finalized"})
        if unknown:
            raise ValueError(f"unknown erf state key(s) {unknown}")
        if state.get("finalized"):
            raise ValueError("a finalized erf pruner's state cannot be loaded into a prepared "
                             "one: save and load the finalized model instead")
        if state.get("budget") is not None:
            self.config = replace(self.config, budget=float(state["budget"]))

    def loss_terms(self, context: StepContext) -> dict[str, torch.Tensor]:
        """The task loss and, for the adaptive method, ``"sparsity"`` (eq. 7, 10 or 11)."""
        terms = {"task": context.task_loss}
        if self.config.method != "adaptive" or self.finalized:
            return terms
        terms["sparsity"] = self.sparsity_loss()
        return terms

    def sparsity_loss(self) -> torch.Tensor:
        """The sparsity term of the adaptive method: λ·L_s (eq. 7), λ_p(L_s − B_p)² + λ_f(…)²
        (eq. 10) or λ_p·max(L_s − B_p, 0) + λ_f·max(…) (eq. 11)."""
        cfg = self.config
        params = [self._param(m) for m in self.layers.values()]
        ratios = torch.stack([p.clamped_ratio() for p in params])
        # b = r·σ and L_s uses b/σ: σ cancels, L_s depends on r only (eq. 5 in σ units).
        ones = torch.ones_like(ratios)
        density = erf_sparsity_loss(ratios, ones, self.contributions)  # eq. (6)/(8)
        lam = cfg.effective_lam
        lam_f = cfg.flops_lam if cfg.flops_lam is not None else lam
        if cfg.loss == "unconstrained":
            loss = lam * density  # eq. (7)
            self.last_loss = {"density": float(density.detach())}
            return loss
        terms: list[tuple[float, torch.Tensor, float]] = []
        if cfg.budget is not None:
            terms.append((lam, density, cfg.budget))
        if cfg.flops_budget is not None:
            flops_density = (density if cfg.budget is None and cfg.cost_metric == "flops"
                             else erf_sparsity_loss(ratios, ones, self._flops_contributions()))
            terms.append((lam_f, flops_density, cfg.flops_budget))
        total = ratios.new_zeros(())
        for lam, value, budget in terms:
            gap = value - budget
            total = total + (lam * gap.square() if cfg.loss == "budget"  # eq. (10)
                             else lam * gap.clamp(min=0.0))  # eq. (11)
        self.last_loss = {"density": float(density.detach())}
        return total

    # -- internals -----------------------------------------------------------------------------

    def _model(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError("call prepare(model, example_input) first")
        return self.model

    def _inventory(self) -> LayerInventory:
        if self.inventory is None:
            raise RuntimeError("call prepare(model, example_input) first")
        return self.inventory

    @staticmethod
    def _param(module: nn.Module) -> _ErfPrune:
        return module.parametrizations.weight[0]  # type: ignore[index,return-value]

    @staticmethod
    def _estimate(param: _ErfPrune) -> float:
        """Gaussian estimate erf(b/(σ√2)) (eq. 5) of the layer's sparsity at its current bound."""
        if param.method == "adaptive":
            ratio = float(param.clamped_ratio().detach())
        elif param.method == "ga":
            ratio = param.target_ratio
        else:
            sigma = float(param.last_sigma) if param.last_sigma is not None else 0.0
            if param.last_bound is None or sigma <= 0:
                return float("nan")
            ratio = param.last_bound / sigma
        return math.erf(ratio / math.sqrt(2.0))

    def _flops_contributions(self) -> torch.Tensor:
        if self.flops_contributions is None:
            self.flops_contributions = self._contributions("flops")
        return self.flops_contributions

    def _contributions(self, metric: str | None) -> torch.Tensor | None:
        """``c_i = N·m_i/Σ m_j`` with ``m_i`` the cost a layer saves per unit of its sparsity.

        ``m_i`` is read from the cost model as ``∂cost/∂density_i`` at full density: the
        layer's weight parameters (eq. 9), its FLOPs, or its latency on the profile. The ``N``
        makes the ``c_i`` average to 1 so that eq. (8)'s ``1/N`` yields a true fraction.
        """
        if metric is None:
            return None
        inventory = self._inventory()
        names = list(self.layers)
        densities = {n: torch.ones((), dtype=torch.float64, requires_grad=True) for n in names}
        total = inventory.expected_cost(metric, densities=densities, profile=self.profile)
        grads = torch.autograd.grad(total, list(densities.values()), allow_unused=True)
        weights = torch.tensor([0.0 if g is None else float(g) for g in grads])
        if not float(weights.sum()) > 0:
            raise ValueError(f"the pruned layers have no {metric} cost in the cost model; "
                             f"choose another weighting")
        device = next(iter(self.layers.values())).parametrizations.weight.original.device
        return (len(names) * weights / weights.sum()).to(torch.float32).to(device)

    def _prunable_cost(self, metric: str, densities: Mapping[str, float]) -> tuple[float, float]:
        inventory = self._inventory()
        kept = inventory.expected_cost(metric, densities=dict(densities), layers=list(densities))
        full = inventory.expected_cost(metric, layers=list(densities))
        return float(kept), float(full)


def make_pruning_permanent(model: nn.Module) -> nn.Module:
    """Turn every ``torch.nn.utils.prune`` mask of ``model`` into a plain ``weight`` parameter
    (zeros stay; the mask no longer protects them). Returns ``model``."""
    for module in model.modules():
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
    return model
