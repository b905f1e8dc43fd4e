"""The one small protocol both pruners follow, and their registry.

The lifecycle mirrors ``torch.ao.pruning``'s ``prepare → step → squash_mask``:

1. ``pruner.prepare(model)`` attaches the pruning machinery (masks, bounds, gates) in place and
   returns the model;
2. training runs with the pruner as its :class:`budgetsearch.train.TrainingHooks` (extra parameter
   groups, loss terms, a hook after each step);
3. ``pruner.finalize()`` returns a deployable ``nn.Module``: real zeros (erf-loss) or a physically
   smaller network (BAR);
4. ``pruner.report()`` says what was achieved, per layer and in total.

Example:
    >>> pruner = build_pruner("erf", budget=0.85)        # doctest: +SKIP
    >>> model = pruner.prepare(model)                      # doctest: +SKIP
    >>> train(model, data, config, hooks=pruner)           # doctest: +SKIP
    >>> deployable = pruner.finalize()                     # doctest: +SKIP
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from budgetsearch.train import StepContext

Granularity = Literal["unstructured", "channel"]


@dataclass
class LayerReport:
    """What pruning did to one layer.

    ``target`` is the sparsity asked of the layer (None where it was learnt freely), ``estimated``
    the pruner's own estimate (the Gaussian ``erf`` estimate for erf-loss, expected gate-off
    fraction for BAR), ``counted`` the fraction of weights (or channels) that are really gone.
    """

    name: str
    total: int
    kept: int
    counted: float
    target: float | None = None
    estimated: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrunerReport:
    """Outcome of a pruning run: per-layer reports and the achieved cost of the final model."""

    pruner: str
    granularity: Granularity
    layers: list[LayerReport]
    cost: dict[str, float]
    budget: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def overall_sparsity(self) -> float:
        """Fraction of prunable weights (or channels) removed, counted from the model."""
        total = sum(layer.total for layer in self.layers)
        kept = sum(layer.kept for layer in self.layers)
        return 1.0 - kept / total if total else 0.0

    def layer_table(self) -> list[dict[str, Any]]:
        """One plain dict per layer (a ``pandas.DataFrame`` can be built from it)."""
        return [
            {"layer": r.name, "total": r.total, "kept": r.kept, "counted": r.counted,
             "target": r.target, "estimated": r.estimated, **r.extra}
            for r in self.layers
        ]


class Pruner(abc.ABC):
    """Base class of pruners. Subclasses set ``name`` and ``granularity`` and implement the
    four abstract methods; the ``TrainingHooks`` methods have neutral defaults."""

    name: ClassVar[str]
    granularity: ClassVar[Granularity]

    @abc.abstractmethod
    def prepare(self, model: nn.Module, example_input: torch.Tensor) -> nn.Module:
        """Attach pruning to ``model`` in place and return it. ``example_input`` is one batch
        of the input's shape (used to price layers through the cost model)."""

    @abc.abstractmethod
    def finalize(self) -> nn.Module:
        """Return the deployable model (plain PyTorch modules, loadable without budgetsearch's
        pruning code where the pruner allows)."""

    @abc.abstractmethod
    def report(self) -> PrunerReport:
        """Per-layer and total outcome; valid after :meth:`finalize` (and during training)."""

    @abc.abstractmethod
    def loss_terms(self, context: StepContext) -> dict[str, torch.Tensor]:
        """Loss terms of one step, ``"task"`` included (see ``TrainingHooks``)."""

    # TrainingHooks defaults -----------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups of the pruner's own parameters (none by default)."""
        return []

    def after_step(self, context: StepContext) -> None:
        """Called after each optimizer step (nothing by default)."""
        return None


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


def pruner_names() -> list[str]:
    """Registered pruner names, sorted."""
    return sorted(_REGISTRY)


def pruner_class(name: str) -> type[Pruner]:
    """The class registered as ``name``; an unknown name lists the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(f"pruner must be one of {', '.join(pruner_names())}, got {name!r}")
    return _REGISTRY[name]


def build_pruner(name: str, **options: Any) -> Pruner:
    """Build a registered pruner with keyword options (each pruner validates its own)."""
    return pruner_class(name)(**options)
