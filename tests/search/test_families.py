"""Family search: candidates priced and filtered, pruned only from bases over the target, the
winning family's margin, multi-fidelity stopping, per-epoch reports (tiny, synthetic)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from budgetsearch.cli import main
from budgetsearch.cost import Target, layer_inventory, load_profile
from budgetsearch.data import load_dataset
from budgetsearch.models import build_model
from budgetsearch.pruners import BudgetInfeasible, build_pruner
from budgetsearch.search.families import (
    candidate_bases,
    depth_variants,
    family_outcome,
    plan_candidates,
)
from budgetsearch.search.fidelity import PerPrunerPruner
from budgetsearch.search.objective import run_trial
from budgetsearch.search.optuna_driver import OptunaOptions, make_study, trial_pruner
from budgetsearch.search.request import RunRequest
from budgetsearch.search.runner import run_search
from budgetsearch.search.settings import TrialSettings
from budgetsearch.search.space import load_space
from budgetsearch.train import TrainConfig, train, train_phases

TINY = dict(model="wrn-10-1", dataset="synthetic", train_subset=32, val_fraction=0.25,
            batch_size=16, threads=1)
WIDTHS = (0.5, 1.0, 2.0)


def _params(model: str, width: float) -> float:
    """The oracle: the cost model's count of the unpruned network."""
    net = build_model(model, width_multiplier=width)
    return float(layer_inventory(net, torch.zeros(1, 1, 28, 28)).total_params)


def test_bases_are_widths_and_registered_depth_siblings() -> None:
    assert depth_variants("wrn-16-1") == ["wrn-10-1", "wrn-22-1"]
    assert depth_variants("resnet-32") == ["resnet-20", "resnet-56"]
    bases = candidate_bases(TrialSettings(model="wrn-10-1"), widths=WIDTHS)
    assert bases == [("wrn-10-1", 0.5), ("wrn-10-1", 1.0), ("wrn-10-1", 2.0), ("wrn-16-1", 1.0)]
    with pytest.raises(ValueError, match="widths must be"):
        candidate_bases(TrialSettings(model="wrn-10-1"), widths=(0.0,))


@pytest.mark.parametrize("limit", [100_000, 250_000])
def test_candidates_dense_only_where_the_base_meets_the_target(limit: int) -> None:
    settings = TrialSettings(**TINY)
    target = Target("params", float(limit))
    plan = plan_candidates(settings, target, None, [load_space("bar")], widths=WIDTHS)
    expected = set()
    for model, width in candidate_bases(settings, WIDTHS):
        cost = _params(model, width)
        assert plan.base_costs[f"{model}@{width:g}"] == pytest.approx(cost)
        expected.add(f"{'dense' if cost <= limit else 'bar'}:{model}@{width:g}")
    assert {c.key for c in plan.candidates} == expected
    # a pruned candidate only from a base over the target, a dense one only within it
    for candidate in plan.candidates:
        assert (candidate.pruner == "dense") == (candidate.base_cost <= limit)


def test_unreachable_target_refused_with_the_minimum() -> None:
    settings = TrialSettings(**TINY)
    jetson = load_profile("jetson")
    target = Target("latency_ms", 0.01)
    floors = []
    for model, width in candidate_bases(settings, WIDTHS):
        net = build_model(model, width_multiplier=width)
        inventory = layer_inventory(net, torch.zeros(1, 1, 28, 28))
        floors.append(inventory.price(profile=jetson).latency_ms)  # dense: the whole network
        pruner = build_pruner("bar", target=target, profile=jetson)
        try:
            pruner.prepare(net, torch.zeros(1, 1, 28, 28))
        except BudgetInfeasible as error:
            floors.append(error.minimum)
    with pytest.raises(ValueError, match="below what any candidate can reach") as caught:
        plan_candidates(settings, target, jetson, [load_space("bar")], widths=WIDTHS)
    assert f"ask for at least {target.describe(min(floors))}" in str(caught.value)


def test_family_outcome_margin_is_best_minus_best_dense() -> None:
    table = pd.DataFrame([
        dict(kind="pruned", family="dense:m@1", pruner="dense", status="ok", feasible=True,
             accuracy=0.60, val_accuracy=0.62),
        dict(kind="pruned", family="dense:m@0.5", pruner="dense", status="ok", feasible=True,
             accuracy=0.58, val_accuracy=0.55),
        dict(kind="pruned", family="bar:m@2", pruner="bar", status="ok", feasible=True,
             accuracy=0.70, val_accuracy=0.71),
        dict(kind="pruned", family="bar:m@2", pruner="bar", status="pruned", feasible=False,
             accuracy=None, val_accuracy=0.90),
        dict(kind="reference", family="reference:m@2", pruner=None, status="ok", feasible=False,
             accuracy=0.80, val_accuracy=0.80),
    ])
    outcome = family_outcome(table)
    assert outcome is not None
    assert (outcome.winner, outcome.dense) == ("bar:m@2", "dense:m@1")
    assert outcome.margin == pytest.approx(0.70 - 0.60)
    assert "+0.1000 over the best dense network" in outcome.describe()


def test_non_binding_target_prunes_only_wider_bases(tmp_path: Path) -> None:
    # wrn-10-1 (77,562 parameters) meets 100k: pruning it would only fine-tune it, so BAR
    # prunes the wider/deeper bases down to the target and the dense ones compete beside them.
    settings = TrialSettings(**TINY, target=Target.parse("params", "100k"),
                             reference_epochs=0.25, seed=0)
    request = RunRequest(settings=settings, pruner="bar", families=True, widths=WIDTHS,
                         optuna=OptunaOptions(trials=5, sampler="random", pruning="none",
                                              seed=3))
    summary = run_search(request, tmp_path, progress=False)
    table = summary.table
    assert {"family", "model", "width"} <= set(table.columns)
    trials = table[table["kind"] == "pruned"]
    assert len(trials) == 5
    for _, row in trials.iterrows():
        assert row["family"] == f"{row['pruner']}:{row['model']}@{row['width']:g}"
        over = _params(row["model"], row["width"]) > 100_000
        assert (row["pruner"] == "bar") == over
        if row["status"] == "ok":
            assert row["feasible"] and row["params"] <= 100_000
    # a pruned family starts from its base's reference, trained once per base, in its folder;
    # the user's network (which meets the target here) is trained first whatever the families
    references = table[table["kind"] == "reference"]
    assert ("wrn-10-1", 1.0) in set(zip(references["model"], references["width"], strict=True))
    for _, row in references.iterrows():
        assert (tmp_path / "reference" / f"{row['model']}@{row['width']:g}" / "model.pt").is_file()
        user = (row["model"], row["width"]) == ("wrn-10-1", 1.0)
        assert user or _params(row["model"], row["width"]) > 100_000
        assert bool(row["feasible"]) == (_params(row["model"], row["width"]) <= 100_000)
    # the summary's margin: the best feasible row's test accuracy minus the best dense one's
    ok = table[(table["status"] == "ok") & table["feasible"]]
    key = ok["val_accuracy"].fillna(ok["accuracy"]).astype(float)
    best = ok.loc[key.idxmax()]
    dense = ok[ok["pruner"] == "dense"]
    outcome = summary.families
    assert outcome is not None and outcome.winner == best["family"]
    if len(dense):
        top = dense.loc[dense["val_accuracy"].fillna(dense["accuracy"]).astype(float).idxmax()]
        assert outcome.margin == pytest.approx(best["accuracy"] - top["accuracy"])


def test_cli_families_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--target-params", "100k", "--model", "wrn-10-1", "--dataset",
                 "synthetic", "--widths", "0,1", "--out", str(tmp_path / "a")])
    assert code == 2 and "--widths" in capsys.readouterr().err
    code = main(["run", "--target-params", "100k", "--model", "wrn-10-1", "--dataset",
                 "synthetic", "--widths", "1,2", "--no-families", "--out", str(tmp_path / "b")])
    assert code == 2 and "--no-families" in capsys.readouterr().err


def test_optuna_pruners_by_name() -> None:
    import optuna

    kinds = {name: type(trial_pruner(OptunaOptions(pruning=name)))
             for name in ("sha", "hyperband", "median", "none")}
    assert kinds == {"sha": PerPrunerPruner, "hyperband": optuna.pruners.HyperbandPruner,
                     "median": PerPrunerPruner, "none": optuna.pruners.NopPruner}
    rules = {name: type(trial_pruner(OptunaOptions(pruning=name)).rule) for name in ("sha",
                                                                                   "median")}
    assert rules == {"sha": optuna.pruners.SuccessiveHalvingPruner,
                     "median": optuna.pruners.MedianPruner}
    assert isinstance(trial_pruner(OptunaOptions(pruning="sha", prune=False)),
                      optuna.pruners.NopPruner)
    with pytest.raises(ValueError, match="pruning must be one of"):
        OptunaOptions(pruning="asha")


def test_successive_halving_stops_the_weaker_trials(tmp_path: Path) -> None:
    # A deterministic fake objective: trial i reports accuracy 0.1·(i mod 5) at every quarter
    # epoch (steps in hundredths of an epoch) for 3 epochs.
    import optuna

    study = make_study(tmp_path, OptunaOptions(trials=10, pruning="sha", sampler="random"),
                       resume=False)
    reached: dict[int, int] = {}

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        value = 0.1 * (trial.number % 5)
        for step in range(25, 301, 25):
            trial.report(value, step)
            reached[trial.number] = step
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=10)
    states = [t.state for t in study.trials]
    pruned = [t.number for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and optuna.trial.TrialState.COMPLETE in states
    assert all(reached[n] < 300 for n in pruned)  # stopped before the full resource
    assert study.best_value == pytest.approx(0.4)


def test_per_epoch_reports_reach_the_callback_with_increasing_resource() -> None:
    data = load_dataset("synthetic", train_subset=80, val_fraction=0.2)  # 8 steps an epoch
    seen: list[tuple[float, float]] = []

    def record(epochs: float, accuracy: float) -> bool:
        seen.append((epochs, accuracy))
        return False

    config = TrainConfig(epochs=1.0, batch_size=8, progress=False, optimizer="adam", lr=2e-3)
    result = train(build_model("wrn-10-1"), data, config, on_progress=record,
                   progress_every=0.25, epoch_offset=2.0)
    assert result.status == "ok"
    assert [round(e, 2) for e, _ in seen] == [2.25, 2.5, 2.75]  # the end is in the result
    assert all(0.0 <= a <= 1.0 for _, a in seen)
    # True stops the run at once: status "stopped", the last reported accuracy, no test score
    stopped = train(build_model("wrn-10-1"), data, config, on_progress=lambda e, a: True)
    assert stopped.status == "stopped" and stopped.test_accuracy is None
    assert stopped.epochs_run == pytest.approx(0.25)

    # Through a pruner's phases: reports within and after each phase, always increasing.
    seen.clear()
    pruner = build_pruner("magnitude", target=Target.parse("params", "50%"))
    model = pruner.prepare(build_model("wrn-10-1"), torch.zeros(1, 1, 28, 28))
    train_phases(model, data, config, pruner, on_progress=record, progress_every=0.25)
    epochs = [e for e, _ in seen]
    assert epochs == sorted(epochs) and len(epochs) == 4 and epochs[-1] == pytest.approx(1.0)


def test_run_trial_steps_count_the_compute_behind_the_network(tmp_path: Path) -> None:
    # A dense trial trains reference_epochs + epochs from scratch; its steps start at 0. The
    # same run's pruned trial would start from the reference (steps from reference_epochs).
    settings = TrialSettings(**TINY, target=Target.parse("params", "100k"), reference_epochs=0.5)
    steps: list[int] = []

    def record(step: int, accuracy: float) -> bool:
        steps.append(step)
        return False

    row = run_trial({"lr": 0.002, "epochs": 0.5}, settings, tmp_path / "d", trial_id="d",
                    engine="optuna", space=load_space("dense"), report=record, report_every=0.25)
    assert row["status"] == "ok" and row["family"] == "dense:wrn-10-1@1", row["failure"]
    assert steps == sorted(steps) and steps[-1] == 100  # 0.5 + 0.5 epochs, in hundredths
    assert not math.isnan(row["accuracy"])


def test_a_binding_target_adds_the_thinner_dense_network_fitted_to_it() -> None:
    settings = TrialSettings(**TINY)
    plan = plan_candidates(settings, Target.parse("params", "40k"), None, [load_space("bar")],
                           widths=(1.0, 2.0))
    dense = [c for c in plan.candidates if c.pruner == "dense"]
    assert len(dense) == 1 and dense[0].model == "wrn-10-1"
    width = dense[0].width
    # The oracle: the cost model's count; the widest multiple of 0.05 that meets 40k.
    assert _params("wrn-10-1", width) <= 40_000 < _params("wrn-10-1", width + 0.05)
    assert dense[0].base_cost == pytest.approx(_params("wrn-10-1", width))


def test_dense_candidates_are_queued_first_cheapest_first(tmp_path: Path) -> None:
    from budgetsearch.search.optuna_driver import enqueue_dense_first

    settings = TrialSettings(**TINY)
    plan = plan_candidates(settings, Target.parse("params", "100k"), None, [load_space("bar")],
                           widths=(0.5, 1.0, 2.0))
    study = make_study(tmp_path, OptunaOptions(trials=3), resume=False, conditional=True)
    keys = enqueue_dense_first(study, plan.candidates)
    costs = {c.key: c.base_cost for c in plan.candidates}
    assert keys == sorted((k for k in costs if k.startswith("dense:")), key=costs.__getitem__)
    queued = [t.system_attrs["fixed_params"] for t in study.get_trials()]  # waiting trials
    assert queued == [{"candidate": k} for k in keys] and len(keys) >= 2


def test_reports_during_pruning_carry_no_accuracy(tmp_path: Path) -> None:
    # BAR prunes for the first share of its epochs: its accuracy then is NaN to early stopping.
    settings = TrialSettings(**TINY, target=Target.parse("params", "40k"), reference_epochs=0)
    seen: list[tuple[int, float]] = []

    def record(step: int, accuracy: float) -> bool:
        seen.append((step, accuracy))
        return False

    space = load_space("bar")
    # 4 epochs: the pruning phase (a quarter of them in bar.yaml's recipe) spans reports
    params = {"lam": 3e-5, "hardness": 5.0, "kd_alpha": 0.0, "kd_temperature": 2.0,
              "lr": 0.002, "epochs": 4.0}
    row = run_trial(params, settings, tmp_path / "b", trial_id="b", engine="optuna", space=space,
                    report=record, report_every=0.25)
    assert row["status"] == "ok", row["failure"]
    pruner = build_pruner("bar", target=settings.target, **dict(space.fixed, lam=3e-5,
                                                                 hardness=5.0))
    prune_end = 4.0 * pruner.phases()[0].fraction
    assert pruner.phases()[0].name == "prune" and 0 < prune_end < 4.0
    for step, accuracy in seen:
        assert math.isnan(accuracy) == (step < round(prune_end * 100)), (step, accuracy)
    assert any(math.isnan(a) for _, a in seen) and any(not math.isnan(a) for _, a in seen), seen
