"""Early stopping within a pruner's own trials, and the run's time limit (tiny, synthetic)."""

from __future__ import annotations

import itertools
from pathlib import Path

import optuna
import pytest

from budgetsearch.cost import Target
from budgetsearch.search import optuna_driver
from budgetsearch.search.fidelity import PerPrunerPruner, pruner_group
from budgetsearch.search.optuna_driver import (
    STOPPED_AT_TIME_LIMIT,
    OptunaOptions,
    run_optuna,
    trial_pruner,
)
from budgetsearch.search.settings import TrialSettings
from budgetsearch.search.space import load_space

FAMILIES = ["dense:m@1", "bar:m@2"]


def _stops(rule: optuna.pruners.BasePruner, runs: list[tuple[str, float]]) -> list[bool]:
    """Report each (family, value) at step 1 in turn; whether the rule stopped each."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=rule)
    stops = []
    for family, value in runs:
        study.enqueue_trial({"candidate": family})
        trial = study.ask()
        trial.suggest_categorical("candidate", FAMILIES)
        trial.report(value, 1)
        stops.append(trial.should_prune())
        study.tell(trial, value)
    return stops


def _sha() -> optuna.pruners.SuccessiveHalvingPruner:
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4)


def test_a_pruner_is_judged_among_its_own_trials_only() -> None:
    runs = [("dense:m@1", 0.9)] * 3 + [("bar:m@2", 0.5), ("dense:m@1", 0.5)]
    # The oracle: plain successive halving stops both weak trials, whatever their pruner.
    assert _stops(_sha(), runs) == [False, False, False, True, True]
    # Per pruner: the lone BAR trial has no trial of its own to lose to; the weak dense one is
    # still stopped by the dense ones, as plain successive halving would.
    assert _stops(PerPrunerPruner(_sha()), runs) == [False, False, False, False, True]


def test_group_is_the_candidate_pruner_and_hyperband_is_refused() -> None:
    trial = optuna.trial.create_trial(params={"candidate": "bar:wrn-16-1@2"},
                                      distributions={"candidate": optuna.distributions.
                                                     CategoricalDistribution(["bar:wrn-16-1@2"])},
                                      value=0.5)
    assert pruner_group(trial) == "bar"
    assert pruner_group(optuna.trial.create_trial(value=0.5)) == ""
    with pytest.raises(TypeError, match="HyperbandPruner"):
        PerPrunerPruner(optuna.pruners.HyperbandPruner())
    assert isinstance(trial_pruner(OptunaOptions(pruning="sha")).rule,
                      optuna.pruners.SuccessiveHalvingPruner)


class _Clock:
    """time.monotonic for the driver: its first reading is the start, every later one is far
    past any deadline (so the trial in flight meets the time limit at its first report)."""

    def __init__(self) -> None:
        self.calls = itertools.count()

    def monotonic(self) -> float:
        return 1000.0 if next(self.calls) == 0 else 1e9


def test_the_trial_in_flight_stops_at_the_time_limit(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optuna_driver, "time", _Clock())
    settings = TrialSettings(model="wrn-10-1", dataset="synthetic", train_subset=32,
                             val_fraction=0.25, batch_size=8, threads=1, reference_epochs=0,
                             target=Target.parse("params", "50k"))
    rows = run_optuna(load_space("magnitude"), settings, tmp_path,
                      OptunaOptions(trials=3, sampler="random", pruning="none"),
                      deadline=1000.0 + 600)
    assert len(rows) == 1  # no trial starts after the limit
    assert rows[0]["status"] == "pruned" and rows[0]["failure"] == STOPPED_AT_TIME_LIMIT


def test_a_limit_already_past_starts_no_trial(tmp_path: Path) -> None:
    settings = TrialSettings(model="wrn-10-1", dataset="synthetic", train_subset=32,
                             target=Target.parse("params", "50k"), reference_epochs=0)
    rows = run_optuna(load_space("magnitude"), settings, tmp_path,
                      OptunaOptions(trials=3, sampler="random"),
                      deadline=optuna_driver.time.monotonic() - 1)
    assert rows == []
