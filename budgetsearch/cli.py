"""The ``budgetsearch`` command: argument parsing and clear errors; the work lives in the API.

Bad input gives one line on stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from budgetsearch import __version__
from budgetsearch.commands.argtypes import (
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
)
from budgetsearch.errors import UsageError
from budgetsearch.files import torch_save_atomic, write_text_atomic, yaml_problem


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit code 2
        raise UsageError(f"{self.prog}: {message}")



# ---------------------------------------------------------------------------------------------
# Output folders and files


def _check_writable(path: Path, flag: str) -> None:
    """Refuse ``path`` when its nearest existing folder is a file or cannot be written."""
    import os

    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent != path and not parent.is_dir():
        raise UsageError(f"{flag} {path}: {parent} is a file, not a folder")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write in {parent} (permission denied)")


def check_output_dir(path: Path, *, force: bool = False, resume_hint: bool = False) -> None:
    """Refuse a file, a folder that cannot be written, or a non-empty folder unless ``force``;
    creates nothing."""
    from budgetsearch.files import LOCK_FILE

    if path.exists() and not path.is_dir():
        raise UsageError(f"--out must be a folder, but {path} is a file")
    _check_writable(path, "--out")
    if path.exists() and any(p.name != LOCK_FILE for p in path.iterdir()) and not force:
        also = ", --resume to continue it" if resume_hint else ""
        raise UsageError(
            f"output folder {path} already holds another run; choose a new --out{also} or pass "
            "--force to replace it"
        )


def prepare_output_dir(path: Path, *, force: bool = False) -> Path:
    """Create ``path`` for a new run; refuse a non-empty folder unless ``force``."""
    check_output_dir(path, force=force)
    path.mkdir(parents=True, exist_ok=True)
    return path


def resume_command(argv: Sequence[str], out: Path) -> str:
    """The exact ``budgetsearch run ... --resume --out OUT`` that continues this run."""
    words: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--out":
            skip = True
        elif word not in ("--force", "--resume") and not word.startswith("--out="):
            words.append(word)
    return shlex.join(["budgetsearch", *words, "--resume", "--out", str(out)])


_NEGATIVE_VALUE = re.compile(r"^-[0-9.]")


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--target-latency -5ms`` → ``--target-latency=-5ms``, so the value reaches the option's
    own check (argparse would otherwise say only "expected one argument")."""
    out: list[str] = []
    for word in argv:
        if (out and out[-1].startswith("--") and "=" not in out[-1]
                and _NEGATIVE_VALUE.match(word)):
            out[-1] = f"{out[-1]}={word}"
        else:
            out.append(word)
    return out


def load_config_defaults(path: str | None) -> dict[str, Any]:
    """Read a YAML config of defaults (``yaml.safe_load`` only: no objects built from tags)."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"--config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise UsageError(f"--config file {path} is not valid YAML: {yaml_problem(error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config file {path} must hold a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _choice(names: Sequence[str]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(names)}, got {text!r}")
        return text

    return check


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _text(text: str) -> str:
    return text


def _flag(text: str) -> bool:
    if text not in ("True", "False"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text == "True"


def check_file_settings(file_settings: dict[str, Any], checks: dict[str, Callable[[str], Any]],
                        path: str | None) -> dict[str, Any]:
    """``--config`` values through the same checks as their flags (None: the default).

    Raises:
        UsageError: one line naming the file, the option, the rule and the value.
    """
    checked: dict[str, Any] = {}
    for key, value in file_settings.items():
        check = checks.get(key)
        if value is None or check is None:
            checked[key] = value
            continue
        try:
            if isinstance(value, (dict, list)) or (isinstance(value, bool) and check is not _flag):
                raise argparse.ArgumentTypeError(f"expected a single value, got {value!r}")
            checked[key] = check(str(value))
        except (argparse.ArgumentTypeError, ValueError) as error:
            raise UsageError(f"--config file {path}: {key}: {error}") from None
    return checked


def _torch_device_name(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` that this machine has (checked before any file)."""
    import torch

    if text == "auto":
        return text
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"device must be auto, cpu, cuda or cuda:N, got {text!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"device {text!r} was asked for but CUDA is not "
                                             "available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"device must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


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
        _torch_device_name(str(settings["device"]))
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
        "model": _model_check, "dataset": _dataset_check,
        "data_dir": _text, "download": _flag, "epochs": positive_float,
        "train_subset": positive_int, "val_fraction": fraction, "batch_size": positive_int,
        "optimizer": _choice(["sgd", "adam"]), "lr": positive_float,
        "weight_decay": non_negative_float,
        "schedule": _choice(["cosine", "cosine-restarts", "constant"]),
        "restart_epochs": positive_float, "width": positive_float, "seed": _integer,
        "device": _text, "precision": _choice(["auto", "fp32", "bf16"]),
        "input_shape": _input_shape,
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
    p.add_argument("--model", type=_model_check, metavar="SPEC",
                   help="a built-in name (default wrn-16-2; see 'budgetsearch models'), "
                   "path/to/file.py:FACTORY or package.module:FACTORY")
    p.add_argument("--dataset", type=_dataset_check, metavar="NAME|DIR",
                   help=f"one of {', '.join(dataset_names())} (default fashion-mnist), or an "
                   "image folder DIR with train/ and val/ (or test/), one subfolder per class")
    p.add_argument("--input-shape", type=_input_shape, metavar="C,H,W",
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


# ---------------------------------------------------------------------------------------------
# Cost model commands: devices, cost, profile (issue 3)

_PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _input_shape(text: str) -> tuple[int, int, int]:
    parts = re.split(r"[x,]", str(text).lower().strip())
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected an input shape C,H,W of positive integers like 3,32,32 (or 3x32x32), "
            f"got {text!r}"
        )
    return values  # type: ignore[return-value]


def _model_check(text: str) -> str:
    """A ``model:`` value of a ``--config`` file, checked like ``--model`` (one line if bad)."""
    from budgetsearch.models import canonical_model_spec, resolve_model_spec

    try:
        spec = canonical_model_spec(text)
        resolve_model_spec(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return spec


def _dataset_check(text: str) -> str:
    """A built-in data set name or an image folder (``DIR`` with ``train/`` and ``val/``)."""
    from budgetsearch.data import canonical_dataset_spec, dataset_names, is_image_folder_spec

    if text in dataset_names() or is_image_folder_spec(text):
        return canonical_dataset_spec(text)
    raise argparse.ArgumentTypeError(
        f"expected one of {', '.join(dataset_names())} or an image folder DIR, got {text!r}")


def _model_spec(text: str) -> str:
    """A ``--model`` value checked now (importing a file or module, finding its factory):
    a bad spec is one line before anything is written. File specs become absolute."""
    try:
        return _model_check(text)
    except argparse.ArgumentTypeError as error:  # "model ...": said of the option
        raise UsageError(f"--{error}") from None


def _resolve_device(name: str, *, quiet: bool = False) -> Any:
    from budgetsearch.cost import load_profile, resolve_profile_name
    from budgetsearch.profiling import anchors  # noqa: F401  (registers the drift check)

    profile = load_profile(name)
    if not quiet and "/" not in name and not name.endswith((".yaml", ".yml")):
        resolved = resolve_profile_name(name)
        if resolved != name:
            print(f"device {name!r} resolves to profile {resolved!r}")
    return profile


def _device_summary(profile: Any, check: Any) -> dict[str, Any]:
    """One profile as plain data for ``devices`` (and ``devices --json``)."""
    error = profile.predictor_error
    summary: dict[str, Any] = {
        "name": profile.name, "source": profile.source, "runtime": profile.runtime,
        "threads": profile.provenance.get("threads"), "aliases": list(profile.aliases),
        "measured_on": profile.provenance.get("date"),
        "predictor_error": None if error is None else error.as_dict(),
        "leave_one_family_out": None, "last_check": None,
        "published_check": (None if profile.published_check is None
                            else profile.published_check.summary()),
    }
    if profile.transfer_error:
        families = profile.transfer_error.get("families", {})
        within = [f["within_10pct"] for f in families.values()]
        summary["leave_one_family_out"] = {
            "families": len(families),
            "mean_within_10pct": round(sum(within) / len(within), 4) if within else None,
            "per_family": families,
        }
    if check:
        summary["last_check"] = {
            k: check.get(k) for k in ("date", "seconds", "scale", "drift_pct", "recalibrated",
                                      "tolerance_pct", "residual_pct")
        }
    return summary


def _cmd_devices(args: argparse.Namespace) -> int:
    import json

    from budgetsearch.cost import load_profile, profile_names
    from budgetsearch.profiling.anchors import last_check

    rows = []
    for name in profile_names():
        profile = load_profile(name, check=not args.no_check)
        rows.append(_device_summary(profile, profile.last_check or last_check(name)))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'name':<20} {'source':<9} {'runtime':<14} {'thr':>3}  predictor error")
    for row in rows:
        error = row["predictor_error"]
        if error is None:
            text = "not measured (roofline from datasheet)"
        else:
            text = (f"{error['within_10pct']:.0%} of {error['networks']} held-out within ±10% "
                    f"(median |err| {error['median_abs_pct']:.1f}%, {row['measured_on']})")
            lofo = row["leave_one_family_out"]
            if lofo:
                text += (f"; unseen family: {lofo['mean_within_10pct']:.0%} within ±10% "
                         f"(leave-one-family-out, {lofo['families']} families)")
            check = row["last_check"]
            if check:
                scale = check["scale"]
                factors = (f"overhead x{check.get('overhead_scale', scale):.3f}, compute and "
                           f"memory x{check.get('work_scale', scale):.3f}")
                state = (f"rescaled: {factors}" if check["recalibrated"] else "holds as recorded")
                worst = max((abs(v) for v in (check.get("residual_pct") or {}).values()),
                            default=0.0)
                text += (f"; last check {check['date']}: drift {check['drift_pct']:+.1f}% "
                         f"({state}; anchors within ±{worst:.1f}% after)")
            else:
                text += "; never checked on this machine"
        threads = row["threads"] if row["threads"] is not None else "-"
        print(f"{row['name']:<20} {row['source']:<9} {row['runtime']:<14} {threads!s:>3}  {text}")
        if row.get("published_check"):
            print(f"{'':<50} {row['published_check']}")
    return 0


def _add_devices_parser(sub: Any) -> None:
    p = sub.add_parser(
        "devices", help="list the device profiles (hw_profiles/*.yaml) and how true they are",
        description="List the device profiles: source, runtime, threads, the predictor's error "
        "(held-out and leave-one-family-out, as measured) and the drift check of this machine "
        "as of its last run, with its date. Measured profiles of this CPU are checked now "
        "(≤ 2 s each) unless --no-check.",
    )
    p.add_argument("--json", action="store_true", help="print the same as JSON, for scripts")
    p.add_argument("--no-check", action="store_true",
                   help="do not re-time the anchors; show the last stored check")
    p.set_defaults(handler=_cmd_devices)


def _cmd_cost(args: argparse.Namespace) -> int:
    import json

    import torch

    from budgetsearch.cost import FLOP_CONVENTION, layer_inventory
    from budgetsearch.models import build_model, model_label

    channels, height, width = args.input
    spec = _model_spec(args.model)
    profile = _resolve_device(args.device, quiet=args.json) if args.device else None
    model = build_model(spec, num_classes=args.num_classes, in_channels=channels,
                        width_multiplier=args.width)
    model.eval()
    try:
        with torch.no_grad():
            inventory = layer_inventory(model, torch.zeros(1, channels, height, width))
    except Exception as error:  # the network does not take this input: say so in one line
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UsageError(f"model {model_label(spec)!r} cannot be priced on a "
                         f"{channels}x{height}x{width} input ({type(error).__name__}: {text}); "
                         "pass its input with --input-shape C,H,W") from None
    times = inventory.layer_latency_ms(profile) if profile is not None else {}
    if args.json:
        print(json.dumps(_cost_json(spec, args, inventory, profile, times), indent=1))
        return 0
    print(f"{model_label(spec)} (width ×{args.width}), input 1x{channels}x{height}x{width}; "
          f"FLOPs: {FLOP_CONVENTION}")
    if profile is not None:
        how = ("roofline from datasheet, not measured" if profile.source == "datasheet"
               else f"measured, {profile.provenance.get('threads', '?')} thread(s)")
        print(f"latency on {profile.name} ({how})")
    header = (f"{'layer':<22} {'op':<9} {'in':>5} {'out':>5} {'kernel':>6} {'stride':>6} "
              f"{'out hw':>7} {'params':>10} {'FLOPs':>13} {'act.vol':>9}")
    print(header + (f" {'ms':>8}" if profile is not None else ""))
    for r in inventory.layers:
        line = (f"{r.name:<22} {r.op:<9} {r.in_channels:>5} {r.out_channels:>5} "
                f"{'x'.join(map(str, r.kernel_size)) or '-':>6} "
                f"{'x'.join(map(str, r.stride)) or '-':>6} "
                f"{r.output_hw[0]}x{r.output_hw[1]:<4} {r.params:>10,} {r.flops:>13,} "
                f"{r.activation_volume:>9,}")
        print(line + (f" {times[r.name]:>8.4f}" if profile is not None else ""))
    cost = inventory.price(profile=profile)
    print(f"total: {int(cost.params):,} parameters, {int(cost.flops):,} FLOPs ({FLOP_CONVENTION}), "
          f"activation volume {int(cost.activation_volume):,}, memory "
          f"{cost.memory_bytes / 2**20:.2f} MiB (float32 weights + peak activations)")
    if cost.latency_ms is not None and profile is not None:
        error = profile.predictor_error
        note = (f"; predictor: {error.within_10pct:.0%} of {error.networks} held-out networks "
                f"within ±10%" if error else "; not measured: a datasheet roofline estimate")
        if profile.last_check and profile.last_check.get("recalibrated"):
            note += f" (rescaled x{profile.last_check['scale']:.3f} by today's drift check)"
        extra = sum(inventory.extra_latency_ms(profile).values())
        if extra:
            note += (f"; of which {extra:.3f} ms in {len(inventory.extra_ops)} ops fvcore does "
                     f"not count (activations, adds, ...)")
        print(f"predicted latency on {profile.name}: {cost.latency_ms:.3f} ms at batch 1{note}")
    return 0


def _cost_json(spec: str, args: argparse.Namespace, inventory: Any, profile: Any,
               times: dict[str, float]) -> dict[str, Any]:
    """``cost --json``: the totals, the device profile, and the layers, as plain data."""
    from budgetsearch.cost import FLOP_CONVENTION

    cost = inventory.price(profile=profile)
    threads = profile.provenance.get("threads") if profile is not None else None
    return {
        "model": spec, "width": args.width, "input_shape": list(args.input),
        "num_classes": args.num_classes,
        "params": int(cost.params), "flops": int(cost.flops), "flop_convention": FLOP_CONVENTION,
        "activation_volume": int(cost.activation_volume),
        "memory_bytes": int(cost.memory_bytes), "latency_ms": cost.latency_ms,
        "batch": 1,
        "device": None if profile is None else profile.name,
        "device_source": None if profile is None else profile.source,
        "runtime": None if profile is None else profile.runtime,
        "threads": threads if isinstance(threads, int) else None,
        "layers": [{"name": r.name, "op": r.op, "in_channels": r.in_channels,
                    "out_channels": r.out_channels, "params": r.params, "flops": r.flops,
                    "activation_volume": r.activation_volume,
                    "latency_ms": times.get(r.name)} for r in inventory.layers],
    }


def _add_cost_parser(sub: Any) -> None:
    p = sub.add_parser(
        "cost", help="per-layer parameters, FLOPs, activation volume and latency of a model",
        description="Trace a model once with fvcore and print its per-layer costs and totals "
        "(FLOPs: fvcore, 1 FLOP = 1 fused multiply-add), with predicted latency on a device "
        "profile. --json prints the totals, the profile and the layers for scripts.",
    )
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="a built-in name (see 'budgetsearch models'), path/to/file.py:FACTORY "
                   "or package.module:FACTORY")
    p.add_argument("--device", help="profile name, alias (jetson) or YAML path; see 'devices'")
    p.add_argument("--width", type=positive_float, default=1.0, help="width multiplier")
    p.add_argument("--input-shape", "--input", dest="input", type=_input_shape,
                   default=(1, 28, 28), metavar="C,H,W",
                   help="input shape; default 1,28,28 (Fashion-MNIST), CIFAR is 3,32,32")
    p.add_argument("--num-classes", type=positive_int, default=10)
    p.add_argument("--json", action="store_true", help="print the costs as JSON, for scripts")
    p.set_defaults(handler=_cmd_cost)


def _cmd_profile(args: argparse.Namespace) -> int:
    import json

    import numpy as np
    import pandas as pd

    from budgetsearch.cost import save_profile
    from budgetsearch.cost.profiles import default_profile_path
    from budgetsearch.profiling.fit import RUNTIME_SUFFIX, profile_this_machine

    if not _PROFILE_NAME.match(args.name):
        raise UsageError(
            f"--name must be lower-case letters, digits, '.', '_' or '-' (like cpu-2core-x86), "
            f"got {args.name!r}"
        )
    out = Path(args.out) if args.out else default_profile_path(args.name)
    if out.suffix not in (".yaml", ".yml"):
        raise UsageError(f"--out must be a .yaml file path, got {str(out)!r}")
    runtimes = ["pytorch-eager", "onnxruntime"] if args.runtime == "both" else [args.runtime]
    outs = {rt: out.with_name(out.stem + RUNTIME_SUFFIX[rt] + out.suffix) for rt in runtimes}
    for path in outs.values():
        if path.exists() and not args.force:
            raise UsageError(f"{path} already exists; choose another --out or pass --force")
    command = "budgetsearch " + " ".join(sys.argv[1:]) if sys.argv[1:] else "budgetsearch profile"
    print(f"profiling this CPU ({', '.join(runtimes)}) with {args.threads} thread(s): "
          f"{args.fit} networks to fit, {args.holdout} held out, {args.rounds} interleaved rounds")
    profiles, report = profile_this_machine(
        args.name, runtimes=runtimes, n_fit=args.fit, n_holdout=args.holdout, rounds=args.rounds,
        threads=args.threads, seed=args.seed, progress=not args.no_progress, command=command,
    )
    table = out.with_suffix(".csv")
    write_text_atomic(table, pd.DataFrame(report.rows).to_csv(index=False))
    for runtime, profile in profiles.items():
        path = outs[runtime]
        save_profile(profile, path, header=(
            f"Measured latency profile ({runtime}) written by `{command}`.\n"
            f"Per-network measurements: {table.name}"))
        errors = report.holdout_errors_pct(runtime)
        e = profile.predictor_error
        assert e is not None
        quantiles = np.percentile(errors, [0, 10, 50, 90, 100])
        print(f"{runtime}: held-out error (predicted − measured, % of measured) over "
              f"{e.networks} networks: min {quantiles[0]:+.1f}, p10 {quantiles[1]:+.1f}, median "
              f"{quantiles[2]:+.1f}, p90 {quantiles[3]:+.1f}, max {quantiles[4]:+.1f}; "
              f"{e.within_10pct:.0%} within ±10%")
        lofo = report.leave_one_family_out[runtime]
        print(f"{runtime}: leave-one-family-out within ±10%: "
              + json.dumps({f: v["within_10pct"] for f, v in lofo.items()}))
        print(f"profile: {path}")
    print(f"measurements: {table}  ({report.seconds:.0f} s)")
    return 0


def _add_profile_parser(sub: Any) -> None:
    p = sub.add_parser(
        "profile", help="measure this machine's CPU latency and write a device profile",
        description="Time a varied set of generated networks (plain, residual, bottleneck, "
        "depthwise-separable, inverted residual with squeeze-excitation, grouped, concat, "
        "shuffle, built-in WRN/ResNets dense and pruned; 1x28x28, 3x32x32, 3x64x64; batch 1) on "
        "this CPU in PyTorch eager and/or onnxruntime, fit the per-op latency model, measure its "
        "error on held-out networks and leave-one-family-out, and write a measured profile (YAML, "
        "with the anchors its drift check re-times) plus the per-network measurements (CSV).",
    )
    p.add_argument("--name", required=True, help="profile name, e.g. cpu-2core-x86")
    p.add_argument("--out", help="YAML path (default NAME.yaml in $BUDGETSEARCH_PROFILE_DIR "
                   "when set, else in hw_profiles/ of a writable source checkout, else in "
                   "~/.config/budgetsearch/hw_profiles; onnxruntime: NAME-ort.yaml)")
    p.add_argument("--runtime", choices=("pytorch-eager", "onnxruntime", "both"),
                   default="pytorch-eager",
                   help="runtime to time in (both: NAME.yaml and NAME-ort.yaml from one build)")
    p.add_argument("--threads", type=positive_int, default=1, help="threads (default 1)")
    p.add_argument("--fit", type=positive_int, default=216,
                   help="networks to fit (default 216, 24 per family)")
    p.add_argument("--holdout", type=positive_int, default=54,
                   help="held-out networks to measure the error on (default 54)")
    p.add_argument("--rounds", type=positive_int, default=8,
                   help="interleaved timing rounds (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite an existing profile")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_profile)


# ---------------------------------------------------------------------------------------------
# Search (issue 6): budgetsearch run

# Default time budget: finishes in ≤ 15 minutes on 2 CPU cores. The whole Fashion-MNIST
# training set (54,000 images, 6,000 held out for validation): the unpruned wrn-16-1 is trained
# on it once for 2 epochs, batch 128 (test accuracy 0.906 in the main job on 2026-12-02; the
# 10,000-image default gave 0.868 at best), then 40 trials of its family or the 12-minute limit,
# which counts the reference and stops the trial in flight, so the run ends soon after it.
RUN_DEFAULTS: dict[str, Any] = {
    "model": "wrn-16-1", "width": 1.0, "dataset": "fashion-mnist", "data_dir": None,
    "train_subset": None, "val_fraction": 0.1, "batch_size": 128, "seed": 0,
    "trials": 40, "timeout": "12m", "threads": None, "reference_epochs": 2.0,
    "sampler_seed": None,  # None: the same as seed
    "input_shape": None,  # C,H,W: an image folder's images converted and resized to it
}


def _run_checks() -> dict[str, Callable[[str], Any]]:

    return {
        "model": _model_check, "width": positive_float,
        "dataset": _dataset_check, "data_dir": _text,
        "train_subset": positive_int, "val_fraction": fraction, "batch_size": positive_int,
        "seed": _integer, "trials": positive_int, "timeout": _text, "threads": positive_int,
        "reference_epochs": non_negative_float, "sampler_seed": _integer,
    }


def _resumed_config(out: Path) -> dict[str, Any]:
    """The ``config.yaml`` of the run ``--resume`` continues, checked (one line if broken)."""
    path = out / "config.yaml"
    if not path.is_file():
        raise UsageError(f"--resume needs an existing run folder (--out), {out} has none")
    from budgetsearch.search.runner import read_run_config

    try:
        return read_run_config(path, what="--resume")
    except ValueError as error:
        raise UsageError(str(error)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    from budgetsearch.cost.metrics import parse_timeout_seconds, target_from_options
    from budgetsearch.search.optuna_driver import OptunaOptions
    from budgetsearch.search.runner import RunRequest, run_search

    settings = dict(RUN_DEFAULTS)
    file_settings = load_config_defaults(args.config)
    unknown = sorted(set(file_settings) - set(settings))
    if unknown:
        raise UsageError(f"--config file {args.config}: unknown option(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(settings))}")
    settings.update(check_file_settings(file_settings, _run_checks(), args.config))
    settings.update({k: v for k, v in vars(args).items() if k in settings and v is not None})
    threads = settings["threads"]
    if threads is not None and threads > _cpu_count() and (args.engine == "optuna"
                                                           or args.ray_address is None):
        raise UsageError(f"threads must be at most the {_cpu_count()} CPU(s) of this machine, "
                         f"got {threads}")
    target = target_from_options(latency=args.target_latency, flops=args.target_flops,
                                 params=args.target_params, activation_volume=args.target_volume)
    if target is not None and target.metric == "latency_ms" and args.device is None:
        raise UsageError("--target-latency needs --device (see 'budgetsearch devices')")
    timeout = parse_timeout_seconds(settings["timeout"], name="timeout") if str(
        settings["timeout"]).lower() not in ("none", "0") else None
    from budgetsearch.data import canonical_dataset_spec
    from budgetsearch.search.settings import TrialSettings

    shape = settings["input_shape"]
    if shape is not None and not isinstance(shape, tuple):  # from --config: "3,32,32" or a list
        shape = _input_shape(",".join(map(str, shape)) if isinstance(shape, list) else shape)
    trial_settings = TrialSettings(
        model=_model_spec(str(settings["model"])), width=float(settings["width"]),
        dataset=canonical_dataset_spec(str(settings["dataset"])),
        data_dir=settings["data_dir"], train_subset=settings["train_subset"],
        val_fraction=float(settings["val_fraction"]), batch_size=int(settings["batch_size"]),
        device_profile=args.device, target=target, seed=int(settings["seed"]),
        threads=settings["threads"], reference_epochs=float(settings["reference_epochs"]),
        input_shape=shape,
    )
    objectives = tuple(o.strip() for o in args.objectives.split(","))
    ray_options = {"ray_address": args.ray_address, "max_concurrent": args.max_concurrent,
                   "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial}
    given = [f"--{k.replace('_', '-')}" for k, v in ray_options.items() if v is not None]
    if args.engine != "ray" and given:
        raise UsageError(f"{', '.join(given)} need(s) --engine ray, got --engine {args.engine}")
    if args.widths is not None and args.no_families:
        raise UsageError("--widths sets the family search's bases; drop it or --no-families")
    request = RunRequest(
        settings=trial_settings, pruner=args.pruner, space=args.space, engine=args.engine,
        optuna=OptunaOptions(trials=settings["trials"], timeout_s=timeout, sampler=args.sampler,
                             objectives=objectives,
                             seed=int(settings["seed"] if settings["sampler_seed"] is None
                                      else settings["sampler_seed"]),
                             prune=not args.no_pruning, pruning=args.pruning),
        families=not args.no_families, widths=args.widths,
        **{k: v for k, v in ray_options.items() if v is not None},
    )
    if args.engine == "ray":
        from budgetsearch.search.ray_driver import check_reachable, validate_request

        validate_request(request)  # before the output folder is made (bad address, objectives)
        if request.ray_address is not None:
            try:
                check_reachable(request.ray_address)
            except ConnectionError as error:
                raise UsageError(str(error)) from None
    out = Path(args.out or f"runs/run-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.resume:
        first = _resumed_config(out).get("engine")
        if first not in (None, args.engine):
            raise UsageError(f"--resume: {out} was run with --engine {first}, got --engine "
                             f"{args.engine}")
        _check_writable(out / "config.yaml", "--out")
    else:  # refused now, made by run_search once every input checked out (nothing half-done)
        check_output_dir(out, force=args.force, resume_hint=True)
    from budgetsearch.search.settings import check_network

    check_network(trial_settings)  # the model takes the data's images: else one line, no file
    argv = getattr(args, "argv", None) or ["run"]
    command = "budgetsearch " + shlex.join(argv)  # repeatable: '10 ms' keeps its quotes
    try:
        summary = run_search(request, out, resume=args.resume, progress=not args.no_progress,
                             command=command, force=args.force)
    except (ConnectionError, ImportError) as error:  # no Ray cluster there / Ray not installed
        raise UsageError(str(error)) from None
    except KeyboardInterrupt as interrupt:
        again = resume_command(getattr(args, "argv", None) or ["run"], out)
        detail = f" ({interrupt})" if str(interrupt) else ""
        print(f"budgetsearch: interrupted{detail}; finished trials are kept in "
              f"{out / 'results.csv'}. Resume with:\n  {again}", file=sys.stderr)
        return 130
    for note in summary.notes:
        print(f"note: {note}")
    table = summary.table
    counts = table["status"].value_counts().to_dict() if len(table) else {}
    print(f"{len(table)} trial(s): " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    shown = ("trial_id", *(("family",) if summary.families is not None else ()), "status",
             "accuracy", "val_accuracy", "params", "flops", "latency_ms", "feasible", "seconds")
    columns = [c for c in shown if c in table.columns]
    if len(table):
        print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if summary.model_error is not None:
        print(f"budgetsearch: the best feasible row's model cannot be used: "
              f"{summary.model_error}", file=sys.stderr)
        return 1
    best = summary.best
    if best is None:
        print("no feasible trial finished; raise --trials/--timeout or loosen the target")
    if best is not None:
        latency = best.get("latency_ms")
        what = ("the unpruned reference: no pruned trial was more accurate"
                if best.get("kind") == "reference" else
                best["family"] if summary.families is not None else best["pruner"])
        line = f"best feasible: {best['trial_id']} ({what}), test accuracy {best['accuracy']:.4f}"
        if latency is not None and args.device:
            line += f", predicted latency on {best.get('device') or args.device}: " \
                    f"{latency:.4f} ms"
        if summary.measured_latency_ms is not None:
            line += f", measured here: {summary.measured_latency_ms:.4f} ms"
        print(line + f", {int(best['params']):,} parameters")
        model_path = Path(str(best["model_path"]))  # the runner resolved it from the run folder
        print(f"model: {model_path}  (deploy: budgetsearch export {out} "
              f"--trial {best['trial_id']} --format onnx --out model.onnx)")
    if summary.families is not None:
        print(summary.families.describe())
    resolved = (trial_settings if summary.plan is None
                else dataclasses.replace(trial_settings, target=summary.plan.target))
    plot = plot_run(table, out, resolved) if len(table) else None
    print(f"results: {out / 'results.csv'}  config: {out / 'config.yaml'}"
          + (f"  Pareto plot: {plot}" if plot is not None else ""))
    if summary.failure is not None:
        print(f"budgetsearch: error: {summary.failure}", file=sys.stderr)
        return 1
    return 0 if best is not None else 1


PLOT_STEM = "pareto"


def plot_run(table: Any, run_dir: Path, settings: Any) -> Path | None:
    """``RUN/pareto.png`` (and .svg): accuracy vs the target's metric (parameters without a
    target), every trial, the front per pruner, the reference, the target's feasible region.
    None when no trial has both an accuracy and that cost."""
    from budgetsearch.pareto import plots
    from budgetsearch.pareto.fronts import fronts_by_group, usable_trials

    target = settings.target
    metric = target.metric if target is not None else "params"
    if metric not in table.columns or usable_trials(table, metric).empty:
        return None
    value = target.value if target is not None else None
    fronts = fronts_by_group(table, metric, target=value)
    named = table["device"].dropna() if "device" in table.columns else []
    device = (f" on {named.iloc[0] if len(named) else settings.device_profile}"
              if metric == "latency_ms" else "")
    from budgetsearch.models import model_label

    data = Path(settings.dataset).name if "/" in settings.dataset else settings.dataset
    paths = plots.plot_front(table, metric, fronts, run_dir / PLOT_STEM, target=value,
                             title=f"{model_label(settings.model)} on {data}: accuracy vs "
                                   f"{metric}{device}")
    return next((p for p in paths if p.suffix == ".png"), paths[0] if paths else None)


def _width_list(text: str) -> tuple[float, ...]:
    try:
        widths = tuple(float(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not widths or any(not 0 < w <= 16 for w in widths):
        raise argparse.ArgumentTypeError(
            f"must be width multipliers in (0, 16] separated by commas, like 0.5,1,2, got {text!r}")
    return widths


def _add_run_parser(sub: Any) -> None:
    from budgetsearch.data import dataset_names
    from budgetsearch.pruners import pruner_names, search_order

    p = sub.add_parser(
        "run", help="search for the most accurate pruned network that meets a target",
        description="Search pruner hyperparameters (search_spaces/*.yaml) with Optuna or Ray "
        "Tune for the most accurate pruned network meeting a latency/FLOPs/parameter target on "
        "a device profile. Default time budget: wrn-16-1 and its family on the whole Fashion-MNIST "
        "training set, 40 trials or 12 minutes (the reference's training included), under 15 "
        "minutes on 2 CPU cores.",
    )
    p.add_argument("--device", help="device profile name, alias (jetson) or YAML path")
    p.add_argument("--target-latency", metavar="DURATION",
                   help="e.g. 10ms, 500us, 0.01s, or 50%% of the unpruned network's")
    p.add_argument("--target-flops", metavar="COUNT",
                   help="e.g. 50M (fvcore: 1 FLOP = 1 MAC) or 25%%")
    p.add_argument("--target-params", metavar="COUNT", help="e.g. 1.5M or 50%%")
    p.add_argument("--target-volume", metavar="COUNT",
                   help="activation volume (BAR eq. 4), e.g. 200k or 50%%")
    p.add_argument("--pruner", metavar="NAME",
                   help=f"one of {', '.join(pruner_names())} (default: the first of "
                        f"{', '.join(search_order())} that can meet the target)")
    p.add_argument("--space", help="search space name in search_spaces/ or a YAML path")
    p.add_argument("--engine", choices=["optuna", "ray"], default="optuna",
                   help="optuna (local study) or ray (Ray Tune, local or on a cluster)")
    p.add_argument("--ray-address", metavar="auto|HOST:PORT",
                   help="join a running Ray cluster (default with --engine ray: start a local one)")
    p.add_argument("--max-concurrent", type=positive_int, metavar="N",
                   help="Ray: trials running at once (default 1)")
    p.add_argument("--cpus-per-trial", type=positive_float, metavar="X",
                   help="Ray: CPUs reserved per trial (default 1; also its torch threads)")
    p.add_argument("--gpus-per-trial", type=non_negative_float, metavar="Y",
                   help="Ray: GPUs reserved per trial (default 0; > 0 trains on CUDA)")
    p.add_argument("--objectives", default="accuracy",
                   help="accuracy (constrained) or accuracy,latency (multi-objective)")
    p.add_argument("--sampler", choices=["tpe", "random"], default="tpe")
    p.add_argument("--no-pruning", action="store_true",
                   help="no early stopping of trials (as --pruning none)")
    p.add_argument("--pruning", choices=["sha", "hyperband", "median", "none"], default="sha",
                   help="Optuna early stopping, epochs as the resource (trials report validation "
                   "accuracy every quarter epoch): successive halving (default), Hyperband, "
                   "median, none")
    p.add_argument("--no-families", action="store_true",
                   help="search one base network's pruner only (the default compares families: "
                   "dense networks of other widths/depths and pruned wider/deeper ones)")
    p.add_argument("--widths", type=_width_list, metavar="W,W,...",
                   help="width multipliers of the family search's bases (default "
                   "0.5,0.75,1,1.5,2)")
    p.add_argument("--trials", type=positive_int, help="trials in total (default 40)")
    p.add_argument("--timeout", help="the run's time limit (default 12m; 30m, 90s, 2h, none): "
                   "with Optuna it counts the reference's training, no trial starts after it and "
                   "the trial in flight stops at its next report")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--config", help="YAML file of option defaults; flags override it")
    p.add_argument("--model", metavar="SPEC",
                   help="a built-in name (default wrn-16-1; see 'budgetsearch models'), "
                   "path/to/file.py:FACTORY or package.module:FACTORY (the factory gets "
                   "num_classes and in_channels when its signature names them)")
    p.add_argument("--width", type=positive_float)
    p.add_argument("--dataset", metavar="NAME|DIR",
                   help=f"one of {', '.join(dataset_names())} (default fashion-mnist), or an "
                   "image folder DIR with train/ and val/ (or test/), one subfolder per class")
    p.add_argument("--input-shape", type=_input_shape, metavar="C,H,W",
                   help="convert an image folder's images to C channels (1 or 3) and resize "
                   "them to HxW (needed when they differ in size)")
    p.add_argument("--data-dir")
    p.add_argument("--train-subset", type=positive_int, metavar="N",
                   help="use N training images (a seeded subset; default: all)")
    p.add_argument("--val-fraction", type=fraction,
                   help="share of the training images held out for validation (default 0.1)")
    p.add_argument("--batch-size", type=positive_int, help="default 128")
    p.add_argument("--threads", type=positive_int, help="torch threads per trial")
    p.add_argument("--reference-epochs", type=non_negative_float, metavar="E",
                   help="train the unpruned network E epochs once; trials start from it and "
                   "distilling pruners distil from it (default 2; 0: trials start from random "
                   "weights, no teacher)")
    p.add_argument("--seed", type=int, help="data split, weight init and training (default 0)")
    p.add_argument("--sampler-seed", type=int, metavar="N",
                   help="the Optuna sampler's seed alone (default: --seed), so that samplers "
                   "can be compared over seeds on the same data split and reference network")
    p.add_argument("--out", help="run folder (default runs/run-TIME)")
    p.add_argument("--force", action="store_true", help="reuse a non-empty output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_run)


def _add_pareto_parsers(sub: Any) -> None:
    from budgetsearch.commands.pareto import register  # pareto and baselines

    register(sub)


def _add_export_parser(sub: Any) -> None:
    from budgetsearch.commands.export import register

    register(sub)


Registrar = Callable[[Any], None]
# Later commands (cost, devices, profile, run, pareto, ...) add themselves here.
_SUBCOMMANDS: list[Registrar] = [
    _add_train_parser,
    _add_devices_parser,
    _add_cost_parser,
    _add_profile_parser,
    _add_run_parser,
    _add_pareto_parsers,
    _add_export_parser,
]


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
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = [w for w in argv if w != "--debug"]  # for the resume command after Ctrl-C
        if args.command is None:
            parser.print_help()
            return 2
        return int(args.handler(args))
    except (UsageError, ValueError, TypeError, OSError, KeyError) as error:
        if debug:
            raise
        message = str(error) if not isinstance(error, KeyError) else f"unknown key {error}"
        message = " ".join(message.split())  # one line, whatever the library wrote
        print(f"budgetsearch: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print("budgetsearch: interrupted" + (f": {interrupt}" if str(interrupt) else ""),
              file=sys.stderr)
        return 130
