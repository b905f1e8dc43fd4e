"""BAR pruning factors vs thinner dense and weight-magnitude pruning, with ablations (exp. 3).

The BAR paper's Fig. 6 / Table 1 at CPU scale: WRN-16-2 on Fashion-MNIST at 2×, 4×, 8×, 16×
activation-volume reduction. Every method starts from the same budget of training passes:

- ``bar``: BAR from the trained reference (three phases, KD from the reference, sigmoid schedule);
- ``bar-no-kd`` / ``bar-linear``: Table 1's ablations (cross-entropy only; linear schedule);
- ``wm``: weight magnitude (Li et al., the paper's WM; the library's ``channel-magnitude`` pruner,
  ``scope="uniform"``): every gated layer keeps the same fraction of its channels, those whose
  filters have the largest L1 norm, the fraction chosen (bisection) so that the
  mixed-connectivity volume meets the budget; one-shot from the reference, then fine-tuned in one
  phase for the same epochs as BAR's three phases together, at the run's learning rate (the
  paper prunes 50% at a time with 50 epochs between);
- ``dense``: the thinner dense network (width 1/f, so that its volume is about V_F/f), trained
  from scratch for the reference's epochs plus BAR's.

Every accuracy is measured after re-estimating BatchNorm statistics on 20 training batches (what
the search does for every trial). Writes ``bar_factors.csv``/``.json``/``.png`` into ``--out``.

Every pruned method is driven blind through the pruner protocol: ``build_pruner(name,
target=Target("activation_volume", fraction=1/f), ...)``, ``prepare``, one trainer over the
pruner's own phases (:func:`budgetsearch.train.train_phases`), ``finalize``, ``report``. A
method is data: a pruner name and its options (:func:`method_specs`).

Usage:
    .venv/bin/python experiments/bar_factors.py --out experiments/results/bar_factors
    .venv/bin/python experiments/bar_factors.py --plot-only --out experiments/results/bar_factors
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from bar_budgets import add_data_arguments, load_data, phase_split, short_run_config, train_pruned
from torch import nn

from budgetsearch.cost import Target, layer_inventory
from budgetsearch.data import DatasetSplits
from budgetsearch.models import build_model
from budgetsearch.pruners import build_pruner
from budgetsearch.train import TrainConfig, train

METHODS = ("bar", "bar-no-kd", "bar-linear", "wm", "dense")
#: Methods that train the thinner dense network instead of pruning (no pruner).
DENSE_METHODS = ("dense",)


def method_specs(args: argparse.Namespace, fractions: tuple[float, ...]
                 ) -> dict[str, tuple[str, dict[str, Any], bool]]:
    """Each pruned method as data: (pruner name, its options, distil from the reference)."""
    bar = {"gate_lr": args.gate_lr, "phase_fractions": fractions}
    return {
        "bar": ("bar", bar, True),
        "bar-no-kd": ("bar", bar, False),
        "bar-linear": ("bar", {**bar, "transition": "linear"}, True),
        "wm": ("channel-magnitude", {"scope": "uniform"}, False),
    }


def _volume(model: nn.Module, example: torch.Tensor) -> dict[str, float]:
    cost = layer_inventory(model, example).price()
    return {"activation_volume": float(cost.activation_volume), "flops": float(cost.flops),
            "params": float(cost.params)}


def run_method(method: str, factor: float, reference: nn.Module, data: DatasetSplits,
               config: TrainConfig, args: argparse.Namespace) -> dict[str, Any]:
    """One (method, factor) run from the reference; ``config.epochs`` is the pruned run's total
    (BAR's three phases together)."""
    example = data.train[0][0].unsqueeze(0)
    full = _volume(reference, example)
    budget = full["activation_volume"] / factor
    torch.manual_seed(0)
    start = time.perf_counter()
    row: dict[str, Any] = {"method": method, "factor": factor}
    if method in DENSE_METHODS:
        width = 1.0 / factor
        model = build_model(args.model, num_classes=data.num_classes, in_channels=data.in_channels,
                            width_multiplier=width)
        total = args.reference_epochs + config.epochs
        result = train(model, data, replace(config, epochs=total))
        row.update(width=width, epochs=total, status=result.status,
                   test_accuracy=result.test_accuracy, **_volume(model, example))
    else:
        name, options, distil = method_specs(args, args.phase_fractions)[method]
        model = copy.deepcopy(reference)
        teacher = copy.deepcopy(reference).eval() if distil else None
        target = Target("activation_volume", fraction=1.0 / factor, text=f"{100 / factor:g}%")
        pruner = build_pruner(name, target=target, teacher=teacher, **options)
        pruner.prepare(model, example)
        result, _ = train_pruned(model, data, config, pruner)
        compact = pruner.finalize().eval()
        report = pruner.report()
        removed = report.extra.get("removed_blocks")
        row.update(pruner=name, status=result.status, test_accuracy=result.test_accuracy,
                   projected_channels=report.extra.get("projected_channels"),
                   removed_blocks=None if removed is None else len(removed),
                   **_volume(compact, example))
        if report.extra.get("kept_fraction") is not None:
            row["wm_fraction"] = report.extra["kept_fraction"]
    row["achieved_factor"] = full["activation_volume"] / row["activation_volume"]
    row["flops_factor"] = full["flops"] / row["flops"]
    row["met_budget"] = row["activation_volume"] <= budget * (1 + 1e-9)
    row["seconds"] = time.perf_counter() - start
    return row


def plot(table: pd.DataFrame, reference_accuracy: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, column, label in ((axes[0], "achieved_factor", "activation-volume reduction (×)"),
                              (axes[1], "flops_factor", "FLOP reduction (×)")):
        for method, rows in table.groupby("method", sort=False):
            rows = rows.sort_values(column)
            style = "o-" if method in ("bar", "wm", "dense") else "s--"
            ax.plot(rows[column], rows["test_accuracy"], style, label=method)
        ax.axhline(reference_accuracy, color="grey", lw=0.8, ls=":", label="unpruned reference")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=8)
    fig.suptitle("BAR vs WM vs thinner dense at equal activation volume (CPU-scale runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wrn-16-2")
    add_data_arguments(parser)
    parser.add_argument("--factors", type=float, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--ablation-factors", type=float, nargs="+", default=[2, 16],
                        help="factors at which bar-no-kd and bar-linear run (Table 1: 2×, 16×)")
    parser.add_argument("--reference-epochs", type=float, default=1.0)
    parser.add_argument("--prune-epochs", type=float, default=2.0)
    parser.add_argument("--frozen-epochs", type=float, default=0.5)
    parser.add_argument("--finetune-epochs", type=float, default=0.5)
    parser.add_argument("--gate-lr", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bar_factors"))
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / "bar_factors.jsonl"
    if args.plot_only:
        summary = json.loads((args.out / "bar_factors.json").read_text())
        plot(pd.DataFrame(summary["rows"]), summary["reference_accuracy"],
             args.out / "bar_factors.png")
        return
    torch.set_num_threads(1)
    started = time.perf_counter()
    load = {"start": os.getloadavg()}
    data = load_data(args)
    config = short_run_config(args.reference_epochs)
    pruned_epochs, args.phase_fractions = phase_split(args.prune_epochs, args.frozen_epochs,
                                                      args.finetune_epochs)
    reference_path = args.out / "reference.pt"
    torch.manual_seed(0)
    if reference_path.is_file():  # shared by parallel invocations (different --methods)
        reference = torch.load(reference_path, weights_only=False)
        reference_accuracy = json.loads((args.out / "reference.json").read_text())["accuracy"]
    else:
        reference = build_model(args.model, num_classes=data.num_classes,
                                in_channels=data.in_channels)
        result = train(reference, data, config)
        reference_accuracy = result.test_accuracy
        torch.save(reference, reference_path)
        (args.out / "reference.json").write_text(json.dumps(
            {"accuracy": reference_accuracy, "seconds": result.seconds}))
    print(f"reference: acc {reference_accuracy:.4f}", flush=True)

    for method in args.methods:
        factors = args.ablation_factors if method in ("bar-no-kd", "bar-linear") else args.factors
        for factor in factors:
            row = run_method(method, factor, reference, data,
                             replace(config, epochs=pruned_epochs), args)
            row["loadavg_1m"] = os.getloadavg()[0]
            print(json.dumps(row), flush=True)
            with rows_path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")

    rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]
    table = pd.DataFrame(rows).drop_duplicates(["method", "factor"], keep="last")
    table = table.sort_values(["method", "factor"])
    table.to_csv(args.out / "bar_factors.csv", index=False)
    load["end"] = os.getloadavg()
    (args.out / "bar_factors.json").write_text(json.dumps({
        "reference_accuracy": reference_accuracy, "rows": table.to_dict("records"),
        "args": {k: str(v) for k, v in vars(args).items()}, "loadavg": load,
        "wall_seconds": time.perf_counter() - started}, indent=2))
    plot(table, reference_accuracy, args.out / "bar_factors.png")
    print(table[["method", "factor", "achieved_factor", "flops_factor", "test_accuracy",
                 "met_budget", "seconds"]].to_string(index=False))


if __name__ == "__main__":
    main()
