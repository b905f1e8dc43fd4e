"""The cost-model commands: devices, cost, profile (bad input: one line, exit code 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from budgetsearch.cli import main
from budgetsearch.cost import load_profile


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


def test_devices_json_gives_runtime_threads_and_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "0")
    assert main(["devices", "--json", "--no-check"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["jetson-orin-nano"]["predictor_error"] is None
    measured = [row for row in rows.values() if row["source"] == "measured"]
    assert measured and all(row["runtime"] in ("pytorch-eager", "onnxruntime") for row in measured)
    assert all(row["threads"] and row["predictor_error"]["networks"] > 0 for row in measured)
