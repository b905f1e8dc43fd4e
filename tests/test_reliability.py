"""Issue 8: bad input gets one clear line (exit 2, nothing written); faults lose nothing.

Bad input runs the CLI in-process. The faults (kill -9, Ctrl-C) run ``budgetsearch run`` as a
subprocess on wrn-10-1 and a few dozen synthetic images; the NaN-loss fault runs in-process.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from budgetsearch.cli import main
from budgetsearch.data import load_dataset
from budgetsearch.models import build_model
from budgetsearch.models.files import load_model_file
from budgetsearch.search.objective import INTERRUPTED_BY_KILL, INTERRUPTED_BY_USER, TrialSettings
from budgetsearch.search.optuna_driver import OptunaOptions, make_study, run_optuna
from budgetsearch.search.runner import RunRequest, run_search
from budgetsearch.search.space import load_space
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "hw_profiles" / "cpu-2core-x86.yaml"
TINY_RUN = ["--model", "wrn-10-1", "--dataset", "synthetic", "--train-subset", "32",
            "--batch-size", "16", "--threads", "1", "--no-progress"]


# ---------------------------------------------------------------------------------------------
# Units and numbers


@pytest.mark.parametrize("flag,value,rule", [
    *[("--target-latency", v, "--target-latency must be a positive duration like '10ms'")
      for v in ("10xs", "-5ms", "0", "nan", "1e309ms", "10")],
    *[("--target-flops", v, "--target-flops must be a positive count like '50M'")
      for v in ("10xs", "-5M", "0", "nan", "1e309", "inf")],
    *[("--target-params", v, "--target-params must be a positive count like '50M'")
      for v in ("10xs", "-5", "0", "nan", "1e309")],
    *[("--target-volume", v, "--target-volume must be a positive count like '50M'")
      for v in ("10xs", "-5", "0")],
    *[(flag, v, f"{flag} must be a percentage in (0%, 100%] like '50%'")
      for flag in ("--target-latency", "--target-flops") for v in ("0%", "150%", "-5%")],
])
def test_bad_target_numbers(flag: str, value: str, rule: str, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, err = run_cli(["run", "--device", "jetson", flag, value, "--out", str(out)], capsys)
    assert code == 2 and rule in err and f"got {value!r}" in err
    assert not out.exists()


@pytest.mark.parametrize("argv,fragment", [
    (["--trials", "0"], "argument --trials: expected a positive integer, got '0'"),
    (["--trials", "-3"], "argument --trials: expected a positive integer, got '-3'"),
    (["--width", "nan"], "argument --width: expected a positive finite number, got 'nan'"),
    (["--timeout", "soon"], "timeout must be a positive duration like '30m', '90s' or '2h', "
                            "got 'soon'"),
])
def test_bad_run_numbers(argv: list[str], fragment: str, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["run", *argv, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and fragment in err
    assert not (tmp_path / "run").exists()


def test_api_rejects_zero_trials() -> None:
    with pytest.raises(ValueError, match="trials must be a positive integer .* got 0"):
        OptunaOptions(trials=0)
    with pytest.raises(ValueError, match="timeout_s must be a positive number .* got -1"):
        OptunaOptions(trials=None, timeout_s=-1)


# ---------------------------------------------------------------------------------------------
# Unknown names (the valid ones are listed), and names that try to leave their folder


@pytest.mark.parametrize("argv,fragment", [
    (["--device", "nosuch", "--target-latency", "1ms"],
     "device must be a profile name (cpu-2core-x86, cpu-2core-x86-avx2, cpu-2core-x86-avx2-ort, "
     "cpu-2core-x86-ort, cpu-2core-x86-xeon, cpu-2core-x86-xeon-ort, gpu-h200, gpu-h200-fp16, "
     "jetson-nano"),
    (["--model", "vgg"], "--model must be a built-in name (resnet-20, "),
    (["--dataset", "imagenet"], "dataset must be one of cifar10, cifar100, fashion-mnist"),
    (["--pruner", "foo", "--model", "wrn-10-1", "--dataset", "synthetic"],
     "pruner must be one of bar, channel-magnitude, dense, erf, magnitude, got 'foo'"),
    (["--engine", "foo"], "invalid choice: 'foo' (choose from 'optuna', 'ray')"),
    (["--space", "nosuch"], "search space must be one of bar, channel-magnitude, dense, erf, "
                            "magnitude or a path"),
    (["--device", "..", "--target-latency", "1ms"], "device must be a profile name"),
    (["--space", ".."], "search space must be one of bar, channel-magnitude, dense, erf, "
                        "magnitude or a path to a .yaml file, got '..'"),
    (["--pruner", "../bar", "--model", "wrn-10-1", "--dataset", "synthetic"],
     "pruner must be one of bar, channel-magnitude, dense, erf, magnitude, got '../bar'"),
])
def test_unknown_names_list_the_valid_ones(argv: list[str], fragment: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["run", *argv, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and fragment in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "/tmp/x", "Upper"])
def test_profile_name_cannot_escape(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["profile", "--name", name], capsys)
    assert code == 2 and "--name must be lower-case letters" in err and repr(name) in err


def test_pareto_devices_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pd.DataFrame([{"trial_id": "t", "accuracy": 0.5}]).to_csv(tmp_path / "results.csv")
    code, err = run_cli(["pareto", str(tmp_path), "--devices", "../x"], capsys)
    assert code == 2 and "unknown device '../x'; known: cpu-2core-x86" in err


def test_unreachable_target_states_the_minimum(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # The minimum is what the best pruner can reach, as each says through the protocol
    # (BudgetInfeasible.minimum at prepare): BAR's smallest expressible network here.
    from budgetsearch.cost import Target
    from budgetsearch.pruners import BudgetInfeasible, build_pruner, search_order

    for flag, metric, value, minimum in (("--target-params", "params", "5", "37 parameters"),
                                         ("--target-flops", "flops", "10", "9,418 FLOPs")):
        reachable = []
        for name in search_order():
            with pytest.raises(BudgetInfeasible) as refused:
                build_pruner(name, target=Target(metric, float(value))).prepare(
                    build_model("wrn-10-1", num_classes=10, in_channels=1),
                    torch.zeros(1, 1, 28, 28))
            reachable.append(refused.value.minimum)
        assert Target(metric, 1.0).describe(min(reachable)) == minimum
        code, err = run_cli(["run", flag, value, *TINY_RUN, "--out", str(tmp_path / "r")],
                            capsys)
        assert code == 2 and f"ask for at least {minimum}" in err
        assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------
# Profile and search-space files: malformed, truncated, hostile


def _profile_text(**changes: object) -> str:
    data = yaml.safe_load(PROFILE.read_text())
    for dotted, value in changes.items():
        keys = dotted.split("__")
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return yaml.safe_dump(data)


@pytest.mark.parametrize("text,fragment", [
    ("!!python/object/apply:os.system ['touch {canary}']\n", "not valid YAML: could not "
     "determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("name: x\nsource: measured\nprovenance: {tool: budgetsearch\n", "not valid YAML"),
    ("", "a profile must be a mapping of key: value, got NoneType"),
    ("- 1\n- 2\n", "a profile must be a mapping of key: value, got list"),
    (_profile_text(sparse_speedup="fast"),
     "key 'sparse_speedup' must be of type integer or number, got str 'fast'"),
    (_profile_text(latency_model__network_overhead_ms=-0.5),
     "key 'latency_model.network_overhead_ms' must be a finite non-negative number, got -0.5"),
    (_profile_text(latency_model__ops__conv__ms_per_gflop=-3.0),
     "key 'latency_model.ops.conv.ms_per_gflop' must be a finite non-negative number"),
    (_profile_text(turbo=True), "unknown key(s) 'turbo'; allowed: aliases"),
    (_profile_text(latency_model__ops__gpu={"ms_per_gflop": 1.0}),
     "unknown key(s) 'latency_model.ops.gpu'"),
    (_profile_text(provenance__repeatability={"within_10pct": 1.5}),
     "key 'provenance.repeatability' must be a mapping whose 'within_10pct' is a share"),
    (_profile_text(provenance__repeatability="high"),
     "key 'provenance.repeatability' must be a mapping"),
])
def test_bad_profile_file(text: str, fragment: str, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    canary = tmp_path / "pwned"
    path = tmp_path / "device.yaml"
    path.write_text(text.replace("{canary}", str(canary)))
    code, err = run_cli(["run", "--device", str(path), "--target-latency", "1ms",
                         "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and fragment in err and str(path) in err
    assert not canary.exists() and not (tmp_path / "run").exists()


SPACE = "pruner: bar\nparameters:\n  lam: {type: float, low: 0.1, high: 1.0, log: true}\n"


@pytest.mark.parametrize("text,fragment", [
    ("pruner: bar\nparameters:\n  lam: !!python/object/apply:os.system ['touch {canary}']\n",
     "not valid YAML: could not determine a constructor"),
    (SPACE[:-12], "not valid YAML"),
    ("", "must hold a mapping with keys pruner, parameters, fixed"),
    (SPACE + "evil: 1\n", "unknown key(s) evil; allowed: description, fixed, parameters, "
     "pruner"),
    (SPACE.replace("log: true", "lg: true"), "parameters.lam has unknown key(s) lg"),
    (SPACE.replace("0.1", "abc"), "parameters.lam.low must be a finite number, got 'abc'"),
    (SPACE.replace("log: true", "log: yes please"), "parameters.lam.log must be true or false"),
    (SPACE + "  budget: {type: float, low: -1, high: 1}\n",
     "parameters.budget = -1.0 is not valid for pruner 'bar': budget must be a fraction of the "
     "full cost in (0, 1], got -1.0"),
    (SPACE + "  lamb: {type: float, low: 0.1, high: 1}\n",
     "parameters.lamb = 0.1 is not valid for pruner 'bar': unknown BAR option(s) ['lamb']"),
    (SPACE + "  epochs: {type: float, low: -2, high: 1}\n",
     "parameters.epochs = -2.0 is not valid for pruner 'bar': epochs must be a positive number"),
    (SPACE + "fixed:\n  transition: cubic\n", "fixed.transition = 'cubic' is not valid"),
    (SPACE.replace("pruner: bar", "pruner: foo"),
     "pruner must be one of bar, channel-magnitude, dense, erf, magnitude, got 'foo'"),
])
def test_bad_space_file(text: str, fragment: str, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    canary = tmp_path / "pwned"
    path = tmp_path / "space.yaml"
    path.write_text(text.replace("{canary}", str(canary)))
    code, err = run_cli(["run", "--space", str(path), *TINY_RUN, "--out", str(tmp_path / "run")],
                        capsys)
    assert code == 2 and fragment in err and str(path) in err
    assert not canary.exists() and not (tmp_path / "run").exists()


def test_bad_space_through_the_api(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE + "  budget: {type: float, low: 0.5, high: 3}\n")
    settings = TrialSettings(model="wrn-10-1", dataset="synthetic", train_subset=32)
    with pytest.raises(ValueError, match=r"parameters\.budget = 3\.0 is not valid"):
        run_search(RunRequest(settings=settings, space=str(path)), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# Model files: corrupt, foreign, hostile (torch.load(weights_only=True) only)


def _evil(canary: Path) -> object:
    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {canary}",))
    return Evil()


def test_model_file_loader(tmp_path: Path) -> None:
    good = tmp_path / "model.pt"
    torch.save(build_model("wrn-10-1"), good)
    assert type(load_model_file(good)).__name__ == "PreActResNet"
    raw = good.read_bytes()
    canary = tmp_path / "pwned"
    cases = {
        "truncated.pt": (raw[: len(raw) // 2], "is corrupt, truncated or not a PyTorch file"),
        "text.pt": (b"hello world", "is corrupt, truncated or not a PyTorch file"),
        "empty.pt": (b"", "is corrupt, truncated or not a PyTorch file (EOFError)"),
        "pickle.pt": (pickle.dumps(_evil(canary)), "is not a file written by torch.save"),
    }
    for name, (data, fragment) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            load_model_file(tmp_path / name)
    torch.save(_evil(canary), tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="was refused: it asks for posix.system"):
        load_model_file(tmp_path / "evil.pt")
    torch.save(build_model("wrn-10-1").state_dict(), tmp_path / "state.pt")
    with pytest.raises(ValueError, match="holds a OrderedDict, expected a whole network"):
        load_model_file(tmp_path / "state.pt")
    with pytest.raises(FileNotFoundError, match="model file .*missing.pt does not exist"):
        load_model_file(tmp_path / "missing.pt")
    assert not canary.exists()


# ---------------------------------------------------------------------------------------------
# Data folders: missing or truncated IDX files


def _idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.mark.parametrize("damage,fragment", [
    ("missing", "Fashion-MNIST IDX files not found in"),
    ("truncated", "truncated or padded IDX file"),
    ("cut-gzip", "cannot read IDX file"),
    ("mismatch", "expected N×H×W images with N labels"),
])
def test_bad_data_folder(damage: str, fragment: str, fake_fashion_mnist: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    images = fake_fashion_mnist / "train-images-idx3-ubyte.gz"
    if damage == "missing":
        images.unlink()
    elif damage == "truncated":
        raw = gzip.decompress(images.read_bytes())
        images.write_bytes(gzip.compress(raw[:-100]))
    elif damage == "cut-gzip":
        raw = images.read_bytes()
        images.write_bytes(raw[: len(raw) // 2])
    else:
        _idx(images, np.zeros((7, 28, 28)))
    out = tmp_path / "run"
    code, err = run_cli(["run", "--data-dir", str(fake_fashion_mnist), "--model", "wrn-10-1",
                         "--trials", "1", "--out", str(out), "--no-progress"], capsys)
    assert code == 2 and fragment in err
    assert not out.exists()
    with pytest.raises((ValueError, FileNotFoundError), match=fragment):
        load_dataset("fashion-mnist", data_dir=fake_fashion_mnist)


# ---------------------------------------------------------------------------------------------
# Output folders


def test_output_folder_of_another_run_is_refused(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.csv").write_text("precious\n")
    code, err = run_cli(["run", *TINY_RUN, "--out", str(out)], capsys)
    assert code == 2 and f"output folder {out} already holds another run" in err
    assert "--resume to continue it or pass --force" in err
    assert (out / "results.csv").read_text() == "precious\n"
    code, err = run_cli(["run", *TINY_RUN, "--resume", "--out", str(out)], capsys)
    assert code == 2 and "--resume needs an existing run folder" in err
    code, err = run_cli(["run", "--out", str(tmp_path / "results.csv"), "--resume"], capsys)
    assert code == 2


def test_resume_with_other_settings_is_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    space = tmp_path / "space.yaml"
    space.write_text(FAST_SPACE)
    argv = ["run", "--space", str(space), *TINY_RUN, "--trials", "1", "--out", str(out)]
    assert main(argv) in (0, 1)
    before = (out / "results.csv").read_text()
    capsys.readouterr()
    code, err = run_cli([*argv, "--resume", "--seed", "7"], capsys)
    assert code == 2 and "cannot resume" in err and "settings.seed: 0 then, 7 now" in err
    assert (out / "results.csv").read_text() == before


# ---------------------------------------------------------------------------------------------
# Faults: NaN loss, kill -9, Ctrl-C


FAST_SPACE = """pruner: bar
parameters:
  lam: {type: float, low: 0.1, high: 1.0, log: true}
  budget: {type: float, low: 0.5, high: 0.9}
fixed:
  epochs: 0.5
  kd_alpha: 0.0
"""


def test_nan_loss_is_a_failed_trial_and_the_study_goes_on(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import budgetsearch.search.objective as objective
    from budgetsearch.search.settings import build_network

    built: list[int] = []

    def build_poisoned(settings: TrialSettings) -> torch.nn.Module:
        model = build_network(settings)
        built.append(1)
        if len(built) == 1:  # the first trial's network outputs NaN from its first step
            model.register_forward_hook(lambda module, inputs, output: output * float("nan"))
        return model

    monkeypatch.setattr(objective, "build_network", build_poisoned)
    path = tmp_path / "space.yaml"
    path.write_text(FAST_SPACE)
    settings = TrialSettings(model="wrn-10-1", dataset="synthetic", train_subset=32,
                             val_fraction=0.25, batch_size=16, threads=1)
    rows = run_optuna(load_space(path), settings, tmp_path,
                      OptunaOptions(trials=2, n_startup_trials=1))
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table["trial_id"]) == ["optuna-0000", "optuna-0001"]
    assert rows[0]["status"] == "failed" and "loss became nan" in rows[0]["failure"]
    assert table.iloc[0]["status"] == "failed" and "loss became nan" in table.iloc[0]["failure"]
    assert rows[1]["status"] == "ok"
    states = [t.state.name for t in make_study(tmp_path, OptunaOptions(), resume=True).trials]
    assert states == ["FAIL", "COMPLETE"]


def _start_run(out: Path, space: Path, trials: int) -> tuple[subprocess.Popen[str], list[str]]:
    argv = ["run", "--space", str(space), "--model", "wrn-10-1", "--dataset", "synthetic",
            "--train-subset", "160", "--batch-size", "16", "--threads", "1", "--trials",
            str(trials), "--no-progress", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "budgetsearch", *argv], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, argv


def _wait_for(condition: object, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if process.poll() is not None:
            raise AssertionError(f"run ended early: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.02)


def _trial_table(out: Path) -> pd.DataFrame:
    """The run's results without the unpruned reference's row (trained once, before any trial)."""
    table = pd.read_csv(out / "results.csv")
    return table[table["kind"] != "reference"].reset_index(drop=True)


def _rows_done(out: Path) -> int:
    try:
        return len(_trial_table(out))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def _check_table(out: Path, finished: int) -> pd.DataFrame:
    table = _trial_table(out)  # parses: never half-written
    assert table["trial_id"].is_unique
    ended = table[table["failure"].fillna("").str.startswith("interrupted") == False]  # noqa: E712
    assert len(ended) == finished
    return table


@pytest.mark.slow
def test_kill_9_mid_trial_then_resume(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(FAST_SPACE.replace("epochs: 0.5", "epochs: 2"))
    out = tmp_path / "run"
    process, argv = _start_run(out, space, trials=3)
    # Mid-trial: trial 0 is in the table and trial 1 has begun (its folder exists, no row yet).
    _wait_for(lambda: _rows_done(out) >= 1 and (out / "trials" / "optuna-0001").is_dir(),
              process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = _trial_table(out)
    interrupted = not (out / "trials" / "optuna-0001" / "row.json").is_file()
    assert list(first["trial_id"])[:1] == ["optuna-0000"]

    assert main([*argv, "--resume"]) in (0, 1)
    table = _check_table(out, finished=3)
    assert table.iloc[0]["seconds"] == pytest.approx(first.iloc[0]["seconds"])  # kept, not redone
    if interrupted:  # (the kill can land just after the trial wrote its row: then it is kept)
        row = table[table["trial_id"] == "optuna-0001"].iloc[0]
        assert row["status"] == "failed" and row["failure"] == INTERRUPTED_BY_KILL
        assert list(table["trial_id"]) == [f"optuna-{i:04d}" for i in range(4)]
    study = make_study(out, OptunaOptions(), resume=True)
    assert [t.state.name for t in study.trials].count("RUNNING") == 0


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_then_resume(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(FAST_SPACE.replace("epochs: 0.5", "epochs: 2"))
    out = tmp_path / "run"
    process, argv = _start_run(out, space, trials=3)
    _wait_for(lambda: _rows_done(out) >= 1 and (out / "trials" / "optuna-0001").is_dir(),
              process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert "interrupted (during trial optuna-0001); finished trials are kept in" in lines[-2]
    command = lines[-1].strip()
    assert command == shlex.join(["budgetsearch", *argv[:-2], "--resume", "--out", str(out)])
    table = _trial_table(out)
    assert table.iloc[0]["status"] in ("ok", "pruned") and table["trial_id"].is_unique

    assert main(shlex.split(command)[1:]) in (0, 1)
    final = _check_table(out, finished=3)
    assert final.iloc[0]["seconds"] == pytest.approx(table.iloc[0]["seconds"])
    stopped = final[final["failure"] == INTERRUPTED_BY_USER]
    assert len(stopped) <= 1  # none when Ctrl-C fell between two trials


def _tiny_argv(space: Path, out: Path, trials: int) -> list[str]:
    return ["run", "--space", str(space), *TINY_RUN, "--trials", str(trials), "--out", str(out)]


def test_killed_trial_is_marked_failed_and_its_slot_rerun(tmp_path: Path) -> None:
    """In-process twin of the kill -9 test: a trial left RUNNING, a half-written temp file."""
    space = tmp_path / "space.yaml"
    space.write_text(FAST_SPACE)
    out = tmp_path / "run"
    assert main(_tiny_argv(space, out, 1)) in (0, 1)
    first = _trial_table(out)
    study = make_study(out, OptunaOptions(), resume=True)
    killed = study.ask(fixed_distributions=load_space(space).to_optuna())  # left RUNNING
    (out / "trials" / "optuna-0001").mkdir()
    (out / "trials" / "optuna-0001" / ".row.json.tmp123").write_text('{"trial_id": "opt')
    assert killed.number == 1

    assert main([*_tiny_argv(space, out, 2), "--resume"]) in (0, 1)
    table = _check_table(out, finished=2)
    assert list(table["trial_id"]) == ["optuna-0000", "optuna-0001", "optuna-0002"]
    assert table.iloc[0]["seconds"] == pytest.approx(first.iloc[0]["seconds"])
    row = table.iloc[1]
    assert row["status"] == "failed" and row["failure"] == INTERRUPTED_BY_KILL
    assert row["hp_lam"] == pytest.approx(killed.params["lam"])
    states = [t.state.name for t in make_study(out, OptunaOptions(), resume=True).trials]
    assert states[:2] == ["COMPLETE", "FAIL"] and "RUNNING" not in states


def test_ctrl_c_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process twin of the Ctrl-C test: Ctrl-C (KeyboardInterrupt) arrives as trial 1 trains.

    The interrupt is raised where a SIGINT would surface, not sent as a real signal: a real SIGINT
    sent to the pytest process went unseen in 1 full-suite CI run of 3 (the run finished, exit 0;
    the likeliest cause, not proven, is Python running the handler inside a finalizer, which drops
    exceptions). The real signal is what the subprocess twin,
    ``test_ctrl_c_stops_cleanly_then_resume`` (marker ``slow``), sends.
    """
    from budgetsearch.search import objective

    space = tmp_path / "space.yaml"
    space.write_text(FAST_SPACE.replace("epochs: 0.5", "epochs: 2"))
    out = tmp_path / "run"
    argv = _tiny_argv(space, out, 3)
    real_train = objective.train_phases
    sent: list[bool] = []

    def train_then_interrupt(*args: object, **kwargs: object) -> object:
        if not sent and (out / "trials" / "optuna-0001").is_dir():
            sent.append(True)
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(objective, "train_phases", train_then_interrupt)
    code = main(argv)
    err = capsys.readouterr().err
    # (No "Traceback" check here: Optuna's log handler may hold an earlier test's closed capture
    # stream and print a logging error; the subprocess test checks the real stderr.)
    assert code == 130 and "interrupted (during trial optuna-0001)" in err
    command = err.strip().splitlines()[-1].strip()
    assert command == shlex.join(["budgetsearch", *argv[:-2], "--resume", "--out", str(out)])
    table = _trial_table(out)
    assert table.iloc[0]["trial_id"] == "optuna-0000" and table["trial_id"].is_unique

    assert main(shlex.split(command)[1:]) in (0, 1)
    final = _check_table(out, finished=3)
    assert final.iloc[0]["seconds"] == pytest.approx(table.iloc[0]["seconds"])
    assert (final["failure"] == INTERRUPTED_BY_USER).sum() <= 1
