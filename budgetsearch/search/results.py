"""The results table of a run folder: one row per trial, its columns, written atomically."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from budgetsearch.files import write_text_atomic
from budgetsearch.pareto.results import resolve_artifact
from budgetsearch.search.settings import TrialSettings

RESULTS_FILE = "results.csv"
ROW_FILE = "row.json"
RESULT_COLUMNS = (
    "trial_id", "engine", "kind", "family", "pruner", "model", "width", "status", "failure",
    "accuracy", "val_accuracy", "params", "flops", "activation_volume", "memory_bytes",
    "latency_ms", "device", "latency_scale", "target_metric", "target_value", "feasible",
    "seconds",
)
ARTIFACT_COLUMNS = ("model_path", "pruned_config_path", "report_path")
INTERRUPTED_BY_USER = "interrupted by the user (Ctrl-C); its slot is re-run on --resume"
INTERRUPTED_BY_KILL = ("interrupted: the process stopped during this trial (killed or crashed); "
                       "its slot was re-run on --resume")


def run_relative(path: Path, folder: Path) -> str:
    """``path`` as the results table records it: relative to the run folder, which is the
    parent of ``folder`` (a trial's ``trials/ID`` or the run's ``reference``), so that a moved
    run folder still finds its files; absolute where ``folder`` is not in a run folder.

    Example:
        >>> run_relative(Path("runs/a/trials/t0/model.pt"), Path("runs/a/trials/t0"))
        'trials/t0/model.pt'
        >>> run_relative(Path("runs/a/reference/wrn-16-1@2/model.pt"),
        ...              Path("runs/a/reference/wrn-16-1@2"))
        'reference/wrn-16-1@2/model.pt'
    """
    folder = Path(folder)
    if folder.parent.name in ("trials", "reference"):  # trials/ID, reference/MODEL@WIDTH
        run_dir = folder.parent.parent
    elif folder.name == "reference":
        run_dir = folder.parent
    else:
        return str(Path(path).resolve())
    try:
        return Path(path).resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(Path(path).resolve())


def resolve_row_path(value: Any, run_dir: Path | str) -> Path | None:
    """Where a row's artifact path points: relative to ``run_dir`` (as written since paths
    became run-relative), else an old absolute or working-directory-relative path
    (:func:`~budgetsearch.pareto.results.resolve_artifact`). None for an empty value."""
    return resolve_artifact(value, run_dir)


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
               # the run's calibration, so that a re-price on this device applies it too
               latency_scale=settings.latency_scale if settings.device_profile else None,
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


def failure_summary(table: pd.DataFrame, best: pd.Series | dict[str, Any] | None) -> str | None:
    """Why a run has nothing to show: every trial failed, or none met the target (with no
    feasible reference); the first failure's reason in trial order. None for a run with a
    result and at least one trial that did not fail.

    Example:
        >>> table = pd.DataFrame({"trial_id": ["t0", "t1"], "kind": ["pruned"] * 2,
        ...                       "status": ["failed"] * 2, "failure": ["ValueError: a", "b"]})
        >>> failure_summary(table, None)
        'every trial failed (2 of 2); the first, t0: ValueError: a'
    """
    if table is None or not len(table) or "status" not in table:
        return None if best is not None else "no trial ran"
    kind = table["kind"].astype(str) if "kind" in table else pd.Series("pruned", table.index)
    trials = table[kind == "pruned"]
    failed = trials[trials["status"].astype(str) == "failed"]
    if len(trials) and len(failed) == len(trials):
        first = failed.iloc[0]
        return (f"every trial failed ({len(failed)} of {len(trials)}); the first, "
                f"{first['trial_id']}: {first.get('failure')}")
    if best is not None:
        return None
    why = trials[trials["status"].astype(str).isin(["failed", "infeasible"])]
    if not len(why):
        return f"no trial met the target ({len(trials)} trial(s), none finished feasible)"
    first = why.iloc[0]
    return (f"no trial met the target ({len(trials)} trial(s)); the first failure, "
            f"{first['trial_id']} ({first['status']}): {first.get('failure')}")


def load_row_model(row: pd.Series | dict[str, Any], run_dir: Path, *,
                   prefer_deployable: bool = False) -> Any:
    """The network a results row saved (``model_path`` read against ``run_dir``), in eval mode.

    A trial's (or the reference's) folder holds budgetsearch's ``model.pt`` and the plain
    PyTorch ``model.ts`` (:mod:`budgetsearch.models.deploy`); ``prefer_deployable`` reads
    ``model.ts`` first, else ``model.pt`` is read first and ``model.ts`` where ``model.pt``
    is refused (a network of the user's own classes). A thinner dense baseline saved its
    weights only: it is rebuilt from its configuration (model spec and width).

    Raises:
        FileNotFoundError / ValueError: no saved network, or none that loads.
    """
    import torch

    from budgetsearch.models import build_model
    from budgetsearch.models.deploy import MODEL_FILE, deploy_info, load_deployable
    from budgetsearch.models.files import load_model_file

    path = resolve_row_path(row.get("model_path"), run_dir)
    if path is None:
        raise ValueError(f"trial {row.get('trial_id')} of {run_dir} saved no model")
    if row.get("kind") == "baseline":
        config_path = resolve_row_path(row.get("pruned_config_path"), run_dir)
        try:
            config = json.loads(Path(str(config_path)).read_text())
            model = build_model(config["model"], num_classes=int(config["num_classes"]),
                                in_channels=int(config["input_shape"][0]),
                                width_multiplier=float(config.get("width", 1.0)))
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (OSError, KeyError, TypeError, json.JSONDecodeError, RuntimeError) as error:
            raise ValueError(f"baseline {row.get('trial_id')} of {run_dir} does not load "
                             f"({type(error).__name__}: {error})") from None
        return model.eval()
    deployable = deploy_info(path.parent) is not None
    if path.name != MODEL_FILE and deployable:  # no model.pt: pickle could not name its class
        return load_deployable(path.parent)
    if prefer_deployable and deployable:
        try:
            return load_deployable(path.parent)
        except FileNotFoundError:
            pass  # deploy.json says why there is none: read model.pt
    try:
        return load_model_file(path).eval()
    except (ValueError, FileNotFoundError) as error:
        if not deployable:
            raise
        try:
            return load_deployable(path.parent)
        except (ValueError, FileNotFoundError):
            raise error from None


def select_trial(run_dir: Path | str, trial: str = "best") -> dict[str, Any]:
    """The results row of a run's trial: ``"best"`` (the most accurate feasible one, the
    reference included) or a ``trial_id`` of ``results.csv``; it must have saved a network.

    Raises:
        ValueError: not a run folder, no such trial (the message lists the ids with a network),
            no feasible trial, or a trial that saved no network (it did not finish "ok").
    """
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_FILE
    if not run_dir.is_dir():
        raise ValueError(f"run folder {run_dir} does not exist")
    if not path.is_file():
        raise ValueError(f"{run_dir} holds no {RESULTS_FILE}: not a run folder")
    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
        raise ValueError(f"{path} is not a results table ({error})") from None
    for column in ("trial_id", "status", "feasible", "model_path"):
        if column not in table:
            raise ValueError(f"{path} has no {column!r} column: not a search run's results")
    saved = table[table["model_path"].notna()]
    if trial == "best":
        best = best_feasible(table)
        if best is None or not isinstance(best.get("model_path"), str):
            raise ValueError(f"no trial of {run_dir} met the target with a saved model")
        return best.to_dict()
    match = table[table["trial_id"].astype(str) == str(trial)]
    ids = ", ".join(saved["trial_id"].astype(str)) or "none"
    if match.empty:
        raise ValueError(f"trial {trial!r} is not in {path}; trials with a saved network: {ids}")
    row = match.iloc[0]
    if not isinstance(row.get("model_path"), str):
        raise ValueError(f"trial {trial!r} of {run_dir} saved no network (status "
                         f"{row['status']}); trials with a saved network: {ids}")
    return row.to_dict()
