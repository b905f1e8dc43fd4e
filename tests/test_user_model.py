"""The user's own model file and image folder through the CLI: run, export, cost --json,
baselines, pareto, a moved run folder, bad specs and a run whose every trial failed (issue 15)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import budgetsearch
from budgetsearch.cli import main

RUN = ["--pruner", "magnitude", "--target-params", "50%", "--trials", "1",
       "--reference-epochs", "0.2", "--train-subset", "16", "--no-progress"]


@pytest.fixture(scope="module")
def moved_run(user_inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of ``nets.py:small_cnn`` (a factory of num_classes only) on the image
    folder, started from the inputs' folder with relative paths, then moved elsewhere."""
    model_file, images = user_inputs
    here = Path.cwd()
    try:
        import os

        os.chdir(model_file.parent)
        code = main(["run", "--model", "nets.py:small_cnn", "--dataset", images.name, *RUN,
                     "--out", "runs/first"])
    finally:
        os.chdir(here)
    assert code == 0
    moved = tmp_path_factory.mktemp("elsewhere") / "run"
    shutil.move(str(model_file.parent / "runs" / "first"), moved)
    return moved


def test_run_on_a_model_file_and_an_image_folder(moved_run: Path,
                                                 user_inputs: tuple[Path, Path]) -> None:
    model_file, images = user_inputs
    table = pd.read_csv(moved_run / "results.csv")
    assert list(table["status"]) == ["ok", "ok"] and table["feasible"].iloc[1]
    assert table["trial_id"].iloc[0] == "reference-nets.py:small_cnn"
    # Paths relative to the run folder; the spec and the folder stored absolute.
    # (A family search keeps each base's reference in reference/MODEL@WIDTH/.)
    reference, trial = table["model_path"]
    assert re.fullmatch(r"reference/nets\.py_small_cnn-[0-9a-f]{8}@1/model\.pt", reference)
    assert trial == "trials/optuna-0000/model.pt"
    assert (moved_run / reference).is_file() and (moved_run / trial).is_file()
    config = yaml.safe_load((moved_run / "config.yaml").read_text())
    assert config["settings"]["model"] == f"{model_file.resolve()}:small_cnn"
    assert config["settings"]["dataset"] == str(images.resolve())
    data = config["data"]
    assert data["classes"] == ["cat", "dog"] and data["input_shape"] == [3, 16, 16]
    assert len(data["mean"]) == len(data["std"]) == 3 and "per-channel" in data["normalisation"]
    deploy = json.loads((moved_run / "trials" / "optuna-0000" / "deploy.json").read_text())
    assert deploy["file"] == "model.ts" and deploy["note"] is None


def test_the_moved_run_loads_as_plain_pytorch(moved_run: Path) -> None:
    best = budgetsearch.load_best_model(moved_run)
    assert isinstance(best, torch.nn.Module) and not best.training
    assert best(torch.zeros(3, 3, 16, 16)).shape == (3, 2)
    # model.ts needs no budgetsearch class: plain torch.jit.load reads it.
    plain = torch.jit.load(str(moved_run / "trials" / "optuna-0000" / "model.ts"))
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(plain(x), best(x))


def test_export_onnx_equals_pytorch_in_onnxruntime(moved_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort

    out = tmp_path / "best.onnx"
    assert main(["export", str(moved_run), "--format", "onnx", "--out", str(out),
                 "--runs", "5", "--device", "cpu-2core-x86-ort"]) == 0
    printed = capsys.readouterr().out
    assert "within 0.0001" in printed and "measured here in onnxruntime CPU" in printed
    assert "predicted on cpu-2core-x86-ort" in printed
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(4, 3, 16, 16)
    expected = budgetsearch.load_best_model(moved_run)(x).detach().numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert abs(got - expected).max() <= 1e-4


def test_export_torchscript_of_a_named_trial(moved_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "reference.ts"
    assert main(["export", str(moved_run), "--trial", "reference-nets.py:small_cnn",
                 "--format", "torchscript", "--out", str(out), "--runs", "2"]) == 0
    assert torch.jit.load(str(out))(torch.zeros(1, 3, 16, 16)).shape == (1, 2)


@pytest.mark.parametrize("argv,fragment", [
    (["--trial", "optuna-9999"], "trial 'optuna-9999' is not in"),
    (["--out", "{tmp}/x.ts"], "--out for --format onnx must end in .onnx"),
    (["--out", "{tmp}/missing/x.onnx"], "does not exist"),
])
def test_export_checks_its_inputs_before_writing(moved_run: Path, tmp_path: Path,
                                                 argv: list[str], fragment: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    args = {"--format": "onnx", "--out": str(tmp_path / "x.onnx")}
    for key, value in zip(argv[::2], argv[1::2], strict=True):
        args[key] = value.format(tmp=tmp_path)
    flat = [w for pair in args.items() for w in pair]
    assert main(["export", str(moved_run), *flat]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_the_moved_run_reprices_and_takes_baselines(moved_run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(moved_run, copy)
    assert main(["pareto", str(copy), "--devices", "jetson", "--metric", "params"]) == 0
    repriced = pd.read_csv(copy / "pareto" / "repriced.csv")
    assert repriced["repriced"].all() and repriced["latency_ms"].gt(0).all()


def test_baselines_of_a_file_model_in_a_moved_run(moved_run: Path, user_inputs: tuple[Path, Path],
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    model_file, _ = user_inputs
    run = tmp_path / "copy"
    shutil.copytree(moved_run, run)
    # The run's own model has no width parameter: no thinner twin, one line.
    assert main(["baselines", "--ratios", "0.25", "--run", str(run), "--no-progress"]) == 2
    assert "takes no width_multiplier" in capsys.readouterr().err
    assert not (run / "baselines").exists()  # refused before any file
    assert main(["baselines", "--model", f"{model_file}:Widening", "--ratios", "0.25",
                 "--epochs", "0.2", "--run", str(run), "--no-progress"]) == 0
    row = pd.read_csv(run / "results.csv").iloc[-1]
    assert row["trial_id"] == "baseline-nets.py-Widening-r0.25" and row["status"] == "ok"
    full = budgetsearch.models.build_model(f"{model_file}:Widening", num_classes=2)
    assert row["params"] < 0.35 * sum(p.numel() for p in full.parameters())
    # Read from the run's data set (the image folder in its config.yaml).
    assert (run / "baselines" / "nets.py-Widening-r0.25.pt").is_file()


def test_cost_json_of_a_model_file(user_inputs: tuple[Path, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    model_file, _ = user_inputs
    assert main(["cost", "--model", f"{model_file}:small_cnn", "--input-shape", "3,16,16",
                 "--num-classes", "2", "--device", "jetson", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("params", "flops", "activation_volume", "memory_bytes", "latency_ms", "device",
                "device_source", "threads"):
        assert key in data
    assert data["device"] == "jetson-orin-nano" and data["device_source"] == "datasheet"
    assert data["params"] == sum(p.numel() for p in budgetsearch.models.build_model(
        f"{model_file}:small_cnn", num_classes=2).parameters())
    assert data["latency_ms"] > 0 and data["input_shape"] == [3, 16, 16]


@pytest.mark.parametrize("model,fragment", [
    ("nowhere.py:f", "does not exist"),
    ("{file}:missing", "has no 'missing'"),
    ("{file}:raises", "raised RuntimeError: no weights here"),
    ("{file}:not_a_network", "expected a torch.nn.Module"),
    ("{file}:small_cnn --input-shape 1,16,16", "fails on the data's 1x16x16 images"),
])
def test_bad_model_specs_exit_2_with_nothing_written(
        model: str, fragment: str, user_inputs: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    model_file, images = user_inputs
    words = model.format(file=model_file).split()
    out = tmp_path / "run"
    code = main(["run", "--model", words[0], *words[1:], "--dataset", str(images), *RUN,
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1, err
    assert not out.exists()


def test_a_run_whose_every_trial_failed_exits_non_zero(
        user_inputs: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, images = user_inputs
    nan_net = tmp_path / "nan_net.py"
    nan_net.write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "class NanInTraining(nn.Module):\n"
        "    def __init__(self, num_classes):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 64, 3)\n"
        "        self.fc = nn.Linear(64, num_classes)\n\n"
        "    def forward(self, x):\n"
        "        out = self.fc(self.conv(x).mean(dim=(2, 3)))\n"
        "        return out * float('nan') if self.training else out\n")
    args = ["run", "--model", f"{nan_net}:NanInTraining", "--dataset", str(images), *RUN,
            "--out", str(tmp_path / "run")]
    args[args.index("--reference-epochs") + 1] = "0"
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "every trial failed (1 of 1); the first, optuna-0000: loss became nan" in err


def test_the_moved_run_resumes(moved_run: Path, user_inputs: tuple[Path, Path],
                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_file, images = user_inputs
    run = tmp_path / "copy"
    shutil.copytree(moved_run, run)
    args = ["run", "--model", f"{model_file}:small_cnn", "--dataset", str(images), *RUN,
            "--out", str(run), "--resume"]
    args[args.index("--trials") + 1] = "2"
    assert main(args) == 0, capsys.readouterr().err
    table = pd.read_csv(run / "results.csv")
    assert list(table["trial_id"]) == ["reference-nets.py:small_cnn", "optuna-0000",
                                       "optuna-0001"]
    assert (run / table["model_path"].iloc[2]).is_file()


def test_old_paths_relative_to_where_the_run_started_still_load(moved_run: Path,
                                                                 tmp_path: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(moved_run, run)
    table = pd.read_csv(run / "results.csv")
    for column in ("model_path", "pruned_config_path"):
        table[column] = "runs/first/" + table[column]  # as runs before issue 15 wrote them
    table.to_csv(run / "results.csv", index=False)
    assert budgetsearch.load_best_model(run)(torch.zeros(1, 3, 16, 16)).shape == (1, 2)


@pytest.mark.ray
def test_the_ray_engine_runs_a_model_file_on_an_image_folder(
        user_inputs: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Ray workers rebuild the network and the data from the spec and the folder's absolute
    # paths stored in TrialSettings (nothing registered in the driver's process).
    model_file, images = user_inputs
    out = tmp_path / "run"
    assert main(["run", "--engine", "ray", "--model", f"{model_file}:small_cnn", "--dataset",
                 str(images), *RUN, "--out", str(out)]) == 0, capsys.readouterr().err
    table = pd.read_csv(out / "results.csv")
    assert list(table["status"]) == ["ok", "ok"] and table["trial_id"].iloc[1] == "ray-00001"
    assert budgetsearch.load_best_model(out)(torch.zeros(1, 3, 16, 16)).shape == (1, 2)


@pytest.mark.parametrize("extra,fragment", [
    (["--dataset", "{tmp}/sizes"], "differ in size (9x9 in "),
    (["--dataset", "{tmp}/notest"], "must hold train/ and val/ (or test/)"),
    (["--dataset", "{images}", "--input-shape", "2,16,16"], "1 (grey) or 3 (RGB) channels, got 2"),
    (["--dataset", "{images}", "--input-shape", "3x16"], "expected an input shape C,H,W"),
    (["--dataset", "synthetic", "--input-shape", "3,32,32"],
     "input_shape 3x32x32 differs from synthetic's 1x28x28 images"),
])
def test_bad_data_exit_2_with_nothing_written(
        extra: list[str], fragment: str, user_inputs: tuple[Path, Path], tmp_path: Path,
        make_image_folder, capsys: pytest.CaptureFixture[str]) -> None:
    model_file, images = user_inputs
    make_image_folder(tmp_path / "sizes")
    make_image_folder(tmp_path / "sizes", classes=("cat",), per_class=1, size=(9, 9))
    make_image_folder(tmp_path / "notest", test_name="train")
    out = tmp_path / "run"
    words = [w.format(tmp=tmp_path, images=images) for w in extra]
    code = main(["run", "--model", f"{model_file}:small_cnn", *words, *RUN, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1, err
    assert not out.exists()


def test_cost_of_a_model_on_the_wrong_input_is_one_line(
        user_inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    model_file, _ = user_inputs
    assert main(["cost", "--model", f"{model_file}:small_cnn", "--json"]) == 2
    err = capsys.readouterr().err
    assert "cannot be priced on a 1x28x28 input" in err and err.count("\n") == 1


LOCAL_CLASS_FILE = '''
import torch
from torch import nn

WIDTH = 16


def make(num_classes=2):
    class Local(nn.Module):  # defined in the factory: pickle cannot name it
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, WIDTH, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(WIDTH, WIDTH, 3, padding=1))
            self.head = nn.Linear(WIDTH, num_classes)

        def forward(self, x):
            return self.head(torch.relu(self.body(x)).mean((2, 3)))

    return Local()
'''


def test_a_factory_whose_class_pickle_cannot_name_runs_resumes_and_exports(
        user_inputs: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, images = user_inputs
    model_file = tmp_path / "local_net.py"
    model_file.write_text(LOCAL_CLASS_FILE)
    run = tmp_path / "run"
    args = ["run", "--model", f"{model_file}:make", "--dataset", str(images), *RUN,
            "--out", str(run)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # one line per network not pickled, naming where it is instead
    notes = [line for line in err.splitlines() if "model.pt not written" in line]
    assert len(notes) == 2 and all("model.ts" in line and "make.<locals>.Local" in line
                                   for line in notes)
    table = pd.read_csv(run / "results.csv")
    assert list(table["status"]) == ["ok", "ok"]
    for saved in table["model_path"]:
        assert saved.endswith("model.ts") and (run / saved).is_file()
        assert not (run / saved).with_name("model.pt").exists()
    best = budgetsearch.load_best_model(run)
    assert best(torch.zeros(1, 3, 16, 16)).shape == (1, 2)
    args[args.index("--trials") + 1] = "2"
    assert main([*args, "--resume"]) == 0, capsys.readouterr().err
    assert len(pd.read_csv(run / "results.csv")) == 3
    out = tmp_path / "net.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    assert out.is_file()


def test_a_target_no_pruner_can_reach_says_why_each_cannot(
        user_inputs: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import run_cli

    _, images = user_inputs
    model_file = tmp_path / "tiny_net.py"  # 8 channels: no layer of 1000 weights to prune
    model_file.write_text(LOCAL_CLASS_FILE.replace("WIDTH = 16", "WIDTH = 8"))
    out = tmp_path / "run"
    code, err = run_cli(["run", "--model", f"{model_file}:make", "--dataset", str(images),
                         *RUN, "--out", str(out)], capsys)
    assert code == 2
    assert "ask for at least 826 parameters; magnitude cannot prune it: no layer to prune" in err
    assert not out.exists()


@pytest.mark.parametrize("files", [("model.pt2",), ()])
def test_a_reference_saved_without_model_pt_counts_as_finished(tmp_path: Path,
                                                              files: tuple[str, ...]) -> None:
    """Where pickle could not name the class and only torch.export saved the network (model.pt2),
    or nothing could (the row then points at the weights trials start from), the reference is
    not trained again on every call."""
    from budgetsearch.search.reference import STATE_FILE, _finished

    for name in (*files, STATE_FILE):
        (tmp_path / name).write_bytes(b"x")
    saved = files[0] if files else STATE_FILE
    (tmp_path / "row.json").write_text(json.dumps(
        {"trial_id": "reference", "status": "ok", "model_path": f"reference/{saved}"}))
    assert _finished(tmp_path) is not None
    (tmp_path / STATE_FILE).unlink()
    assert _finished(tmp_path) is None  # without the weights no trial can start
