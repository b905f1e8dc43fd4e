"""Pruners: erf-loss (unstructured) and BAR (channels), behind one small protocol."""

from __future__ import annotations

# Each pruner module registers itself on import; add new ones below.
from budgetsearch.pruners import bar as _bar  # noqa: F401
from budgetsearch.pruners import erf as _erf  # noqa: F401
from budgetsearch.pruners.base import (
    LayerReport,
    Pruner,
    PrunerReport,
    build_pruner,
    pruner_class,
    pruner_names,
    register_pruner,
)

__all__ = [
    "LayerReport",
    "Pruner",
    "PrunerReport",
    "build_pruner",
    "pruner_class",
    "pruner_names",
    "register_pruner",
]
