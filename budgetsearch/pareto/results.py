"""Reading a run folder's results table and config, and appending rows to it atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

RESULTS_FILE = "results.csv"
CONFIG_FILE = "config.yaml"


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """The run's ``results.csv`` as a DataFrame.

    Raises:
        FileNotFoundError: the folder or its results table is missing (the message says which).
        ValueError: the table lacks an ``accuracy`` column.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist")
    path = run / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run} has no {RESULTS_FILE}; run 'budgetsearch run' or "
                                f"'budgetsearch baselines --run {run}' first")
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        table = pd.DataFrame()
    if "accuracy" not in table.columns:
        raise ValueError(f"{path} has no 'accuracy' column (columns: "
                         f"{', '.join(map(str, table.columns)) or 'none'})")
    return table


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's resolved ``config.yaml`` ({} when there is none)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text())
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of option: value")
    return data


def write_csv_atomic(table: pd.DataFrame, path: str | Path) -> None:
    """Write-then-rename, so readers never see a half-written table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            table.to_csv(stream, index=False)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def append_rows(run_dir: str | Path, rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Append rows to ``run_dir/results.csv`` (created if absent), atomically; returns the table.

    The table is re-read just before writing so rows written meanwhile by others are kept.
    """
    path = Path(run_dir) / RESULTS_FILE
    new = pd.DataFrame(list(rows))
    if path.is_file():
        try:
            old = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            old = pd.DataFrame()
        table = pd.concat([old, new], ignore_index=True) if not old.empty else new
    else:
        table = new
    write_csv_atomic(table, path)
    return table
