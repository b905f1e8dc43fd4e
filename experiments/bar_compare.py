"""BAR vs magnitude pruning (budgetsearch's and Torch-Pruning's) vs thinner dense, at equal FLOPs
and at equal predicted latency, same reference and same extra training (issue 19's table).

Per seed: one WRN-16-2 reference trained ``--reference-epochs`` on a Fashion-MNIST subset (the
start point and KD teacher of every pruned method). Per metric (``flops``, ``latency_ms`` priced
with the ``--profile``) and factor f, a target of 1/f of the reference's cost, and per method
``--extra-epochs`` of training after the reference:

- ``bar``: BAR through the pruner protocol (``build_pruner("bar", target=..., profile=...,
  teacher=...)``, ``prepare``, its pruning phase for ``--prune-share`` of the extra epochs,
  ``finalize``); the compact network then trains the rest of the epochs (KD from the reference,
  as BAR's frozen / fine-tune phases do, on the physically smaller network: the same function
  as the frozen gated one, cheaper to train);
- ``bar-rewind``: BAR's pruning phase finds the channels; they are then cut from the
  reference's weights (rewinding to the start point) and trained for the rest of the epochs
  (do the found channels beat a uniform choice, apart from what the pruning phase did to the
  weights?); ``bar-rewind-free``: the same, trained for all the extra epochs after the rewind
  (the pruning phase not charged: a diagnostic of BAR's channel choice against WM's, at equal
  training of the compact network);
- ``wm``: the library's ``channel-magnitude`` pruner, ``scope="uniform"`` (the BAR paper's WM):
  ``prepare`` chooses the channels, ``finalize``, then all the extra epochs on the compact net;
- ``tp``: Torch-Pruning's ``MagnitudePruner`` (L1, uniform ratio found by bisection against the
  same cost model and profile), then the extra epochs (``experiments/tp_baseline.py``);
- ``dense``: the thinner dense network (largest width multiplier, by bisection, that meets the
  target), trained from scratch for the reference's epochs plus the extra ones;
- ``bar-scratch``: BAR's found widths (its compact architecture), re-initialised and trained
  from scratch like ``dense`` (are the widths good, apart from the inherited weights?).

``--variant NAME`` files a method's rows (and saved networks) as ``METHOD-NAME``, so that one
method under another recipe (``--prune-share``, ``--bar-option``, ``--teacher-epochs``) shares
the results folder and the tables with the table's own. ``--teacher-epochs E``: the pruned
methods distil from a second reference of the same seed trained E epochs (a better-trained
teacher) instead of the start point.

The pruned methods distil from the reference during their extra epochs when ``--kd`` (default,
the BAR paper's loss for every pruned method; ``--no-kd``: cross-entropy only); dense and
bar-scratch train on labels. Every accuracy is measured after re-estimating BatchNorm
statistics on 20 training batches. Each final network's measured CPU latency: batch 1, one
thread, median of ``--latency-repeats`` forward passes, interleaved with the full reference
(``latency_vs_full`` is the ratio within that measurement).

Usage:
    PYTHONPATH=. .venv/bin/python experiments/bar_compare.py --seeds 0 1 2 \\
        --out experiments/results/bar_compare
    PYTHONPATH=. .venv/bin/python experiments/bar_compare.py --summary-only \\
        --out experiments/results/bar_compare
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from bar_budgets import add_data_arguments, load_data, short_run_config
from torch import nn
from tp_baseline import full_cost, prune_to_target

from budgetsearch.cost import DeviceProfile, Target, is_met, layer_inventory, load_profile
from budgetsearch.data import DatasetSplits
from budgetsearch.models import build_model
from budgetsearch.pruners import build_pruner
from budgetsearch.train import StepContext, TrainConfig, train, train_phases

METHODS = ("bar", "bar-rewind", "bar-rewind-free", "wm", "tp", "dense", "bar-scratch")
#: The methods that share one BAR pruning phase per (metric, factor, seed).
BAR_METHODS = ("bar", "bar-rewind", "bar-rewind-free")
#: The BAR recipe of the table (``--bar-option KEY=VALUE`` overrides): the paper mode with a
#: gate lr for a short pruning phase (2.4 / gate_lr < 0.11 × its steps, README section 8).
BAR_RECIPE: dict[str, Any] = {"mode": "paper", "gate_lr": 0.7}


class Distillation:
    """Training hooks of a compact network: BAR's section 3.5 loss against a frozen teacher."""

    def __init__(self, teacher: nn.Module | None, alpha: float = 0.9, temperature: float = 4.0):
        self.teacher = teacher
        self.alpha = alpha
        self.temperature = temperature

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return []

    def loss_terms(self, context: StepContext) -> dict[str, torch.Tensor]:
        if self.teacher is None:
            return {"task": context.task_loss}
        with torch.no_grad():
            teacher_logits = self.teacher(context.inputs)
        t = self.temperature
        soft = F.kl_div(F.log_softmax(context.logits / t, dim=1),
                        F.log_softmax(teacher_logits.float() / t, dim=1),
                        reduction="batchmean", log_target=True)
        return {"task": (1 - self.alpha) * context.task_loss + self.alpha * t * t * soft}

    def after_step(self, context: StepContext) -> None:
        return None


def measure_latencies(nets: dict[str, nn.Module], example: torch.Tensor, repeats: int
                      ) -> dict[str, list[float]]:
    """Every network's ms per forward (batch 1) in each of ``repeats`` interleaved rounds, so
    that a change of machine load touches all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in nets}
    with torch.no_grad():
        for net in nets.values():
            net.eval()
            for _ in range(3):
                net(example)
        for _ in range(repeats):
            for name, net in nets.items():
                start = time.perf_counter()
                net(example)
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def add_measured_latency(rows: list[dict[str, Any]], out: Path, example: torch.Tensor,
                         repeats: int, profile_name: str = "cpu-2core-x86") -> None:
    """Time every saved final network with its seed's reference (key ``reference_seedS``) and
    add ``measured_ms``, ``measured_full_ms`` and ``latency_vs_full`` to the rows."""
    nets: dict[str, nn.Module] = {}
    for row in rows:
        nets[row["net"]] = torch.load(out / row["net"], weights_only=False)
        ref = f"reference_seed{row['seed']}.pt"
        if ref not in nets:
            nets[ref] = torch.load(out / ref, weights_only=False)
    measured = measure_latencies(nets, example, repeats)
    # priced as itself: the delivered network's own inventory (a compact mixed-connectivity
    # network's gathers included), on the profile as shipped
    profile = load_profile(profile_name, check=False)
    priced = {key: layer_inventory(net, example).predict_latency_ms(profile)
              for key, net in nets.items()}
    for row in rows:
        full = measured[f"reference_seed{row['seed']}.pt"]
        own = measured[row["net"]]
        row["priced_vs_full"] = priced[row["net"]] / priced[f"reference_seed{row['seed']}.pt"]
        # On a shared machine most rounds can be cut by another process's time slice (the
        # median then measures the scheduler); the minimum over rounds is the network's own.
        row.update(measured_ms=statistics.median(own), measured_full_ms=statistics.median(full),
                   measured_min_ms=min(own), measured_full_min_ms=min(full),
                   latency_vs_full=min(own) / min(full))


def rewind(pruner: Any, reference: nn.Module, example: torch.Tensor, target: Target,
           profile: DeviceProfile) -> nn.Module:
    """The channels ``pruner`` (hard-pruned BAR) kept, compacted from the reference's weights:
    a BAR pruner on a copy of the reference, its gates set open / shut as ``pruner``'s are."""
    kept = {name: gate.kept_mask() for name, gate in pruner.structure.named_gates()}
    again = build_pruner("bar", target=target, profile=profile, distillation=False)
    again.prepare(copy.deepcopy(reference), example)
    for name, gate in again.structure.named_gates():
        gate.set_kept(kept[name])
    again.hard_prune()
    if again.projected_channels:
        raise RuntimeError("rewinding changed the kept channels")
    return again.finalize()


def thinner_dense(args: argparse.Namespace, data: DatasetSplits, example: torch.Tensor,
                  target: Target, profile: DeviceProfile) -> tuple[float, dict[str, float]]:
    """The widest width multiplier (bisection) whose dense network meets ``target``."""
    def build(width: float) -> nn.Module:
        return build_model(args.model, num_classes=data.num_classes,
                           in_channels=data.in_channels, width_multiplier=width)

    limit = target.limit()
    low, high = 0.01, 1.0
    for _ in range(14):
        middle = (low + high) / 2
        if is_met(full_cost(build(middle), example, profile)[target.metric], limit):
            low = middle
        else:
            high = middle
    return low, full_cost(build(low), example, profile)


def bar_prune_phase(metric: str, factor: float, seed: int, reference: nn.Module,
                    data: DatasetSplits, args: argparse.Namespace, profile: DeviceProfile,
                    target: Target, cache: dict[tuple[str, float, int], Any],
                    teacher: nn.Module | None = None) -> dict[str, Any]:
    """BAR's pruning phase at one (metric, factor, seed), run once and shared by the BAR
    variants: the hard-pruned pruner, its compact network, its cost and what it reports.
    ``teacher``: the KD teacher (default: the reference)."""
    key = (metric, factor, seed)
    if key in cache:
        return cache[key]
    example = data.train[0][0].unsqueeze(0)
    config = replace(short_run_config(args.extra_epochs * args.prune_share), seed=seed)
    options = {**BAR_RECIPE, **args.bar_options, "phase_fractions": (1.0, 0.0, 0.0)}
    torch.manual_seed(seed)
    start = time.perf_counter()
    pruner = build_pruner("bar", target=target, profile=profile,
                          teacher=copy.deepcopy(reference if teacher is None else teacher).eval(),
                          **options)
    model = pruner.prepare(copy.deepcopy(reference), example)
    result = train_phases(model, data, config, pruner)
    compact = pruner.finalize()
    report = pruner.report()
    info = {"prune_phase_accuracy": result.test_accuracy,
            "projected_channels": report.extra.get("projected_channels"),
            "removed_blocks": len(report.extra.get("removed_blocks") or []),
            "stream_widths": str(report.extra.get("stream_widths")),
            "prune_phase_seconds": time.perf_counter() - start}
    cache[key] = {"pruner": pruner, "compact": compact, "result": result, "info": info,
                  "cost": {k: float(v) for k, v in report.cost.items()}}
    return cache[key]


def run_cell(method: str, metric: str, factor: float, seed: int, reference: nn.Module,
             data: DatasetSplits, args: argparse.Namespace, profile: DeviceProfile,
             cache: dict[tuple[str, float, int], Any], teacher: nn.Module | None = None
             ) -> dict[str, Any]:
    """One method at one (metric, factor, seed); returns its row. ``teacher``: the KD teacher
    (default: the reference)."""
    example = data.train[0][0].unsqueeze(0)
    full = full_cost(reference, example, profile)
    target = Target(metric, fraction=1.0 / factor, text=f"{100 / factor:g}%").resolve(
        full[metric])
    config = replace(short_run_config(args.extra_epochs), seed=seed)
    teacher = copy.deepcopy(reference if teacher is None else teacher).eval() if args.kd else None
    row: dict[str, Any] = {"method": labelled(method, args), "metric": metric, "factor": factor,
                           "seed": seed, "extra_epochs": args.extra_epochs,
                           "prune_share": args.prune_share,
                           "teacher_epochs": args.teacher_epochs or args.reference_epochs}
    torch.manual_seed(seed)
    start = time.perf_counter()
    if method in BAR_METHODS:
        entry = bar_prune_phase(metric, factor, seed, reference, data, args, profile, target,
                                cache, teacher)
        row.update(entry["info"])
        cost = dict(entry["cost"])
        if method == "bar":
            final = copy.deepcopy(entry["compact"])
        else:  # the channels BAR kept, with the reference's weights (rewinding)
            final = rewind(entry["pruner"], reference, example, target, profile)
        # bar-rewind-free: the pruning phase is not charged (a diagnostic of the channels alone)
        charged = 0 if method == "bar-rewind-free" else args.extra_epochs * args.prune_share
        rest = args.extra_epochs - charged
        result = entry["result"]
        if rest > 0:
            result = train(final, data, replace(config, epochs=rest),
                           hooks=Distillation(teacher))
    elif method == "wm":
        pruner = build_pruner("channel-magnitude", target=target, profile=profile,
                              scope="uniform")
        pruner.prepare(copy.deepcopy(reference), example)
        final = pruner.finalize()
        row["kept_fraction"] = pruner.report().extra.get("kept_fraction")
        cost = {k: float(v) for k, v in pruner.report().cost.items()}
        result = train(final, data, config, hooks=Distillation(teacher))
    elif method == "tp":
        final, ratio, cost = prune_to_target(reference, example, target, profile)
        row["tp_ratio"] = ratio
        result = train(final, data, config, hooks=Distillation(teacher))
    elif method in ("dense", "bar-scratch"):
        if method == "dense":
            width, cost = thinner_dense(args, data, example, target, profile)
            row["width"] = width
            final = build_model(args.model, num_classes=data.num_classes,
                                in_channels=data.in_channels, width_multiplier=width)
        else:
            found = bar_prune_phase(metric, factor, seed, reference, data, args, profile,
                                    target, cache, teacher)
            row.update(found["info"])  # the pruning phase that found the widths
            final = copy.deepcopy(found["compact"])
            for module in final.modules():
                if hasattr(module, "reset_parameters") and module is not final:
                    module.reset_parameters()
            cost = full_cost(final, example, profile)
        total = replace(config, epochs=args.reference_epochs + args.extra_epochs)
        result = train(final, data, total)
    else:
        raise ValueError(f"unknown method {method!r}")
    row["seconds"] = time.perf_counter() - start
    row["status"] = result.status
    row["test_accuracy"] = result.test_accuracy
    row.update({f"{k}": cost.get(k) for k in ("flops", "params", "latency_ms",
                                              "activation_volume")})
    row["cost_fraction"] = cost[metric] / full[metric]
    row["full_latency_ms"] = full["latency_ms"]  # the profile's, for the predicted fraction
    row["met_target"] = is_met(cost[metric], target.limit())
    name = f"nets/{labelled(method, args)}_{metric}_{factor:g}x_seed{seed}.pt"
    (args.out / "nets").mkdir(exist_ok=True)
    torch.save(final.eval(), args.out / name)
    row["net"] = name
    return row


def labelled(method: str, args: argparse.Namespace) -> str:
    """The name a method's rows carry: ``METHOD-VARIANT`` under ``--variant``."""
    return f"{method}-{args.variant}" if args.variant else method


def reference_of(seed: int, epochs: float, path: Path, args: argparse.Namespace,
                 data: DatasetSplits) -> nn.Module:
    """The seed's unpruned network trained ``epochs`` (loaded from ``path`` when there)."""
    if path.is_file():
        return torch.load(path, weights_only=False).eval()
    torch.manual_seed(seed)
    reference = build_model(args.model, num_classes=data.num_classes,
                            in_channels=data.in_channels)
    config: TrainConfig = replace(short_run_config(epochs), seed=seed)
    result = train(reference, data, config)
    torch.save(reference, path)
    path.with_suffix(".json").write_text(json.dumps(
        {"accuracy": result.test_accuracy, "seconds": result.seconds, "epochs": epochs}))
    return reference.eval()


def done_cells(rows_path: Path) -> set[tuple[str, str, float, int]]:
    """(method, metric, factor, seed) of every row already written (several processes may
    share one results folder, each taking the cells the others have not done)."""
    if not rows_path.is_file():
        return set()
    rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]
    return {(r["method"], r["metric"], float(r["factor"]), int(r["seed"])) for r in rows}


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat (every process, ours included)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds per (metric, factor, method)."""
    rows = rows.copy()
    lat = rows[rows.metric == "latency_ms"]
    full_latency = float((lat.latency_ms / lat.cost_fraction).median()) if len(lat) else None
    if "full_latency_ms" in rows:  # each row's own profile (a re-fitted profile prices anew)
        rows["predicted_latency_fraction"] = rows.latency_ms / rows.full_latency_ms.fillna(
            full_latency if full_latency else float("nan"))
    else:
        rows["predicted_latency_fraction"] = (rows.latency_ms / full_latency
                                              if full_latency else float("nan"))
    if "priced_vs_full" not in rows:
        rows["priced_vs_full"] = float("nan")
    grouped = rows.groupby(["metric", "factor", "method"], sort=False)
    table = grouped.agg(accuracy=("test_accuracy", "mean"), spread=("test_accuracy", "std"),
                        seeds=("seed", "nunique"), flops=("flops", "mean"),
                        params=("params", "mean"), cost_fraction=("cost_fraction", "mean"),
                        predicted_latency_fraction=("predicted_latency_fraction", "mean"),
                        measured_ms=("measured_ms", "mean"),
                        measured_min_ms=("measured_min_ms", "mean"),
                        latency_vs_full=("latency_vs_full", "mean"),
                        priced_vs_full=("priced_vs_full", "mean"),  # (NaN where never priced)
                        met=("met_target", "all")).reset_index()
    return table


def markdown(table: pd.DataFrame, methods: list[str]) -> str:
    """Two method × (metric, factor) tables: test accuracy (mean ± sample std over seeds,
    the best mean in bold), then measured latency / the full network's (predicted in brackets)."""
    head = ["| metric | factor | " + " | ".join(methods) + " |",
            "| --- | --- | " + " | ".join("---:" for _ in methods) + " |"]
    accuracy, latency = list(head), list(head)
    seeds = int(table.seeds.max())
    for (metric, factor), cell in table.groupby(["metric", "factor"], sort=False):
        best = cell.accuracy.max()
        acc_values, lat_values = [], []
        for method in methods:
            row = cell[cell.method == method]
            if row.empty:
                acc_values.append("–")
                lat_values.append("–")
                continue
            r = row.iloc[0]
            text = f"{r.accuracy:.3f} ± {0 if pd.isna(r.spread) else r.spread:.3f}"
            if r.seeds < seeds:
                text += f" (n={r.seeds})"
            acc_values.append(f"**{text}**" if r.accuracy == best else text)
            predicted = (r.priced_vs_full if not pd.isna(r.get("priced_vs_full", float("nan")))
                         else r.predicted_latency_fraction)
            lat_values.append(f"{r.latency_vs_full:.2f} ({predicted:.2f})")
        label = f"| {metric} | {factor:g}× | "
        accuracy.append(label + " | ".join(acc_values) + " |")
        latency.append(label + " | ".join(lat_values) + " |")
    return ("Test accuracy, mean ± sample std over seeds:\n\n" + "\n".join(accuracy)
            + "\n\nMeasured CPU latency / the full reference's, minimum over interleaved rounds "
            "(predicted by the profile: the network priced as itself where it was timed, else "
            "its kept channels):\n\n"
            + "\n".join(latency))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wrn-16-2")
    add_data_arguments(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--factors", type=float, nargs="+", default=[2, 4, 8])
    parser.add_argument("--metrics", nargs="+", default=["flops", "latency_ms"])
    parser.add_argument("--methods", nargs="+", default=["bar", "wm", "tp", "dense"],
                        choices=METHODS)
    parser.add_argument("--reference-epochs", type=float, default=2.0)
    parser.add_argument("--extra-epochs", type=float, default=1.5)
    parser.add_argument("--prune-share", type=float, default=0.25,
                        help="share of the extra epochs BAR spends in its pruning phase")
    parser.add_argument("--kd", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--variant", default="",
                        help="file the rows as METHOD-VARIANT (another recipe of a method)")
    parser.add_argument("--teacher-epochs", type=float, default=None,
                        help="KD teacher: a reference trained this many epochs (default: the "
                        "start point itself)")
    parser.add_argument("--bar-option", action="append", default=[],
                        help="KEY=VALUE overriding the table's BAR recipe (repeatable)")
    parser.add_argument("--profile", default="cpu-2core-x86")
    parser.add_argument("--latency-repeats", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bar_compare"))
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--skip-latency", action="store_true",
                        help="train only; time the networks later with --summary-only")
    parser.add_argument("--references-only", action="store_true",
                        help="train (or find) the seeds' references and stop")
    parser.add_argument("--measure-latency", action="store_true",
                        help="re-time every saved network (otherwise only when not yet timed)")
    args = parser.parse_args()
    args.bar_options = {}
    for item in args.bar_option:
        key, _, value = item.partition("=")
        try:
            args.bar_options[key] = json.loads(value)
        except json.JSONDecodeError:
            args.bar_options[key] = value
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / "rows.jsonl"
    if args.references_only:
        args.methods = []
    if not args.summary_only:
        torch.set_num_threads(1)
        busy0, total0 = cpu_busy()
        started = time.perf_counter()
        data = load_data(args)
        profile = load_profile(args.profile)
        cache: dict[tuple[str, float, int], Any] = {}
        for seed in args.seeds:
            reference = reference_of(seed, args.reference_epochs,
                                     args.out / f"reference_seed{seed}.pt", args, data)
            teacher = None
            if args.teacher_epochs:
                teacher = reference_of(
                    seed, args.teacher_epochs,
                    args.out / f"teacher_seed{seed}_{args.teacher_epochs:g}ep.pt", args, data)
            if args.references_only:
                continue
            for metric in args.metrics:
                for factor in args.factors:
                    for method in args.methods:
                        cell = (labelled(method, args), metric, factor, seed)
                        if cell in done_cells(rows_path):
                            continue  # another process (or an earlier run) did this cell
                        row = run_cell(method, metric, factor, seed, reference, data, args,
                                       profile, cache, teacher)
                        row["bar_options"] = json.dumps({**BAR_RECIPE, **args.bar_options})
                        row["kd"] = args.kd
                        row["loadavg_1m"] = os.getloadavg()[0]
                        print(json.dumps(row), flush=True)
                        with rows_path.open("a") as handle:
                            handle.write(json.dumps(row) + "\n")
        if args.references_only:
            return
        busy1, total1 = cpu_busy()
        tag = "_".join([*args.metrics, *(labelled(m, args) for m in args.methods)])
        (args.out / f"run_{tag}.json").write_text(json.dumps({
            "wall_seconds": time.perf_counter() - started,
            "cpu_busy_fraction_all_processes": (busy1 - busy0) / max(1, total1 - total0),
            "loadavg_end": os.getloadavg(),
            "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
        if args.skip_latency:
            return
    records = [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]
    latency_path = args.out / "measured_latency.json"
    timed = json.loads(latency_path.read_text()) if latency_path.is_file() else {}
    # Time the networks not yet timed (all with --measure-latency), each beside its seed's
    # reference in the same rounds; earlier timings stay (the networks need not be on disk).
    untimed = [r for r in records if args.measure_latency or r["net"] not in timed]
    if untimed:
        torch.set_num_threads(1)
        example = load_data(args).train[0][0].unsqueeze(0).contiguous()
        add_measured_latency(untimed, args.out, example, args.latency_repeats, args.profile)
        keys = ("measured_ms", "measured_full_ms", "measured_min_ms", "measured_full_min_ms",
                "latency_vs_full", "priced_vs_full")
        timed.update({r["net"]: {k: r[k] for k in keys} for r in untimed})
        latency_path.write_text(json.dumps(timed, indent=1))
    measured = json.loads(latency_path.read_text())
    for r in records:
        r.update(measured[r["net"]])
    rows = pd.DataFrame(records).drop_duplicates(["method", "metric", "factor", "seed"],
                                                 keep="last")
    rows.to_csv(args.out / "rows.csv", index=False)
    table = summarise(rows)
    table.to_csv(args.out / "summary.csv", index=False)
    methods = ([m for m in METHODS if m in set(rows.method)]
               + sorted(set(rows.method) - set(METHODS)))
    text = markdown(table, methods)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
