"""Binding targets: does the family search beat the thinner dense baseline of equal compute?

For each target and seed, one family search (``budgetsearch run`` as the CLI runs it: every
registered pruner, dense and pruned families of the user's network at ``--widths`` and its depth
siblings, successive halving per pruner), then the **thinner dense baseline**: the user's network
at the widest width multiplier (steps of 0.05) whose cost meets the target on the target's metric
and device, trained from scratch on the run's data split and seed with the reference's recipe
for as many epochs as are behind the returned network (the reference's plus its trial's). The
question: is the returned network at least as accurate (test set) as that baseline?

Targets are given as ``METRIC=VALUE[@DEVICE]``: ``latency_ms=50%@cpu-2core-x86``,
``flops=25%``. Per run: the returned family, its test accuracy, the baseline's width and test
accuracy, the margin, and the search's own margin over its best dense network that meets the
target. Outputs in ``OUT``: ``runs.csv``, ``summary.csv`` (mean ± std over seeds per target),
``run.json`` (settings, CPU load read from ``/proc/stat``).

Example:
    PYTHONPATH=. .venv/bin/python experiments/search_binding.py \\
        --targets latency_ms=50%@cpu-2core-x86 flops=25% --seeds 0 1 2 \\
        --train-subset 2000 --trials 10 --out experiments/results/binding
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from budgetsearch.cost import Target, load_profile
from budgetsearch.search.optuna_driver import OptunaOptions
from budgetsearch.search.request import RunRequest
from budgetsearch.search.runner import run_search
from budgetsearch.search.settings import (
    BN_RECALIBRATION_BATCHES,
    TrialSettings,
    build_network,
    settings_inventory,
    trial_data,
)
from budgetsearch.train import TrainConfig, seed_everything, train

WIDTH_STEP = 0.05


def parse_target(text: str) -> tuple[Target, str | None]:
    """``METRIC=VALUE[@DEVICE]`` → (target, device profile or None)."""
    spec, _, device = text.partition("@")
    metric, _, value = spec.partition("=")
    if not metric or not value:
        raise ValueError(f"targets must look like flops=25% or latency_ms=50%@DEVICE, got {text!r}")
    return Target.parse(metric, value), device or None


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def thinner_dense_width(settings: TrialSettings) -> float:
    """The widest multiplier of ``settings.model`` (steps of :data:`WIDTH_STEP`) that meets the
    (absolute) target."""
    target = settings.target
    assert target is not None
    profile = load_profile(settings.device_profile) if settings.device_profile else None
    width = 1.0
    while width > WIDTH_STEP / 2:
        priced = settings_inventory(replace(settings, width=width)).price(profile=profile)
        if target.is_met(priced.as_dict()[target.metric]):
            return round(width, 2)
        width -= WIDTH_STEP
    raise ValueError(f"no width of {settings.model} meets {target.describe()}")


def train_baseline(settings: TrialSettings, width: float, epochs: float) -> dict[str, Any]:
    """The thinner dense network, trained from scratch like the run's reference."""
    chosen = replace(settings, width=width)
    seed_everything(chosen.seed)
    model = build_network(chosen)
    started = time.perf_counter()
    result = train(model, trial_data(chosen), TrainConfig(
        epochs=epochs, batch_size=chosen.batch_size, optimizer="adam", lr=chosen.lr,
        weight_decay=chosen.weight_decay, seed=chosen.seed, device=chosen.torch_device,
        progress=False, bn_recalibration_batches=BN_RECALIBRATION_BATCHES))
    profile = load_profile(chosen.device_profile) if chosen.device_profile else None
    cost = settings_inventory(chosen).price(profile=profile).as_dict()
    return {"width": width, "epochs": epochs, "accuracy": result.test_accuracy,
            "val_accuracy": result.val_accuracy, "status": result.status,
            "cost": cost[settings.target.metric] if settings.target else math.nan,
            "seconds": time.perf_counter() - started}


def behind(best: dict[str, Any], reference_epochs: float) -> float:
    """Epochs of training behind the returned network (a trial's: the reference's plus its own;
    a reference's: its own)."""
    if best.get("kind") == "reference":
        return reference_epochs
    return reference_epochs + float(best.get("hp_epochs") or 0.0)


def one_run(target_text: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    target, device = parse_target(target_text)
    settings = TrialSettings(
        model=args.model, dataset=args.dataset, train_subset=args.train_subset,
        val_fraction=args.val_fraction, batch_size=args.batch_size, device_profile=device,
        target=target, seed=seed, threads=args.threads, reference_epochs=args.reference_epochs,
        test_subset=args.test_subset)
    request = RunRequest(settings=settings, families=True, widths=tuple(args.widths),
                         optuna=OptunaOptions(trials=args.trials, timeout_s=None, seed=seed,
                                              pruning="sha"))
    name = f"{target_text.replace('%', 'pc').replace('@', '-').replace('=', '-')}-s{seed}"
    run_dir = args.work / name
    started = time.perf_counter()
    summary = run_search(request, run_dir, progress=False,
                         command=f"experiments/search_binding.py ({target_text}, seed {seed})")
    search_s = time.perf_counter() - started
    best = summary.best
    assert summary.plan is not None and best is not None, summary.failure
    resolved = replace(settings, target=summary.plan.target)
    width = thinner_dense_width(resolved)
    epochs = behind(best, args.reference_epochs)
    baseline = train_baseline(resolved, width, epochs)
    table = summary.table
    counts = table[table["kind"] == "pruned"]["status"].value_counts().to_dict()
    outcome = summary.families
    return {
        "target": target_text, "seed": seed, "target_value": summary.plan.target.value,
        "returned_family": best["family"], "returned_kind": best["kind"],
        "returned_accuracy": float(best["accuracy"]),
        "returned_cost": float(best[target.metric]), "returned_epochs_behind": epochs,
        "baseline_width": width, "baseline_accuracy": baseline["accuracy"],
        "baseline_cost": baseline["cost"], "baseline_seconds": baseline["seconds"],
        "margin_over_baseline": float(best["accuracy"]) - float(baseline["accuracy"]),
        "search_best_dense": None if outcome is None else outcome.dense,
        "search_margin_over_dense": None if outcome is None else outcome.margin,
        "trials_ok": int(counts.get("ok", 0)), "trials_pruned": int(counts.get("pruned", 0)),
        "trials_failed": int(counts.get("failed", 0)), "search_s": search_s,
        "families": ", ".join(sorted(table[table["kind"] == "pruned"]["family"].astype(str)
                                     .unique())),
    }


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (n−1) over seeds per target."""
    rows = []
    for target, group in runs.groupby("target", sort=False):
        row: dict[str, Any] = {"target": target, "seeds": len(group),
                               "wins_or_ties": int((group["margin_over_baseline"] >= 0).sum())}
        for column in ("returned_accuracy", "baseline_accuracy", "margin_over_baseline",
                       "search_s"):
            values = group[column].astype(float)
            row[f"{column}_mean"] = float(values.mean())
            row[f"{column}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", nargs="+", default=["latency_ms=50%@cpu-2core-x86",
                                                         "flops=25%"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="wrn-16-1")
    parser.add_argument("--dataset", default="fashion-mnist", help="synthetic: a quick check")
    parser.add_argument("--train-subset", type=int, default=2000)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--reference-epochs", type=float, default=2.0)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--test-subset", type=int, default=None,
                        help="score on the first N test images (default: all 10,000)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("runs/binding"))
    parser.add_argument("--out", type=Path, default=Path("experiments/results/binding"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    busy0, total0 = cpu_busy()
    own0 = time.process_time()
    wall0 = time.perf_counter()
    runs = []
    for seed in args.seeds:  # seed-major: a drift in the machine's load falls on every target
        for target in args.targets:
            row = one_run(target, seed, args)
            runs.append(row)
            pd.DataFrame(runs).to_csv(args.out / "runs.csv", index=False)
            print(f"{target} seed {seed}: returned {row['returned_family']} "
                  f"{row['returned_accuracy']:.4f}; thinner dense ×{row['baseline_width']:g} "
                  f"{row['baseline_accuracy']:.4f} ({row['margin_over_baseline']:+.4f}); "
                  f"search {row['search_s']:.0f} s", flush=True)
    frame = pd.DataFrame(runs)
    summary = summarize(frame)
    summary.to_csv(args.out / "summary.csv", index=False)
    busy1, total1 = cpu_busy()
    wall = time.perf_counter() - wall0
    ticks = os.sysconf("SC_CLK_TCK")
    others = ((busy1 - busy0) / ticks - (time.process_time() - own0)) / wall
    info = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "wall_s": wall, "own_cpu_s": time.process_time() - own0,
            "cpus_used_by_others": others, "cpus": os.cpu_count()}
    (args.out / "run.json").write_text(json.dumps(info, indent=1, default=str))
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wall {wall:.0f} s, other processes used {others:.2f} CPUs on average")


if __name__ == "__main__":
    main()
