"""The cost-model commands: devices, cost, profile (bad input: one line, exit code 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from budgetsearch.cli import main
from budgetsearch.cost import load_profile
from budgetsearch.profiling.timing import RUNTIMES


def test_devices_lists_every_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "jetson-orin-nano" in out and "datasheet" in out


def test_cost_prints_layers_totals_and_flop_convention(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--model", "wrn-10-1", "--device", "jetson", "--width", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "resolves to profile 'jetson-orin-nano'" in out
    assert "1 FLOP = 1 fused multiply-add" in out
    assert "layer1.0.conv1" in out and "predicted latency" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cost", "--model", "wrn-10-1", "--device", "pi"], "'pi'"),
        (["cost", "--model", "wrn-10-1", "--input", "28x28"], "'28x28'"),
        (["cost", "--model", "vgg"], "vgg"),
        (["profile", "--name", "Bad Name"], "'Bad Name'"),
        (["profile", "--name", "x", "--out", "x.txt"], "x.txt"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, capsys) -> None:  # noqa: ANN001
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.slow
def test_profile_writes_a_valid_measured_profile(tmp_path: Path) -> None:
    out = tmp_path / "mine.yaml"
    argv = ["profile", "--name", "mine", "--out", str(out), "--fit", "18", "--holdout", "4",
            "--rounds", "2", "--no-progress"]
    assert main(argv) == 0
    profile = load_profile(out)
    assert profile.source == "measured" and profile.predictor_error.networks == 4
    assert out.with_suffix(".csv").exists()
    assert 0 <= profile.provenance["repeatability"]["within_10pct"] <= 1  # the run vs itself


def test_devices_json_gives_runtime_threads_and_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "0")
    assert main(["devices", "--json", "--no-check"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["jetson-orin-nano"]["predictor_error"] is None
    measured = [row for row in rows.values() if row["source"] == "measured"]
    assert measured and all(row["runtime"] in RUNTIMES for row in measured)
    assert all(row["threads"] and row["predictor_error"]["networks"] > 0 for row in measured)


def test_devices_shows_how_far_the_profiling_run_agreed_with_itself(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    from dataclasses import replace

    from budgetsearch.cost import save_profile

    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "0")
    monkeypatch.setenv("BUDGETSEARCH_PROFILE_DIR", str(tmp_path))
    shipped = load_profile("cpu-2core-x86-avx2", check=False)
    mine = replace(shipped, name="noisy-box", provenance={
        **shipped.provenance, "repeatability": {"within_10pct": 0.62, "method": "halves"}})
    save_profile(mine, tmp_path / "noisy-box.yaml")
    assert main(["devices", "--json", "--no-check"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["noisy-box"]["run_repeatability"] == 0.62
    assert rows["cpu-2core-x86-avx2"]["run_repeatability"] is None  # made before it was kept
    assert main(["devices", "--no-check"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("noisy-box"))
    assert "the run agreed with itself for 62% of its networks" in line


def _current(profile):  # noqa: ANN001, ANN202
    """``profile`` as if measured on networks this budgetsearch's generator draws."""
    from dataclasses import replace

    from budgetsearch.profiling.networks import GENERATOR_VERSION

    return replace(profile, provenance={**profile.provenance,
                                        "generator_version": GENERATOR_VERSION})


def _synthetic_measurements(path: Path, runtime: str, truth, shapes=None) -> None:  # noqa: ANN001
    """A measurements CSV for --fit 60 --holdout 6 --seed 0 whose times are ``truth``'s
    predictions (an oracle the refit must recover), its networks drawn at ``shapes``."""
    import pandas as pd

    from budgetsearch.profiling.fit import build_fit_set
    from budgetsearch.profiling.networks import INPUT_SHAPES

    fit, holdout = build_fit_set(60, 6, seed=0, shapes=shapes or INPUT_SHAPES)
    rows = [{"runtime": runtime, "set": which, "family": n.family, "network": n.label,
             "flops": 0.0, "predicted_ms": None, "error_pct": None,
             "measured_ms": n.inventory.predict_latency_ms(truth, kept_channels=n.kept_channels)}
            for which, nets in (("fit", fit), ("holdout", holdout)) for n in nets]
    rows.append({"runtime": "pytorch-eager", "set": "fit", "family": "plain",
                 "network": "kept#1/1x28x28", "flops": 1.0, "measured_ms": 1.5,
                 "predicted_ms": None, "error_pct": None})
    pd.DataFrame(rows).to_csv(path, index=False)


def test_profile_refit_recovers_the_model_from_its_measurements(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Oracle: measurements that are a known profile's own predictions. --refit times nothing,
    draws the networks the measurements hold (their counts, the profile's seed), fits the stale
    profile again and predicts the held-out networks as the known profile does; other runtimes'
    rows are kept."""
    import pandas as pd

    from budgetsearch.cost import save_profile

    truth = _current(load_profile("cpu-2core-x86-ort", check=False))
    save_profile(truth.rescaled(overhead=3.0, work=0.5), tmp_path / "box-ort.yaml")
    _synthetic_measurements(tmp_path / "box.csv", "onnxruntime", truth)
    assert main(["profile", "--name", "box", "--out", str(tmp_path / "box.yaml"), "--runtime",
                 "onnxruntime", "--refit"]) == 0
    refitted = load_profile(tmp_path / "box-ort.yaml", check=False)
    assert refitted.predictor_error.networks == 6
    assert refitted.predictor_error.within_10pct == 1.0
    assert refitted.predictor_error.median_abs_pct < 1.0
    assert "re-fitted" in refitted.provenance["notes"] and refitted.provenance["seed"] == 0
    table = pd.read_csv(tmp_path / "box.csv")
    # the drift check's anchors: held-out networks, with the times the measurements give them
    held = table[(table["runtime"] == "onnxruntime") & (table["set"] == "holdout")]
    recorded = dict(zip(held["network"], held["measured_ms"], strict=True))
    anchors = refitted.anchors["networks"]
    assert anchors and len({a["name"].split("#")[0] for a in anchors}) == len(anchors)
    assert all(a["recorded_ms"] == pytest.approx(recorded[a["name"]], rel=1e-4) for a in anchors)
    assert (table["runtime"] == "pytorch-eager").sum() == 1  # other runtimes kept
    ort = table[table["runtime"] == "onnxruntime"]
    assert len(ort) == 66 and ort["predicted_ms"].notna().all()
    # anchors recorded alone, as the check times them, are kept by a refit that picks them again
    # (no run time stands for a snapshot)
    from dataclasses import replace

    alone = {**refitted.anchors, "recorded": "alone (test)", "networks": [
        {**a, "recorded_ms": 0.123} for a in anchors]}
    save_profile(replace(refitted, anchors=alone), tmp_path / "box-ort.yaml")
    assert main(["profile", "--name", "box", "--out", str(tmp_path / "box.yaml"), "--runtime",
                 "onnxruntime", "--refit"]) == 0
    kept_profile = load_profile(tmp_path / "box-ort.yaml", check=False)
    kept = kept_profile.anchors
    assert kept["recorded"] == "alone (test)"
    assert [a["recorded_ms"] for a in kept["networks"]] == [0.123] * len(anchors)
    assert "process_state" not in kept_profile.provenance  # not recorded in a new process
    # anchors recorded in a new process at half their fit-run times: the re-fit prices every
    # network in a process of its own, at half the fit's prices, and says so
    from budgetsearch.cost import layer_inventory
    from budgetsearch.profiling.anchors import build_anchor
    from budgetsearch.profiling.fit import NEW_PROCESS

    fresh = {**kept, "recorded": f"alone ({NEW_PROCESS}, test)", "networks": [
        {**a, "recorded_ms": recorded[a["name"]] * 0.5} for a in anchors]}
    save_profile(replace(kept_profile, anchors=fresh), tmp_path / "box-ort.yaml")
    assert main(["profile", "--name", "box", "--out", str(tmp_path / "box.yaml"), "--runtime",
                 "onnxruntime", "--refit"]) == 0
    moved = load_profile(tmp_path / "box-ort.yaml", check=False)
    assert moved.provenance["process_state"]["factor"] == pytest.approx(0.5, abs=1e-3)
    model, x = build_anchor("conv-stack-32")
    inventory = layer_inventory(model, x)
    assert inventory.predict_latency_ms(moved) == pytest.approx(
        0.5 * inventory.predict_latency_ms(kept_profile), rel=1e-3)


def test_a_gpu_profile_refits_on_a_machine_without_a_gpu(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--refit times nothing, so a GPU profile is fitted again anywhere (a GPU's own fit terms,
    float16 priced in 2-byte elements), from measurements that are a known profile's own
    predictions."""
    from dataclasses import replace

    import torch

    from budgetsearch.cost import save_profile
    from budgetsearch.profiling.networks import INPUT_SHAPES, shapes_text

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    shipped = load_profile("gpu-h200-fp16", check=False)
    truth = replace(_current(shipped), provenance={
        **_current(shipped).provenance, "input_shapes": shapes_text(INPUT_SHAPES)})
    save_profile(truth.rescaled(overhead=2.0, work=0.5), tmp_path / "box-fp16.yaml")
    _synthetic_measurements(tmp_path / "box.csv", "pytorch-cuda-fp16", truth)
    assert main(["profile", "--name", "box", "--out", str(tmp_path / "box.yaml"), "--runtime",
                 "pytorch-cuda-fp16", "--refit"]) == 0
    refitted = load_profile(tmp_path / "box-fp16.yaml", check=False)
    assert refitted.runtime == "pytorch-cuda-fp16" and refitted.bytes_per_element == 2
    assert refitted.predictor_error.within_10pct == 1.0


@pytest.mark.parametrize(("change", "flags", "message"), [
    ("none", ["--seed", "1"], "is not one seed 1 draws"),
    ("none", ["--fit", "18"], "hold 60 fit networks of onnxruntime, --fit says 18"),
    ("blank", [], "must be a positive finite number, got an empty cell"),
    ("eager only", [], "no onnxruntime rows"),
    ("none", ["--runtime", "both"], "no pytorch-eager rows"),
    ("inf", [], "must be a positive finite number, got inf"),
    ("twice", [], "appears twice in the onnxruntime measurements"),
    ("seed", [], "box-ort.yaml: provenance.seed must be an integer, got 'abc'"),
    ("shapes", [], "box-ort.yaml: provenance.input_shapes must read like"),
    ("version", [], "box-ort.yaml: its measurements are of networks drawn by generator version "
                    "1, and this budgetsearch draws version"),
])
def test_profile_refit_refuses_measurements_it_cannot_use(
        change: str, flags: list[str], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """One line naming what does not fit, exit 2, and nothing written: neither profile (with
    --runtime both, not the one that could be refitted) nor the CSV. All of it is found before
    any network is built."""
    from dataclasses import replace

    import pandas as pd

    from budgetsearch.cost import save_profile

    truth = _current(load_profile("cpu-2core-x86-ort", check=False))
    if change == "seed":
        truth = replace(truth, provenance={**truth.provenance, "seed": "abc"})
    if change == "shapes":
        truth = replace(truth, provenance={**truth.provenance, "input_shapes": "28, 32"})
    if change == "version":  # measured before the generator recorded its version
        truth = replace(truth, provenance={k: v for k, v in truth.provenance.items()
                                           if k != "generator_version"})
    save_profile(truth, tmp_path / "box-ort.yaml")
    save_profile(load_profile("cpu-2core-x86", check=False), tmp_path / "box.yaml")
    rows = [{"runtime": "onnxruntime", "set": which, "family": spec.family,
             "network": spec.label, "measured_ms": 1.0}
            for which, specs in (("fit", _specs(60, 0)), ("holdout", _specs(6, 1000)))
            for spec in specs]
    table = pd.DataFrame(rows)
    if change == "blank":
        table.loc[3, "measured_ms"] = None
    if change == "eager only":
        table["runtime"] = "pytorch-eager"
    if change == "inf":
        table.loc[5, "measured_ms"] = float("inf")
    if change == "twice":
        table = pd.concat([table, table.iloc[[7]]], ignore_index=True)
    table.to_csv(tmp_path / "box.csv", index=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    argv = ["profile", "--name", "box", "--out", str(tmp_path / "box.yaml"), "--refit"]
    if "--runtime" not in flags:
        argv += ["--runtime", "onnxruntime"]
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def _specs(count: int, seed: int) -> list:
    from budgetsearch.profiling.networks import sample_specs

    return sample_specs(count, seed=seed)


def test_a_profile_of_another_cpu_says_why_it_is_not_checked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # noqa: ANN001
    """On a CPU other than the one a profile was measured on, `devices` (and --json) and `cost`
    say in one line that it is not checked here and why, instead of 'never checked'."""
    import json

    from budgetsearch.profiling import anchors

    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "1")
    monkeypatch.setenv("BUDGETSEARCH_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(anchors, "cpu_name", lambda: "A CPU No Profile Was Measured On")
    assert main(["devices"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines()
                if x.startswith("cpu-2core-x86 "))
    assert "not checked here: measured on" in line and "A CPU No Profile Was Measured On" in line
    assert "(to measure this one: 'budgetsearch profile --name NAME')" in line  # none is here
    assert main(["devices", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert "A CPU No Profile" in rows["cpu-2core-x86"]["unchecked_reason"]
    assert rows["jetson-nano"]["unchecked_reason"] is None
    assert main(["cost", "--model", "wrn-10-1", "--device", "cpu-2core-x86"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not checked here" in err[0] and "to measure this one" in err[0]


def test_a_profile_fitted_at_more_input_sizes_records_them_and_refits_at_them(
        tmp_path: Path) -> None:
    """``--input-size N`` adds 3×N×N inputs to the fit set's draw; the provenance names the
    shapes, and --refit draws the measured networks at them again (a draw at the default
    shapes would not find them: 'is not one seed 0 draws')."""
    from dataclasses import replace

    from budgetsearch.cost import save_profile
    from budgetsearch.profiling.networks import (
        INPUT_SHAPES,
        sample_specs,
        shapes_from_text,
        shapes_text,
    )

    shapes = (*INPUT_SHAPES, (1, 3, 48, 48))
    assert shapes_from_text(shapes_text(shapes)) == shapes
    assert shapes_from_text(None) == INPUT_SHAPES
    assert shapes_from_text("1x1x28x28, 1x3x32x32, 1x3x64x64 (uniform)") == INPUT_SHAPES
    with pytest.raises(ValueError, match="input_shapes must read like"):
        shapes_from_text("28, 32")
    assert {s.input_shape for s in sample_specs(60, seed=0, shapes=shapes)} == set(shapes)
    truth = _current(load_profile("cpu-2core-x86-ort", check=False))
    truth = replace(truth, provenance={**truth.provenance, "input_shapes": shapes_text(shapes)})
    save_profile(truth, tmp_path / "box-ort.yaml")
    _synthetic_measurements(tmp_path / "box.csv", "onnxruntime", truth, shapes)
    assert main(["profile", "--name", "box", "--out", str(tmp_path / "box.yaml"), "--runtime",
                 "onnxruntime", "--refit"]) == 0
    refitted = load_profile(tmp_path / "box-ort.yaml", check=False)
    assert refitted.provenance["input_shapes"] == shapes_text(shapes)
    assert refitted.predictor_error.within_10pct == 1.0


@pytest.mark.parametrize(("flags", "message"), [
    (["--input-size", "7"], "argument --input-size: expected a side in pixels (16-512), got '7'"),
    (["--input-size", "big"], "expected a side in pixels (16-512), got 'big'"),
    (["--input-size", "128", "--refit"], "--input-size does not apply with --refit"),
])
def test_profile_input_size_is_checked_before_anything_runs(
        flags: list[str], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from budgetsearch.cost import save_profile

    save_profile(load_profile("cpu-2core-x86", check=False), tmp_path / "box.yaml")
    assert main(["profile", "--name", "box", "--out", str(tmp_path / "box.yaml"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
