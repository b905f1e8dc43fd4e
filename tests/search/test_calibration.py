"""--calibrate: a latency search on a profile of this machine prices by its unpruned network as
timed here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from budgetsearch.cli import main
from budgetsearch.cost import layer_inventory, load_profile, save_profile
from budgetsearch.models import build_model
from budgetsearch.pareto.reprice import PrunedConfig, price_config
from budgetsearch.profiling import anchors, timing

MEASURED_MS = 0.9  # what the faked timer reads for any network
RUN = ["run", "--target-latency", "70%", "--model", "wrn-10-1", "--dataset", "synthetic",
       "--train-subset", "32", "--batch-size", "16", "--pruner", "channel-magnitude",
       "--threads", "1", "--out", "run", "--no-progress", "--no-families"]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[int]]:
    """A measured eager profile of this machine (the shipped one's model, this CPU's name and
    flags), its drift check off, and a timer that reads :data:`MEASURED_MS`: (path, calls)."""
    from dataclasses import replace

    shipped = load_profile("cpu-2core-x86", check=False)
    profile = replace(shipped, name="my-box", aliases=(), anchors=None, provenance={
        **shipped.provenance, "cpu": anchors.cpu_name(), "cpu_flags": anchors.cpu_flags()})
    path = save_profile(profile, tmp_path / "my-box.yaml")
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "0")
    calls: list[int] = []

    def fake(runners, *, rounds: int = 5, **kwargs):  # noqa: ANN001, ANN003, ANN202
        calls.append(len(runners))
        return np.full((len(runners), rounds), MEASURED_MS)

    monkeypatch.setattr(timing, "time_rounds", fake)  # time_runners takes its quietest round
    monkeypatch.chdir(tmp_path)
    return str(path), calls


def _dense_ms(path: str) -> float:
    inventory = layer_inventory(build_model("wrn-10-1"), torch.zeros(1, 1, 28, 28))
    return inventory.predict_latency_ms(load_profile(path))


def test_a_latency_run_is_calibrated_on_its_unpruned_network(
        here: tuple[str, list[int]], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The unpruned network is timed once before anything is priced: the relative target
    resolves against its measured time, every trial is priced by the profile × measured /
    priced, config.yaml records the scale, and --resume keeps it without timing again."""
    path, calls = here
    assert main([*RUN, "--device", path, "--trials", "1", "--calibrate"]) == 0
    text = capsys.readouterr().out
    dense = _dense_ms(path)
    scale = (MEASURED_MS / dense) ** 0.5  # half the gap, in log terms
    assert "note: latency calibrated on the unpruned wrn-10-1 as it runs here: 0.900 ms" in text
    config = yaml.safe_load(Path("run/config.yaml").read_text())
    assert config["settings"]["latency_scale"] == pytest.approx(scale, rel=1e-5)
    assert config["settings"]["target"]["value"] == pytest.approx(0.7 * dense * scale,
                                                                  rel=1e-5)
    table = pd.read_csv("run/results.csv")
    row = table[table["kind"] != "reference"].iloc[0]
    assert row["status"] == "ok", row["failure"]
    config_path = Path("run") / row["pruned_config_path"]
    priced = price_config(PrunedConfig.load(config_path), load_profile(path))
    assert row["latency_ms"] == pytest.approx(priced.latency_ms * scale, rel=1e-5)
    assert row["latency_ms"] <= 0.7 * dense * scale * 1.001
    # resumed: the stored scale, nothing re-timed before the trials
    from budgetsearch.profiling import calibrate

    monkeypatch.setattr(calibrate, "calibrate_to_network",
                        lambda *a, **k: pytest.fail("calibrated again on --resume"))
    assert main([*RUN, "--device", path, "--trials", "2", "--resume", "--calibrate"]) == 0
    assert "latency calibrated when the run started" in capsys.readouterr().out
    again = yaml.safe_load(Path("run/config.yaml").read_text())
    assert again["settings"]["latency_scale"] == config["settings"]["latency_scale"]
    table = pd.read_csv("run/results.csv")
    assert len(table.query("kind != 'reference'")) == 2
    # re-priced on the run's own device (pareto, export), its rows keep the calibration; on
    # another device they are priced as that device's profile says
    from budgetsearch.pareto.reprice import reprice_trials

    again = reprice_trials(table, [path, "jetson-nano"], base_dir="run")
    here_rows = again[again["device"] == "my-box"].set_index("trial_id")["latency_ms"]
    assert here_rows.to_dict() == pytest.approx(table.set_index("trial_id")["latency_ms"].to_dict(),
                                                rel=1e-6)
    nano = again[again["device"] == "jetson-nano"].iloc[0]
    nano_config = PrunedConfig.load(Path("run") / nano["pruned_config_path"])  # run-relative
    assert nano["latency_ms"] == pytest.approx(
        price_config(nano_config, load_profile("jetson-nano")).latency_ms)
    # a thinner dense baseline added to the run is priced as its trials were
    assert main(["baselines", "--ratios", "0.25", "--run", "run", "--no-progress"]) == 0
    baseline = pd.read_csv("run/results.csv").query("kind == 'baseline'").iloc[0]
    half = layer_inventory(build_model("wrn-10-1", in_channels=1, width_multiplier=0.5),
                           torch.zeros(1, 1, 28, 28)).predict_latency_ms(load_profile(path))
    assert baseline["latency_ms"] == pytest.approx(half * scale, rel=1e-5)


def test_without_calibrate_the_run_prices_by_the_profile_as_it_is(
        here: tuple[str, list[int]], capsys: pytest.CaptureFixture[str]) -> None:
    path, calls = here
    assert main([*RUN, "--device", path, "--trials", "1"]) == 0
    text = capsys.readouterr().out
    assert "latency calibrated" not in text
    config = yaml.safe_load(Path("run/config.yaml").read_text())
    assert config["settings"]["latency_scale"] == 1.0
    assert config["settings"]["target"]["value"] == pytest.approx(0.7 * _dense_ms(path),
                                                                  rel=1e-5)
    assert calls == [1]  # only the winner, "measured here" after the search
    # a run folder from before calibration existed (no latency_scale) still resumes
    config["settings"].pop("latency_scale")
    Path("run/config.yaml").write_text(yaml.safe_dump(config))
    assert main([*RUN, "--device", path, "--trials", "2", "--resume", "--calibrate"]) == 0
    assert "--calibrate ignored on --resume: the run started uncalibrated" in (
        capsys.readouterr().out)


def test_a_datasheet_device_is_not_calibrated(
        here: tuple[str, list[int]], capsys: pytest.CaptureFixture[str]) -> None:
    """Timing a network on this machine says nothing of a Jetson."""
    _, calls = here
    run = [("1ms" if a == "70%" else a) for a in RUN]  # the Jetsons are launch-bound here
    assert main([*run, "--device", "jetson-nano", "--trials", "1", "--calibrate"]) == 0
    text = capsys.readouterr().out
    assert "latency calibrated" not in text
    assert ("note: --calibrate ignored: jetson-nano is a datasheet profile, not measured on this "
            "machine") in text
    assert yaml.safe_load(Path("run/config.yaml").read_text())["settings"][
        "latency_scale"] == 1.0
    assert calls == []


def test_a_calibration_that_fails_is_a_note(
        here: tuple[str, list[int]], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = here

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("the runtime refused it\nsecond line")

    monkeypatch.setattr(timing, "make_runner", refuse)
    code = main([*RUN, "--device", path, "--trials", "1", "--calibrate"])
    text = capsys.readouterr().out
    assert code in (0, 1)  # the run goes on (its "measured here" fails the same way)
    assert yaml.safe_load(Path("run/config.yaml").read_text())["settings"][
        "latency_scale"] == 1.0
    assert ("note: latency not calibrated (RuntimeError: the runtime refused it): priced by "
            "my-box as it is") in text
    assert "second line" not in text


def test_latency_scale_must_be_positive() -> None:
    from budgetsearch.search.settings import TrialSettings

    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="latency_scale must be a positive number"):
            TrialSettings(latency_scale=bad)
