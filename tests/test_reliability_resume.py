"""Issue 18: resume never loses, overwrites or replays a finished trial; every bad input is one
line and exit 2 before anything is written; a run folder has one writer at a time.

One tiny run (wrn-10-1, synthetic images, two magnitude trials) is made once per module from a
folder of its own with a relative ``--out``; each test copies it and damages the copy.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from budgetsearch.cli import main
from budgetsearch.files import LOCK_FILE, folder_lock
from budgetsearch.search import optuna_driver
from budgetsearch.search.optuna_driver import OptunaOptions, run_optuna, sampler_seed
from budgetsearch.search.results import empty_row, write_row
from budgetsearch.search.settings import TrialSettings
from budgetsearch.search.space import load_space
from tests.conftest import run_cli

TINY = ["--model", "wrn-10-1", "--dataset", "synthetic", "--train-subset", "64",
        "--batch-size", "16", "--threads", "1", "--no-progress"]
# '50 %' (with a space) is accepted as 50%, and must keep its quotes in the recorded command.
# One base network (--no-families): these cases are about resuming and refusing, not families.
RUN = ["run", *TINY, "--pruner", "magnitude", "--no-families", "--target-params", "50 %",
       "--reference-epochs", "0.2"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (but the lock file) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-trial run, made from its own working directory with ``--out run``."""
    home = tmp_path_factory.mktemp("origin")
    before = Path.cwd()
    os.chdir(home)
    try:
        assert main([*RUN, "--trials", "2", "--out", "run"]) == 0
    finally:
        os.chdir(before)
    return home / "run"


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def resume(run: Path, trials: int = 3) -> list[str]:
    return [*RUN, "--trials", str(trials), "--resume", "--out", str(run)]


# ---------------------------------------------------------------------------------------------
# 1. The study and the results must agree; nothing is written before the check


def _empty(run: Path) -> None:
    (run / "study.db").write_bytes(b"")


def _truncated(run: Path) -> None:
    data = (run / "study.db").read_bytes()
    (run / "study.db").write_bytes(data[: len(data) // 2])


def _missing(run: Path) -> None:
    (run / "study.db").unlink()


def _garbage(run: Path) -> None:
    (run / "study.db").write_bytes(b"not a database at all" * 100)


def _row_unknown_to_study(run: Path) -> None:
    shutil.copytree(run / "trials" / "optuna-0001", run / "trials" / "optuna-0007")


def _row_lost(run: Path) -> None:
    (run / "trials" / "optuna-0001" / "row.json").unlink()


def _model_lost(run: Path) -> None:
    (run / "trials" / "optuna-0000" / "model.pt").unlink()


@pytest.mark.parametrize("damage,fragment", [
    (_empty, "study.db is empty (0 bytes); 2 finished trial(s) would be overwritten"),
    (_truncated, "study.db is damaged or truncated"),
    (_missing, "study.db is missing but 2 finished trial(s) are in"),
    (_garbage, "study.db is not an SQLite database"),
    (_row_unknown_to_study, "optuna-0007/row.json is a finished trial that"),
    (_row_lost, "holds trial 1 as complete but"),
    (_model_lost, "trial optuna-0000 is recorded ok but"),
])
def test_resume_refuses_a_study_that_disagrees_with_the_rows(
        damage: Any, fragment: str, run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damage(run_copy)
    before = snapshot(run_copy)
    code, err = run_cli(resume(run_copy), capsys)
    assert code == 2 and fragment in err and "cannot resume" in err
    assert snapshot(run_copy) == before  # config.yaml, results.csv, every trial: untouched


@pytest.mark.parametrize("text,fragment", [
    ("a: [\n", "config.yaml is not valid YAML: while parsing a flow node"),
    ("- 1\n- 2\n", "config.yaml must hold a mapping of setting: value (a run's config.yaml), "
                   "got list"),
    ("just text\n", "got str"),
])
def test_resume_with_a_broken_config_is_one_line(text: str, fragment: str, run_copy: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (run_copy / "config.yaml").write_text(text)
    before = snapshot(run_copy)
    code, err = run_cli(resume(run_copy), capsys)
    assert code == 2 and fragment in err
    assert snapshot(run_copy) == before


# ---------------------------------------------------------------------------------------------
# 2. Resume from another working directory; a damaged reference or best model is not "best"


def test_resume_from_another_directory(run_copy: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    old = {name: snapshot(run_copy / "trials" / name) for name in ("optuna-0000", "optuna-0001")}
    code, err = run_cli(resume(run_copy, trials=3), capsys)
    assert code == 0, err
    rows = pd.read_csv(run_copy / "results.csv")
    trials = rows[rows["kind"] == "pruned"]
    assert list(trials["trial_id"]) == ["optuna-0000", "optuna-0001", "optuna-0002"]
    assert set(trials["status"]) == {"ok"}  # trial 2 found the reference's weights
    for name, files in old.items():  # finished trials kept as they were
        assert snapshot(run_copy / "trials" / name) == files
    # The command recorded is the one typed, quotes included.
    command = yaml.safe_load((run_copy / "config.yaml").read_text())["command"]
    assert "50 %" in shlex.split(command)


@pytest.mark.parametrize("what", ["model.pt", "state_dict.pt"])
def test_tampered_reference_is_refused_before_any_trial(
        what: str, run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_copy / "reference" / what).write_bytes(b"tampered")
    before = snapshot(run_copy)
    code, err = run_cli(resume(run_copy, trials=3), capsys)
    assert code == 2 and "cannot use the run's reference network" in err
    assert f"remove {run_copy / 'reference'} to train it again" in err
    assert snapshot(run_copy) == before


def test_unloadable_best_model_is_not_reported_as_best(run_copy: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    for name in ("optuna-0000", "optuna-0001"):
        (run_copy / "trials" / name / "model.pt").write_bytes(b"tampered")
    code = main(resume(run_copy, trials=2))  # nothing left to run: only the summary
    captured = capsys.readouterr()
    assert code == 1
    assert "the best feasible row's model cannot be used" in captured.err
    assert "is corrupt, truncated or not a PyTorch file" in captured.err
    assert "best feasible:" not in captured.out


def test_run_whose_every_trial_failed_exits_non_zero(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def failing(params: dict[str, Any], settings: TrialSettings, trial_dir: Path, *,
                trial_id: str, **_: Any) -> dict[str, Any]:
        row = empty_row(trial_id, "optuna", settings, "magnitude", params)
        row.update(failure="loss became nan at epoch 0 step 0")
        write_row(trial_dir, row)
        return row

    monkeypatch.setattr(optuna_driver, "run_trial", failing)
    out = tmp_path / "run"
    code = main([*RUN[:-2], "--reference-epochs", "0", "--trials", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "every trial failed (2 of 2); the first, optuna-0000: loss became nan" \
        in err


# ---------------------------------------------------------------------------------------------
# 3-4. Ordinary bad input: one line, exit 2, nothing written


@pytest.mark.parametrize("text,fragment", [
    ("threads: two\n", "threads: expected a positive integer, got 'two'"),
    ("threads: 2.5\n", "threads: expected a positive integer, got '2.5'"),
    ("width: abc\n", "width: expected a positive number, got 'abc'"),
    ("trials: ten\n", "trials: expected a positive integer, got 'ten'"),
    ("val_fraction: 2\n", "val_fraction: expected a fraction in [0, 1), got '2'"),
    ("model: [1, 2]\n", "model: expected a single value"),
    ("batch_size: true\n", "batch_size: expected a single value, got True"),
    ("seed: x\n", "seed: expected an integer, got 'x'"),
    ("dataset: imagenet\n", "dataset: expected one of cifar10"),
])
def test_bad_values_in_a_config_file_name_the_option(text: str, fragment: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    out = tmp_path / "run"
    code, err = run_cli(["run", "--config", str(config), "--out", str(out)], capsys)
    assert code == 2 and fragment in err and str(config) in err
    assert not out.exists()


@pytest.mark.parametrize("argv,fragment", [
    (["--device", "tpu"], "device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["--device", "cpu:x"], "device must be auto, cpu, cuda or cuda:N, got 'cpu:x'"),
    (["--weight-decay", "nan"], "argument --weight-decay: expected a finite number"),
])
def test_train_bad_settings_write_nothing(argv: list[str], fragment: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "train"
    code, err = run_cli(["train", "--model", "wrn-10-1", "--dataset", "synthetic",
                         "--train-subset", "32", *argv, "--out", str(out)], capsys)
    assert code == 2 and fragment in err
    assert not out.exists()


def test_train_device_in_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("device: tpu\nepochs: -1\n")
    code, err = run_cli(["train", "--config", str(config), "--out", str(tmp_path / "t")], capsys)
    assert code == 2 and "epochs: expected a positive finite number, got '-1'" in err
    assert not (tmp_path / "t").exists()


def test_threads_beyond_this_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["run", *TINY[:-3], "--threads", "999", "--out", str(tmp_path / "r")],
                        capsys)
    assert code == 2 and f"threads must be at most the {os.cpu_count()} CPU(s)" in err
    assert "got 999" in err and not (tmp_path / "r").exists()


def test_out_that_cannot_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Tests run as root here, where a read-only mode does not stop writes: os.access stands in.
    locked = tmp_path / "read-only"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    code, err = run_cli(["run", *TINY, "--out", str(locked / "run")], capsys)
    assert code == 2 and f"cannot write in {locked} (permission denied)" in err
    assert not (locked / "run").exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, err = run_cli(["run", *TINY, "--out", str(a_file / "run")], capsys)
    assert code == 2 and f"{a_file} is a file, not a folder" in err


def test_permission_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path / "run"))

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, err = run_cli(["run", *TINY, "--reference-epochs", "0", "--pruner", "magnitude",
                         "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "Permission denied" in err


# ---------------------------------------------------------------------------------------------
# pareto and baselines: inputs checked before the first file


def test_pareto_out_naming_a_file(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = run_copy / "a-file"
    target.write_text("x")
    code, err = run_cli(["pareto", str(run_copy), "--out", str(target)], capsys)
    assert code == 2 and f"--out must be a folder, but {target} is a file" in err


def _text_accuracy(run: Path) -> None:
    table = pd.read_csv(run / "results.csv")
    table["accuracy"] = table["accuracy"].astype(str) + "x"
    table.to_csv(run / "results.csv", index=False)


def _two_columns(run: Path) -> None:
    (run / "results.csv").write_text("trial_id,accuracy\na,0.5\nb,0.6\n")


def _percent_accuracy(run: Path) -> None:
    table = pd.read_csv(run / "results.csv")
    table["accuracy"] = table["accuracy"] * 100
    table.to_csv(run / "results.csv", index=False)


@pytest.mark.parametrize("damage,extra,fragment", [
    (_text_accuracy, [], "results.csv: column 'accuracy' must hold numbers, got '0."),
    (_percent_accuracy, [], "results.csv: column 'accuracy' must hold fractions in [0, 1]"),
    (_two_columns, [], "no row has both an accuracy and a cost"),
    (None, ["--min-accuracy", "nan"], "--min-accuracy: expected an accuracy in [0, 1], got 'nan'"),
    (None, ["--min-accuracy", "95"], "--min-accuracy: expected an accuracy in [0, 1], got '95'"),
])
def test_pareto_bad_input_writes_nothing(damage: Any, extra: list[str], fragment: str,
                                         run_copy: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    if damage is not None:
        damage(run_copy)
    code, err = run_cli(["pareto", str(run_copy), "--devices", "jetson", *extra], capsys)
    assert code == 2 and fragment in err
    assert not (run_copy / "pareto").exists()


def test_pareto_damaged_pruned_config_is_named(run_copy: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("optuna-0000", "optuna-0001"):
        (run_copy / "trials" / name / "pruned_config.json").write_text('{"model": "wrn')
    code = main(["pareto", str(run_copy), "--devices", "jetson", "--metric", "params"])
    report = (run_copy / "pareto" / "report.md").read_text()
    assert code == 0 and "pruned_config.json is not valid JSON" in report
    capsys.readouterr()


def test_failed_baselines_command_is_not_logged(run_copy: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["baselines", "--run", str(run_copy), "--ratios", "0.5",
                         "--dataset", "nosuch"], capsys)
    assert code == 2 and "dataset must be one of" in err
    assert not (run_copy / "baselines").exists()
    code, err = run_cli(["baselines", "--run", str(run_copy), "--ratios", "0.5",
                         "--epochs", "nan"], capsys)
    assert code == 2 and "--epochs: expected a positive finite number, got 'nan'" in err
    assert not (run_copy / "baselines").exists()


# ---------------------------------------------------------------------------------------------
# 5. A port that is open but is not Ray: refused by the handshake, before any file or training


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and answers HTTP, not Ray."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_open_port_that_is_not_ray_is_refused(silent_port: int, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from budgetsearch.search import ray_driver

    monkeypatch.setattr(ray_driver, "PROBE_TIMEOUT_S", 6.0)
    out = tmp_path / "run"
    start = time.monotonic()
    code, err = run_cli(["run", *TINY, "--engine", "ray", "--ray-address",
                         f"127.0.0.1:{silent_port}", "--out", str(out)], capsys)
    assert code == 2 and time.monotonic() - start < 30
    assert f"no Ray cluster at ray_address '127.0.0.1:{silent_port}'" in err
    assert "Ray's handshake" in err
    assert not out.exists()


def test_ray_rows_without_their_experiment_are_not_overwritten(tmp_path: Path) -> None:
    from budgetsearch.search.ray_driver import check_experiment

    (tmp_path / "trials" / "ray-00000").mkdir(parents=True)
    (tmp_path / "trials" / "ray-00000" / "row.json").write_text("{}")
    with pytest.raises(ValueError, match="1 finished Ray trial.*a new one would overwrite"):
        check_experiment(tmp_path)


# ---------------------------------------------------------------------------------------------
# 6. The sampler does not replay configurations after a resume


def _fake_trial(params: dict[str, Any], settings: TrialSettings, trial_dir: Path, *,
                trial_id: str, **_: Any) -> dict[str, Any]:
    row = empty_row(trial_id, "optuna", settings, "magnitude", params)
    row.update(status="ok", accuracy=0.5, val_accuracy=0.5, feasible=True,
               model_path=str(trial_dir / "model.pt"))
    write_row(trial_dir, row)
    return row


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_resumed_sampler_draws_new_configurations(sampler: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optuna_driver, "run_trial", _fake_trial)
    space = load_space("magnitude")
    settings = TrialSettings(model="wrn-10-1", dataset="synthetic", reference_epochs=0)
    for total in (1, 2, 4):  # resumed twice, as after two kill -9s
        options = OptunaOptions(trials=total, sampler=sampler, prune=False)
        rows = run_optuna(space, settings, tmp_path, options, resume=total > 1)
    assert len(rows) == 4
    tried = [json.dumps({k: v for k, v in r.items() if k.startswith("hp_")}, sort_keys=True)
             for r in rows]
    assert len(set(tried)) == 4, tried


def test_sampler_seed() -> None:
    assert sampler_seed(0, 0) == 0 and sampler_seed(5, 0) == 5
    seeds = {sampler_seed(0, n) for n in range(1, 50)}
    assert len(seeds) == 49 and 0 not in seeds
    assert sampler_seed(3, 2) == sampler_seed(3, 2)


# ---------------------------------------------------------------------------------------------
# Concurrent use: one writer per run folder


def test_second_run_into_a_folder_in_use_is_refused(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with folder_lock(out, what="run folder"):  # a first run, alive
        code, err = run_cli([*RUN, "--trials", "1", "--out", str(out)], capsys)
    assert code == 2 and f"run folder {out} is in use by another budgetsearch process" in err
    assert f"(process {os.getpid()})" in err
    assert [p.name for p in out.iterdir()] == [LOCK_FILE]  # nothing else written


def test_resume_while_the_run_is_alive_is_refused(run_copy: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(run_copy)
    with folder_lock(run_copy, what="run folder"):
        code, err = run_cli(resume(run_copy), capsys)
    assert code == 2 and "is in use by another budgetsearch process" in err
    assert snapshot(run_copy) == before


def test_lock_of_a_dead_run_does_not_block(run_copy: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # kill -9 leaves the file, never the lock (the kernel drops flock with the process).
    (run_copy / LOCK_FILE).write_text("999999")
    code, err = run_cli(resume(run_copy, trials=2), capsys)
    assert code == 0, err


def test_folder_that_filled_meanwhile_is_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Two new runs into one empty folder: the one that locks second finds the other's files."""
    from budgetsearch.commands import run as run_command

    out = tmp_path / "run"
    real_check = run_command.check_output_dir

    def check_then_other_run_writes(path: Path, **kwargs: Any) -> None:
        real_check(path, **kwargs)
        path.mkdir()
        (path / "config.yaml").write_text("command: other run\n")

    monkeypatch.setattr(run_command, "check_output_dir", check_then_other_run_writes)
    code, err = run_cli([*RUN, "--trials", "1", "--out", str(out)], capsys)
    assert code == 2 and "already holds another run" in err
    assert (out / "config.yaml").read_text() == "command: other run\n"


# ---------------------------------------------------------------------------------------------
# Relative targets and the new pruners


@pytest.mark.parametrize("argv,fragment", [
    (["--target-flops", "nan%"], "--target-flops must be a percentage in (0%, 100%]"),
    (["--target-flops", "inf%"], "--target-flops must be a percentage in (0%, 100%]"),
    (["--target-flops", "%"], "--target-flops must be a percentage in (0%, 100%]"),
    (["--target-flops", "50%%"], "--target-flops must be a percentage in (0%, 100%]"),
    (["--target-params", "0%"], "--target-params must be a percentage in (0%, 100%]"),
    (["--target-params", "150%"], "--target-params must be a percentage in (0%, 100%]"),
    (["--target-volume", "1e400%"], "--target-volume must be a percentage in (0%, 100%]"),
    (["--pruner", "magnitude", "--no-families", "--target-volume", "50%"],
     "ask for at least 65,866 activations"),
    (["--pruner", "magnitude", "--no-families", "--target-params", "1"],
     "ask for at least 1,786 parameters"),
    # With families, the smallest candidate is a thinner base network.
    (["--pruner", "magnitude", "--target-params", "1"], "ask for at least 1,246 parameters"),
    (["--pruner", "channel-magnitude", "--target-params", "1"],
     "ask for at least 37 parameters"),
    (["--pruner", "channel-magnitude", "--target-latency", "50%"],
     "--target-latency needs --device"),
    (["--pruner", "magnitude", "--target-flops", "1e-9%"], "ask for at least"),
])
def test_relative_and_pruner_targets(argv: list[str], fragment: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, err = run_cli(["run", *TINY, "--reference-epochs", "0", *argv, "--out", str(out)],
                        capsys)
    assert code == 2 and fragment in err
    assert not out.exists()
