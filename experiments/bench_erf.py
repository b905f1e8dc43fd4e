"""Benchmarks of the erf-loss pruner (issue 4): step overhead, threshold selection, precision.

Three parts, each printable on its own:

- ``overhead``: training-step time (forward + backward + SGD step) of WRN-16-2 on CPU against the
  same dense model and batch, for GA, BS, adaptive, and ``torch.nn.utils.prune.l1_unstructured``
  masks (static, as torch applies them). The machine is shared: variants are interleaved in a
  rotating order on every repeat and medians are reported.
- ``threshold``: bound selection on a 10M-weight tensor: ``torch.kthvalue`` (exact), BS from the
  Gaussian guess (cold), BS bracketed from the last step's bound (warm), GA.
- ``precision``: a short Fashion-MNIST run of WRN-16-2 with fixed-BS (target per layer, ±0.1 %)
  and with budget-wavg against an 85 % parameter sparsity budget (±1 %).

The pruners are built by name with their options as data (``VARIANTS``, ``build_pruner``) and
driven through the protocol alone: the overhead step takes the pruner's ``param_groups``, its
``loss_terms`` and ``after_step``; the precision runs go through
:func:`budgetsearch.train.train_phases` and read ``report()``.

Usage:
    .venv/bin/python experiments/bench_erf.py overhead --repeats 7 --steps 10
    .venv/bin/python experiments/bench_erf.py threshold
    .venv/bin/python experiments/bench_erf.py precision --train-subset 5000 --epochs 2 \
        --skip-bs --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from budgetsearch.models import build_model
from budgetsearch.pruners import Pruner, build_pruner
from budgetsearch.pruners.erf import prunable_layers
from budgetsearch.pruners.erf_functional import binary_search_bound, gaussian_bound
from budgetsearch.train_hooks import StepContext

INPUT = (1, 28, 28)
#: The pruner under test (data: the name given to ``build_pruner``).
PRUNER = "erf"
#: The overhead variants: the pruner's options, None for the dense network and for torch's own
#: ``l1_unstructured`` masks (the reference the pruners are measured against).
VARIANTS: dict[str, dict[str, Any] | None] = {
    "dense": None,
    "ga": {"method": "ga", "sparsity": 0.85},
    "bs": {"method": "bs", "sparsity": 0.85},
    "adaptive": {"method": "adaptive", "loss": "budget", "weighting": "wavg", "budget": 0.15,
                 "lam": 5.0},
    "torch-l1": None,
}
#: Precision runs: fixed-BS and budget-wavg (85 % parameter sparsity).
FIXED_BS: dict[str, Any] = {"method": "bs", "sparsity": 0.85}
BUDGET_WAVG: dict[str, Any] = {"method": "adaptive", "loss": "budget", "weighting": "wavg",
                               "budget": 0.15}
LR = 0.05


# -- overhead -------------------------------------------------------------------------------------


def _variant(name: str) -> tuple[nn.Module, Pruner | None]:
    torch.manual_seed(0)
    model = build_model("wrn-16-2", num_classes=10, in_channels=1)
    example = torch.zeros(1, *INPUT)
    pruner = None
    options = VARIANTS[name]
    if options is not None:
        pruner = build_pruner(PRUNER, **options)
        pruner.prepare(model, example)
    elif name == "torch-l1":
        for layer in prunable_layers(model):
            prune.l1_unstructured(dict(model.named_modules())[layer], "weight", amount=0.85)
    model.train()
    return model, pruner


def _stepper(model: nn.Module, pruner: Pruner | None, batch: int) -> Callable[[], None]:
    """One training step (forward, the pruner's loss terms, backward, step, its after_step hook),
    the pruner's own parameters in their groups on the optimizer they are tuned for."""
    groups: list[dict[str, Any]] = pruner.param_groups(LR) if pruner is not None else []
    claimed = {id(p) for g in groups for p in g["params"]}
    weights = [p for p in model.parameters() if id(p) not in claimed]
    kind = (pruner.param_group_optimizer if pruner is not None else None) or "sgd"
    sgd_groups = [{"params": weights}] + (groups if kind == "sgd" else [])
    optimizers: list[torch.optim.Optimizer] = [torch.optim.SGD(
        sgd_groups, lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4)]
    if groups and kind == "adam":
        optimizers.append(torch.optim.Adam(groups, lr=LR))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *INPUT, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    counter = [0]

    def step() -> None:
        logits = model(x)
        task = F.cross_entropy(logits, y)
        context = StepContext(x, y, logits, task, counter[0], 1_000_000, 0)
        if pruner is None:
            loss = task
        else:
            loss = torch.stack([t.reshape(()) for t in pruner.loss_terms(context).values()]).sum()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        if pruner is not None:
            pruner.after_step(context)
        counter[0] += 1

    return step


def bench_overhead(repeats: int, steps: int, batch: int, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    names = list(VARIANTS)
    steppers = {}
    for name in names:
        model, pruner = _variant(name)
        steppers[name] = _stepper(model, pruner, batch)
        for _ in range(2):  # warm-up
            steppers[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: shared machine
        for name in order:
            start = time.perf_counter()
            for _ in range(steps):
                steppers[name]()
            times[name].append((time.perf_counter() - start) / steps)
    medians = {n: statistics.median(t) for n, t in times.items()}
    dense = medians["dense"]
    return {
        "model": "wrn-16-2", "input": list(INPUT), "batch": batch, "threads": threads,
        "repeats": repeats, "steps_per_repeat": steps,
        "median_step_ms": {n: round(1e3 * m, 2) for n, m in medians.items()},
        "overhead_vs_dense_pct": {n: round(100 * (m / dense - 1), 2) for n, m in medians.items()
                                  if n != "dense"},
    }


# -- threshold selection ---------------------------------------------------------------------------


def bench_threshold(numel: int, sparsity: float, repeats: int, threads: int,
                    distribution: str = "gaussian") -> dict[str, Any]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if distribution == "laplace":  # heavier tails: the Gaussian guess is off, BS must search
        w = torch.distributions.Laplace(0.0, 0.05).sample((numel,))
    else:
        w = torch.randn(numel) * 0.05
    k = round(sparsity * numel)
    previous = binary_search_bound(w, sparsity).bound
    w_next = w + 1e-4 * torch.randn_like(w)  # the next training step's weights
    runs: dict[str, list[float]] = {"kthvalue": [], "bs_cold": [], "bs_warm": [], "ga": []}
    attained: dict[str, float] = {}
    passes: dict[str, int] = {}
    for _ in range(repeats):
        start = time.perf_counter()
        kth = float(torch.kthvalue(w_next.abs(), k).values)
        runs["kthvalue"].append(time.perf_counter() - start)
        start = time.perf_counter()
        cold = binary_search_bound(w_next, sparsity)
        runs["bs_cold"].append(time.perf_counter() - start)
        start = time.perf_counter()
        warm = binary_search_bound(w_next, sparsity, start=previous)
        runs["bs_warm"].append(time.perf_counter() - start)
        start = time.perf_counter()
        ga = float(gaussian_bound(w_next, sparsity))
        runs["ga"].append(time.perf_counter() - start)
    a = w_next.abs()
    attained = {"kthvalue": float((a < kth).float().mean()), "bs_cold": cold.sparsity,
                "bs_warm": warm.sparsity, "ga": float((a < ga).float().mean())}
    passes = {"bs_cold": cold.passes, "bs_warm": warm.passes}
    return {"numel": numel, "distribution": distribution, "sparsity": sparsity,
            "threads": threads, "repeats": repeats,
            "median_ms": {n: round(1e3 * statistics.median(t), 1) for n, t in runs.items()},
            "attained_sparsity": attained, "bs_passes": passes}


# -- precision ------------------------------------------------------------------------------------


def bench_precision(train_subset: int, epochs: float, batch: int, threads: int,
                    bound_lr: float, lam: float | None, skip_bs: bool = False,
                    seeds: tuple[int, ...] = (0,),
                    initial_sparsity: float | None = None) -> dict[str, Any]:
    from budgetsearch.data import load_dataset
    from budgetsearch.train import TrainConfig, train_phases

    torch.set_num_threads(threads)
    data = load_dataset("fashion-mnist", train_subset=train_subset)
    example = data.train[0][0].unsqueeze(0)
    out: dict[str, Any] = {"train_subset": train_subset, "epochs": epochs, "batch": batch,
                           "seeds": list(seeds)}

    def run(options: dict[str, Any], seed: int) -> tuple[Any, Any]:
        torch.manual_seed(seed)
        model = build_model("wrn-16-2", num_classes=data.num_classes, in_channels=1)
        pruner = build_pruner(PRUNER, **options)
        pruner.prepare(model, example)
        config = TrainConfig(epochs=epochs, batch_size=batch, progress=False, lr=LR, seed=seed)
        result = train_phases(model, data, config, pruner)
        pruner.finalize()
        return result, pruner.report()

    for seed in seeds:
        key = f"seed_{seed}"
        out[key] = {}
        if not skip_bs:
            out[key]["fixed_bs"] = _fixed_bs(*run(FIXED_BS, seed))
        options = {**BUDGET_WAVG, "lam": lam, "bound_optimizer": "adam", "bound_lr": bound_lr,
                   "initial_sparsity": initial_sparsity}
        result, report = run(options, seed)
        out[key]["budget_wavg"] = _budget_wavg(result, report, report.extra.get("lam"),
                                               bound_lr)
    errors = [abs(out[f"seed_{s}"]["budget_wavg"]["param_sparsity_counted_pct"] - 85.0)
              for s in seeds]
    out["budget_wavg_max_abs_error_pct"] = round(max(errors), 3)
    out["budget_wavg_within_1pct_all_seeds"] = max(errors) <= 1.0
    return out


def _fixed_bs(result: Any, report: Any) -> dict[str, Any]:
    errors = [layer.counted - 0.85 for layer in report.layers if layer.pruned]
    return {
        "test_accuracy": result.test_accuracy, "seconds": round(result.seconds, 1),
        "max_abs_layer_error_pct": round(100 * max(abs(e) for e in errors), 4),
        "overall_sparsity": report.overall_sparsity,
        "layers_within_0.1pct": sum(abs(e) <= 1e-3 for e in errors), "layers": len(errors),
    }


def _budget_wavg(result: Any, report: Any, lam: float | None, bound_lr: float
                 ) -> dict[str, Any]:
    pruned = [r for r in report.layers if r.pruned]  # the layers left dense are listed too
    ratios = [r.extra["ratio"] for r in pruned]
    kept = report.extra["kept_fraction"]["params"]
    return {
        "test_accuracy": result.test_accuracy, "seconds": round(result.seconds, 1),
        "lam": lam, "bound_lr(adam)": bound_lr,
        "param_sparsity_counted_pct": round(100 * (1 - kept), 3),
        "param_sparsity_gaussian_pct": round(100 * (1 - report.extra["last_loss"]["density"]), 3),
        "overall_sparsity_counted_pct": round(100 * report.overall_sparsity, 3),
        "per_layer_counted": {r.name: round(r.counted, 3) for r in pruned},
        "bound_ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
        "params": report.cost["params"], "dense_params": report.extra["dense_cost"]["params"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("overhead")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("threshold")
    p.add_argument("--numel", type=int, default=10_000_000)
    p.add_argument("--sparsity", type=float, default=0.85)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--distribution", choices=("gaussian", "laplace"), default="gaussian")
    p = sub.add_parser("precision")
    p.add_argument("--train-subset", type=int, default=10_000)
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bound-lr", type=float, default=0.02, help="Adam lr of the bounds")
    p.add_argument("--lam", type=float, default=None,
                   help="λ_p of eq. 10 (default: ErfConfig's, BUDGET_LAM)")
    p.add_argument("--initial-sparsity", type=float, default=None,
                   help="where the bounds start (default: ErfConfig's, the budget)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    p.add_argument("--skip-bs", action="store_true", help="only the budget-wavg runs")
    args = parser.parse_args()
    if args.part == "overhead":
        result = bench_overhead(args.repeats, args.steps, args.batch, args.threads)
    elif args.part == "threshold":
        result = bench_threshold(args.numel, args.sparsity, args.repeats, args.threads,
                                 args.distribution)
    else:
        result = bench_precision(args.train_subset, args.epochs, args.batch, args.threads,
                                 args.bound_lr, args.lam, args.skip_bs, tuple(args.seeds),
                                 args.initial_sparsity)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
