"""Reading a run folder's results table and config, and appending rows to it atomically."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

RESULTS_FILE = "results.csv"
CONFIG_FILE = "config.yaml"

#: Columns holding a path to a trial's files, written relative to the run folder or to the
#: directory the run was started from.
ARTIFACT_COLUMNS: tuple[str, ...] = ("pruned_config_path", "model_path", "report_path")


#: Columns that hold numbers (a text value in one is refused, naming the file, column and row).
NUMBER_COLUMNS: tuple[str, ...] = (
    "accuracy", "val_accuracy", "params", "flops", "activation_volume", "memory_bytes",
    "latency_ms", "target_value", "seconds")


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """The run's ``results.csv`` as a DataFrame.

    Raises:
        FileNotFoundError: the folder or its results table is missing (the message says which).
        ValueError: the table lacks an ``accuracy`` column, a number column holds text, or an
            accuracy lies outside [0, 1].
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
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable CSV table "
                         f"({' '.join(str(error).split())})") from None
    if "accuracy" not in table.columns:
        raise ValueError(f"{path} has no 'accuracy' column (columns: "
                         f"{', '.join(map(str, table.columns)) or 'none'})")
    for column in NUMBER_COLUMNS:
        if column not in table.columns:
            continue
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = table[column].notna() & numbers.isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise ValueError(f"{path}: column {column!r} must hold numbers, got "
                             f"{table[column].iloc[row]!r} (row {row + 1})")
        table[column] = numbers
    accuracy = table["accuracy"]
    outside = accuracy.notna() & ~accuracy.between(0.0, 1.0)
    if outside.any():
        row = int(outside.to_numpy().nonzero()[0][0])
        raise ValueError(f"{path}: column 'accuracy' must hold fractions in [0, 1], got "
                         f"{accuracy.iloc[row]!r} (row {row + 1})")
    return table


def resolve_artifact(value: Any, run_dir: str | Path | None) -> Path | None:
    """Where a row's artifact path points, reading a relative path against its run folder.

    A search run records paths as the run was started (``runs/sweep/trials/0/x.json`` from the
    repository root), ``baselines`` relative to the run (``baselines/x.json``), and a run folder
    may have been moved since. Tried in order: ``run_dir / path``; ``path`` itself (from the
    working directory); the longest tail of ``path`` found under ``run_dir``
    (``trials/0/x.json``). None for an empty value; an unresolvable path is returned as
    ``run_dir / path`` so that the error names a place the file was looked for.

    Example:
        >>> resolve_artifact("trials/0/c.json", "runs/a").as_posix()  # nothing on disk
        'runs/a/trials/0/c.json'
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
        return None
    path = Path(str(value))
    if path.is_absolute() or run_dir is None:
        return path
    base = Path(run_dir)
    if (base / path).exists():
        return base / path
    if path.exists():
        return path
    for start in range(1, len(path.parts)):
        tail = base.joinpath(*path.parts[start:])
        if tail.exists():
            return tail
    return base / path


def run_label(run_dirs: Iterable[str | Path]) -> list[str]:
    """A short distinct name per run folder: its name, or more of its path where names clash.

    Example:
        >>> run_label(["x/bar", "y/erf", "z/erf"])
        ['bar', 'y/erf', 'z/erf']
    """
    paths = [Path(p) for p in run_dirs]

    def tail(path: Path, depth: int) -> str:
        return Path(*path.parts[-depth:]).as_posix() if path.parts else str(path)

    labels = []
    for path in paths:
        depth = 1
        # Lengthen this path's tail until no other folder ends the same way.
        while depth < len(path.parts) and any(
                tail(q, depth) == tail(path, depth) for q in paths if q is not path):
            depth += 1
        labels.append(tail(path, depth))
    return labels


def load_runs(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """The ``results.csv`` of several run folders as one table (e.g. a BAR run and an erf run).

    Adds ``run`` (a short distinct name per folder, see :func:`run_label`) and ``run_dir`` (the
    folder as given), and rewrites the artifact paths (:data:`ARTIFACT_COLUMNS`) to where they
    resolve (:func:`resolve_artifact`), so that rows of different runs, whose paths were
    recorded relative to different folders, can be read from one place. Columns missing in a
    run are NaN in its rows.

    Raises:
        ValueError: no run folder, or the same folder twice.
        FileNotFoundError / ValueError: as :func:`load_results`, for the folder at fault.
    """
    if not run_dirs:
        raise ValueError("run_dirs must name at least one run folder")
    resolved = [Path(r).resolve() for r in run_dirs]
    twice = sorted({str(r) for r in run_dirs if resolved.count(Path(r).resolve()) > 1})
    if twice:
        raise ValueError(f"each run folder may be given once, got {', '.join(twice)} twice")
    frames = []
    for run_dir, label in zip(run_dirs, run_label(run_dirs), strict=True):
        table = load_results(run_dir)
        table = table.copy()
        for column in ARTIFACT_COLUMNS:
            if column in table:
                table[column] = [
                    None if (path := resolve_artifact(v, run_dir)) is None else str(path)
                    for v in table[column]]
        table.insert(0, "run_dir", str(run_dir))
        table.insert(0, "run", label)
        frames.append(table)
    frames = [f for f in frames if not f.empty] or frames[:1]
    return pd.concat(frames, ignore_index=True, sort=False)


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's resolved ``config.yaml`` ({} when there is none)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        raise ValueError(f"{path} is not valid YAML{at}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} cannot be read ({error})") from None
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
