"""budgetsearch: the most accurate pruned network that fits a hardware budget.

The public API (imported lazily, so ``import budgetsearch`` stays light):

- :func:`price`: parameters, FLOPs, activation volume, memory and device latency of any network;
- :func:`calibrate`: a profile measured on this machine, scaled toward your network's time as
  it runs here now (its pruned versions keep the model's relative prices);
- :class:`Target`: a ceiling on one cost metric (``Target.parse("latency", "10ms")``, ``"50%"``);
- :func:`build_pruner`, :class:`Pruner`, :func:`register_pruner`, :class:`BudgetInfeasible`:
  prune in your own training loop, or add a pruner (check it with
  :func:`budgetsearch.testing.check_pruner`);
- :func:`train_phases`, :class:`TrainConfig`, :class:`StepContext`: the trainer that runs a
  pruner's phases;
- :func:`run`: a search on your model factory and data sets (the CLI's `run`);
- :func:`load_best_model`: a run's winner as a plain eval-mode ``nn.Module``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "price": "budgetsearch.api",
    "calibrate": "budgetsearch.api",
    "run": "budgetsearch.api",
    "load_best_model": "budgetsearch.api",
    "Target": "budgetsearch.cost",
    "Cost": "budgetsearch.cost",
    "load_profile": "budgetsearch.cost",
    "build_pruner": "budgetsearch.pruners",
    "register_pruner": "budgetsearch.pruners",
    "pruner_names": "budgetsearch.pruners",
    "Pruner": "budgetsearch.pruners",
    "PrunerReport": "budgetsearch.pruners",
    "BudgetInfeasible": "budgetsearch.pruners",
    "train_phases": "budgetsearch.train",
    "TrainConfig": "budgetsearch.train",
    "StepContext": "budgetsearch.train",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'budgetsearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
