"""Accuracy vs parameters trade-off of the erf-loss pruner (paper Fig. 7; issue 9, experiment 2).

CPU-sized: a Wide ResNet on a Fashion-MNIST training subset for a few epochs. Curves, all from
the same data, epochs and seed:

- thinner dense baselines (eq. 12) at several compression ratios, plus the full dense network;
- fixed-GA at several per-layer sparsities;
- budget-wavg (eq. 10) at several parameter budgets;
- unconstrained wavg (eq. 7 with the eq. 8/9 weights) at λ log-spaced over [0.01, 10].

Writes ``tradeoff.csv``, ``tradeoff.png`` and ``tradeoff.json`` (settings, wall time) to ``--out``.

Usage:
    .venv/bin/python experiments/erf_tradeoff.py --model wrn-16-1 --train-subset 3000 \
        --epochs 2 --out experiments/results/erf
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch
from erf_runs import RunSetting, fmt, load_data, run_dense, run_pruned, wall, write_rows


def tradeoff_rows(setting: RunSetting, *, sparsities: list[float], lams: list[float],
                  adaptive: dict[str, Any]) -> list[dict[str, Any]]:
    """Train every point of the four curves; one row each."""
    data = load_data(setting)
    rows = [run_dense(setting, data, label="dense (width 1)")]
    for s in sparsities:
        rows.append(run_dense(setting, data, label=f"thinner dense r_c={1 - s:.2f}",
                              compression_ratio=1.0 - s))
    for s in sparsities:
        rows.append(run_pruned(setting, data, label=f"fixed-GA s={s:.2f}", family="fixed-GA",
                               options={"method": "ga", "sparsity": s}))
    for s in sparsities:
        rows.append(run_pruned(setting, data, label=f"budget-wavg B={1 - s:.2f}",
                               family="budget-wavg",
                               options={"method": "adaptive", "loss": "budget",
                                        "weighting": "wavg", "budget": 1.0 - s, **adaptive}))
    unconstrained = {k: v for k, v in adaptive.items() if k != "lam"}
    for lam in lams:
        rows.append(run_pruned(setting, data, label=f"unconstrained λ={lam:g}",
                               family="unconstrained",
                               options={"method": "adaptive", "loss": "unconstrained",
                                        "weighting": "wavg", "lam": lam, **unconstrained}))
    return rows


def plot_tradeoff(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Test accuracy against non-zero parameters, one line per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"dense": ("k", "s", "-"), "fixed-GA": ("tab:blue", "o", "-"),
              "budget-wavg": ("tab:orange", "^", "-"), "unconstrained": ("tab:green", "D", ":")}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for family, (color, marker, line) in styles.items():
        points = sorted((r["params"], 100 * r["test_accuracy"], r) for r in rows
                        if r["family"] == family and r["test_accuracy"] is not None)
        if not points:
            continue
        label = "thinner dense (eq. 12)" if family == "dense" else family
        ax.plot([p[0] / 1e3 for p in points], [p[1] for p in points], color=color,
                marker=marker, ls=line, label=label)
        if family == "unconstrained":
            for params, acc, r in points:
                ax.annotate(f"λ={r['lam']:g}", (params / 1e3, acc), fontsize=7,
                            xytext=(4, -8), textcoords="offset points", color=color)
    ax.set_xscale("log")
    ax.set_xlabel("non-zero parameters (thousands, log)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| run | family | params (non-zero) | sparsity of pruned layers % | "
             "overall sparsity % | test acc. % |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['family']} | {r['params']:,} | "
                     f"{fmt(r['prunable_sparsity'])} | {fmt(r['overall_sparsity'])} | "
                     f"{fmt(r['test_accuracy'])} |")
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") \
            from error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wrn-16-1")
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="fashion-mnist (default) or cifar10/cifar100 (the papers' data)")
    parser.add_argument("--data-dir", default=None, help="where the data set's files are")
    parser.add_argument("--train-subset", type=int, default=3000)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sparsities", type=_floats, default=[0.5, 0.75, 0.85, 0.93],
                        help="sparsities of fixed-GA / budgets 1−s / thinner dense ratios 1−s")
    parser.add_argument("--lams", type=_floats, default=[0.01, 0.1, 1.0, 10.0],
                        help="λ of the unconstrained runs (paper: sampled in [0.01, 10])")
    parser.add_argument("--bound-optimizer", choices=("sgd", "adam"), default=None)
    parser.add_argument("--bound-lr", type=float, default=None)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/erf"))
    args = parser.parse_args()
    for s in args.sparsities:
        if not 0.0 < s < 1.0:
            parser.error(f"--sparsities must be fractions in (0, 1), got {s}")
    for lam in args.lams:
        if not lam > 0:
            parser.error(f"--lams must be positive, got {lam}")
    torch.set_num_threads(args.threads)
    setting = RunSetting(model=args.model, dataset=args.dataset, data_dir=args.data_dir,
                         train_subset=args.train_subset, epochs=args.epochs,
                         batch_size=args.batch, lr=args.lr, seed=args.seed)
    adaptive = {k: v for k, v in (("bound_optimizer", args.bound_optimizer),
                                  ("bound_lr", args.bound_lr)) if v is not None}
    start = time.perf_counter()
    rows = tradeoff_rows(setting, sparsities=args.sparsities, lams=args.lams, adaptive=adaptive)
    elapsed = wall(start)
    meta = {"setting": vars(args) | {"out": str(args.out)}, "adaptive_overrides": adaptive,
            "wall_time": elapsed}
    write_rows(rows, args.out, "tradeoff", meta)
    title = (f"{args.model} / {args.dataset} ({args.train_subset} images, {args.epochs} epochs, "
             f"seed {args.seed})")
    plot_tradeoff(rows, args.out / "tradeoff.png", title)
    print(markdown(rows))
    print(f"\nwall time {elapsed}; load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
