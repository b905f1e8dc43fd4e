from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from budgetsearch.cli import main


def test_models_lists_the_registry(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "wrn-16-8" in out and "10,961,082" in out and "resnet-56" in out


def test_train_end_to_end(fake_fashion_mnist: Path, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "run"
    code = main(["train", "--model", "wrn-10-1", "--data-dir", str(fake_fashion_mnist),
                 "--epochs", "1", "--train-subset", "40", "--out", str(out_dir), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "77,562 parameters" in printed
    row = pd.read_csv(out_dir / "results.csv").iloc[0]
    assert row["status"] == "ok" and row["train_images"] == 40 and row["parameters"] == 77_562
    config = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert config["model"] == "wrn-10-1" and config["train_subset"] == 40
    assert (out_dir / "model.pt").is_file()


def test_config_file_sets_defaults_and_flags_override(fake_fashion_mnist: Path,
                                                      tmp_path: Path) -> None:
    config_file = tmp_path / "c.yaml"
    config_file.write_text("model: wrn-10-1\nepochs: 0.5\nwidth: 0.5\nlr: 0.01\n")
    out_dir = tmp_path / "run"
    assert main(["train", "--config", str(config_file), "--lr", "0.003", "--data-dir",
                 str(fake_fashion_mnist), "--out", str(out_dir), "--no-progress"]) == 0
    resolved = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert resolved["width"] == 0.5 and resolved["lr"] == 0.003 and resolved["epochs"] == 0.5


@pytest.mark.parametrize("argv,fragment", [
    (["train", "--model", "vgg"], "path/to/file.py:FACTORY or package.module:FACTORY, got 'vgg'"),
    (["train", "--dataset", "nosuchset"], "an image folder DIR, got 'nosuchset'"),
    (["train", "--epochs", "-1"], "expected a positive"),
    (["train", "--epochs", "nan"], "expected a positive"),
    (["train", "--train-subset", "0"], "expected a positive integer"),
    (["train", "--val-fraction", "1.5"], "fraction"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_give_one_line_and_exit_2(argv: list[str], fragment: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_train_takes_a_users_factory_and_a_config_file_naming_it(
        fake_fashion_mnist: Path, tmp_path: Path, capsys) -> None:
    """`train` builds FILE:FACTORY like `run` does, from the flag or from --config (the resolved
    config names the absolute spec, so it re-runs from anywhere)."""
    net = tmp_path / "my_net.py"
    net.write_text(
        "from torch import nn\n"
        "def tiny(num_classes, in_channels):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                         nn.Linear(4, num_classes))\n")
    config_file = tmp_path / "c.yaml"
    config_file.write_text(f"model: {net}:tiny\nepochs: 0.5\n")
    out_dir = tmp_path / "run"
    assert main(["train", "--config", str(config_file), "--data-dir", str(fake_fashion_mnist),
                 "--train-subset", "40", "--out", str(out_dir), "--no-progress"]) == 0
    assert "(width ×1.0, 90 parameters)" in capsys.readouterr().out  # conv 4·9+4, linear 4·10+10
    resolved = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert resolved["model"] == f"{net}:tiny"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model: {net}:tinny\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "model:" in err and "has no 'tinny'; it defines tiny" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "x").exists()


def test_missing_data_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "apt-get install dataset-fashion-mnist" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_existing_output_folder_is_refused(fake_fashion_mnist: Path, tmp_path: Path,
                                           capsys) -> None:
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "results.csv").write_text("precious\n")
    argv = ["train", "--model", "wrn-10-1", "--data-dir", str(fake_fashion_mnist),
            "--epochs", "0.1", "--out", str(out_dir), "--no-progress"]
    assert main(argv) == 2
    assert "already holds another run" in capsys.readouterr().err
    assert (out_dir / "results.csv").read_text() == "precious\n"


def test_bad_config_file(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("epochz: 3\n")
    assert main(["train", "--config", str(unknown)]) == 2
    assert "unknown option(s) epochz" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="dataset-fashion-mnist"):
        main(["--debug", "train", "--data-dir", str(tmp_path)])


def test_console_script_help() -> None:
    result = subprocess.run([sys.executable, "-m", "budgetsearch", "--help"],
                            capture_output=True, text=True, check=True)
    assert "train" in result.stdout and "models" in result.stdout


def test_usage_error_lives_in_errors_and_exits_2(capsys) -> None:
    # Commands (budgetsearch.commands.pareto among them) raise budgetsearch.errors.UsageError;
    # the CLI re-imports it and reports it in one line with exit code 2.
    from budgetsearch import cli, errors
    from budgetsearch.commands import pareto as pareto_command

    assert cli.UsageError is errors.UsageError and issubclass(errors.UsageError, ValueError)
    assert pareto_command.UsageError is errors.UsageError
    assert main(["pareto", "/nonexistent/run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("budgetsearch: error: ") and len(err.splitlines()) == 1
