"""Pareto maths on a results table: fronts, hypervolume, baseline curves, hardware selection.

Pure functions over pandas/numpy that return plain data (DataFrames and dataclasses); nothing
here draws (``plots.py`` does) or writes files (``report.py`` and the CLI do). Accuracy is
maximized and any cost column is minimized.

Example:
    >>> import numpy as np
    >>> pareto_mask(np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.4, 0.9])).tolist()
    [True, False, True]
    >>> hypervolume([1.0, 3.0], [0.5, 0.9], reference=(4.0, 0.0))
    1.9
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from budgetsearch.cost.metrics import Target, canonical_metric, metric_label, tolerated
from budgetsearch.models import thinner_dense_width

#: Cost columns of the results table, each minimized.
COST_COLUMNS: tuple[str, ...] = (
    "params", "flops", "activation_volume", "memory_bytes", "latency_ms",
)

#: Axis label of each cost column, with its unit (FLOPs: fvcore's convention).
COST_LABELS: dict[str, str] = {name: metric_label(name) for name in COST_COLUMNS}


def resolve_metric(name: str) -> str:
    """Map a metric name or alias to its results-table column (``cost.canonical_metric``).

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    return canonical_metric(name)


# ---------------------------------------------------------------------------------------------
# Dominance and hypervolume


def pareto_mask(costs: Sequence[float] | np.ndarray,
                accuracies: Sequence[float] | np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated points (minimize cost, maximize accuracy).

    A point is dominated when another is no worse in both and strictly better in one. Exact
    duplicates do not dominate each other, so both stay on the front. NaNs are never on it.

    Example:
        >>> pareto_mask([1, 1, 2], [0.5, 0.6, 0.6]).tolist()
        [False, True, False]
    """
    c = np.asarray(costs, dtype=float)
    a = np.asarray(accuracies, dtype=float)
    if c.shape != a.shape or c.ndim != 1:
        raise ValueError(f"costs and accuracies must be 1-D of one length, got {c.shape} "
                         f"and {a.shape}")
    valid = np.isfinite(c) & np.isfinite(a)
    mask = np.zeros(len(c), dtype=bool)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return mask
    # Sort by cost, then best accuracy first: a point is on the front when its accuracy beats
    # every cheaper (or equally cheap and more accurate) point's; ties in both keep all copies.
    order = idx[np.lexsort((-a[idx], c[idx]))]
    best = -math.inf
    best_cost = math.nan
    for i in order:
        if a[i] > best:
            mask[i] = True
            best, best_cost = a[i], c[i]
        elif a[i] == best and c[i] == best_cost:
            mask[i] = True  # an exact duplicate of a front point
    return mask


def hypervolume(costs: Sequence[float] | np.ndarray, accuracies: Sequence[float] | np.ndarray,
                *, reference: tuple[float, float]) -> float:
    """Area dominated by the points inside the box ``cost ≤ ref_cost``, ``accuracy ≥ ref_acc``.

    ``reference = (ref_cost, ref_accuracy)`` is the worst corner (e.g. the target budget and the
    accuracy of chance). Points outside the box add nothing; no points give 0.

    Example:
        >>> hypervolume([2.0], [0.5], reference=(4.0, 0.0))
        1.0
    """
    ref_cost, ref_acc = float(reference[0]), float(reference[1])
    if not (math.isfinite(ref_cost) and math.isfinite(ref_acc)):
        raise ValueError(f"reference must be two finite numbers, got {reference}")
    c = np.asarray(costs, dtype=float)
    a = np.asarray(accuracies, dtype=float)
    keep = pareto_mask(c, a) & (c <= ref_cost) & (a >= ref_acc)
    c, a = c[keep], a[keep]
    if c.size == 0:
        return 0.0
    order = np.argsort(c, kind="stable")
    c, a = c[order], a[order]
    # On a front accuracy rises with cost; the best accuracy reachable at cost x is that of the
    # last front point at or below x, so the area is a sum of strips between successive costs.
    right = np.append(c[1:], ref_cost)
    return float(np.sum((right - c) * (a - ref_acc)))


# ---------------------------------------------------------------------------------------------
# Fronts from a results table


@dataclass(frozen=True)
class Front:
    """The non-dominated trials of one group for one cost column.

    Attributes:
        metric: cost column.
        group: the group's name (a pruner, ``"baseline"``, or ``"all"``).
        points: the front's rows (the table's columns), sorted by cost.
        note: why the front is empty (""), e.g. every trial infeasible.
    """

    metric: str
    group: str
    points: pd.DataFrame
    note: str = ""

    @property
    def empty(self) -> bool:
        return self.points.empty


def _require(table: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"results table lacks column(s) {', '.join(missing)}; it has "
                         f"{', '.join(map(str, table.columns))}")


def usable_trials(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows that finished (status ok or infeasible) with a finite accuracy and ``metric``."""
    _require(table, ["accuracy", metric])
    status = table["status"] if "status" in table else pd.Series("ok", index=table.index)
    acc = pd.to_numeric(table["accuracy"], errors="coerce")
    cost = pd.to_numeric(table[metric], errors="coerce")
    ok = status.isin(["ok", "infeasible"]) & np.isfinite(acc) & np.isfinite(cost)
    return table[ok]


def feasibility(table: pd.DataFrame, metric: str, target: float | None = None) -> pd.Series:
    """Per row: meets the budget. With ``target``: ``metric ≤ target``; else the table's own
    ``feasible`` column and ``status != "infeasible"`` (missing → feasible)."""
    if target is not None:
        return pd.to_numeric(table[metric], errors="coerce") <= tolerated(target)
    feasible = pd.Series(True, index=table.index)
    if "feasible" in table:
        feasible &= table["feasible"].map(_truthy)
    if "status" in table:
        feasible &= table["status"] != "infeasible"
    return feasible


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True  # unknown: not marked infeasible
    return bool(value)


def pareto_front(table: pd.DataFrame, metric: str, *, target: float | None = None,
                 min_accuracy: float | None = None, group: str = "all") -> Front:
    """Non-dominated feasible trials of ``table`` for ``metric`` (see :func:`pareto_mask`).

    Only finished trials (:func:`usable_trials`) that meet the budget (:func:`feasibility`) and
    reach ``min_accuracy`` compete. An empty front carries a note saying why.

    Example:
        >>> t = pd.DataFrame({"accuracy": [0.8, 0.7], "params": [10, 20], "status": ["ok"] * 2})
        >>> pareto_front(t, "params").points["params"].tolist()
        [10]
    """
    metric = resolve_metric(metric)
    usable = usable_trials(table, metric)
    if usable.empty:
        note = (f"no finished trial with an accuracy and {metric} among {len(table)} row(s)"
                if len(table) else "the results table has no rows")
        return Front(metric, group, usable, note)
    candidates = usable[feasibility(usable, metric, target)]
    if candidates.empty:
        budget = f"{metric} ≤ {target:g}" if target is not None else "the run's target"
        return Front(metric, group, candidates,
                     f"all {len(usable)} finished trial(s) are infeasible under {budget}")
    if min_accuracy is not None:
        candidates = candidates[candidates["accuracy"].astype(float) >= min_accuracy]
        if candidates.empty:
            return Front(metric, group, candidates,
                         f"no feasible trial reaches accuracy ≥ {min_accuracy:g}")
    mask = pareto_mask(candidates[metric].astype(float), candidates["accuracy"].astype(float))
    points = candidates[mask].sort_values([metric, "accuracy"], kind="stable")
    return Front(metric, group, points)


def fronts_by_group(table: pd.DataFrame, metric: str, *, by: str = "pruner",
                    target: float | None = None,
                    min_accuracy: float | None = None) -> dict[str, Front]:
    """One front per pruner (pruned trials) plus ``"baseline"`` (dense baselines) and ``"all"``
    (every row, the unpruned reference included)."""
    pruned, baselines = split_kinds(table)
    fronts: dict[str, Front] = {}
    if by in pruned and not pruned.empty:
        for name, rows in pruned.groupby(pruned[by].fillna("?").astype(str), sort=True):
            fronts[str(name)] = pareto_front(rows, metric, target=target,
                                             min_accuracy=min_accuracy, group=str(name))
    if not baselines.empty:
        fronts["baseline"] = pareto_front(baselines, metric, target=target,
                                          min_accuracy=min_accuracy, group="baseline")
    fronts["all"] = pareto_front(table, metric, target=target, min_accuracy=min_accuracy)
    return fronts


def split_kinds(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pruned rows, baseline rows) by the ``kind`` column (missing → all pruned).

    Rows of kind ``"reference"`` (the unpruned network a search run trains once) are in neither:
    they are no pruner's trial (see :func:`reference_rows`).
    """
    if "kind" not in table:
        return table, table.iloc[0:0]
    kind = table["kind"].astype(str)
    return table[~kind.isin(["baseline", "reference"])], table[kind == "baseline"]


def reference_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of kind ``"reference"``: the unpruned network of each run (none without ``kind``)."""
    if "kind" not in table:
        return table.iloc[0:0]
    return table[table["kind"].astype(str) == "reference"]


def baseline_curve(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Finished dense-baseline rows sorted by ``metric``: the thinner-dense curve a front is
    compared with (all of them, feasible or not, so the curve is whole)."""
    metric = resolve_metric(metric)
    _, baselines = split_kinds(table)
    return usable_trials(baselines, metric).sort_values(metric, kind="stable")


def front_hypervolumes(fronts: Mapping[str, Front], *, reference: tuple[float, float]
                       ) -> dict[str, float]:
    """Hypervolume of each front against one reference point (comparable across groups)."""
    return {name: hypervolume(f.points[f.metric].astype(float),
                              f.points["accuracy"].astype(float), reference=reference)
            for name, f in fronts.items()}


# ---------------------------------------------------------------------------------------------
# Thinner dense baselines (erf-loss paper, section 4, eq. 12)


def baseline_widths(ratios: Iterable[float]) -> dict[float, float]:
    """Compression ratio r (kept fraction of parameters) → width multiplier √r (eq. 12)."""
    return {float(r): thinner_dense_width(float(r)) for r in ratios}


def parse_ratios(text: str) -> list[float]:
    """``"0.5,0.25"`` → ``[0.5, 0.25]``, each in (0, 1], no duplicates."""
    values: list[float] = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"ratios must be comma-separated numbers in (0, 1] like 0.5,0.25, "
                             f"got {text!r}") from None
        if not 0.0 < value <= 1.0:
            raise ValueError(f"each ratio must be the kept fraction of parameters in (0, 1], "
                             f"got {value:g} in {text!r}")
        if value not in values:
            values.append(value)
    return values


def parse_target(text: str, metric: str, *, full: float | None = None) -> float:
    """A ceiling in the metric's units (:meth:`budgetsearch.cost.Target.parse`): ``10ms`` /
    ``0.5s`` for latency, ``2M`` / ``300k`` for counts, ``1MiB`` for memory, or ``50%`` of
    ``full`` (the unpruned network's cost).

    Example:
        >>> parse_target("10ms", "latency_ms"), parse_target("1.5M", "params")
        (10.0, 1500000.0)
    """
    target = Target.parse(metric, text, flag="--target")
    if target.is_relative:
        if full is None:
            raise ValueError(f"--target {text!r} is relative: the results need the unpruned "
                             "reference's row to resolve it against; give an absolute value")
        target = target.resolve(full)
    return target.limit()


# ---------------------------------------------------------------------------------------------
# Hardware selection


@dataclass(frozen=True)
class HardwareChoice:
    """Answer to "which devices meet ``target`` at accuracy ≥ ``min_accuracy``?".

    Attributes:
        table: one row per device: device, meets, feasible_trials, trial_id, kind, pruner,
            accuracy, and the chosen trial's cost columns (NaN where no trial qualifies).
        metric, target, min_accuracy: the question asked.
    """

    metric: str
    target: float | None
    min_accuracy: float | None
    table: pd.DataFrame = field(repr=False)

    @property
    def devices_meeting(self) -> list[str]:
        return self.table.loc[self.table["meets"], "device"].tolist()


def hardware_selection(repriced: pd.DataFrame, *, metric: str = "latency_ms",
                       target: float | None = None,
                       min_accuracy: float | None = None) -> HardwareChoice:
    """Best model per device among trials re-priced on several devices.

    ``repriced`` is long format (one row per trial and device, e.g. from
    :func:`budgetsearch.pareto.reprice.reprice_trials`). On each device the qualifying trials are
    those with ``metric ≤ target`` (all, without a target) and ``accuracy ≥ min_accuracy``; the
    best is the most accurate, ties broken by the lower cost.
    """
    metric = resolve_metric(metric)
    _require(repriced, ["device", "accuracy", metric])
    rows = []
    for device, group in repriced.groupby("device", sort=False):
        usable = usable_trials(group, metric)
        ok = (usable[pd.to_numeric(usable[metric]) <= tolerated(target)] if target is not None
              else usable)
        if min_accuracy is not None:
            ok = ok[ok["accuracy"].astype(float) >= min_accuracy]
        row: dict[str, object] = {"device": device, "meets": not ok.empty,
                                  "feasible_trials": len(ok)}
        if not ok.empty:
            best = ok.sort_values(["accuracy", metric], ascending=[False, True],
                                  kind="stable").iloc[0]
            # "run": which run folder, where several were merged (trial ids repeat across runs)
            for column in ("run", "trial_id", "kind", "pruner", "width", "accuracy",
                           *COST_COLUMNS):
                if column in best or column != "run":
                    row[column] = best.get(column, np.nan)
        else:
            cheapest = usable[metric].min() if not usable.empty else np.nan
            row["cheapest_" + metric] = cheapest
        rows.append(row)
    table = pd.DataFrame(rows)
    for column in ("trial_id", "kind", "pruner", "width", "accuracy", *COST_COLUMNS):
        if column not in table:
            table[column] = np.nan
    return HardwareChoice(metric, target, min_accuracy, table)
