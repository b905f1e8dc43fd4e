"""The results table of a run folder: one row per trial, written atomically."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from budgetsearch.files import write_text_atomic
from budgetsearch.search.objective import ARTIFACT_COLUMNS, RESULT_COLUMNS

RESULTS_FILE = "results.csv"


def trial_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of ``run_dir``: the unpruned reference (``reference/row.json``), the trials
    (``trials/*/row.json``, in trial order) and the thinner dense baselines
    (``baselines/*.row.json``)."""
    rows = []
    paths = [run_dir / "reference" / "row.json", *sorted((run_dir / "trials").glob("*/row.json")),
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
