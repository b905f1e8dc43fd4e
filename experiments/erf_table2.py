"""Table 2 analog of the erf-loss paper (issue 9, experiment 1), CPU-sized.

WRN-16-2 on Fashion-MNIST (a training subset, a few epochs) at an 85 % parameter-sparsity target:
the reference dense network, its thinner dense equivalent (eq. 12, the parameters of the ideal
85 %-pruned network), fixed-BS, fixed-GA, budget-avg and budget-wavg (eq. 10, λ_f = 0). Same
data, epochs, seed and schedule for every row. Writes ``table2.csv``, ``table2.png`` and
``table2.json`` (the resolved settings and the wall time) to ``--out``.

The paper's claims checked here: budget-wavg hits the budget while budget-avg undershoots it, BS is
the most precise, and every pruned network beats the dense equivalent.

Usage:
    .venv/bin/python experiments/erf_table2.py --train-subset 4000 --epochs 2 \
        --out experiments/results/erf
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch
from erf_runs import (
    RunSetting,
    fmt,
    ideal_pruned_params,
    load_data,
    run_dense,
    run_pruned,
    wall,
    write_rows,
)

TARGET = 0.85


def table2_rows(setting: RunSetting, adaptive: dict[str, Any]) -> list[dict[str, Any]]:
    """Train the six networks of Table 2 and return one row each."""
    data = load_data(setting)
    rows = [run_dense(setting, data, label="reference dense")]
    ratio = ideal_pruned_params(setting, data, TARGET) / rows[0]["dense_params"]
    rows.append(run_dense(setting, data, label="thinner dense (eq. 12)", compression_ratio=ratio))
    rows.append(run_pruned(setting, data, label="fixed-BS", family="fixed-BS",
                           options={"method": "bs", "sparsity": TARGET}))
    rows.append(run_pruned(setting, data, label="fixed-GA", family="fixed-GA",
                           options={"method": "ga", "sparsity": TARGET}))
    for weighting in ("avg", "wavg"):
        options = {"method": "adaptive", "loss": "budget", "weighting": weighting,
                   "budget": 1.0 - TARGET, **adaptive}
        rows.append(run_pruned(setting, data, label=f"budget-{weighting}",
                               family=f"budget-{weighting}", options=options))
        # The bounds' optimizer in effect; their lr as given (None: a multiple of the weights').
        rows[-1]["bound_optimizer"] = rows[-1]["pruner_optimizer"]
        rows[-1]["bound_lr"] = adaptive.get("bound_lr")
    return rows


def plot_table2(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Two panels: attained sparsity of the pruned layers vs the target; accuracy vs params."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    pruned = [r for r in rows if r["prunable_sparsity"] is not None]
    names = [r["method"] for r in pruned]
    values = [100 * r["prunable_sparsity"] for r in pruned]
    left.bar(names, values, color="tab:blue")
    left.axhline(100 * TARGET, color="k", ls="--", lw=1, label="target 85 %")
    left.axhspan(100 * TARGET - 1, 100 * TARGET + 1, color="tab:green", alpha=0.15,
                 label="±1 %")
    for x, v in enumerate(values):
        left.text(x, v + 0.3, f"{v:.2f}", ha="center", fontsize=8)
    left.set_ylim(min(values + [100 * TARGET]) - 6, max(values + [100 * TARGET]) + 3)
    left.set_ylabel("sparsity of the pruned layers (%)")
    left.set_title("attained sparsity (counted zeros)")
    left.legend(loc="lower right", fontsize=8)
    left.tick_params(axis="x", rotation=20)
    for r in rows:
        marker = "s" if r["family"] == "dense" else "o"
        right.scatter(r["params"] / 1e3, 100 * r["test_accuracy"], marker=marker, s=40)
        right.annotate(r["method"], (r["params"] / 1e3, 100 * r["test_accuracy"]),
                       fontsize=7, xytext=(4, 2), textcoords="offset points")
    right.set_xscale("log")
    right.set_xlabel("non-zero parameters (thousands, log)")
    right.set_ylabel("test accuracy (%)")
    right.set_title("accuracy vs parameters")
    right.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| method | params (non-zero) | sparsity of pruned layers % (counted) | "
             "Gaussian estimate % | overall sparsity % | test acc. % | train s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['params']:,} | {fmt(r['prunable_sparsity'])} | "
                     f"{fmt(r['prunable_sparsity_gaussian'])} | {fmt(r['overall_sparsity'])} | "
                     f"{fmt(r['test_accuracy'])} | {r['seconds']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wrn-16-2")
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="fashion-mnist (default) or cifar10/cifar100 (the papers' data)")
    parser.add_argument("--data-dir", default=None, help="where the data set's files are")
    parser.add_argument("--train-subset", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lam", type=float, default=None, help="λ_p (default: ErfConfig's)")
    parser.add_argument("--bound-optimizer", choices=("sgd", "adam"), default=None)
    parser.add_argument("--bound-lr", type=float, default=None)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/erf"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setting = RunSetting(model=args.model, dataset=args.dataset, data_dir=args.data_dir,
                         train_subset=args.train_subset, epochs=args.epochs,
                         batch_size=args.batch, lr=args.lr, seed=args.seed)
    adaptive = {k: v for k, v in (("lam", args.lam), ("bound_optimizer", args.bound_optimizer),
                                  ("bound_lr", args.bound_lr)) if v is not None}
    start = time.perf_counter()
    rows = table2_rows(setting, adaptive)
    elapsed = wall(start)
    meta = {"setting": vars(args) | {"out": str(args.out)}, "adaptive_overrides": adaptive,
            "wall_time": elapsed}
    write_rows(rows, args.out, "table2", meta)
    title = (f"{args.model} / {args.dataset} ({args.train_subset} images, {args.epochs} epochs, "
             f"seed {args.seed}), 85 % parameter sparsity target")
    plot_table2(rows, args.out / "table2.png", title)
    print(markdown(rows))
    print(f"\nwall time {elapsed}; load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
