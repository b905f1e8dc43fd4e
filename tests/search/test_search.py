"""Search: targets, spaces, objective row, Optuna resume, CLI end to end (tiny, synthetic)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from budgetsearch.cli import main
from budgetsearch.cost import Target, layer_inventory, load_profile
from budgetsearch.models import build_model
from budgetsearch.search.objective import RESULT_COLUMNS, TrialSettings, run_trial
from budgetsearch.search.optuna_driver import OptunaOptions, make_study, run_optuna
from budgetsearch.search.plan import plan_target
from budgetsearch.search.settings import input_shape
from budgetsearch.search.space import load_space, space_from_dict

# Tiny settings: wrn-10-1 on 32 synthetic images, a few steps per trial.
TINY = dict(model="wrn-10-1", dataset="synthetic", train_subset=32, val_fraction=0.25,
            batch_size=16, threads=1)
# The budget is not searched: the run's target is the budget.
FAST = {"epochs": 0.5, "lam": 1.0, "lr": 0.002}

# Duration/count parsing and target_from_options moved with the vocabulary:
# tests/cost/test_metrics.py.


def _datasheet_jetson(tmp_path: Path) -> str:
    """jetson-orin-nano with its datasheet-era roofline constants, as a profile file.

    The shipped profile is fitted to published TensorRT times (experiments/README.md, issue 16);
    on it this 18-layer network at 28x28 is launch-bound (0.19 ms, 0.18 of it per-layer
    overhead), so pruning buys next to nothing and a 0.2 ms target tests nothing. These tests are
    about planning against a profile without sparse speed-up, not about the Orin's constants.
    """
    data = load_profile("jetson-orin-nano").as_yaml_dict()
    for key, value in {"compute_efficiency": 0.25, "memory_efficiency": 0.6,
                       "layer_overhead_ms": 0.012, "dwconv_compute_efficiency": 0.03}.items():
        data["roofline"][key]["value"] = value
    data.update(name="jetson-datasheet", aliases=[])
    path = tmp_path / "jetson-datasheet.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _full_cost(metric: str, profile: str | None = None) -> float:
    inventory = layer_inventory(build_model("wrn-10-1"), torch.zeros(1, 1, 28, 28))
    return inventory.price(profile=load_profile(profile) if profile else None).as_dict()[metric]


def test_infeasible_target_states_the_minimum(tmp_path: Path) -> None:
    settings = TrialSettings(**TINY)
    assert input_shape(settings) == (1, 28, 28)
    path = _datasheet_jetson(tmp_path)
    jetson = load_profile(path)
    bar, erf = load_space("bar"), load_space("erf")
    with pytest.raises(ValueError, match=r"below what wrn-10-1 can reach .*ask for at least"):
        plan_target(Target("latency_ms", 0.01), settings, jetson, [bar])
    full = _full_cost("latency_ms", path)
    plan = plan_target(Target("latency_ms", 0.2), settings, jetson, [erf, bar])
    assert plan.pruners == ("bar",)
    assert any("no sparse speed-up" in note for note in plan.notes)
    # erf was asked through the protocol: zeros buy no time on this profile.
    assert plan.minimum_cost == {"erf": pytest.approx(full)}
    assert plan.full_cost == pytest.approx(full)
    assert 0 < plan.budget_fraction < 1


def test_plan_resolves_a_relative_target_once() -> None:
    settings = TrialSettings(**TINY)
    full = _full_cost("flops")
    plan = plan_target(Target.parse("flops", "25%"), settings, None,
                       [load_space("bar"), load_space("erf")])
    assert plan.pruners == ("bar", "erf") and plan.minimum_cost == {}
    assert plan.target.is_resolved and plan.target.fraction == 0.25
    assert plan.target.value == pytest.approx(0.25 * full) and plan.full_cost == pytest.approx(full)
    assert plan.budget_fraction == pytest.approx(0.25)
    loose = plan_target(Target("flops", 2 * full), settings, None, [load_space("erf")])
    assert loose.budget_fraction == 1.0
    assert any("already meets the target" in note for note in loose.notes)
    with pytest.raises(ValueError, match="a latency target needs --device"):
        plan_target(Target("latency_ms", 1.0), settings, None, [load_space("bar")])


def test_space_validation_names_file_and_key(tmp_path: Path) -> None:
    space = load_space("bar")
    assert space.pruner == "bar" and space.parameters["lam"].log
    assert space.parameters["lam"].low == 1e-5 and space.parameters["lam"].high == 1e-3
    assert set(space.to_optuna()) == set(space.parameters)
    bad = {"pruner": "bar", "parameters": {"lam": {"type": "float", "low": 0, "high": 1,
                                                   "log": True}}}
    with pytest.raises(ValueError, match=r"f\.yaml: parameters\.lam is log-scaled"):
        space_from_dict(bad, where="f.yaml")
    with pytest.raises(ValueError, match=r"f\.yaml: parameters\.d\.type must be"):
        space_from_dict({"pruner": "bar", "parameters": {"d": {"type": "uniform"}}},
                        where="f.yaml")
    with pytest.raises(ValueError, match=r"unknown key\(s\) eval"):
        space_from_dict({"pruner": "bar", "parameters": {}, "eval": "x"}, where="f.yaml")
    path = tmp_path / "s.yaml"
    path.write_text("pruner: bar\nparameters:\n  lam: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_space(path)


def test_the_target_is_the_budget_spaces_do_not_search_it() -> None:
    from budgetsearch.search.objective import validate_space
    from budgetsearch.search.space import space_names

    half = Target.parse("flops", "50%")
    for name in space_names():  # every shipped space runs beside a target
        space = load_space(name)
        assert "budget" not in {**space.fixed, **space.parameters}, name
        validate_space(space, half)
    searched = space_from_dict({"pruner": "bar", "parameters": {
        "budget": {"type": "float", "low": 0.2, "high": 0.9}}}, where="b.yaml")
    with pytest.raises(ValueError, match=r"b\.yaml: 'budget' is derived from the target "
                                         r"\(50% of the unpruned network's FLOPs\)"):
        validate_space(searched, half)
    fixed = space_from_dict({"pruner": "erf", "parameters": {
        "lam": {"type": "float", "low": 0.1, "high": 1.0}}, "fixed": {"budget": 0.5}},
        where="f.yaml")
    with pytest.raises(ValueError, match="'budget' is derived from the target"):
        validate_space(fixed, Target("params", 1000.0))
    validate_space(searched)  # without a target, the budget is the pruner's own option


def test_objectives_take_canonical_metric_names_and_aliases() -> None:
    assert OptunaOptions(objectives=("accuracy", "latency")).objectives == ("accuracy",
                                                                            "latency_ms")
    assert OptunaOptions(objectives=("accuracy", "parameters")).objectives == ("accuracy",
                                                                               "params")
    assert OptunaOptions(objectives=("accuracy", "flops")).objectives == ("accuracy", "flops")
    for bad in (("accuracy", "watts"), ("latency",), ("accuracy", "flops", "params")):
        with pytest.raises(ValueError, match="objectives must be 'accuracy' or 'accuracy,COST'"):
            OptunaOptions(objectives=bad)


def test_objective_writes_a_row_and_rejects_before_training(tmp_path: Path) -> None:
    path = _datasheet_jetson(tmp_path)
    settings = TrialSettings(**TINY, device_profile=path, target=Target("latency_ms", 0.2))
    full = _full_cost("latency_ms", path)
    assert full > 0.2  # the unpruned network misses the target: pruning must meet it
    space = load_space("bar")
    row = run_trial(FAST, settings, tmp_path / "a", trial_id="a", engine="optuna", space=space)
    assert set(RESULT_COLUMNS) <= set(row)
    assert row["status"] == "ok", row["failure"]
    assert row["feasible"] and row["latency_ms"] <= 0.2
    assert Path(row["model_path"]).is_file() and Path(row["pruned_config_path"]).is_file()
    # The target itself is out of the pruner's reach: erf's zeros buy no time on this profile
    # (no sparse speed-up), so prepare refuses before any training.
    rejected = run_trial(FAST, settings, tmp_path / "b", trial_id="b", engine="optuna",
                         space=load_space("erf"))
    assert rejected["status"] == "infeasible" and rejected["seconds"] < 5
    assert not rejected["feasible"] and "not trained" in rejected["failure"]
    assert rejected["accuracy"] is None and rejected["model_path"] is None
    assert rejected["latency_ms"] > 0.2  # the smallest it can reach, recorded
    assert rejected["latency_ms"] == pytest.approx(full)


def test_objective_reports_once_per_phase_and_stops_when_told(tmp_path: Path) -> None:
    # Intermediate accuracy goes to report(step, accuracy) once after each of the pruner's
    # phases (BAR: prune, frozen, finetune); True after a phase stops the trial ("pruned").
    settings = TrialSettings(**TINY)
    space = load_space("bar")
    steps: list[int] = []

    def record(step: int, accuracy: float) -> bool:
        assert 0.0 <= accuracy <= 1.0
        steps.append(step)
        return False

    row = run_trial({**FAST, "budget": 0.9}, settings, tmp_path / "a", trial_id="a",
                    engine="optuna", space=space, report=record)
    assert row["status"] == "ok", row["failure"]
    # each phase once, steps in hundredths of an epoch trained (0.5 epoch per phase here)
    assert steps == [50, 100, 150]

    steps.clear()

    def stop_after_first(step: int, accuracy: float) -> bool:
        steps.append(step)
        return True

    stopped = run_trial({**FAST, "budget": 0.9}, settings, tmp_path / "b", trial_id="b",
                        engine="optuna", space=space, report=stop_after_first)
    assert steps == [50] and stopped["status"] == "pruned"
    # Scored on the validation split mid-pruning: no test accuracy, no deployable model.
    assert stopped["val_accuracy"] is not None and stopped["accuracy"] is None
    assert stopped["model_path"] is None and not stopped["feasible"]


def test_optuna_resume_keeps_completed_trials(tmp_path: Path) -> None:
    space = load_space("bar").override(epochs=0.25, kd_alpha=0.0)
    settings = TrialSettings(**TINY, device_profile="jetson-orin-nano",
                             target=Target("latency_ms", 0.2))
    rows = run_optuna(space, settings, tmp_path, OptunaOptions(trials=1, n_startup_trials=1))
    assert len(rows) == 1
    first = pd.read_csv(tmp_path / "results.csv")
    rows = run_optuna(space, settings, tmp_path, OptunaOptions(trials=2, n_startup_trials=1),
                      resume=True)
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table["trial_id"]) == ["optuna-0000", "optuna-0001"]
    assert table.iloc[0]["seconds"] == pytest.approx(first.iloc[0]["seconds"])  # not redone
    study = make_study(tmp_path, OptunaOptions(trials=2), resume=True)
    assert len(study.trials) == 2


def test_cli_run_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = Path("run")  # relative, as a user types it
    code = main(["run", "--device", "jetson", "--target-latency", "200us", "--model", "wrn-10-1",
                 "--dataset", "synthetic", "--train-subset", "32", "--batch-size", "16",
                 "--trials", "1", "--threads", "1", "--out", str(out), "--no-progress",
                 "--no-families"])
    text = capsys.readouterr().out
    # The printed model path exists as printed (it read run/run/... once).
    printed = re.search(r"^model: (\S+)", text, flags=re.M)
    assert printed is not None and Path(printed.group(1)).is_file()
    table = pd.read_csv(out / "results.csv")
    # the unpruned reference (trained once; trials start from it), then the one trial
    assert table["kind"].tolist() == ["reference", "pruned"]
    assert (out / "config.yaml").is_file() and (out / "study.db").is_file()
    assert (out / "reference" / "model.pt").is_file()
    assert (out / "pareto.png").is_file() and "Pareto plot:" in text  # end-of-run plot
    assert "results:" in text
    assert code in (0, 1)  # 1: the one trial happened not to be feasible


@pytest.mark.parametrize(("flags", "sampler_seed"), [([], 3), (["--sampler-seed", "7"], 7)])
def test_cli_sampler_seed_is_apart_from_the_training_seed(
        flags: list[str], sampler_seed: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Samplers are compared over sampler seeds on one data split and one reference network:
    # --sampler-seed must move the sampler alone (and default to --seed).
    from budgetsearch.search import runner

    seen: list[runner.RunRequest] = []

    def record(request: runner.RunRequest, *args: object, **kwargs: object) -> None:
        seen.append(request)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_search", record)
    main(["run", "--target-params", "50k", "--model", "wrn-10-1", "--dataset", "synthetic",
          "--seed", "3", *flags, "--out", str(tmp_path / "run"), "--no-progress"])
    assert seen[0].settings.seed == 3
    assert seen[0].optuna.seed == sampler_seed


def test_cli_bad_target_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--device", "jetson", "--target-latency", "10xs"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'10xs'" in err
    assert main(["run", "--device", "jetson", "--target-latency", "1us", "--model", "wrn-10-1",
                 "--dataset", "synthetic"]) == 2
    assert "ask for at least" in capsys.readouterr().err


def test_reference_trained_once_then_trials_start_from_it(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from budgetsearch.pruners.bar import BARPruner
    from budgetsearch.search.reference import ensure_reference, reference_state_path

    settings = TrialSettings(**TINY, reference_epochs=1.0)
    row = ensure_reference(settings, tmp_path)
    assert row["kind"] == "reference" and row["status"] == "ok" and row["params"] > 0
    from budgetsearch.pareto.reprice import PrunedConfig, price_config
    # Re-priceable; paths are relative to the run folder (a moved run still finds its files).
    assert row["pruned_config_path"] == "reference/pruned_config.json"
    dense = price_config(PrunedConfig.load(tmp_path / row["pruned_config_path"]))
    assert dense.params == row["params"]
    weights = tmp_path / "reference" / "model.pt"
    stamp = weights.stat().st_mtime_ns
    assert ensure_reference(settings, tmp_path)["accuracy"] == row["accuracy"]  # reused
    assert weights.stat().st_mtime_ns == stamp
    # Trials load the reference's plain state_dict (any architecture), next to its model.pt.
    state = reference_state_path(row, tmp_path)
    assert state == weights.with_name("state_dict.pt") and state.is_file()
    reference = torch.load(state, weights_only=True)
    whole = torch.load(weights, weights_only=False).state_dict()
    assert reference.keys() == whole.keys()
    assert all(torch.equal(reference[k], whole[k]) for k in whole)

    seen: dict[str, torch.Tensor] = {}
    prepare = BARPruner.prepare

    def spy(self: BARPruner, model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
        seen.update({k: v.clone() for k, v in model.state_dict().items()})
        result = prepare(self, model, example)
        seen["teacher_conv1"] = self.teacher.conv1.weight.detach().clone()
        return result

    monkeypatch.setattr(BARPruner, "prepare", spy)
    settings = TrialSettings(**TINY, reference_path=str(state))
    run_trial({"lam": 1.0, "budget": 0.9, "epochs": 0.5}, settings, tmp_path / "t0",
              trial_id="t0", engine="optuna", space=load_space("bar"))
    # The trial's network starts from the reference and distils from a copy of it.
    assert all(torch.equal(seen[k], v) for k, v in reference.items())
    assert torch.equal(seen["teacher_conv1"], reference["conv1.weight"])


def test_multi_objective_study_reports_accuracy_and_latency(tmp_path: Path) -> None:
    # --objectives accuracy,latency: NSGA-II, maximize accuracy and minimize predicted latency;
    # each finished trial's two values are its row's accuracy figure and latency (no pruner).
    space = load_space("bar").override(epochs=0.25, kd_alpha=0.0)
    settings = TrialSettings(**TINY, device_profile="jetson-orin-nano")
    options = OptunaOptions(trials=2, objectives=("accuracy", "latency"))
    rows = run_optuna(space, settings, tmp_path, options)
    study = make_study(tmp_path, options, resume=True)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert type(study.sampler).__name__ == "NSGAIISampler"
    by_id = {r["trial_id"]: r for r in rows}
    finished = [t for t in study.trials if t.values is not None]
    assert finished
    for trial in finished:
        row = by_id[f"optuna-{trial.number:04d}"]
        accuracy = row["val_accuracy"] if row["val_accuracy"] is not None else row["accuracy"]
        assert trial.values == pytest.approx([accuracy, row["latency_ms"]])


def test_a_compact_mixed_network_is_priced_with_its_gathers(tmp_path: Path) -> None:
    # channel-magnitude on a pre-act WRN delivers a mixed-connectivity network whose
    # index_select / index_add / index_copy the full network at its kept channels never runs:
    # the trial records them, and its latency (and pareto's re-price) includes them.
    from budgetsearch.pareto.reprice import PrunedConfig, price_config

    profile = load_profile("cpu-2core-x86")
    settings = TrialSettings(**TINY, device_profile="cpu-2core-x86",
                             target=Target("params", fraction=0.5, text="50%").resolve(
                                 _full_cost("params")))
    row = run_trial({"scope": "uniform", "kd_alpha": 0.0, "lr": 0.002, "epochs": 0.25},
                    settings, tmp_path / "a", trial_id="a", engine="optuna",
                    space=load_space("channel-magnitude"))
    assert row["status"] == "ok", row["failure"]
    config = PrunedConfig.load(row["pruned_config_path"])
    assert len(config.index_ops) >= 3 and all(e > 0 for e in config.index_ops)
    without = price_config(PrunedConfig(**{**config.__dict__, "index_ops": ()}), profile)
    gathers = profile.extra_ops_ms("index", config.index_ops)
    assert gathers > 0
    assert row["latency_ms"] == pytest.approx(without.latency_ms + gathers)
    assert price_config(config, profile).latency_ms == pytest.approx(row["latency_ms"])
    assert PrunedConfig.from_dict(config.as_dict()) == config


def _as_the_profiles_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this machine the shipped cpu-2core-x86 profiles' CPU kind (model and SIMD flags):
    'measured here' runs only on a profile of this machine, and CI's machines vary."""
    from budgetsearch.profiling import anchors

    provenance = load_profile("cpu-2core-x86", check=False).provenance
    monkeypatch.setattr(anchors, "cpu_name", lambda: str(provenance["cpu"]).split(" (")[0])
    monkeypatch.setattr(anchors, "cpu_flags", lambda: str(provenance["cpu_flags"]))


@pytest.mark.parametrize(("device", "runtime"), [("cpu-2core-x86-ort", "onnxruntime"),
                                                 ("my-box", "pytorch-eager")])
def test_measured_here_runs_in_the_profiles_runtime(
        device: str, runtime: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """'measured here' times the best network in the runtime its device profile predicts
    (onnxruntime for an -ort profile), by the profiles' timer, and for any measured CPU profile
    whatever its name (a user's my-box.yaml)."""
    from budgetsearch.cost.profiles import save_profile
    from budgetsearch.profiling import timing

    if device == "my-box":
        save_profile(load_profile("cpu-2core-x86", check=False), tmp_path / "my-box.yaml")
        device = str(tmp_path / "my-box.yaml")
    used: list[str] = []
    original = timing.make_runner

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        used.append(kwargs["runtime"])
        return original(*args, **kwargs)

    monkeypatch.setattr(timing, "make_runner", spy)
    _as_the_profiles_machine(monkeypatch)
    monkeypatch.chdir(tmp_path)
    main(["run", "--device", device, "--target-params", "50%", "--model", "wrn-10-1",
          "--dataset", "synthetic", "--train-subset", "32", "--batch-size", "16",
          "--pruner", "magnitude", "--trials", "1", "--threads", "1", "--out", "run",
          "--no-progress", "--no-families"])
    text = capsys.readouterr().out
    assert used == [runtime]
    assert re.search(r"measured here: \d+\.\d+ ms", text)


def test_a_measurement_that_fails_is_a_note_not_a_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A best network onnxruntime cannot take (torch.onnx.export raises, as for torch.fft ops)
    ends the finished run with its summary and a note saying why nothing was measured."""
    from budgetsearch.profiling import timing

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("Exporting the operator 'aten::fft_rfft' to ONNX opset 17 is not "
                           "supported\nTorch IR graph at exception: ...")

    monkeypatch.setattr(timing, "make_runner", refuse)
    _as_the_profiles_machine(monkeypatch)
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--device", "cpu-2core-x86-ort", "--target-params", "50%", "--model",
                 "wrn-10-1", "--dataset", "synthetic", "--train-subset", "32", "--batch-size",
                 "16", "--pruner", "magnitude", "--trials", "1", "--threads", "1", "--out", "run",
                 "--no-progress", "--no-families"])
    text = capsys.readouterr().out
    assert code in (0, 1)
    assert ("note: not measured here in onnxruntime: RuntimeError: Exporting the operator "
            "'aten::fft_rfft'") in text
    assert "Torch IR graph" not in text and "best feasible:" in text
