"""``budgetsearch models`` and ``budgetsearch train``: the built-in networks, and one network
trained on a data set."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from budgetsearch.commands.argtypes import (
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
)
from budgetsearch.commands.options import (
    as_text,
    boolean,
    check_file_settings,
    check_output_dir,
    choice,
    dataset_check,
    input_shape_arg,
    integer,
    load_config_defaults,
    model_check,
    prepare_output_dir,
    torch_device_name,
)
from budgetsearch.errors import UsageError
from budgetsearch.files import torch_save_atomic, write_text_atomic


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
    "batch_size": 64,
    "optimizer": "adam",
    "lr": 0.002,
    "weight_decay": 5e-4,
    "schedule": "cosine",
    "restart_epochs": None,
    "width": 1.0,
    "seed": 0,
    "device": "auto",
    "precision": "auto",
    "input_shape": None,  # C,H,W: an image folder's images converted and resized to it
}


def _cmd_train(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch

    from budgetsearch.data import load_dataset
    from budgetsearch.models import build_model
    from budgetsearch.train import TrainConfig, count_parameters, seed_everything, train

    settings = dict(_TRAIN_DEFAULTS)
    file_settings = load_config_defaults(args.config)
    unknown = sorted(set(file_settings) - set(settings))
    if unknown:
        raise UsageError(
            f"--config file {args.config}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(settings))}"
        )
    settings.update(check_file_settings(file_settings, _train_checks(), args.config))
    settings.update({k: v for k, v in vars(args).items() if k in settings and v is not None})
    try:
        torch_device_name(str(settings["device"]))
    except argparse.ArgumentTypeError as error:
        raise UsageError(str(error)) from None
    from budgetsearch.models import model_label

    label = model_label(str(settings["model"])).replace("/", "_").replace(":", "-")
    out = Path(args.out or f"runs/train-{label}-{time.strftime('%Y%m%d-%H%M%S')}")
    check_output_dir(out, force=args.force)

    splits = load_dataset(
        settings["dataset"],
        data_dir=settings["data_dir"],
        train_subset=settings["train_subset"],
        val_fraction=settings["val_fraction"],
        seed=settings["seed"],
        download=settings["download"],
        input_shape=settings["input_shape"],
    )
    seed_everything(settings["seed"])  # so the weight init repeats too
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
        precision=settings["precision"],
        progress=not args.no_progress,
    )
    prepare_output_dir(out, force=args.force)
    shape = settings["input_shape"]
    written = {**settings, "input_shape": None if shape is None else ",".join(map(str, shape))}
    write_text_atomic(out / "config.yaml", yaml.safe_dump(written, sort_keys=True))

    params = count_parameters(model)
    print(
        f"training {settings['model']} (width ×{settings['width']}, {params:,} parameters) on "
        f"{settings['dataset']}: {len(splits.train):,} training / {len(splits.test):,} test "
        "images, "
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
    torch_save_atomic(model.state_dict(), out / "model.pt")
    val = ""
    if result.val_accuracy is not None:
        val = f", validation accuracy {result.val_accuracy:.4f}"
    print(
        f"test accuracy {result.test_accuracy:.4f}{val}, {result.seconds:.1f} s, "
        f"{params:,} parameters"
    )
    print(f"results: {out / 'results.csv'}  config: {out / 'config.yaml'}  "
          f"model: {out / 'model.pt'}")
    return 0


def _train_checks() -> dict[str, Callable[[str], Any]]:

    return {
        "model": model_check, "dataset": dataset_check,
        "data_dir": as_text, "download": boolean, "epochs": positive_float,
        "train_subset": positive_int, "val_fraction": fraction, "batch_size": positive_int,
        "optimizer": choice(["sgd", "adam"]), "lr": positive_float,
        "weight_decay": non_negative_float,
        "schedule": choice(["cosine", "cosine-restarts", "constant"]),
        "restart_epochs": positive_float, "width": positive_float, "seed": integer,
        "device": as_text, "precision": choice(["auto", "fp32", "bf16"]),
        "input_shape": input_shape_arg,
    }


def _add_train_parser(sub: Any) -> None:
    from budgetsearch.data import dataset_names

    p = sub.add_parser(
        "train",
        help="train one dense network (a baseline) and write a results row",
        description="Train one dense network and write results.csv, config.yaml and model.pt "
        "to an output folder. Options default to --config (YAML), then built-in defaults.",
    )
    p.add_argument("--config", help="YAML file of option defaults; flags override it")
    p.add_argument("--model", type=model_check, metavar="SPEC",
                   help="a built-in name (default wrn-16-2; see 'budgetsearch models'), "
                   "path/to/file.py:FACTORY or package.module:FACTORY")
    p.add_argument("--dataset", type=dataset_check, metavar="NAME|DIR",
                   help=f"one of {', '.join(dataset_names())} (default fashion-mnist), or an "
                   "image folder DIR with train/ and val/ (or test/), one subfolder per class")
    p.add_argument("--input-shape", type=input_shape_arg, metavar="C,H,W",
                   help="convert an image folder's images to C channels (1 or 3) and resize "
                   "them to HxW")
    p.add_argument("--data-dir", help="folder holding the data set files")
    p.add_argument("--download", action="store_true", default=None,
                   help="let torchvision download the data if it is not on this machine")
    p.add_argument("--epochs", type=positive_float, help="epochs (fractions allowed); default 1")
    p.add_argument("--train-subset", type=positive_int, metavar="N",
                   help="train on N randomly chosen training images")
    p.add_argument("--val-fraction", type=fraction, help="fraction held out for validation")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--optimizer", choices=["sgd", "adam"])
    p.add_argument("--lr", type=positive_float, help="learning rate; default 0.002 (Adam)")
    p.add_argument("--weight-decay", type=non_negative_float)
    p.add_argument("--schedule", choices=["cosine", "cosine-restarts", "constant"])
    p.add_argument("--restart-epochs", type=positive_float,
                   help="with --schedule cosine-restarts: epochs between restarts")
    p.add_argument("--width", type=positive_float,
                   help="width multiplier (a thinner dense twin: √r for compression r)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="auto (default): bf16 autocast where the hardware has native bf16")
    p.add_argument("--out", help="output folder (default runs/train-MODEL-TIME)")
    p.add_argument("--force", action="store_true", help="reuse a non-empty output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train)


def register(sub: Any) -> None:
    """Add this module's commands to the ``budgetsearch`` subparsers ``sub``."""
    models = sub.add_parser("models", help="list the built-in networks")
    models.set_defaults(handler=_cmd_models)
    _add_train_parser(sub)
