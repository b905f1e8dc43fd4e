"""Pruners: erf-loss (unstructured) and BAR (channels), behind one small protocol."""

from __future__ import annotations

from budgetsearch.pruners.base import (
    LayerReport,
    Pruner,
    PrunerReport,
    build_pruner,
    pruner_class,
    pruner_names,
    register_pruner,
)

# Each pruner module registers itself on import; add new ones below.

__all__ = [
    "LayerReport",
    "Pruner",
    "PrunerReport",
    "build_pruner",
    "pruner_class",
    "pruner_names",
    "register_pruner",
]
