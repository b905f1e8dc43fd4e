"""The one protocol every pruner follows, and their registry.

A pruner is driven blind: search, the Ray driver, the experiments and a user's own loop call only
what is here, never ask which pruner they hold. The lifecycle mirrors ``torch.ao.pruning``'s
``prepare → step → squash_mask``:

1. ``build_pruner(name, target=..., profile=..., **options)``: the pruner is configured from a
   :class:`~budgetsearch.cost.Target` and a device profile; it turns the target into its own
   budget when it sees the network;
2. ``pruner.prepare(model, example_input)`` attaches the pruning machinery (masks, bounds, gates)
   in place, prices the network, and raises :class:`BudgetInfeasible` (with the reachable
   minimum) before any training when the target cannot be met;
3. training runs the pruner's :meth:`Pruner.phases` in order (:func:`budgetsearch.train.
   train_phases`), calling :meth:`Pruner.begin_phase` before each; the pruner is the training
   hooks object (its own parameter groups as plain torch dicts, loss terms, a hook after each
   step);
4. ``pruner.finalize()`` returns a deployable ``nn.Module``: real zeros (unstructured) or a
   physically smaller network (channels);
5. ``pruner.report()`` says what was achieved, per layer and in total, and
   ``pruner.pruned_configuration()`` gives what the cost model needs to re-price the result on any
   device; ``state_dict()`` / ``load_state_dict()`` round-trip the pruner's own state.

Example:
    >>> import torch
    >>> from budgetsearch.cost import Target
    >>> from budgetsearch.models import build_model
    >>> pruner = build_pruner("magnitude", target=Target.parse("params", "50%"))
    >>> model = pruner.prepare(build_model("wrn-10-1"), torch.zeros(1, 1, 28, 28))
    >>> [phase.name for phase in pruner.phases()]
    ['train']
    >>> deployable = pruner.finalize()
    >>> pruner.report().cost["params"] <= pruner.target.value
    True
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from budgetsearch.cost import DeviceProfile, Target, load_profile
from budgetsearch.train_hooks import SINGLE_PHASE, Phase, StepContext

Granularity = Literal["unstructured", "channel"]
#: ``{"kept_channels": {layer: [in, out]}}`` (channel pruning) or ``{"densities": {layer: d}}``
#: (unstructured): enough to re-price a pruned network on any device profile without retraining.
PrunedConfiguration = dict[str, dict[str, Any]]


class BudgetInfeasible(ValueError):
    """The target cannot be met by this pruner on this network (known before training).

    Attributes:
        metric: the target's metric.
        target: the ceiling asked for (absolute).
        minimum: the smallest cost the pruner can reach on this network.
    """

    def __init__(self, message: str, *, metric: str, target: float, minimum: float) -> None:
        super().__init__(message)
        self.metric = metric
        self.target = target
        self.minimum = minimum


@dataclass
class LayerReport:
    """What pruning did to one layer (or one channel group).

    ``pruned`` says whether the pruner acted on it, ``reason`` why not where it did not;
    ``target`` is the sparsity asked of the layer (None where it was learnt freely),
    ``estimated`` the pruner's own estimate (the Gaussian ``erf`` estimate for erf-loss, expected
    gate-off fraction for BAR), ``counted`` the fraction of weights (or channels) really gone.
    """

    name: str
    total: int
    kept: int
    counted: float
    target: float | None = None
    estimated: float | None = None
    pruned: bool = True
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrunerReport:
    """Outcome of a pruning run: per-layer reports and the achieved cost of the final model.

    ``cost`` is keyed by the canonical metric names (``params``, ``flops``,
    ``activation_volume``, ``memory_bytes``, ``latency_ms``) and counts the whole network;
    ``budget`` says what the pruner's budget counted (``metric``, ``value``, ``fraction`` of the
    unpruned cost, and ``scope``: ``"network"`` or the part it is a fraction of).
    """

    pruner: str
    granularity: Granularity
    layers: list[LayerReport]
    cost: dict[str, float]
    budget: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def overall_sparsity(self) -> float:
        """Fraction of the pruned layers' weights (or channels) removed, counted from the model."""
        pruned = [layer for layer in self.layers if layer.pruned]
        total = sum(layer.total for layer in pruned)
        kept = sum(layer.kept for layer in pruned)
        return 1.0 - kept / total if total else 0.0

    def layer_table(self) -> list[dict[str, Any]]:
        """One plain dict per layer (a ``pandas.DataFrame`` can be built from it)."""
        return [
            {"layer": r.name, "pruned": r.pruned, "reason": r.reason, "total": r.total,
             "kept": r.kept, "counted": r.counted, "target": r.target, "estimated": r.estimated,
             **r.extra}
            for r in self.layers
        ]

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping (``report.json``)."""
        return {"pruner": self.pruner, "granularity": self.granularity, "cost": self.cost,
                "budget": self.budget, "overall_sparsity": self.overall_sparsity,
                "layers": self.layer_table(), "extra": self.extra}


class Pruner(abc.ABC):
    """Base class of pruners.

    Subclasses set ``name`` and ``granularity`` and implement :meth:`prepare`, :meth:`finalize`,
    :meth:`report` and :meth:`pruned_configuration`; the rest has neutral defaults. Their
    ``__init__`` takes ``target``, ``profile`` and ``teacher`` (passed to
    :meth:`Pruner.__init__`) plus their own keyword options, validated at construction.

    Class attributes:
        name: the registry name (``budgetsearch run --pruner NAME``).
        granularity: ``"unstructured"`` (zeros in place) or ``"channel"`` (a smaller network).
        search_rank: order in which the search tries pruners when the user names none (lower
            first); None: only when named.
        param_group_optimizer: the optimizer the pruner's own groups are tuned for (``"sgd"``,
            ``"adam"``), None: the weights' own.
        starts_from_reference: True: a search trial starts from the run's trained unpruned
            network (and may distil from it); False: from random weights, trained for the
            reference's epochs as well, so that its trial costs the same compute (``dense``).
    """

    name: ClassVar[str]
    granularity: ClassVar[Granularity]
    search_rank: ClassVar[int | None] = None
    starts_from_reference: ClassVar[bool] = True
    param_group_optimizer: str | None = None

    def __init__(self, *, target: Target | None = None,
                 profile: DeviceProfile | str | None = None,
                 teacher: nn.Module | None = None) -> None:
        if target is not None and not isinstance(target, Target):
            raise TypeError(f"target must be a budgetsearch.cost.Target, got "
                            f"{type(target).__name__}")
        self.target = target
        self.profile: DeviceProfile | None = (
            load_profile(profile) if isinstance(profile, str) else profile)
        if target is not None and target.metric == "latency_ms" and self.profile is None:
            raise ValueError("a latency target needs a device profile (profile='jetson', a name "
                             "from 'budgetsearch devices', or a DeviceProfile)")
        self.teacher = teacher

    # -- lifecycle -----------------------------------------------------------------------------

    @abc.abstractmethod
    def prepare(self, model: nn.Module, example_input: torch.Tensor) -> nn.Module:
        """Attach pruning to ``model`` in place and return it.

        ``example_input`` is one batch of the input's shape (used to price the network). A
        relative target is resolved here against the network's unpruned cost.

        Raises:
            BudgetInfeasible: the target is below what this pruner can reach on this network.
        """

    def phases(self) -> tuple[Phase, ...]:
        """The pruner's stretches of training, in order (one ``"train"`` phase by default)."""
        return SINGLE_PHASE

    def begin_phase(self, phase: Phase) -> None:
        """Called by the trainer before each phase (e.g. BAR's hard prune before ``frozen``)."""
        return None

    @abc.abstractmethod
    def finalize(self) -> nn.Module:
        """Return the deployable model (plain PyTorch modules)."""

    @abc.abstractmethod
    def report(self) -> PrunerReport:
        """Per-layer and total outcome; valid after :meth:`finalize` (and during training)."""

    @abc.abstractmethod
    def pruned_configuration(self) -> PrunedConfiguration:
        """``{"kept_channels": {layer: [in, out]}}`` or ``{"densities": {layer: d}}`` of the
        result: what ``LayerInventory.price`` needs to re-price it on any device."""

    # -- training hooks (neutral defaults) -----------------------------------------------------

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The pruner's own parameters as plain ``torch.optim`` groups (``params``, absolute
        ``lr``, ``weight_decay``), given the weights' learning rate ``lr``; none by default."""
        return []

    def loss_terms(self, context: StepContext) -> dict[str, torch.Tensor]:
        """Loss terms of one step, ``"task"`` included (the plain task loss by default)."""
        return {"task": context.task_loss}

    def after_step(self, context: StepContext) -> None:
        """Called after each optimizer step (nothing by default)."""
        return None

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The pruner's own state (flags, counters; tensors it keeps outside the model). The
        model's ``state_dict`` holds the weights and whatever the pruner attached to the model."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` on a pruner prepared the same way."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got keys {sorted(state)}")

    # -- helpers for subclasses ----------------------------------------------------------------

    def resolve_target(self, full_cost: Mapping[str, float | None]) -> Target | None:
        """Resolve a relative target against the unpruned network's ``full_cost`` (canonical
        metric → value) and store it; returns the absolute target (None without one)."""
        if self.target is None:
            return None
        full = full_cost.get(self.target.metric)
        if full is None or not math.isfinite(float(full)):
            raise ValueError(f"the network has no {self.target.metric} cost to resolve the "
                             f"target against (a latency target needs a device profile)")
        self.target = self.target.resolve(float(full))
        return self.target


PrunerFactory = Callable[..., Pruner]
_REGISTRY: dict[str, type[Pruner]] = {}


def register_pruner(cls: type[Pruner]) -> type[Pruner]:
    """Class decorator: register a pruner under ``cls.name``.

    Raises:
        ValueError: the name is taken or the class declares no valid granularity.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__qualname__} must set a class attribute 'name'")
    if name in _REGISTRY:
        raise ValueError(f"pruner name {name!r} is already registered")
    if getattr(cls, "granularity", None) not in ("unstructured", "channel"):
        raise ValueError(f"{cls.__qualname__}.granularity must be 'unstructured' or 'channel'")
    _REGISTRY[name] = cls
    return cls


def unregister_pruner(name: str) -> None:
    """Remove a registered pruner (tests and plug-ins that register temporarily)."""
    _REGISTRY.pop(name, None)


def pruner_names() -> list[str]:
    """Registered pruner names, sorted."""
    return sorted(_REGISTRY)


def search_order() -> list[str]:
    """Pruners the search tries when the user names none, in their ``search_rank`` order."""
    ranked = [(cls.search_rank, name) for name, cls in _REGISTRY.items()
              if cls.search_rank is not None]
    return [name for _, name in sorted(ranked)]


def pruner_class(name: str) -> type[Pruner]:
    """The class registered as ``name``; an unknown name lists the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(f"pruner must be one of {', '.join(pruner_names())}, got {name!r}")
    return _REGISTRY[name]


def build_pruner(name: str, **options: Any) -> Pruner:
    """Build a registered pruner with keyword options (``target``, ``profile``, ``teacher`` and
    the pruner's own, which it validates)."""
    return pruner_class(name)(**options)
