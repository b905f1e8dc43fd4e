"""Pareto fronts against thinner dense baselines, hardware selection, plots and a report.

``fronts`` is the maths (pure, returns data), ``reprice`` re-prices saved trial configurations on
other device profiles, ``results`` reads and appends the run's table, ``baselines`` trains the
thinner dense twins, ``plots`` draws (matplotlib, imported only there) and ``report`` writes
markdown. Importing this package does not import matplotlib.

Example:
    >>> from budgetsearch.pareto import hypervolume
    >>> hypervolume([1.0, 2.0], [0.5, 0.8], reference=(3.0, 0.0))
    1.3
"""

from __future__ import annotations

from budgetsearch.pareto.fronts import (
    COST_COLUMNS,
    COST_LABELS,
    Front,
    HardwareChoice,
    baseline_curve,
    baseline_widths,
    feasibility,
    front_hypervolumes,
    fronts_by_group,
    hardware_selection,
    hypervolume,
    pareto_front,
    pareto_mask,
    parse_ratios,
    parse_target,
    reference_rows,
    resolve_metric,
    split_kinds,
    usable_trials,
)
from budgetsearch.pareto.reprice import (
    InventoryCache,
    PrunedConfig,
    layer_profile,
    price_config,
    reprice_trials,
)
from budgetsearch.pareto.results import (
    append_rows,
    load_results,
    load_run_config,
    load_runs,
    resolve_artifact,
)

__all__ = [
    "COST_COLUMNS",
    "COST_LABELS",
    "Front",
    "HardwareChoice",
    "InventoryCache",
    "PrunedConfig",
    "append_rows",
    "baseline_curve",
    "baseline_widths",
    "feasibility",
    "front_hypervolumes",
    "fronts_by_group",
    "hardware_selection",
    "hypervolume",
    "layer_profile",
    "load_results",
    "load_run_config",
    "load_runs",
    "pareto_front",
    "pareto_mask",
    "parse_ratios",
    "parse_target",
    "price_config",
    "reference_rows",
    "reprice_trials",
    "resolve_artifact",
    "resolve_metric",
    "split_kinds",
    "usable_trials",
]
