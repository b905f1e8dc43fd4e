"""The Optuna engine: a study in SQLite in the run folder, constraints, multi-objective, resume.

Single objective (default): maximize accuracy subject to ``cost − target ≤ 0`` through
``Trial.set_constraint`` (Optuna 5's replacement of ``constraints_func``; TPE by
default), with trial pruning on intermediate accuracy: multi-fidelity with epochs as the
resource (``pruning="sha"``: ``SuccessiveHalvingPruner``; ``"hyperband"``; ``"median"``:
``MedianPruner``; ``"none"``), trials reporting validation accuracy every
:data:`REPORT_EVERY_EPOCHS` epochs. Multi-objective
(``objectives=("accuracy", "latency")``): NSGA-II over accuracy (max) and the cost (min), same
constraint. The storage is ``RUN_DIR/study.db``; open it with
``optuna-dashboard sqlite:///RUN_DIR/study.db``.

With ``candidates`` (a family search, :mod:`budgetsearch.search.families`) each trial samples
its family first (``candidate``), then that family's parameters (``PRUNER.PARAM``); TPE is then
multivariate and grouped, so that it models each family's parameters together.

Resume: the study is loaded by name; trials that finished (complete, pruned or failed) are kept
and not redone; a trial left RUNNING by a killed process is marked FAIL, gets a ``failed`` row
that says it was interrupted, and its slot is re-run (it does not count towards ``trials``).
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from budgetsearch.cost import Target, is_met
from budgetsearch.cost.metrics import ALIASES
from budgetsearch.search.families import Candidate, candidate_settings, suggest_candidate
from budgetsearch.search.fidelity import CANDIDATE_PARAM, PerPrunerPruner
from budgetsearch.search.objective import report_step, run_trial
from budgetsearch.search.results import (
    INTERRUPTED_BY_KILL,
    ROW_FILE,
    empty_row,
    objective_value,
    trial_rows,
    write_results,
    write_row,
)
from budgetsearch.search.settings import TrialSettings
from budgetsearch.search.space import SearchSpace

STUDY_NAME = "budgetsearch"
STUDY_FILE = "study.db"
OBJECTIVES = ("accuracy", "latency_ms", "flops", "params", "activation_volume")
ProgressFn = Callable[[dict[str, Any]], None]
PRUNINGS = ("sha", "hyperband", "median", "none")
#: How often a trial reports its validation accuracy (epochs): the resource's grain.
REPORT_EVERY_EPOCHS = 0.25
#: The ``failure`` note of a trial stopped because the run's time limit came during it.
STOPPED_AT_TIME_LIMIT = "stopped: the run's time limit (--timeout) came during this trial"
#: Successive halving: keep the best third at each rung (rungs at 0.25, 0.75, 2.25, ... epochs of
#: training behind the network, a trial's reference included).
REDUCTION_FACTOR = 3


@dataclass(frozen=True)
class OptunaOptions:
    """Engine settings: trial budget, sampler, objectives, pruning.

    ``seed`` seeds the sampler only; the data split, weight init and training follow
    :attr:`TrialSettings.seed`, so sampler seeds can vary over one split and one reference.
    ``pruning`` picks the early stopping (one of :data:`PRUNINGS`); ``prune=False`` turns it
    off whatever ``pruning`` says (``--no-pruning``).
    """

    trials: int | None = 10
    timeout_s: float | None = None
    sampler: str = "tpe"
    objectives: tuple[str, ...] = ("accuracy",)
    seed: int = 0
    prune: bool = True
    n_startup_trials: int = 3
    pruning: str = "sha"

    def __post_init__(self) -> None:
        known = {name: name for name in OBJECTIVES}
        known.update({alias: canonical for alias, canonical in ALIASES.items()
                      if canonical in OBJECTIVES})
        # Unknown names stay as given and are reported below with the whole list.
        object.__setattr__(self, "objectives",
                           tuple(known.get(str(o).lower(), o) for o in self.objectives))
        if self.pruning not in PRUNINGS:
            raise ValueError(f"pruning must be one of {', '.join(PRUNINGS)}, "
                             f"got {self.pruning!r}")
        if self.sampler not in ("tpe", "random"):
            raise ValueError(f"sampler must be 'tpe' or 'random', got {self.sampler!r}")
        if not self.objectives or self.objectives[0] != "accuracy" or any(
                o not in OBJECTIVES for o in self.objectives) or len(self.objectives) > 2:
            raise ValueError("objectives must be 'accuracy' or 'accuracy,COST' with COST one of "
                             f"{', '.join(OBJECTIVES[1:])}, got {','.join(self.objectives)!r}")
        if self.trials is not None and (isinstance(self.trials, bool) or
                                        not isinstance(self.trials, int) or self.trials < 1):
            raise ValueError(f"trials must be a positive integer (or None with a timeout), "
                             f"got {self.trials!r}")
        if self.timeout_s is not None and not (isinstance(self.timeout_s, (int, float))
                                               and math.isfinite(self.timeout_s)
                                               and self.timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, "
                             f"got {self.timeout_s!r}")
        if self.trials is None and self.timeout_s is None:
            raise ValueError("give trials or timeout (or both), so the search ends")


def _constraint(row: dict[str, Any]) -> float:
    """≤ 0 when the trial meets the target (Optuna's convention); positive otherwise."""
    target = row.get("target_value")
    if target is None or row.get("target_metric") is None:
        return 0.0 if row.get("status") in ("ok", "pruned") else 1.0
    value = row.get(row["target_metric"])
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 1.0
    return 0.0 if is_met(value, float(target)) else float(value) - float(target)


def trial_pruner(options: OptunaOptions) -> Any:
    """The Optuna pruner of ``options`` (multi-fidelity: epochs are the resource, reported in
    hundredths of an epoch by :func:`~budgetsearch.search.objective.run_trial`); successive
    halving and the median rule judge a trial among its own pruner's trials
    (:class:`~budgetsearch.search.fidelity.PerPrunerPruner`)."""
    import optuna

    if not options.prune or options.pruning == "none" or len(options.objectives) > 1:
        return optuna.pruners.NopPruner()
    # Successive halving and the median rule compare a trial with its own pruner's trials only
    # (search/fidelity.py: a pruner mid-pruning against dense networks at equal epochs loses).
    if options.pruning == "median":
        return PerPrunerPruner(optuna.pruners.MedianPruner(
            n_startup_trials=options.n_startup_trials))
    first = report_step(REPORT_EVERY_EPOCHS)
    if options.pruning == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first,
                                              reduction_factor=REDUCTION_FACTOR)
    return PerPrunerPruner(optuna.pruners.SuccessiveHalvingPruner(
        min_resource=first, reduction_factor=REDUCTION_FACTOR))


def sampler_seed(seed: int, finished: int) -> int:
    """The sampler's seed after ``finished`` trials: ``seed`` for a new study.

    A sampler re-created with the run's own seed on ``--resume`` would draw its first
    configurations again (RandomSampler, and TPE's random start-up trials): seeding it from
    (seed, trials already in the study) makes a resumed run draw new ones, and the same resume
    repeat itself.

    Example:
        >>> sampler_seed(7, 0), sampler_seed(7, 3) == sampler_seed(7, 3) != 7
        (7, True)
    """
    if finished == 0:
        return seed
    import hashlib

    digest = hashlib.sha256(f"{seed}:{finished}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _study_trial_count(storage: Any) -> int:
    """Trials already in the study (any state); 0 when there is no study yet."""
    try:
        study_id = storage.get_study_id_from_name(STUDY_NAME)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


_SQLITE_HEADER = b"SQLite format 3\x00"
_RESUME_ADVICE = ("put back the study.db of that run, or start a new run (another --out; the "
                  "finished trials stay in this folder)")


def _study_states(path: Path) -> dict[int, tuple[str, bool]]:
    """``{trial number: (state, has a 'status' user attribute)}`` of the run's study, read
    without writing (SQL only: Optuna's own storage would create the tables in an empty file).

    Raises:
        ValueError: the file is empty, not SQLite, or damaged (the message names it).
    """
    import sqlite3

    size = path.stat().st_size
    with path.open("rb") as stream:
        header = stream.read(len(_SQLITE_HEADER))
    if size == 0 or header != _SQLITE_HEADER:
        what = "empty (0 bytes)" if size == 0 else f"not an SQLite database ({size} bytes)"
        raise ValueError(f"{path} is {what}")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
    except sqlite3.Error as error:
        raise ValueError(f"{path} cannot be opened ({error})") from None
    try:
        check = connection.execute("PRAGMA quick_check").fetchone()
        if not check or check[0] != "ok":
            raise ValueError(f"{path} is damaged (sqlite quick_check: {check and check[0]})")
        tables = {r[0] for r in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "studies" not in tables:
            return {}
        rows = connection.execute(
            "SELECT t.number, t.state, EXISTS (SELECT 1 FROM trial_user_attributes a WHERE "
            "a.trial_id = t.trial_id AND a.key = 'status') FROM trials t JOIN studies s ON "
            "s.study_id = t.study_id WHERE s.study_name = ?", (STUDY_NAME,)).fetchall()
    except sqlite3.DatabaseError as error:
        raise ValueError(f"{path} is damaged or truncated ({error})") from None
    finally:
        connection.close()
    return {int(number): (str(state), bool(status)) for number, state, status in rows}


_TRIAL_FOLDER = re.compile(r"^optuna-(\d+)$")


def check_study(run_dir: Path) -> None:
    """Before a resume writes anything: the study and the trial folders must agree.

    Every trial folder with a ``row.json`` must be a trial of ``study.db``, and every trial the
    study counts as finished (complete, pruned, or failed with a row) must have its row (and an
    ``ok`` row its ``model.pt``). A study that is missing, empty or damaged while finished
    trials exist would start over and overwrite them: refused.

    Raises:
        ValueError: one line naming the file or the trial that disagrees.
    """
    rows: dict[int, Path] = {}
    for folder in sorted((run_dir / "trials").glob("optuna-*")):
        match = _TRIAL_FOLDER.match(folder.name)
        if match and (folder / ROW_FILE).is_file():
            rows[int(match[1])] = folder
    path = run_dir / STUDY_FILE
    where = f"cannot resume {run_dir}"
    if not path.is_file():
        if rows:
            raise ValueError(f"{where}: {path} is missing but {len(rows)} finished trial(s) are "
                             f"in {run_dir / 'trials'}; {_RESUME_ADVICE}")
        return
    try:
        states = _study_states(path)
    except ValueError as error:
        if not rows and path.stat().st_size == 0:
            return  # killed before the study was made: nothing to lose
        if not rows:
            raise ValueError(f"{where}: {error}; no trial has finished yet: delete it to start "
                             "the study again") from None
        raise ValueError(f"{where}: {error}; {len(rows)} finished trial(s) would be overwritten; "
                         f"{_RESUME_ADVICE}") from None
    unknown = sorted(set(rows) - set(states))
    if unknown:
        raise ValueError(f"{where}: {rows[unknown[0]] / ROW_FILE} is a finished trial that "
                         f"{path} does not know ({len(unknown)} such); {_RESUME_ADVICE}")
    for number, (state, has_status) in sorted(states.items()):
        finished = state in ("COMPLETE", "PRUNED") or (state == "FAIL" and has_status)
        folder = run_dir / "trials" / f"optuna-{number:04d}"
        if finished and number not in rows:
            raise ValueError(f"{where}: {path} holds trial {number} as {state.lower()} but "
                             f"{folder / ROW_FILE} is missing; {_RESUME_ADVICE}")
        if number in rows:
            try:
                row = json.loads((folder / ROW_FILE).read_text())
            except (OSError, ValueError) as error:
                raise ValueError(f"{where}: {folder / ROW_FILE} is unreadable ({error})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: {folder / ROW_FILE} is not a results row")
            # the file the row names: model.pt, or the deployable one where pickle could not
            # name the network's class (none where it could be saved in no form)
            saved = row.get("model_path", "model.pt")
            if row.get("status") == "ok" and saved and not (
                    folder / Path(str(saved)).name).is_file():
                raise ValueError(f"{where}: trial {folder.name} is recorded ok but "
                                 f"{folder / Path(str(saved)).name} is missing")


def make_study(run_dir: Path, options: OptunaOptions, *, resume: bool,
               conditional: bool = False) -> Any:
    """Create (or, with ``resume``, load) the study in ``run_dir/study.db`` (``conditional``:
    the parameters depend on a sampled family, so TPE models them jointly per family)."""
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / STUDY_FILE}")
    multi = len(options.objectives) > 1
    seed = sampler_seed(options.seed, _study_trial_count(storage) if resume else 0)
    if options.sampler == "random":
        sampler: Any = optuna.samplers.RandomSampler(seed=seed)
    elif multi:
        sampler = optuna.samplers.NSGAIISampler(seed=seed)
    else:
        extra = {"multivariate": True, "group": True} if conditional else {}
        with warnings.catch_warnings():  # multivariate/group are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed,
                                                 n_startup_trials=options.n_startup_trials,
                                                 **extra)
    pruner = trial_pruner(options)
    directions = ["maximize"] + ["minimize"] * (len(options.objectives) - 1)
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, sampler=sampler,
                                pruner=pruner, directions=directions, load_if_exists=resume)
    if resume:
        for trial in study.get_trials(deepcopy=False,
                                      states=(optuna.trial.TrialState.RUNNING,)):
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            _record_interrupted(run_dir, trial)
    return study


def _record_interrupted(run_dir: Path, trial: Any) -> None:
    """Give a trial a killed process left RUNNING one ``failed`` row (its slot is re-run).

    A row the trial wrote before the kill (it finished, but the study was not told) is kept as
    it is: the work is not lost, and the trial id stays unique.
    """
    trial_id = f"optuna-{trial.number:04d}"
    trial_dir = run_dir / "trials" / trial_id
    if (trial_dir / ROW_FILE).is_file():
        return
    config = run_dir / "config.yaml"
    settings = TrialSettings()
    pruner = "?"
    if config.is_file():
        import yaml

        data = yaml.safe_load(config.read_text()) or {}
        pruner = str((data.get("space") or {}).get("pruner", "?"))
        if "candidate" in trial.params:  # a family search: PRUNER:MODEL@WIDTH
            pruner = str(trial.params["candidate"]).split(":", 1)[0]
        known = {k: v for k, v in (data.get("settings") or {}).items()
                 if k in TrialSettings.__dataclass_fields__ and k != "target"}
        raw_target = (data.get("settings") or {}).get("target")
        target = (Target(**raw_target) if isinstance(raw_target, dict) else None)
        settings = TrialSettings(**known, target=target)
    row = empty_row(trial_id, "optuna", settings, pruner, dict(trial.params))
    row.update(failure=INTERRUPTED_BY_KILL)
    write_row(trial_dir, row)


def finished_trials(study: Any) -> int:
    """Trials that ended (complete, pruned, or failed with a row written) and are not redone."""
    import optuna

    states = optuna.trial.TrialState
    done = study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.FAIL))
    return sum(1 for t in done if t.state != states.FAIL or "status" in t.user_attrs)


def enqueue_dense_first(study: Any, candidates: Sequence[Candidate]) -> list[str]:
    """Queue one trial of each dense candidate, cheapest first, before the sampler's own draws;
    returns their keys.

    The dense networks that meet the target are what a pruned one has to beat: a short search
    whose sampler never drew them (10 trials over 5 families drew none in a first run) could
    return a pruned network a thinner dense one beats. Cheapest first, because successive
    halving cannot stop the first trial of a pruner (nothing to compare it with).
    """
    dense = sorted((c for c in candidates if not c.starts_from_reference),
                   key=lambda c: (c.base_cost, c.key))
    for candidate in dense:
        study.enqueue_trial({CANDIDATE_PARAM: candidate.key}, skip_if_exists=True)
    return [c.key for c in dense]


def run_optuna(space: SearchSpace | None, settings: TrialSettings, run_dir: Path,
               options: OptunaOptions, *, resume: bool = False,
               progress: ProgressFn | None = None,
               candidates: Sequence[Candidate] | None = None,
               deadline: float | None = None) -> list[dict[str, Any]]:
    """Run (or resume) the search; returns every trial's row, also in ``run_dir/results.csv``.

    With ``trials=N`` the study ends with N finished trials in total (a resumed run only adds
    the missing ones). With ``candidates`` (a family search) ``space`` is unused: each trial
    samples its family, then that family's space. ``deadline`` (a :func:`time.monotonic`
    time; replaces ``options.timeout_s``): no trial starts after it, and a trial running then
    stops at its next report (status ``pruned``, ``failure`` :data:`STOPPED_AT_TIME_LIMIT`), so
    that the run ends near its time limit whatever the trial in flight was going to cost.
    """
    import optuna

    if candidates is None and space is None:
        raise ValueError("run_optuna needs a space or candidates")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = make_study(run_dir, options, resume=resume, conditional=candidates is not None)
    multi = len(options.objectives) > 1
    interrupted: list[int] = []
    late: set[int] = set()

    def objective(trial: optuna.Trial) -> Any:
        trial_id = f"optuna-{trial.number:04d}"
        if (run_dir / "trials" / trial_id / ROW_FILE).is_file():
            # The study and the folder disagree (check_study refuses that before a resume):
            # never overwrite a finished trial's files.
            raise ValueError(f"{run_dir / 'trials' / trial_id} already holds a finished trial; "
                             f"{run_dir / STUDY_FILE} does not match this run folder")
        trial_dir = run_dir / "trials" / trial_id
        reported: set[int] = set()

        def report(step: int, accuracy: float) -> bool:
            if deadline is not None and time.monotonic() >= deadline:
                late.add(trial.number)
                return True
            if multi or math.isnan(accuracy) or step in reported:
                return False
            reported.add(step)
            trial.report(accuracy, step)
            return trial.should_prune()

        try:
            if candidates is not None:
                candidate, params = suggest_candidate(trial, candidates)
                trial.set_user_attr("family", candidate.key)
                trial_space = candidate.space
                try:  # a pruned family's base reference is trained the first time it is used
                    trial_settings = candidate_settings(candidate, settings, run_dir)
                except RuntimeError as error:
                    trial_settings = replace(settings, model=candidate.model,
                                             width=candidate.width)
                    row = empty_row(trial_id, "optuna", trial_settings, candidate.pruner, params)
                    row.update(failure=str(error))
                    trial_dir.mkdir(parents=True, exist_ok=True)
                    write_row(trial_dir, row)
                    trial.set_user_attr("status", "failed")
                    write_results(run_dir, trial_rows(run_dir))
                    if progress is not None:
                        progress(row)
                    return float("nan") if not multi else [float("nan")] * len(
                        options.objectives)
            else:
                assert space is not None
                params, trial_space, trial_settings = space.suggest(trial), space, settings
            row = run_trial(params, trial_settings, trial_dir, trial_id=trial_id,
                            engine="optuna", space=trial_space, report=report,
                            report_every=REPORT_EVERY_EPOCHS)
        except KeyboardInterrupt:
            # Ctrl-C: end this trial as failed (not counted, so --resume re-runs the slot) and
            # stop the study; re-raised below. Raising here would make Optuna log a traceback.
            interrupted.append(trial.number)
            study.stop()
            return float("nan") if not multi else [float("nan")] * len(options.objectives)
        if trial.number in late and row["status"] == "pruned":
            row["failure"] = STOPPED_AT_TIME_LIMIT
            write_row(trial_dir, row)
        trial.set_user_attr("constraint", _constraint(row))
        trial.set_constraint("cost_minus_target", _constraint(row))  # ≤ 0: feasible
        trial.set_user_attr("status", row["status"])
        write_results(run_dir, trial_rows(run_dir))
        if progress is not None:
            progress(row)
        if row["status"] == "pruned":
            raise optuna.TrialPruned()
        if row["status"] == "failed":
            return float("nan") if not multi else [float("nan")] * len(options.objectives)
        values = [objective_value(row) if row["status"] == "ok" else 0.0]
        for name in options.objectives[1:]:
            cost = row.get(name)
            values.append(float(cost) if cost is not None else float("inf"))
        return values[0] if not multi else values

    if candidates is not None and not resume:
        enqueue_dense_first(study, candidates)
    remaining = None
    if options.trials is not None:
        remaining = max(0, options.trials - finished_trials(study))
    def stop_at_deadline(study: optuna.Study, trial: Any) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            study.stop()

    timeout = options.timeout_s if deadline is None else deadline - time.monotonic()
    try:
        if remaining != 0 and (timeout is None or timeout > 0):
            # Optuna's timeout is counted by its own clock; the callback holds the deadline.
            study.optimize(objective, n_trials=remaining, timeout=timeout,
                           catch=(), gc_after_trial=True, callbacks=[stop_at_deadline])
    finally:  # Ctrl-C included: the table holds every trial that ended, the interrupted one too
        rows = trial_rows(run_dir)
        write_results(run_dir, rows)
    if interrupted:
        raise KeyboardInterrupt(f"during trial optuna-{interrupted[0]:04d}")
    return rows
