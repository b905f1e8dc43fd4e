"""The ``budgetsearch`` command: argument parsing and clear errors; the work lives in the API.

Bad input gives one line on stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from budgetsearch import __version__


class UsageError(ValueError):
    """A user mistake the CLI reports in one line (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit code 2
        raise UsageError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Output folders and files


def prepare_output_dir(path: Path, *, force: bool = False) -> Path:
    """Create ``path`` for a new run; refuse a non-empty folder unless ``force``."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out must be a folder, but {path} is a file")
    if path.exists() and any(path.iterdir()) and not force:
        raise UsageError(
            f"output folder {path} already holds another run; choose a new --out or pass --force"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Write-then-rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def load_config_defaults(path: str | None) -> dict[str, Any]:
    """Read a YAML config of defaults (``yaml.safe_load`` only: no objects built from tags)."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"--config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise UsageError(f"--config file {path} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config file {path} must hold a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


# ---------------------------------------------------------------------------------------------
# Commands


def _cmd_models(args: argparse.Namespace) -> int:
    from budgetsearch.models import build_model, describe_models
    from budgetsearch.train import count_parameters

    print(f"{'name':<12} {'parameters':>11}  description (10 classes, 1 input channel)")
    for name, description in describe_models().items():
        params = count_parameters(build_model(name, num_classes=10, in_channels=1))
        print(f"{name:<12} {params:>11,}  {description}")
    return 0


_TRAIN_DEFAULTS: dict[str, Any] = {
    "model": "wrn-16-2",
    "dataset": "fashion-mnist",
    "data_dir": None,
    "download": False,
    "epochs": 1.0,
    "train_subset": None,
    "val_fraction": 0.0,
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.05,
    "weight_decay": 5e-4,
    "schedule": "cosine",
    "restart_epochs": None,
    "width": 1.0,
    "seed": 0,
    "device": "auto",
}


def _cmd_train(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch

    from budgetsearch.data import load_dataset
    from budgetsearch.models import build_model
    from budgetsearch.train import TrainConfig, count_parameters, train

    settings = dict(_TRAIN_DEFAULTS)
    file_settings = load_config_defaults(args.config)
    unknown = sorted(set(file_settings) - set(settings))
    if unknown:
        raise UsageError(
            f"--config file {args.config}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(settings))}"
        )
    settings.update(file_settings)
    settings.update({k: v for k, v in vars(args).items() if k in settings and v is not None})

    splits = load_dataset(
        settings["dataset"],
        data_dir=settings["data_dir"],
        train_subset=settings["train_subset"],
        val_fraction=settings["val_fraction"],
        seed=settings["seed"],
        download=settings["download"],
    )
    model = build_model(
        settings["model"],
        num_classes=splits.num_classes,
        in_channels=splits.in_channels,
        width_multiplier=settings["width"],
    )
    config = TrainConfig(
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        optimizer=settings["optimizer"],
        lr=settings["lr"],
        weight_decay=settings["weight_decay"],
        schedule=settings["schedule"],
        restart_epochs=settings["restart_epochs"],
        seed=settings["seed"],
        device=settings["device"],
        progress=not args.no_progress,
    )
    out = Path(args.out or f"runs/train-{settings['model']}-{time.strftime('%Y%m%d-%H%M%S')}")
    prepare_output_dir(out, force=args.force)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(settings, sort_keys=True))

    params = count_parameters(model)
    print(
        f"training {settings['model']} (width ×{settings['width']}, {params:,} parameters) on "
        f"{settings['dataset']}: {len(splits.train):,} training / {len(splits.test):,} test images, "
        f"{settings['epochs']} epoch(s), device {config.device}"
    )
    result = train(model, splits, config)
    row = {
        "model": settings["model"],
        "width": settings["width"],
        "dataset": settings["dataset"],
        "train_images": len(splits.train),
        "parameters": params,
        "torch_threads": torch.get_num_threads(),
        **result.as_row(),
    }
    write_text_atomic(out / "results.csv", pd.DataFrame([row]).to_csv(index=False))
    if result.status != "ok":
        print(f"training failed: {result.failure}", file=sys.stderr)
        print(f"results: {out / 'results.csv'}")
        return 1
    torch.save(model.state_dict(), out / "model.pt")
    val = f", validation accuracy {result.val_accuracy:.4f}" if result.val_accuracy is not None else ""
    print(
        f"test accuracy {result.test_accuracy:.4f}{val}, {result.seconds:.1f} s, "
        f"{params:,} parameters"
    )
    print(f"results: {out / 'results.csv'}  config: {out / 'config.yaml'}  model: {out / 'model.pt'}")
    return 0


def _add_train_parser(sub: Any) -> None:
    from budgetsearch.data import dataset_names
    from budgetsearch.models import model_names

    p = sub.add_parser(
        "train",
        help="train one dense network (a baseline) and write a results row",
        description="Train one dense network and write results.csv, config.yaml and model.pt "
        "to an output folder. Options default to --config (YAML), then built-in defaults.",
    )
    p.add_argument("--config", help="YAML file of option defaults; flags override it")
    p.add_argument("--model", choices=model_names(), metavar="NAME",
                   help="network (see 'budgetsearch models'); default wrn-16-2")
    p.add_argument("--dataset", choices=dataset_names(), metavar="NAME",
                   help=f"one of {', '.join(dataset_names())}; default fashion-mnist")
    p.add_argument("--data-dir", help="folder holding the data set files")
    p.add_argument("--download", action="store_true", default=None,
                   help="let torchvision download the data if it is not on this machine")
    p.add_argument("--epochs", type=_positive_float, help="epochs (fractions allowed); default 1")
    p.add_argument("--train-subset", type=_positive_int, metavar="N",
                   help="train on N randomly chosen training images")
    p.add_argument("--val-fraction", type=_fraction, help="fraction held out for validation")
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--optimizer", choices=["sgd", "adam"])
    p.add_argument("--lr", type=_positive_float, help="learning rate; default 0.05")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=["cosine", "cosine-restarts", "constant"])
    p.add_argument("--restart-epochs", type=_positive_float,
                   help="with --schedule cosine-restarts: epochs between restarts")
    p.add_argument("--width", type=_positive_float,
                   help="width multiplier (a thinner dense twin: √r for compression r)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--out", help="output folder (default runs/train-MODEL-TIME)")
    p.add_argument("--force", action="store_true", help="reuse a non-empty output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train)


Registrar = Callable[[Any], None]
# Later commands (cost, devices, profile, run, pareto, ...) add themselves here.
_SUBCOMMANDS: list[Registrar] = [_add_train_parser]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = _Parser(
        prog="budgetsearch",
        description="Find the most accurate pruned network that fits a hardware budget.",
    )
    parser.add_argument("--version", action="version", version=f"budgetsearch {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    models = sub.add_parser("models", help="list the built-in networks")
    models.set_defaults(handler=_cmd_models)
    for register in _SUBCOMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``budgetsearch`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return int(args.handler(args))
    except (UsageError, ValueError, TypeError, FileNotFoundError, KeyError) as error:
        if debug:
            raise
        message = str(error) if not isinstance(error, KeyError) else f"unknown key {error}"
        print(f"budgetsearch: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("budgetsearch: interrupted", file=sys.stderr)
        return 130
