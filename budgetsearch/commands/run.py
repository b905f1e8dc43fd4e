"""``budgetsearch run``: a search for the most accurate network that meets a target."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from budgetsearch.commands.argtypes import (
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
)
from budgetsearch.commands.options import (
    as_text,
    check_file_settings,
    check_output_dir,
    check_writable,
    cpu_count,
    dataset_check,
    input_shape_arg,
    integer,
    load_config_defaults,
    model_check,
    model_spec,
    resume_command,
)
from budgetsearch.errors import UsageError

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
        "model": model_check, "width": positive_float,
        "dataset": dataset_check, "data_dir": as_text,
        "train_subset": positive_int, "val_fraction": fraction, "batch_size": positive_int,
        "seed": integer, "trials": positive_int, "timeout": as_text, "threads": positive_int,
        "reference_epochs": non_negative_float, "sampler_seed": integer,
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


def _device_notice(name: str) -> None:
    """Say why the run's device profile is not checked here (another CPU, ...), if it is not;
    a name that loads no profile is left to the run's own input check."""
    from budgetsearch.commands.devices import unchecked_notice
    from budgetsearch.cost import load_profile
    from budgetsearch.profiling import anchors  # noqa: F401  (registers the drift check)

    try:
        profile = load_profile(name)
    except (ValueError, OSError):
        return
    unchecked_notice(profile)


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
    if threads is not None and threads > cpu_count() and (args.engine == "optuna"
                                                           or args.ray_address is None):
        raise UsageError(f"threads must be at most the {cpu_count()} CPU(s) of this machine, "
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
        shape = input_shape_arg(",".join(map(str, shape)) if isinstance(shape, list) else shape)
    trial_settings = TrialSettings(
        model=model_spec(str(settings["model"])), width=float(settings["width"]),
        dataset=canonical_dataset_spec(str(settings["dataset"])),
        data_dir=settings["data_dir"], train_subset=settings["train_subset"],
        val_fraction=float(settings["val_fraction"]), batch_size=int(settings["batch_size"]),
        device_profile=args.device, target=target, seed=int(settings["seed"]),
        threads=settings["threads"], reference_epochs=float(settings["reference_epochs"]),
        input_shape=shape,
    )
    if args.device:
        _device_notice(args.device)
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
        families=not args.no_families, widths=args.widths, calibrate=args.calibrate,
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
        check_writable(out / "config.yaml", "--out")
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
    p.add_argument("--calibrate", action="store_true",
                   help="with --target-latency on a profile measured on this machine: time the "
                   "unpruned network here once and scale the profile toward it (half the gap) "
                   "for the whole run (it changes which networks fit an absolute target; a "
                   "relative one only changes the milliseconds reported)")
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
    p.add_argument("--input-shape", type=input_shape_arg, metavar="C,H,W",
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


def register(sub: Any) -> None:
    """Add this module's commands to the ``budgetsearch`` subparsers ``sub``."""
    _add_run_parser(sub)
