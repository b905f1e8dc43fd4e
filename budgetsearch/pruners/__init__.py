"""Pruners behind one protocol (:class:`Pruner`): erf-loss (unstructured), BAR (channels), and
the magnitude baselines (global unstructured; channel L1-norm), and ``dense`` (nothing pruned:
the family search's unpruned candidates)."""

from __future__ import annotations

# Each pruner module registers itself on import; add new ones below.
from budgetsearch.pruners import bar as _bar  # noqa: F401
from budgetsearch.pruners import channel_magnitude as _channel_magnitude  # noqa: F401
from budgetsearch.pruners import dense as _dense  # noqa: F401
from budgetsearch.pruners import erf as _erf  # noqa: F401
from budgetsearch.pruners import magnitude as _magnitude  # noqa: F401
from budgetsearch.pruners.base import (
    BudgetInfeasible,
    LayerReport,
    PrunedConfiguration,
    Pruner,
    PrunerReport,
    build_pruner,
    pruner_class,
    pruner_names,
    register_pruner,
    search_order,
    unregister_pruner,
)

__all__ = [
    "BudgetInfeasible",
    "LayerReport",
    "PrunedConfiguration",
    "Pruner",
    "PrunerReport",
    "build_pruner",
    "pruner_class",
    "pruner_names",
    "register_pruner",
    "search_order",
    "unregister_pruner",
]
