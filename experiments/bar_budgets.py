"""BAR on WRN-16-2 / Fashion-MNIST at 2×, 4×, 8×, 16× activation-volume reduction (issue 5).

Short runs: a dense network is trained briefly and serves as the start point and KD teacher; each
budget then runs the three BAR phases (prune, frozen gates, fine-tune at lr/10). For every run it
records whether the hard cost met the budget, the cost of the compact mixed-connectivity network
against regular blocks on the same gates (supp. Table 5), accuracy, and CPU latency of the compact,
gated and unpruned networks (interleaved repetitions, medians) against the cost model's
prediction on the ``cpu-2core-x86`` profile. Accuracies are measured after re-estimating the
BatchNorm statistics on 20 training batches (as the search does): without it, the running
averages lag the weights and the eval-mode network reads near chance (0.10 at every factor in
the first version of this script). Then a training-step overhead benchmark, BAR vs
dense, interleaved.

The pruner is driven through the protocol alone (``build_pruner`` with a relative
activation-volume target, ``prepare``, :func:`budgetsearch.train.train_phases` over the pruner's
own phases, ``finalize``, ``report``): ``--prune-epochs``/``--frozen-epochs``/``--finetune-epochs``
become one run of their sum, split by the pruner's ``phase_fractions``.

Usage:
    .venv/bin/python experiments/bar_budgets.py --train-subset 4000 --out experiments/results/bar
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

import torch
from torch import nn
from torch.utils.data import Subset

from budgetsearch.cost import Target, layer_inventory, load_profile
from budgetsearch.data import DatasetSplits, load_dataset
from budgetsearch.models import build_model
from budgetsearch.pruners import Pruner, build_pruner
from budgetsearch.train import Phase, TrainConfig, TrainResult, train, train_phases

#: The pruner this experiment studies (data: the name given to ``build_pruner``).
PRUNER = "bar"


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The data options both BAR experiments share."""
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="fashion-mnist (default) or cifar10/cifar100 (the paper's data)")
    parser.add_argument("--data-dir", default=None, help="where the data set's files are")
    parser.add_argument("--train-subset", type=int, default=4000)
    parser.add_argument("--test-subset", type=int, default=2000)


def load_data(args: argparse.Namespace) -> DatasetSplits:
    """The training subset (seed 0) and the first ``--test-subset`` test images."""
    data = load_dataset(args.dataset, data_dir=args.data_dir, train_subset=args.train_subset,
                        seed=0)
    return replace(data, test=Subset(data.test, range(min(args.test_subset, len(data.test)))))


def phase_split(prune: float, frozen: float, finetune: float) -> tuple[float, tuple[float, ...]]:
    """The run's total epochs and the three phases' shares of it (``phase_fractions``), from
    the epochs of each phase as the command line gives them."""
    total = prune + frozen + finetune
    if not prune > 0 or frozen < 0 or finetune < 0:
        raise ValueError(f"phase epochs must be prune > 0, frozen ≥ 0, finetune ≥ 0, got "
                         f"{prune}, {frozen}, {finetune}")
    return total, (prune / total, frozen / total, finetune / total)


def train_pruned(model: nn.Module, data: DatasetSplits, config: TrainConfig, pruner: Pruner
                 ) -> tuple[TrainResult, list[tuple[str, float | None]]]:
    """Run the pruner's phases with the one trainer; the last phase's result and every phase's
    (name, test accuracy), each phase scored on the test split as it ends."""
    scores: list[tuple[str, float | None]] = []

    def record(index: int, phase: Phase, result: TrainResult) -> bool:
        scores.append((phase.name, result.test_accuracy))
        return False

    result = train_phases(model, data, config, pruner, on_phase_end=record,
                          quick_intermediate=False)
    return result, scores


def short_run_config(epochs: float) -> TrainConfig:
    """The BAR experiments' training settings (the paper's Adam, batch 64, weight decay 5e-4),
    with BatchNorm re-estimated before every score."""
    return TrainConfig(epochs=epochs, batch_size=64, optimizer="adam", lr=2e-3, weight_decay=5e-4,
                       progress=False, bn_recalibration_batches=20)


def _latencies(models: dict[str, nn.Module], x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median ms per forward of each model, repetitions interleaved (shared machine)."""
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            model.eval()
            model(x)
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def _step_overhead(data: Any, steps: int, batch: int) -> dict[str, float]:
    """Median seconds per training step, dense vs BAR (prune phase, KD on), interleaved."""
    torch.manual_seed(0)
    dense = build_model("wrn-16-2", num_classes=data.num_classes, in_channels=data.in_channels)
    teacher = copy.deepcopy(dense).eval()
    example = data.train[0][0].unsqueeze(0)
    target = Target("activation_volume", fraction=0.25, text="25%")
    # Only the pruning phase (its whole run): its steps are the ones that carry the overhead.
    options: dict[str, Any] = {"gate_lr": 0.05, "phase_fractions": (1.0, 0.0, 0.0)}
    gated = copy.deepcopy(dense)
    pruner_kd = build_pruner(PRUNER, target=target, teacher=teacher, **options)
    pruner_kd.prepare(gated, example)
    gated_nokd = copy.deepcopy(dense)
    pruner_nokd = build_pruner(PRUNER, target=target, **options)  # no teacher: no KD
    pruner_nokd.prepare(gated_nokd, example)
    small = replace(data, train=Subset(data.train, range(batch * steps)),
                    test=Subset(data.test, range(64)))
    config = TrainConfig(epochs=1, batch_size=batch, progress=False)
    per_step: dict[str, list[float]] = {"dense": [], "bar_no_kd": [], "bar_kd": []}
    for _ in range(3):
        result = train(dense, small, config)
        per_step["dense"].append(result.seconds / result.steps)
        for name, model, pruner in (("bar_no_kd", gated_nokd, pruner_nokd),
                                    ("bar_kd", gated, pruner_kd)):
            result = train_phases(model, small, config, pruner)
            per_step[name].append(result.seconds / result.steps)
    medians = {name: statistics.median(v) for name, v in per_step.items()}
    medians["overhead_no_kd"] = medians["bar_no_kd"] / medians["dense"] - 1.0
    medians["overhead_kd"] = medians["bar_kd"] / medians["dense"] - 1.0
    return medians


def kept_channels_table(rows: list[dict[str, Any]]) -> tuple[list[str], dict[float, list[float]]]:
    """Layer names and, per factor, the kept fraction of each gated layer (plain data)."""
    layers = list(rows[0]["kept_per_layer"])
    return layers, {r["factor"]: [r["kept_per_layer"][n][0] / r["kept_per_layer"][n][1]
                                  for n in layers] for r in rows}


def plot_kept_channels(rows: list[dict[str, Any]], path: Path, dataset: str) -> None:
    """Kept fraction of channels per gated layer and budget, like the paper's Fig. 7."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, kept = kept_channels_table(rows)
    fig, ax = plt.subplots(figsize=(10, 4))
    for factor, fractions in kept.items():
        ax.plot(range(len(layers)), fractions, marker="o", label=f"{factor:.0f}×")
    ax.set_xticks(range(len(layers)), layers, rotation=70, fontsize=7)
    ax.set_ylabel("kept fraction of channels")
    ax.set_title(f"BAR on WRN-16-2 / {dataset}: kept channels per gated layer")
    ax.legend(title="volume reduction")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--factors", type=float, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--dense-epochs", type=float, default=1.0)
    parser.add_argument("--prune-epochs", type=float, default=2.0)
    parser.add_argument("--frozen-epochs", type=float, default=0.5)
    parser.add_argument("--finetune-epochs", type=float, default=0.5)
    parser.add_argument("--gate-lr", type=float, default=0.3)
    parser.add_argument("--lam", type=float, default=1.0)
    parser.add_argument("--latency-repeats", type=int, default=30)
    parser.add_argument("--overhead-steps", type=int, default=20)
    parser.add_argument("--profile", default="cpu-2core-x86")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bar"))
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--plot-from", type=Path, help="only redraw the plot from a summary.json")
    parser.add_argument("--overhead-only", action="store_true",
                        help="only re-measure the step overhead into OUT/summary.json")
    args = parser.parse_args()
    if args.overhead_only:
        torch.set_num_threads(1)
        path = args.out / "summary.json"
        summary = json.loads(path.read_text()) if path.is_file() else {}
        data = load_data(args)
        summary["step_overhead"] = _step_overhead(data, args.overhead_steps, 64)
        summary["step_overhead"]["loadavg_1m"] = os.getloadavg()[0]
        print(json.dumps(summary["step_overhead"]), flush=True)
        path.write_text(json.dumps(summary, indent=2))
        return
    if args.plot_from is not None:
        summary = json.loads(args.plot_from.read_text())
        plot_kept_channels(summary["runs"], args.plot_from.with_name("kept_channels.png"),
                           summary["args"].get("dataset", "fashion-mnist"))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # a shared 2-core machine: one thread gives steadier timings

    data = load_data(args)
    config = short_run_config(args.dense_epochs)
    torch.manual_seed(0)
    dense = build_model("wrn-16-2", num_classes=data.num_classes, in_channels=data.in_channels)
    dense_result = train(dense, data, config)
    print(f"dense: acc {dense_result.test_accuracy:.4f} in {dense_result.seconds:.0f}s", flush=True)
    example = data.train[0][0].unsqueeze(0)
    profile = load_profile(args.profile)
    total_epochs, fractions = phase_split(args.prune_epochs, args.frozen_epochs,
                                          args.finetune_epochs)
    pruned_config = replace(config, epochs=total_epochs)
    full = layer_inventory(dense, example).price(profile=profile).as_dict()

    rows = []
    for factor in args.factors:
        torch.manual_seed(0)
        model = copy.deepcopy(dense)
        target = Target("activation_volume", fraction=1.0 / factor, text=f"{100 / factor:g}%")
        pruner = build_pruner(PRUNER, target=target, profile=profile,
                              teacher=copy.deepcopy(dense).eval(), gate_lr=args.gate_lr,
                              lam=args.lam, phase_fractions=fractions)
        pruner.prepare(model, example)
        result, phase_scores = train_pruned(model, data, pruned_config, pruner)
        status = result.status
        compact = pruner.finalize().eval()
        model.eval()
        x1 = torch.stack([data.test[i][0] for i in range(64)])
        with torch.no_grad():
            max_diff = float((model(x1) - compact(x1)).abs().max())
        report = pruner.report()
        mixed, regular = report.cost, report.extra["regular_cost"]
        x = example.expand(1, -1, -1, -1).contiguous()
        latency = _latencies({"compact": compact, "gated": model, "dense": dense}, x,
                             args.latency_repeats)
        assert pruner.target is not None  # resolved against the unpruned network at prepare
        budget = pruner.target.limit()
        row = {
            "factor": factor, "status": status,
            "test_accuracy": result.test_accuracy,
            "prune_phase_accuracy": phase_scores[0][1] if phase_scores else None,
            "budget_volume": budget, "volume": mixed["activation_volume"],
            "met_budget": pruner.target.is_met(mixed["activation_volume"]),
            "achieved_factor": full["activation_volume"] / mixed["activation_volume"],
            "projected_channels": report.extra.get("projected_channels"),
            "volume_regular": regular["activation_volume"],
            "volume_mixed_vs_regular":
                mixed["activation_volume"] / regular["activation_volume"] - 1,
            "flops": mixed["flops"], "flops_regular": regular["flops"],
            "flops_mixed_vs_regular": mixed["flops"] / regular["flops"] - 1,
            "params": mixed["params"], "params_regular": regular["params"],
            "latency_predicted_ms": mixed.get("latency_ms"),
            "latency_predicted_dense_ms": full["latency_ms"],
            "latency_compact_ms": latency["compact"], "latency_gated_ms": latency["gated"],
            "latency_dense_ms": latency["dense"],
            "speedup_vs_dense": latency["dense"] / latency["compact"],
            "speedup_vs_gated": latency["gated"] / latency["compact"],
            "compact_vs_gated_max_abs_diff": max_diff,
            "removed_blocks": report.extra["removed_blocks"],
            "stream_widths": report.extra["stream_widths"],
            "kept_per_layer": {layer.name: [layer.kept, layer.total] for layer in report.layers},
        }
        rows.append(row)
        torch.save(compact, args.out / f"wrn16-2_bar_{int(factor)}x.pt")
        print(json.dumps({k: v for k, v in row.items() if k != "kept_per_layer"}), flush=True)

    summary: dict[str, Any] = {"dense_accuracy": dense_result.test_accuracy, "runs": rows,
                               "profile": profile.name, "args": {k: str(v) for k, v in
                                                                 vars(args).items()}}
    if not args.skip_overhead:
        summary["step_overhead"] = _step_overhead(data, args.overhead_steps, 64)
        print(json.dumps(summary["step_overhead"]), flush=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_kept_channels(rows, args.out / "kept_channels.png", args.dataset)
    print("\nfactor | met | V/B | acc | mixed vs regular V | F | compact/gated/dense ms | pred ms")
    for r in rows:
        ratio = r["volume"] / r["budget_volume"]
        print(f"{r['factor']:>4.0f}× | {r['met_budget']} | {ratio:.3f} | "
              f"{r['test_accuracy']:.4f} | {r['volume_mixed_vs_regular']:+.0%} | "
              f"{r['flops_mixed_vs_regular']:+.0%} | {r['latency_compact_ms']:.2f}/"
              f"{r['latency_gated_ms']:.2f}/{r['latency_dense_ms']:.2f} | "
              f"{r['latency_predicted_ms']}")


if __name__ == "__main__":
    main()
