"""The ``budgetsearch pareto`` and ``budgetsearch baselines`` commands (registered by cli.py)."""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from budgetsearch.commands.argtypes import positive_float, positive_int
from budgetsearch.cost.metrics import METRICS, is_met, is_positive_number
from budgetsearch.errors import UsageError
from budgetsearch.files import torch_save_atomic, write_text_atomic
from budgetsearch.pareto.fronts import (
    COST_COLUMNS,
    Front,
    front_hypervolumes,
    fronts_by_group,
    hardware_selection,
    parse_ratios,
    parse_target,
    resolve_metric,
    usable_trials,
)
from budgetsearch.pareto.results import load_run_config, load_runs, write_csv_atomic

_PLOT_METRICS = ("params", "flops", "activation_volume")
#: Plot titles' names of the cost columns (the axis labels carry the units).
_TITLE_NAMES = {name: info.short for name, info in METRICS.items()}
#: One line per ``budgetsearch baselines`` invocation, in RUN/baselines/ (read by the report).
BASELINE_COMMANDS_FILE = "commands.txt"


def _usage(message: str) -> Exception:
    return UsageError(message)


def _devices(text: str | None, table: pd.DataFrame) -> list[str]:
    from budgetsearch.cost import profile_names, resolve_profile_name

    if text is None:
        if "device" in table and table["device"].notna().any():
            return [str(table["device"].dropna().mode().iloc[0])]
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    resolved = []
    for name in names:
        try:
            resolved.append(resolve_profile_name(name))
        except (ValueError, KeyError, FileNotFoundError):
            raise _usage(f"--devices: unknown device {name!r}; known: "
                         f"{', '.join(profile_names())}") from None
    if not resolved:
        raise _usage(f"--devices must name at least one device, got {text!r}")
    return list(dict.fromkeys(resolved))


def _reference(table: pd.DataFrame, metric: str, target: float | None) -> tuple[float, float]:
    usable = usable_trials(table, metric)
    worst = float(usable[metric].max()) if not usable.empty else 1.0
    return (target if target is not None else worst * 1.05, 0.0)


def _unpruned_cost(table: pd.DataFrame, metric: str) -> float | None:
    """The unpruned reference's cost on ``metric`` (a relative --target is a share of it)."""
    if "kind" not in table or metric not in table:
        return None
    values = pd.to_numeric(table.loc[table["kind"] == "reference", metric], errors="coerce")
    values = values.dropna()
    return float(values.iloc[0]) if len(values) else None


def _table_target(table: pd.DataFrame, metric: str) -> float | None:
    """The runs' own target when it counts ``metric`` (the first one found), else None."""
    if "target_metric" not in table or "target_value" not in table:
        return None
    same = table[table["target_metric"].astype(str) == metric]["target_value"].dropna()
    if not same.empty and math.isfinite(float(same.iloc[0])):
        return float(same.iloc[0])
    return None


def _trial_name(row: pd.Series, several_runs: bool) -> str:
    """``trial_id``, prefixed by its run where several runs share one table (ids repeat)."""
    return f"{row['run']}/{row['trial_id']}" if several_runs and "run" in row else str(
        row["trial_id"])


def regenerate_commands(runs: list[Path]) -> list[str]:
    """The commands that made the runs' rows, in order: each run's ``budgetsearch run`` (its
    config.yaml ``command``), then its ``budgetsearch baselines`` (``RUN/baselines/commands.txt``).
    """
    commands: list[str] = []
    for run in runs:
        recorded = str(load_run_config(run).get("command") or "").strip()
        if recorded:
            commands.append(recorded)
        log = run / "baselines" / BASELINE_COMMANDS_FILE
        if log.is_file():
            commands += [line.strip() for line in log.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(commands))


def _write_csv(table: pd.DataFrame, path: Path) -> list[Path]:
    write_csv_atomic(table, path)
    return [path]


def _check_comparable(table: pd.DataFrame, runs: list[Path]) -> None:
    """Refuse a table with nothing to compare: no row with an accuracy and a cost (or a pruned
    configuration to price)."""
    where = ", ".join(str(r / "results.csv") for r in runs)
    accuracy = pd.to_numeric(table["accuracy"], errors="coerce").notna()
    priced = pd.Series(False, index=table.index)
    for column in COST_COLUMNS:
        if column in table:
            priced |= pd.to_numeric(table[column], errors="coerce").notna()
    if "pruned_config_path" in table:
        priced |= table["pruned_config_path"].notna()
    if not (accuracy & priced).any():
        columns = [str(c) for c in table.columns if c not in ("run", "run_dir")]
        raise _usage(f"{where}: no row has both an accuracy and a cost "
                     f"({', '.join(COST_COLUMNS)}) or a pruned configuration: nothing to compare "
                     f"(columns: {', '.join(columns)})")


def _accuracy_floor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected an accuracy in [0, 1], got {text!r}")
    return value


def _cmd_pareto(args: argparse.Namespace) -> int:
    from budgetsearch.pareto import plots
    from budgetsearch.pareto.report import render_report
    from budgetsearch.pareto.reprice import (
        InventoryCache,
        PrunedConfig,
        layer_profile,
        reprice_trials,
    )

    runs = [Path(r) for r in args.run_dirs]
    several = len(runs) > 1
    if several and args.out is None:
        raise _usage(f"--out is required with several run folders (got {len(runs)}): the "
                     "report belongs to none of them alone")
    table = load_runs(runs)
    metric = resolve_metric(args.metric)
    devices = _devices(args.devices, table)
    target = (parse_target(args.target, metric, full=_unpruned_cost(table, metric))
              if args.target else _table_target(table, metric))
    out = Path(args.out) if args.out is not None else runs[0] / "pareto"
    if out.exists() and not out.is_dir():
        raise _usage(f"--out must be a folder, but {out} is a file")
    _check_comparable(table, runs)
    name = " + ".join(dict.fromkeys(table["run"].astype(str))) if "run" in table else runs[0].name
    # Everything is read and computed first; files are written at the end (a damaged input
    # refuses the command before any plot exists).
    jobs: list[Callable[[], list[Path]]] = []
    notes: list[str] = []
    fronts: dict[str, dict[str, Front]] = {}
    hvs: dict[str, dict[str, float]] = {}
    refs: dict[str, tuple[float, float]] = {}
    rejected = table[(table.get("status", pd.Series(dtype=str)) == "infeasible")
                     & table["accuracy"].isna()]
    if not rejected.empty:
        notes.append(f"{len(rejected)} trial(s) were priced over the target before training and "
                     "never trained: they have no accuracy and appear in no plot")
    status = table.get("status", pd.Series(dtype=str)).astype(str)
    for word, why in (("pruned", "stopped early by Optuna's pruner (their accuracy is an "
                                 "intermediate one)"),
                      ("failed", "failed"), ("interrupted", "were interrupted")):
        if (status == word).any():
            notes.append(f"{int((status == word).sum())} trial(s) {why}: status {word!r}, in "
                         "no front or plot")

    # Device-free costs from the table as recorded; the runs' own target (if it counts this
    # cost) shades the feasible region.
    for cost in _PLOT_METRICS:
        if cost not in table or usable_trials(table, cost).empty:
            continue
        own = target if cost == metric else _table_target(table, cost)
        fronts[cost] = fronts_by_group(table, cost, target=own, min_accuracy=args.min_accuracy)
        refs[cost] = _reference(table, cost, own)
        hvs[cost] = front_hypervolumes(fronts[cost], reference=refs[cost])
        jobs.append(partial(plots.plot_front, table, cost, fronts[cost],
                            out / f"accuracy_vs_{cost}", target=own,
                            min_accuracy=args.min_accuracy,
                            title=f"{name}: accuracy vs {_TITLE_NAMES[cost]}"))

    choice = None
    cache = InventoryCache()
    if devices:
        from budgetsearch.cost import load_profile

        # A datasheet roofline is a prediction, a measured profile is not: say which, per device.
        sources = {d: f"{load_profile(d).source} profile" for d in devices}
        repriced = reprice_trials(table, devices, cache=cache)
        missing = int((~repriced["repriced"]).sum() // len(devices))
        if missing:
            notes.append(f"{missing} trial(s) have no readable pruned configuration and are left "
                         "out of the device comparison")
        repriced = repriced[repriced["repriced"]]
        per_device = {d: fronts_by_group(repriced[repriced["device"] == d], metric,
                                         target=target, min_accuracy=args.min_accuracy)
                      for d in devices}
        choice = hardware_selection(repriced, metric=metric, target=target,
                                    min_accuracy=args.min_accuracy)
        for device in devices:
            part = repriced[repriced["device"] == device]
            key = f"{metric} on {device}"
            fronts[key] = per_device[device]
            refs[key] = _reference(part, metric, target)
            hvs[key] = front_hypervolumes(per_device[device], reference=refs[key])
            jobs.append(partial(
                plots.plot_front, part, metric, per_device[device],
                out / f"accuracy_vs_{metric}_{device}", target=target,
                min_accuracy=args.min_accuracy,
                title=f"{name}: accuracy vs {_TITLE_NAMES[metric]} on {device} "
                      f"({sources[device]})"))
        jobs.append(partial(plots.plot_devices, repriced, metric, per_device, choice.table,
                            out / "hardware_selection", target=target,
                            min_accuracy=args.min_accuracy, several_runs=several,
                            sources=sources))
        jobs.append(partial(_write_csv, repriced, out / "repriced.csv"))
        jobs.append(partial(_write_csv, choice.table, out / "hardware_selection.csv"))
    else:
        notes.append("no device given and the table names none: no latency comparison")

    # Per-layer plots of the most accurate finished trial of each pruner.
    pruned_rows = usable_trials(table, "accuracy") if "pruned_config_path" in table else table[:0]
    if "kind" in pruned_rows:
        pruned_rows = pruned_rows[pruned_rows["kind"].astype(str) == "pruned"]
    if "status" in pruned_rows:
        pruned_rows = pruned_rows[pruned_rows["status"] == "ok"]
    if "pruner" in pruned_rows and not pruned_rows.empty:
        for pruner, rows in pruned_rows.groupby(pruned_rows["pruner"].fillna("?").astype(str)):
            best = rows.sort_values("accuracy", kind="stable").iloc[-1]
            try:
                config = PrunedConfig.load(Path(str(best["pruned_config_path"])))
            except (FileNotFoundError, ValueError) as error:
                notes.append(f"trial {_trial_name(best, several)}: {error}")
                continue
            try:
                layers = layer_profile(config, cache=cache)
            except (ValueError, KeyError, TypeError, RuntimeError) as error:
                notes.append(f"trial {_trial_name(best, several)}: its pruned configuration "
                             f"{best['pruned_config_path']} does not fit its network ({error})")
                continue
            title = (f"trial {_trial_name(best, several)} ({pruner}, "
                     f"accuracy {best['accuracy']:.3f})")
            if config.densities:
                jobs.append(partial(plots.plot_layer_sparsity, layers,
                                    out / f"layer_sparsity_{pruner}",
                                    title=f"per-layer sparsity, {title}"))
            if config.kept_channels:
                jobs.append(partial(plots.plot_kept_channels, layers,
                                    out / f"kept_channels_{pruner}",
                                    title=f"kept channels, {title}"))

    front_rows = []
    for cost, groups in fronts.items():
        for group, front in groups.items():
            for _, row in front.points.iterrows():
                front_rows.append({"cost": cost, "group": group, "run": row.get("run"),
                                   "trial_id": row.get("trial_id"), "kind": row.get("kind"),
                                   "accuracy": row["accuracy"], "value": row[front.metric]})
    jobs.append(partial(_write_csv, pd.DataFrame(front_rows), out / "fronts.csv"))
    kinds = table["kind"].value_counts() if "kind" in table else pd.Series({"pruned": len(table)})
    counts = {str(k): int(v) for k, v in kinds.items()}
    argv = [w for w in (getattr(args, "argv", None) or []) if w != "--debug"]
    command = "budgetsearch " + shlex.join(argv) if argv else _pareto_command(args, metric,
                                                                               devices)
    regenerate = [*regenerate_commands(runs), command]
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for job in jobs:
        written += job()
    text = render_report(run_dir=", ".join(str(r) for r in runs), command=command,
                         metric=metric, fronts=fronts, hypervolumes=hvs, references=refs,
                         choice=choice, plots=[p.name for p in written if p.suffix == ".png"],
                         counts=counts, notes=notes, show_run=several,
                         regenerate=regenerate)
    write_text_atomic(out / "report.md", text)
    written.append(out / "report.md")
    if choice is not None:
        print(f"devices meeting the target: {', '.join(choice.devices_meeting) or 'none'}")
        for note in (f.note for f in fronts.get(f"{metric} on {devices[0]}", {}).values()):
            if note:
                print(f"note: {note}")
    print(f"wrote {len(written)} files to {out} (report: {out / 'report.md'})")
    return 0


def _pareto_command(args: argparse.Namespace, metric: str, devices: list[str]) -> str:
    command = "budgetsearch pareto " + " ".join(shlex.quote(str(r)) for r in args.run_dirs)
    command += f" --metric {metric}"
    command += f" --devices {','.join(devices)}" if devices else ""
    command += f" --target {shlex.quote(args.target)}" if args.target else ""
    command += f" --min-accuracy {args.min_accuracy:g}" if args.min_accuracy is not None else ""
    command += f" --out {shlex.quote(str(args.out))}" if args.out is not None else ""
    return command


def _add_pareto_parser(sub: Any) -> None:
    p = sub.add_parser(
        "pareto", help="Pareto fronts, baseline curves, hardware selection plots and report",
        description="Read the results.csv of one or more run folders (e.g. a BAR run and an "
        "erf-loss run, with the thinner dense baselines added to either), compute "
        "accuracy-vs-cost fronts per pruner against the baselines, re-price every trial on the "
        "named devices (no retraining) and write plots (PNG+SVG), CSVs and report.md to --out "
        "(default RUN_DIR/pareto for one run).",
    )
    p.add_argument("run_dirs", metavar="RUN_DIR", nargs="+",
                   help="run folder(s) holding results.csv; several are merged into one table "
                   "with a 'run' column")
    p.add_argument("--out", metavar="DIR", help="output folder; default RUN_DIR/pareto for one "
                   "run, required for several")
    p.add_argument("--metric", default="latency_ms",
                   help=f"cost for the device comparison: {', '.join(COST_COLUMNS)} (or latency, "
                   "params, ...); default latency_ms")
    p.add_argument("--devices", help="comma-separated device profiles (see 'budgetsearch "
                   "devices'); default: the runs' device")
    p.add_argument("--target", help="budget in the metric's units: 10ms, 2M, 300k; default: "
                   "the runs' target when it is the same metric")
    p.add_argument("--min-accuracy", type=_accuracy_floor, metavar="A",
                   help="only models at least this accurate qualify")
    p.set_defaults(handler=_cmd_pareto)


# ---------------------------------------------------------------------------------------------
# baselines


_BASELINE_DEFAULTS: dict[str, Any] = {
    "dataset": "fashion-mnist", "data_dir": None, "epochs": 1.0, "train_subset": None,
    "val_fraction": 0.0, "batch_size": 64, "optimizer": "adam", "lr": 0.002,
    "weight_decay": 5e-4, "schedule": "cosine", "restart_epochs": None, "seed": 0,
    "device": "auto",
}


def _cmd_baselines(args: argparse.Namespace) -> int:
    import json
    import time

    import torch

    from budgetsearch.cost import load_profile
    from budgetsearch.data import canonical_dataset_spec, load_dataset
    from budgetsearch.models import (
        build_model,
        canonical_model_spec,
        model_label,
        resolve_model_spec,
    )
    from budgetsearch.models.spec import takes_width
    from budgetsearch.pareto.fronts import baseline_widths
    from budgetsearch.pareto.reprice import PrunedConfig, price_config
    from budgetsearch.pareto.results import RESULTS_FILE, append_rows
    from budgetsearch.search.settings import BN_RECALIBRATION_BATCHES
    from budgetsearch.train import TrainConfig, seed_everything, train

    ratios = parse_ratios(args.ratios)
    run = Path(args.run) if args.run else Path(f"runs/baselines-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.run and not run.is_dir():
        raise _usage(f"--run folder {run} does not exist")
    raw = load_run_config(run) if run.is_dir() else {}
    # A search run's config.yaml keeps the training settings under "settings"; a baselines-only
    # run folder has none. Baselines train as long as a trial's network did in all: the
    # reference's epochs (trials start from it) plus a trial's.
    config = {**raw, **(raw.get("settings") or {})}
    if "reference_epochs" in config:
        config["epochs"] = float(config.get("reference_epochs") or 0) + float(
            config.get("epochs") or 0)
    model_name = args.model or config.get("model")
    if model_name is None:
        raise _usage("--model is required when the run's config.yaml names no model")
    try:  # a bad spec: one line, nothing written
        model_name = canonical_model_spec(str(model_name))
        resolve_model_spec(model_name)
    except ValueError as error:  # "model ...": said of the option
        raise _usage(f"--{error}") from None
    if not takes_width(model_name):
        raise _usage(f"--model {model_label(model_name)!r} takes no width_multiplier: a thinner "
                     "dense baseline needs a factory with a width_multiplier parameter")
    label = re.sub(r"[^\w.-]+", "-", model_label(model_name)).strip("-")  # a file name
    if config.get("torch_device") and "device" not in raw:
        config["device"] = config["torch_device"]  # a search run's torch device
    settings = {k: config.get(k, v) for k, v in _BASELINE_DEFAULTS.items()}
    for key in ("dataset", "data_dir", "epochs", "train_subset", "seed"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings["dataset"] = canonical_dataset_spec(str(settings["dataset"]))
    shape = config.get("input_shape") if args.dataset is None else None
    shape = tuple(int(v) for v in shape) if shape else None
    if settings["device"] not in ("auto", "cpu") and not str(settings["device"]).startswith(
            "cuda"):
        settings["device"] = "auto"  # a hardware profile name, not a torch device
    threads = config.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise _usage(f"{run / 'config.yaml'}: threads must be a positive integer, got "
                     f"{threads!r}")
    if threads:
        torch.set_num_threads(threads)  # as the run's trials were trained
    existing = pd.read_csv(run / RESULTS_FILE) if (run / RESULTS_FILE).is_file() else None
    done: set[float] = set()
    profile_name = None
    target_metric, target_value = None, None
    if existing is not None and not existing.empty:
        if "hp_compression_ratio" in existing and "kind" in existing:
            mine = existing[(existing["kind"] == "baseline") &
                            (existing.get("model", model_name) == model_name)]
            done = {round(float(r), 9) for r in mine["hp_compression_ratio"].dropna()}
        if "device" in existing and existing["device"].notna().any():
            profile_name = str(existing["device"].dropna().mode().iloc[0])
        if "target_metric" in existing and existing["target_metric"].notna().any():
            target_metric = str(existing["target_metric"].dropna().iloc[0])
            target_value = float(existing["target_value"].dropna().iloc[0])
    profile = None
    if profile_name is not None:
        try:
            profile = load_profile(profile_name)
        except (ValueError, KeyError, FileNotFoundError):
            profile = None
    scale = config.get("latency_scale", 1.0)
    if not is_positive_number(scale):
        raise _usage(f"{run / 'config.yaml'}: latency_scale must be a positive number, got "
                     f"{scale!r}")
    from budgetsearch.pareto.reprice import run_latency_scale

    scale = run_latency_scale(scale, config.get("device_profile"), profile) if (
        profile is not None) else 1.0
    if scale != 1.0:
        profile = profile.scaled(scale)  # as the run's trials were priced (calibrated)
    todo = [r for r in ratios if round(r, 9) not in done]
    for r in ratios:
        if r not in todo:
            print(f"ratio {r:g}: already in {run / RESULTS_FILE}, skipped")
    if not todo:
        return 0
    splits = load_dataset(settings["dataset"], data_dir=settings["data_dir"],
                          train_subset=settings["train_subset"],
                          val_fraction=settings["val_fraction"], seed=settings["seed"],
                          input_shape=shape)
    shape = splits.input_shape
    # Every input checked (ratios, model, data): only now is anything written.
    folder = run / "baselines"
    folder.mkdir(parents=True, exist_ok=True)
    argv = [w for w in (getattr(args, "argv", None) or []) if w != "--debug"]
    if argv:
        # The pareto report lists it among the commands that regenerate the run.
        log = folder / BASELINE_COMMANDS_FILE
        line = "budgetsearch " + shlex.join(argv)
        previous = log.read_text().splitlines() if log.is_file() else []
        if line not in previous:
            write_text_atomic(log, "\n".join([*previous, line]) + "\n")
    for ratio, width in baseline_widths(todo).items():
        seed_everything(int(settings["seed"]))  # the same initial draw whichever ratios ran
        model = build_model(model_name, num_classes=splits.num_classes,
                            in_channels=splits.in_channels, width_multiplier=width)
        pruned = PrunedConfig(model=model_name, width=width, input_shape=shape,
                              num_classes=splits.num_classes)
        cost = price_config(pruned, profile)
        print(f"ratio {ratio:g}: {model_label(model_name)} width √{ratio:g} = {width:.4f}, "
              f"{int(cost.params):,} parameters; training {settings['epochs']} epoch(s)")
        result = train(model, splits, TrainConfig(
            epochs=float(settings["epochs"]), batch_size=int(settings["batch_size"]),
            optimizer=settings["optimizer"], lr=float(settings["lr"]),
            weight_decay=float(settings["weight_decay"]), schedule=settings["schedule"],
            restart_epochs=settings["restart_epochs"], seed=int(settings["seed"]),
            device=settings["device"], progress=not args.no_progress,
            # As the search run's reference and trials: BN statistics re-estimated before the
            # test, so that the curve and the fronts are measured the same way.
            bn_recalibration_batches=BN_RECALIBRATION_BATCHES))
        # Not Path.with_suffix: "r0.25" would lose its ".25" and two ratios share one file.
        stem = f"{label}-r{ratio:g}"
        config_path = folder / f"{stem}.json"
        write_text_atomic(config_path, json.dumps(pruned.as_dict(), indent=1))
        model_path = folder / f"{stem}.pt"
        if result.status == "ok":
            torch_save_atomic(model.state_dict(), model_path)
        costs = cost.as_dict()
        feasible = True
        if target_metric in costs and costs[target_metric] is not None and target_value:
            feasible = is_met(costs[target_metric], target_value)
        row = {
            "trial_id": f"baseline-{label}-r{ratio:g}", "engine": "baselines",
            "kind": "baseline", "pruner": None, "model": model_name, "width": width,
            "status": result.status if result.status != "ok" or feasible else "infeasible",
            "failure": result.failure, "accuracy": result.test_accuracy,
            "val_accuracy": result.val_accuracy, **costs,
            "device": profile.name if profile is not None else None,
            "latency_scale": scale if profile is not None else None,
            "target_metric": target_metric, "target_value": target_value, "feasible": feasible,
            "seconds": result.seconds, "hp_compression_ratio": ratio,
            "model_path": str(model_path.relative_to(run)) if result.status == "ok" else None,
            "pruned_config_path": str(config_path.relative_to(run)), "report_path": None,
        }
        # The row also lands next to the model, where a search run's results table collects it
        # (search/results.trial_rows) when it rewrites results.csv.
        write_text_atomic(folder / f"{stem}.row.json", json.dumps(row, default=str))
        append_rows(run, [row])  # one row at a time: an interrupted run resumes where it stopped
        acc = f"{result.test_accuracy:.4f}" if result.test_accuracy is not None else "–"
        print(f"ratio {ratio:g}: {result.status}, accuracy {acc}, {result.seconds:.1f} s")
        if result.status != "ok":
            print(f"ratio {ratio:g} failed: {result.failure}", file=sys.stderr)
    print(f"results: {run / RESULTS_FILE}")
    return 0


def _add_baselines_parser(sub: Any) -> None:
    p = sub.add_parser(
        "baselines", help="train thinner dense baselines (width √r) into a run's results",
        description="For each compression ratio r, train the same network with every layer's "
        "channels × √r (erf-loss paper, eq. 12) with the run's data and epochs, and append a "
        "row of kind 'baseline' to RUN/results.csv. Ratios already there are skipped.",
    )
    p.add_argument("--model", metavar="SPEC", help="network: a built-in name, file.py:FACTORY "
                   "or package.module:FACTORY (its factory needs a width_multiplier parameter); "
                   "default: the run's config.yaml model")
    p.add_argument("--ratios", required=True, help="kept fractions of parameters, e.g. 0.5,0.25")
    p.add_argument("--run", metavar="RUN_DIR", help="run folder to add to (its config.yaml sets "
                   "data and epochs); default a new runs/baselines-TIME")
    p.add_argument("--dataset", metavar="NAME|DIR",
                   help="override the run's data set (a name or an image folder)")
    p.add_argument("--data-dir", help="folder holding the data set files")
    p.add_argument("--epochs", type=positive_float, help="override the run's epochs")
    p.add_argument("--train-subset", type=positive_int, metavar="N",
                   help="override the run's subset")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_baselines)


def register(sub: Any) -> None:
    """Add ``pareto`` and ``baselines`` to the ``budgetsearch`` subcommands."""
    _add_pareto_parser(sub)
    _add_baselines_parser(sub)
