"""Search: spaces (YAML → Optuna/Ray), the target made the pruners' budget, one trial objective,
two engines.

Engines are borrowed (Optuna locally, Ray Tune on a cluster); ray is imported only by
:mod:`budgetsearch.search.ray_driver`. Pruners are driven only through their protocol
(:mod:`budgetsearch.pruners.base`).
"""

from __future__ import annotations

from budgetsearch.search.objective import run_trial
from budgetsearch.search.optuna_driver import OptunaOptions, run_optuna
from budgetsearch.search.plan import TargetPlan, plan_target
from budgetsearch.search.request import RunRequest
from budgetsearch.search.results import RESULT_COLUMNS
from budgetsearch.search.runner import RunSummary, run_search
from budgetsearch.search.settings import TrialSettings
from budgetsearch.search.space import SearchSpace, load_space, space_names

__all__ = [
    "RESULT_COLUMNS",
    "OptunaOptions",
    "RunRequest",
    "RunSummary",
    "SearchSpace",
    "TargetPlan",
    "TrialSettings",
    "load_space",
    "plan_target",
    "run_optuna",
    "run_search",
    "run_trial",
    "space_names",
]
