"""Search: spaces (YAML → Optuna/Ray), targets → budgets, one trial objective, two engines.

Engines are borrowed (Optuna locally, Ray Tune on a cluster); ray is imported only by
:mod:`budgetsearch.search.ray_driver`.
"""

from __future__ import annotations

from budgetsearch.search.objective import RESULT_COLUMNS, TrialSettings, run_trial
from budgetsearch.search.optuna_driver import OptunaOptions, run_optuna
from budgetsearch.search.space import SearchSpace, load_space, space_names
from budgetsearch.search.targets import Target, parse_count, parse_duration_ms, plan_target

__all__ = [
    "RESULT_COLUMNS",
    "OptunaOptions",
    "SearchSpace",
    "Target",
    "TrialSettings",
    "load_space",
    "parse_count",
    "parse_duration_ms",
    "plan_target",
    "run_optuna",
    "run_trial",
    "space_names",
]
