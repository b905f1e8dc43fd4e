"""The results table of a run folder: one row per trial, its columns, written atomically."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from budgetsearch.files import write_text_atomic
from budgetsearch.search.settings import TrialSettings

RESULTS_FILE = "results.csv"
ROW_FILE = "row.json"
RESULT_COLUMNS = (
    "trial_id", "engine", "kind", "family", "pruner", "model", "width", "status", "failure",
    "accuracy", "val_accuracy", "params", "flops", "activation_volume", "memory_bytes",
    "latency_ms", "device", "target_metric", "target_value", "feasible", "seconds",
)
ARTIFACT_COLUMNS = ("model_path", "pruned_config_path", "report_path")
INTERRUPTED_BY_USER = "interrupted by the user (Ctrl-C); its slot is re-run on --resume"
INTERRUPTED_BY_KILL = ("interrupted: the process stopped during this trial (killed or crashed); "
                       "its slot was re-run on --resume")


def family_key(pruner: str | None, model: str, width: float) -> str:
    """The name of a family of networks: ``PRUNER:MODEL@WIDTH`` (``reference`` for the unpruned
    reference of a base).

    Example:
        >>> family_key("bar", "wrn-16-1", 2.0), family_key(None, "wrn-10-1", 0.75)
        ('bar:wrn-16-1@2', 'reference:wrn-10-1@0.75')
    """
    return f"{pruner or 'reference'}:{model}@{float(width):g}"


def empty_row(trial_id: str, engine: str, settings: TrialSettings, pruner: str | None,
              params: dict[str, Any]) -> dict[str, Any]:
    """A row with every column present (NaN/None where nothing is known yet)."""
    target = settings.target
    row: dict[str, Any] = {c: None for c in RESULT_COLUMNS + ARTIFACT_COLUMNS}
    row.update(trial_id=trial_id, engine=engine, kind="pruned", pruner=pruner,
               family=family_key(pruner, settings.model, settings.width),
               model=settings.model, width=settings.width, status="failed",
               device=settings.device_profile,
               target_metric=target.metric if target else None,
               target_value=target.value if target else None, feasible=False, seconds=0.0)
    row.update({f"hp_{k}": v for k, v in params.items()})
    return row


def write_row(trial_dir: Path, row: dict[str, Any]) -> Path:
    """Write a trial's ``row.json`` (write-then-rename: a killed process leaves no half row)."""
    path = trial_dir / ROW_FILE
    write_text_atomic(path, json.dumps(row, default=str))
    return path


def objective_value(row: dict[str, Any]) -> float:
    """The accuracy the search maximizes: validation accuracy if there is one, else test."""
    for key in ("val_accuracy", "accuracy"):
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return float(value)
    return 0.0


def trial_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of ``run_dir``: the unpruned references (``reference/row.json``, and one per base
    of a family search, ``reference/MODEL@WIDTH/row.json``), the trials
    (``trials/*/row.json``, in trial order) and the thinner dense baselines
    (``baselines/*.row.json``)."""
    rows = []
    paths = [run_dir / "reference" / "row.json",
             *sorted((run_dir / "reference").glob("*/row.json")),
             *sorted((run_dir / "trials").glob("*/row.json")),
             *sorted((run_dir / "baselines").glob("*.row.json"))]
    for path in paths:
        if not path.is_file():
            continue
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):  # a trial killed while writing: not completed
            continue
    return rows


def results_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with the fixed columns first, then ``hp_*``, then artifact paths."""
    table = pd.DataFrame(list(rows))
    hp = sorted(c for c in table.columns if str(c).startswith("hp_"))
    columns = [*RESULT_COLUMNS, *hp, *ARTIFACT_COLUMNS]
    for column in columns:
        if column not in table.columns:
            table[column] = None
    if len(table):
        table["feasible"] = table["feasible"].fillna(False).astype(bool)
    return table[columns]


def write_results(run_dir: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``run_dir/results.csv`` (write-then-rename) and return its path."""
    path = run_dir / RESULTS_FILE
    write_text_atomic(path, results_frame(rows).to_csv(index=False))
    return path


def best_feasible(table: pd.DataFrame) -> pd.Series | None:
    """The most accurate feasible trial (validation accuracy first, then test), or None."""
    ok = table[(table["status"] == "ok") & table["feasible"].astype(bool)]
    if ok.empty:
        return None
    key = ok["val_accuracy"].fillna(ok["accuracy"]).astype(float)
    return ok.loc[key.idxmax()]
