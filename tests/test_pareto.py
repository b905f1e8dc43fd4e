"""Pareto maths against hand-computed cases, re-pricing against direct pricing, plots, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from budgetsearch.cost import layer_inventory, load_profile, profile_names
from budgetsearch.models import build_model, scale_channels, thinner_dense_width
from budgetsearch.pareto import (
    InventoryCache,
    PrunedConfig,
    baseline_widths,
    fronts_by_group,
    hardware_selection,
    hypervolume,
    layer_profile,
    load_runs,
    pareto_front,
    pareto_mask,
    parse_ratios,
    parse_target,
    price_config,
    reference_rows,
    reprice_trials,
    resolve_artifact,
    split_kinds,
)
from budgetsearch.pareto.results import run_label

SHAPE = (1, 28, 28)

# ---------------------------------------------------------------------------------------------
# Dominance


def test_mask_hand_computed() -> None:
    # (cost, acc): (1,.5) front; (2,.4) dominated by (1,.5); (3,.9) front; (4,.9) dominated.
    assert pareto_mask([1, 2, 3, 4], [0.5, 0.4, 0.9, 0.9]).tolist() == [True, False, True, False]


def test_ties_in_one_coordinate_keep_only_the_better() -> None:
    # same cost: the more accurate wins; same accuracy: the cheaper wins
    assert pareto_mask([1, 1], [0.5, 0.6]).tolist() == [False, True]
    assert pareto_mask([2, 1], [0.6, 0.6]).tolist() == [False, True]


def test_exact_duplicates_both_stay() -> None:
    assert pareto_mask([1, 1, 2], [0.5, 0.5, 0.4]).tolist() == [True, True, False]


def test_one_point_and_none() -> None:
    assert pareto_mask([3.0], [0.1]).tolist() == [True]
    assert pareto_mask([], []).tolist() == []


def test_nan_is_never_on_the_front() -> None:
    assert pareto_mask([1, np.nan, 2], [0.5, 0.9, np.nan]).tolist() == [True, False, False]


def test_mask_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="one length"):
        pareto_mask([1, 2], [0.5])


def test_mask_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    c = rng.integers(0, 6, 60).astype(float)
    a = rng.integers(0, 6, 60).astype(float)
    brute = [not any((c[j] <= c[i] and a[j] >= a[i]) and (c[j] < c[i] or a[j] > a[i])
                     for j in range(60)) for i in range(60)]
    assert pareto_mask(c, a).tolist() == brute


# ---------------------------------------------------------------------------------------------
# Hypervolume


def test_hypervolume_hand_computed() -> None:
    # strips: [1,3)×0.5 + [3,4)×0.9 = 1.0 + 0.9
    assert hypervolume([1, 3], [0.5, 0.9], reference=(4, 0)) == pytest.approx(1.9)
    # dominated and duplicate points add nothing
    assert hypervolume([1, 3, 3, 2], [0.5, 0.9, 0.9, 0.4], reference=(4, 0)) == pytest.approx(1.9)
    # reference accuracy above zero shrinks the heights
    assert hypervolume([1, 3], [0.5, 0.9], reference=(4, 0.5)) == pytest.approx(0.4)


def test_hypervolume_one_point_outside_and_empty() -> None:
    assert hypervolume([2], [0.5], reference=(4, 0)) == pytest.approx(1.0)
    assert hypervolume([5], [0.5], reference=(4, 0)) == 0.0  # costs more than the reference
    assert hypervolume([1], [0.5], reference=(4, 0.6)) == 0.0  # below reference accuracy
    assert hypervolume([], [], reference=(4, 0)) == 0.0
    with pytest.raises(ValueError, match="reference"):
        hypervolume([1], [1], reference=(math.inf, 0))


# ---------------------------------------------------------------------------------------------
# Fronts from a table


def _table(**columns: list) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"trial_id": list(range(n)), "status": ["ok"] * n, "kind": ["pruned"] * n,
            "pruner": ["bar"] * n}
    base.update(columns)
    return pd.DataFrame(base)


def test_front_from_table_respects_target_and_status() -> None:
    t = _table(params=[10, 20, 30, 5, 1], accuracy=[0.6, 0.8, 0.9, 0.95, 0.99],
               status=["ok", "ok", "ok", "failed", "ok"])
    t.loc[4, "accuracy"] = np.nan  # finished without accuracy: not usable
    front = pareto_front(t, "params", target=25)
    assert front.points["trial_id"].tolist() == [0, 1] and front.note == ""
    assert pareto_front(t, "parameters").points["trial_id"].tolist() == [0, 1, 2]


def test_all_infeasible_gives_empty_front_with_message() -> None:
    t = _table(latency_ms=[5.0, 6.0], accuracy=[0.5, 0.6], feasible=[False, False],
               status=["infeasible", "infeasible"])
    front = pareto_front(t, "latency")
    assert front.empty and "all 2 finished trial(s) are infeasible" in front.note
    front = pareto_front(t, "latency_ms", target=1.0)
    assert front.empty and "latency_ms ≤ 1" in front.note
    assert "no rows" in pareto_front(t.iloc[0:0], "latency_ms").note


def test_min_accuracy_and_unknown_metric() -> None:
    t = _table(flops=[1, 2], accuracy=[0.5, 0.6])
    assert "accuracy ≥ 0.9" in pareto_front(t, "flops", min_accuracy=0.9).note
    with pytest.raises(ValueError, match="metric must be one of .*latency_ms"):
        pareto_front(t, "watts")


def test_fronts_by_group_splits_pruners_and_baselines() -> None:
    t = _table(params=[10, 20, 15, 30], accuracy=[0.6, 0.7, 0.65, 0.9],
               pruner=["bar", "erf", "erf", None], kind=["pruned", "pruned", "pruned", "baseline"])
    fronts = fronts_by_group(t, "params")
    assert set(fronts) == {"bar", "erf", "baseline", "all"}
    assert fronts["erf"].points["trial_id"].tolist() == [2, 1]
    assert fronts["all"].points["trial_id"].tolist() == [0, 2, 1, 3]


@pytest.mark.parametrize("target", [10.0, 0.01])
def test_plot_shows_a_far_target_and_shades_only_its_feasible_side(target: float) -> None:
    # The main job's case: models at 0.38–0.46 ms, a 10 ms target (and one below every model).
    import matplotlib.pyplot as plt

    from budgetsearch.pareto.plots import _draw_front_axes

    t = _table(latency_ms=[0.38, 0.40, 0.46], accuracy=[0.85, 0.86, 0.87])
    fig, ax = plt.subplots()
    _draw_front_axes(ax, t, "latency_ms", {}, target=target, min_accuracy=None)
    x0, x1 = ax.get_xlim()
    assert ax.get_xscale() == "log" and x0 < target < x1 and x0 < 0.38 and x1 > 0.46
    lines = [line for line in ax.get_lines() if "target" in str(line.get_label())]
    assert len(lines) == 1 and lines[0].get_xdata()[0] == target
    shaded = [c for c in ax.collections if c.get_label() == "feasible region"]
    assert len(shaded) == 1  # from the left edge to the target, never past it
    extent = shaded[0].get_paths()[0].vertices[:, 0]
    assert extent.min() == pytest.approx(x0) and extent.max() == pytest.approx(target)
    plt.close(fig)


def test_parse_target_and_ratios() -> None:
    assert parse_target("10ms", "latency") == 10.0
    assert parse_target("0.5s", "latency_ms") == 500.0
    assert parse_target("2M", "params") == 2e6
    assert parse_target("300k", "flops") == 3e5
    assert parse_target("1MiB", "memory_bytes") == 2**20
    assert parse_target("2M", "parameters") == 2e6  # aliases of the cost vocabulary
    with pytest.raises(ValueError, match="--target must be a positive duration like '10ms'"):
        parse_target("10xs", "latency_ms")
    # A bare number is refused for latency (ms or s?), as `run --target-latency 10` is.
    with pytest.raises(ValueError, match="--target must be a positive duration .*got '10'"):
        parse_target("10", "latency_ms")
    # Relative targets resolve against the unpruned network's cost, and need it.
    assert parse_target("50%", "flops", full=2e6) == 1e6
    with pytest.raises(ValueError, match="'50%' is relative"):
        parse_target("50%", "flops")
    with pytest.raises(ValueError, match="metric must be one of"):
        parse_target("10ms", "watts")
    assert parse_ratios("0.5, 0.25,0.5") == [0.5, 0.25]
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        parse_ratios("0.5,2")


# ---------------------------------------------------------------------------------------------
# Thinner dense baselines: eq. 12


def test_width_multiplier_is_sqrt_ratio_and_params_scale_by_r() -> None:
    widths = baseline_widths([0.5, 0.25, 1.0])
    assert widths == {0.5: pytest.approx(math.sqrt(0.5)), 0.25: 0.5, 1.0: 1.0}
    full = sum(p.numel() for p in build_model("wrn-10-1", in_channels=1).parameters())
    half = build_model("wrn-10-1", in_channels=1, width_multiplier=widths[0.25])
    # eq. 12: every conv has ⌊√r·C⌋ channels, so 16→8, 32→16, 64→32
    assert half.conv1.out_channels == scale_channels(16, 0.5) == 8
    assert math.floor(math.sqrt(0.5) * 64 + 1e-9) == scale_channels(64, thinner_dense_width(0.5))
    # Parameters of conv weights scale by ≈ r (biases, BN and the stem/fc keep it from exact).
    params = sum(p.numel() for p in half.parameters())
    assert 0.22 * full < params < 0.30 * full
    inv = layer_inventory(half, torch.zeros(1, *SHAPE))
    conv_weights = sum(r.weight_params for r in inv if r.op == "conv" and r.name != "conv1")
    full_inv = layer_inventory(build_model("wrn-10-1", in_channels=1), torch.zeros(1, *SHAPE))
    full_conv = sum(r.weight_params for r in full_inv if r.op == "conv" and r.name != "conv1")
    assert conv_weights == full_conv // 4  # inner convs: (C/2)·(C/2) exactly


# ---------------------------------------------------------------------------------------------
# Re-pricing


def _bar_config(keep: float) -> dict:
    """Kept channels for wrn-10-1: every block's inner channels × keep (a real BAR layout)."""
    inner = {"layer1.0": 16, "layer2.0": 32, "layer3.0": 64}
    kept: dict[str, list[int]] = {}
    previous = {"layer1.0": 16, "layer2.0": 16, "layer3.0": 32}
    for block, channels in inner.items():
        k = max(1, int(round(channels * keep)))
        kept[f"{block}.conv1"] = [previous[block], k]
        kept[f"{block}.bn2"] = [k, k]
        kept[f"{block}.conv2"] = [k, channels]
    return {"model": "wrn-10-1", "width": 1.0, "input_shape": list(SHAPE), "num_classes": 10,
            "kept_channels": kept}


def _erf_config(density: float) -> dict:
    layers = ["layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2",
              "layer3.0.conv1", "layer3.0.conv2", "fc"]
    return {"model": "wrn-10-1", "width": 1.0, "input_shape": list(SHAPE), "num_classes": 10,
            "densities": {name: density * (0.6 + 0.05 * i) for i, name in enumerate(layers)}}


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    """A run folder with real wrn-10-1 pruned configs and a results table of 8 rows."""
    run = tmp_path / "run"
    (run / "trials").mkdir(parents=True)
    profile = load_profile("jetson-nano")
    rows = []
    specs = [("bar", _bar_config(k), a) for k, a in ((0.25, 0.70), (0.5, 0.78), (0.75, 0.80))]
    specs += [("erf", _erf_config(d), a) for d, a in ((0.3, 0.74), (0.6, 0.79), (0.9, 0.81))]
    for i, (pruner, config, acc) in enumerate(specs):
        path = run / "trials" / f"{i}.json"
        path.write_text(json.dumps(config))
        cost = price_config(PrunedConfig.from_dict(config), profile)
        rows.append({"trial_id": i, "engine": "optuna", "kind": "pruned", "pruner": pruner,
                     "model": "wrn-10-1", "width": 1.0, "status": "ok", "accuracy": acc,
                     **cost.as_dict(), "device": profile.name, "target_metric": "latency_ms",
                     "target_value": 1e9, "feasible": True,
                     "pruned_config_path": f"trials/{i}.json"})
    rows.append({**rows[0], "trial_id": 6, "status": "failed", "accuracy": np.nan})
    rows.append({**rows[2], "trial_id": 7, "status": "infeasible", "feasible": False})
    for ratio, acc in ((0.25, 0.72), (0.5, 0.77)):
        width = thinner_dense_width(ratio)
        config = {"model": "wrn-10-1", "width": width, "input_shape": list(SHAPE),
                  "num_classes": 10}
        path = run / "trials" / f"baseline-{ratio}.json"
        path.write_text(json.dumps(config))
        cost = price_config(PrunedConfig.from_dict(config), profile)
        rows.append({"trial_id": f"baseline-r{ratio}", "kind": "baseline", "model": "wrn-10-1",
                     "width": width, "status": "ok", "accuracy": acc, **cost.as_dict(),
                     "device": profile.name, "feasible": True, "hp_compression_ratio": ratio,
                     "pruned_config_path": str(path)})
    pd.DataFrame(rows).to_csv(run / "results.csv", index=False)
    (run / "config.yaml").write_text("model: wrn-10-1\ndataset: fashion-mnist\nepochs: 0.1\n")
    return run


def test_reprice_equals_direct_pricing(fake_run: Path) -> None:
    table = pd.read_csv(fake_run / "results.csv")
    devices = ["jetson-nano", "jetson-orin-nano", "cpu-2core-x86"]
    cache = InventoryCache()
    long = reprice_trials(table, devices, base_dir=fake_run, cache=cache)
    assert len(long) == len(table) * 3 and long["repriced"].all()
    assert len(cache) == 3  # width 1, √0.25, √0.5: each traced once
    model = build_model("wrn-10-1", in_channels=1)
    inv = layer_inventory(model, torch.zeros(1, *SHAPE))
    config = _bar_config(0.5)
    for device in devices:
        row = long[(long["device"] == device) & (long["trial_id"].astype(str) == "1")].iloc[0]
        direct = inv.price(kept_channels={k: tuple(v) for k, v in
                                          config["kept_channels"].items()},
                           profile=load_profile(device))
        assert row["latency_ms"] == pytest.approx(direct.latency_ms)
        assert row["flops"] == pytest.approx(direct.flops)
        assert row["params"] == pytest.approx(direct.params)
    # the run's own device re-priced gives the recorded costs back
    nano = long[long["device"] == "jetson-nano"].reset_index(drop=True)
    assert np.allclose(nano["latency_ms"], table["latency_ms"])


def test_reprice_without_config_is_nan_with_note(fake_run: Path) -> None:
    table = pd.read_csv(fake_run / "results.csv").head(2)
    table.loc[0, "pruned_config_path"] = np.nan
    table.loc[1, "pruned_config_path"] = "trials/missing.json"
    long = reprice_trials(table, ["jetson-nano"], base_dir=fake_run)
    assert not long["repriced"].any() and long["latency_ms"].isna().all()
    assert "does not exist" in long.loc[1, "reprice_note"]


def test_hardware_selection_answers_per_device(fake_run: Path) -> None:
    table = pd.read_csv(fake_run / "results.csv")
    long = reprice_trials(table, ["jetson-nano", "jetson-orin-nano"], base_dir=fake_run)
    orin = long[long["device"] == "jetson-orin-nano"]
    nano = long[long["device"] == "jetson-nano"]
    target = float(orin["latency_ms"].max()) * 1.01  # everything fits on the Orin
    assert nano["latency_ms"].min() > target, "the Nano should be slower than the Orin"
    choice = hardware_selection(long, metric="latency", target=target, min_accuracy=0.75)
    by_device = choice.table.set_index("device")
    assert choice.devices_meeting == ["jetson-orin-nano"]
    assert by_device.loc["jetson-orin-nano", "accuracy"] == 0.81
    assert not by_device.loc["jetson-nano", "meets"]
    assert by_device.loc["jetson-nano", "feasible_trials"] == 0


def test_layer_profile_sparsity_and_channels() -> None:
    bar = layer_profile(PrunedConfig.from_dict(_bar_config(0.5)))
    row = bar.set_index("layer").loc["layer2.0.conv1"]
    assert (row["kept_in"], row["kept_out"], row["out_channels"]) == (16, 16, 32)
    assert row["sparsity"] == pytest.approx(0.5)
    erf = layer_profile(PrunedConfig.from_dict(_erf_config(0.5))).set_index("layer")
    assert erf.loc["fc", "sparsity"] == pytest.approx(1 - 0.5 * 0.9)
    assert erf.loc["conv1", "sparsity"] == 0.0
    with pytest.raises(ValueError, match="input_shape"):
        PrunedConfig.from_dict({"model": "wrn-10-1"})


def test_profile_names_include_the_jetsons() -> None:
    assert {"jetson-nano", "jetson-orin-nano", "jetson-xavier-nx"} <= set(profile_names())


# ---------------------------------------------------------------------------------------------
# Plots and CLI


def test_pareto_cli_writes_plots_csv_and_report(fake_run: Path, capsys) -> None:
    from budgetsearch.cli import main

    code = main(["pareto", str(fake_run), "--devices", "jetson-nano,jetson-orin-nano",
                 "--target", "1.5ms", "--min-accuracy", "0.72"])
    assert code == 0
    out = fake_run / "pareto"
    for stem in ("accuracy_vs_params", "accuracy_vs_flops", "accuracy_vs_activation_volume",
                 "accuracy_vs_latency_ms_jetson-nano", "hardware_selection",
                 "kept_channels_bar", "layer_sparsity_erf"):
        for suffix in (".png", ".svg"):
            assert (out / stem).with_suffix(suffix).stat().st_size > 1000, stem
    assert (out / "hardware_selection.png").read_bytes()[:4] == b"\x89PNG"
    choice = pd.read_csv(out / "hardware_selection.csv")
    assert set(choice["device"]) == {"jetson-nano", "jetson-orin-nano"}
    report = (out / "report.md").read_text()
    assert "Hardware selection" in report and "1 FLOP = 1 fused multiply-add" in report
    assert "budgetsearch pareto" in report and "baseline" in report
    assert "devices meeting the target" in capsys.readouterr().out


def test_pareto_cli_all_infeasible_says_so(fake_run: Path, capsys) -> None:
    from budgetsearch.cli import main

    assert main(["pareto", str(fake_run), "--devices", "jetson-nano", "--target", "0.001ms"]) == 0
    printed = capsys.readouterr().out
    assert "devices meeting the target: none" in printed and "infeasible" in printed


@pytest.mark.parametrize("argv,fragment", [
    (["pareto", "/nonexistent/run"], "run folder /nonexistent/run does not exist"),
    (["pareto", "{run}", "--devices", "toaster"], "unknown device 'toaster'; known: "),
    (["pareto", "{run}", "--metric", "watts"], "metric must be one of"),
    (["pareto", "{run}", "--target", "10xs"],
     "--target must be a positive duration like '10ms', '500us' or '0.01s', got '10xs'"),
    # A bare latency number is refused, like `run --target-latency 10`.
    (["pareto", "{run}", "--target", "10"],
     "--target must be a positive duration like '10ms', '500us' or '0.01s', got '10'"),
    (["pareto", "{empty}"], "has no results.csv"),
    (["baselines", "--model", "wrn-10-1", "--ratios", "0,5"], "in (0, 1]"),
    (["baselines", "--model", "vgg", "--ratios", "0.5", "--run", "{run}"], "--model must be"),
])
def test_cli_errors_are_one_line(argv: list[str], fragment: str, fake_run: Path,
                                 tmp_path: Path, capsys) -> None:
    from budgetsearch.cli import main

    (tmp_path / "empty").mkdir()
    argv = [a.format(run=fake_run, empty=tmp_path / "empty") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1, err
    if "toaster" in argv:
        assert "jetson-orin-nano" in err


def test_baselines_cli_trains_appends_and_resumes(fake_fashion_mnist: Path, tmp_path: Path,
                                                  capsys) -> None:
    from budgetsearch.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        f"model: wrn-10-1\ndataset: fashion-mnist\ndata_dir: {fake_fashion_mnist}\n"
        "epochs: 0.5\ntrain_subset: 40\ndevice: cpu\n")
    pd.DataFrame([{"trial_id": 0, "kind": "pruned", "status": "ok", "accuracy": 0.5,
                   "device": "jetson-nano", "target_metric": "latency_ms",
                   "target_value": 100.0}]).to_csv(run / "results.csv", index=False)
    argv = ["baselines", "--model", "wrn-10-1", "--ratios", "0.25", "--run", str(run),
            "--no-progress"]
    assert main(argv) == 0
    table = pd.read_csv(run / "results.csv")
    assert len(table) == 2
    row = table.iloc[1]
    assert row["kind"] == "baseline" and row["width"] == 0.5 and row["status"] == "ok"
    assert row["hp_compression_ratio"] == 0.25 and row["device"] == "jetson-nano"
    half = build_model("wrn-10-1", in_channels=1, width_multiplier=0.5)
    assert row["params"] == sum(p.numel() for p in half.parameters())
    assert (run / row["pruned_config_path"]).is_file() and (run / row["model_path"]).is_file()
    # resumable: the ratio already present is skipped, nothing is appended
    assert main(argv) == 0
    assert "already in" in capsys.readouterr().out
    assert len(pd.read_csv(run / "results.csv")) == 2


# ---------------------------------------------------------------------------------------------
# Several runs in one report (e.g. a BAR run and an erf-loss run)


def _tiny_run(folder: Path, rows: list[dict], command: str = "") -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    if command:
        (folder / "config.yaml").write_text(f"command: {command}\n")
    return folder


def test_resolve_artifact_reads_against_its_run_then_cwd_then_a_tail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "moved" / "a"
    (run / "trials" / "0").mkdir(parents=True)
    (run / "trials" / "0" / "c.json").write_text("{}")
    (tmp_path / "trials" / "0").mkdir(parents=True)
    (tmp_path / "trials" / "0" / "c.json").write_text("{}")  # a decoy in the working directory
    assert resolve_artifact("trials/0/c.json", run) == run / "trials/0/c.json"
    # recorded from the repository root before the run folder moved: the tail is found
    assert resolve_artifact("runs/a/trials/0/c.json", run) == run / "trials/0/c.json"
    assert resolve_artifact("trials/0/c.json", None) == Path("trials/0/c.json")
    assert resolve_artifact(math.nan, run) is None and resolve_artifact("", run) is None
    assert resolve_artifact("nowhere/x.json", run) == run / "nowhere/x.json"


def test_load_runs_merges_keeps_run_and_resolves_paths(tmp_path: Path) -> None:
    a = _tiny_run(tmp_path / "x" / "bar", [
        {"trial_id": "t0", "kind": "pruned", "pruner": "bar", "status": "ok", "accuracy": 0.7,
         "params": 10.0, "pruned_config_path": "trials/t0.json", "hp_hardness": 5.0}])
    (a / "trials").mkdir()
    (a / "trials" / "t0.json").write_text("{}")
    b = _tiny_run(tmp_path / "y" / "erf", [
        {"trial_id": "t0", "kind": "pruned", "pruner": "erf", "status": "ok", "accuracy": 0.8,
         "params": 20.0, "pruned_config_path": "old/place/erf/trials/t0.json",
         "hp_loss": "budget"},
        {"trial_id": "t1", "kind": "pruned", "pruner": "erf", "status": "failed",
         "accuracy": np.nan, "params": np.nan, "pruned_config_path": np.nan,
         "hp_loss": "budget"}])
    (b / "trials").mkdir()
    (b / "trials" / "t0.json").write_text("{}")
    table = load_runs([a, b])
    assert table["run"].tolist() == ["bar", "erf", "erf"]
    assert table["run_dir"].tolist() == [str(a), str(b), str(b)]
    assert table["trial_id"].tolist() == ["t0", "t0", "t1"]  # ids repeat; the run tells apart
    paths = table["pruned_config_path"].tolist()
    assert Path(paths[0]) == a / "trials" / "t0.json"
    assert Path(paths[1]) == b / "trials" / "t0.json"
    assert paths[2] is None or (isinstance(paths[2], float) and math.isnan(paths[2]))
    # a column one run lacks is NaN in the other's rows
    assert math.isnan(table.loc[1, "hp_hardness"]) and pd.isna(table.loc[0, "hp_loss"])
    fronts = fronts_by_group(table, "params")
    assert set(fronts) == {"bar", "erf", "all"}


def test_load_runs_rejects_none_and_the_same_folder_twice(tmp_path: Path) -> None:
    a = _tiny_run(tmp_path / "a", [{"trial_id": 0, "accuracy": 0.5}])
    with pytest.raises(ValueError, match="at least one run folder"):
        load_runs([])
    with pytest.raises(ValueError, match="given once"):
        load_runs([a, tmp_path / "." / "a"])
    assert run_label(["p/run", "q/run", "q/other"]) == ["p/run", "q/run", "other"]


def test_reference_rows_are_no_pruner_trial() -> None:
    t = _table(params=[10, 20, 40], accuracy=[0.6, 0.7, 0.9], pruner=["bar", "bar", None],
               kind=["pruned", "pruned", "reference"])
    pruned, baselines = split_kinds(t)
    assert pruned["trial_id"].tolist() == [0, 1] and baselines.empty
    assert reference_rows(t)["trial_id"].tolist() == [2]
    fronts = fronts_by_group(t, "params")
    assert set(fronts) == {"bar", "all"}  # no "?" front for the reference
    assert fronts["all"].points["trial_id"].tolist() == [0, 1, 2]


@pytest.fixture
def two_runs(fake_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """fake_run split in two: a BAR run (with the baselines and a reference) and an erf run
    whose config paths were recorded from another working directory."""
    table = pd.read_csv(fake_run / "results.csv")
    bar = table[(table["pruner"] == "bar") | (table["kind"] == "baseline")].copy()
    reference = {**bar.iloc[0].to_dict(), "trial_id": "reference-wrn-10-1", "kind": "reference",
                 "pruner": None, "accuracy": 0.83, "pruned_config_path": "trials/ref.json"}
    (fake_run / "trials" / "ref.json").write_text(json.dumps(
        {"model": "wrn-10-1", "width": 1.0, "input_shape": list(SHAPE), "num_classes": 10}))
    bar = pd.concat([bar, pd.DataFrame([reference])], ignore_index=True)
    bar.to_csv(fake_run / "results.csv", index=False)
    (fake_run / "config.yaml").write_text("command: budgetsearch run --pruner bar --out x/bar\n")
    (fake_run / "baselines").mkdir()
    (fake_run / "baselines" / "commands.txt").write_text(
        "budgetsearch baselines --run x/bar --ratios 0.5,0.25\n")
    erf_run = tmp_path / "erf"
    (erf_run / "trials").mkdir(parents=True)
    erf = table[table["pruner"] == "erf"].copy()
    for path in erf["pruned_config_path"]:
        (erf_run / path).write_text((fake_run / path).read_text())
    erf["pruned_config_path"] = ["runs/erf/" + p for p in erf["pruned_config_path"]]
    erf.to_csv(erf_run / "results.csv", index=False)
    (erf_run / "config.yaml").write_text("command: budgetsearch run --pruner erf --out x/erf\n")
    return fake_run, erf_run


def test_pareto_cli_merges_several_runs(two_runs: tuple[Path, Path], tmp_path: Path,
                                        capsys) -> None:
    from budgetsearch.cli import main

    bar, erf = two_runs
    out = tmp_path / "both"
    argv = ["pareto", str(bar), str(erf), "--devices", "jetson-nano,jetson-orin-nano",
            "--target", "1.5ms", "--out", str(out)]
    assert main(argv) == 0
    repriced = pd.read_csv(out / "repriced.csv")
    assert repriced["repriced"].all()  # every config found, in its own run folder
    assert set(repriced["run"]) == {"run", "erf"}
    assert len(repriced) == 2 * (len(pd.read_csv(bar / "results.csv")) +
                                 len(pd.read_csv(erf / "results.csv")))
    fronts = pd.read_csv(out / "fronts.csv")
    assert {"bar", "erf", "baseline", "all"} <= set(fronts["group"])
    assert set(fronts.loc[fronts["group"] == "erf", "run"]) == {"erf"}
    assert "?" not in set(fronts["group"])  # the reference is no pruner's
    choice = pd.read_csv(out / "hardware_selection.csv")
    assert "run" in choice.columns
    for stem in ("accuracy_vs_params", "hardware_selection", "kept_channels_bar",
                 "layer_sparsity_erf"):
        assert (out / stem).with_suffix(".png").stat().st_size > 1000, stem
    report = (out / "report.md").read_text()
    assert "| run | trial_id |" in report
    tail = report.rstrip().split("## Regenerate")[1]
    assert tail.index("--pruner bar") < tail.index("baselines --run x/bar") < tail.index(
        "--pruner erf") < tail.index("budgetsearch pareto")
    assert report.rstrip().endswith("```") and f"--out {out}" in tail
    assert not (bar / "pareto").exists()


def test_pareto_cli_several_runs_need_out(two_runs: tuple[Path, Path], capsys) -> None:
    from budgetsearch.cli import main

    bar, erf = two_runs
    assert main(["pareto", str(bar), str(erf)]) == 2
    assert "--out is required with several run folders" in capsys.readouterr().err
    assert main(["pareto", str(bar), str(bar), "--out", str(bar / "p")]) == 2
    assert "given once" in capsys.readouterr().err
