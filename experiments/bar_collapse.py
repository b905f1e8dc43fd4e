"""Why BAR's Adam coupling (``pull="adam"``) collapses, measured step by step (issue 19, part 1).

One trained WRN-16-2 reference on a Fashion-MNIST subset; then the pruning phase alone (KD from
the reference, 25% activation-volume budget, sigmoid schedule) under several settings of the
paper's coupling. Every ``--every`` steps it records, per step: the hard volume V / V_F, the
schedule's b / V_F, the barrier f, the mean |∂/∂log α| of the task loss and of the budget term
λ f L_S (separately, by autograd), the spread of the log α step across gates (std / mean of
|Δ log α|: 0 means every gate moves in lockstep), and the kept channels. At the end: V / V_F
before any projection, and the accuracy of the gated network (BatchNorm re-estimated).

Usage:
    PYTHONPATH=. .venv/bin/python experiments/bar_collapse.py --out experiments/results/bar_collapse
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from bar_budgets import load_data, short_run_config

from budgetsearch.cost import Target
from budgetsearch.models import build_model
from budgetsearch.pruners import build_pruner
from budgetsearch.train import StepContext, train, train_phases

#: Settings compared: name -> BAR options (all ``pull="adam"``, KD on, 25% volume).
SETTINGS: dict[str, dict[str, Any]] = {
    "adam-default": {"lam": 1.0, "init_log_alpha": 3.0, "gate_lr": 0.1},
    "adam-paper-lam": {"lam": "paper", "init_log_alpha": 3.0, "gate_lr": 0.1},
    "adam-paper-lam-init0": {"lam": "paper", "init_log_alpha": 0.0, "gate_lr": 0.1},
    "adam-lam-init0": {"lam": 1.0, "init_log_alpha": 0.0, "gate_lr": 0.1},
    "adam-paper-lr": {"lam": "paper", "init_log_alpha": 0.0, "gate_lr": 1e-3},
    "adam-start1": {"lam": "paper", "init_log_alpha": 3.0, "gate_lr": 0.1, "start_factor": 1.0},
    # λ = 1e-5 / batch on raw volume (the public re-implementation's scaling of the paper's λ)
    "adam-batch-lam-init0-lr0.3": {"lam": "paper/batch", "init_log_alpha": 0.0, "gate_lr": 0.3},
    "adam-batch-lam-init0-lr0.1": {"lam": "paper/batch", "init_log_alpha": 0.0, "gate_lr": 0.1},
    # the named mode itself (BARConfig.paper(): λ 3e-5, log α from 0, gate lr 0.3)
    "paper-mode": {"mode": "paper"},
    "adam-batch-lam-init3-lr0.3": {"lam": "paper/batch", "init_log_alpha": 3.0, "gate_lr": 0.3},
    "adam-batch-lam-init0-lr0.3-cap100": {"lam": "paper/batch", "init_log_alpha": 0.0,
                                          "gate_lr": 0.3, "barrier_cap": 100.0},
}


class Probe:
    """Wraps a BAR pruner's hooks to measure the two gradients on log α every few steps."""

    def __init__(self, pruner: Any, every: int) -> None:
        self.pruner = pruner
        self.every = every
        self.rows: list[dict[str, float]] = []
        self._before: torch.Tensor | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pruner, name)

    def _alphas(self) -> list[torch.Tensor]:
        return [g.log_alpha for _, g in self.pruner.structure.named_gates()]

    def loss_terms(self, context: StepContext) -> dict[str, torch.Tensor]:
        terms = self.pruner.loss_terms(context)
        if context.step % self.every == 0 and "bar" in terms:
            params = self._alphas()
            task = torch.autograd.grad(terms["task"], params, retain_graph=True,
                                       allow_unused=True)
            bar = terms["bar"]
            budget = (torch.autograd.grad(bar, params, retain_graph=True, allow_unused=True)
                      if bar.requires_grad else [None] * len(params))

            def mean_abs(grads: Any) -> float:
                values = [g.abs().flatten() for g in grads if g is not None]
                return float(torch.cat(values).mean()) if values else 0.0

            alphas = torch.cat([p.detach().flatten() for p in params])
            kept = sum(int(g.kept_mask().sum()) for _, g in self.pruner.structure.named_gates())
            barrier = self.pruner.last_barrier
            full = self.pruner.full_cost[self.pruner.config.metric]
            self.rows.append({
                "step": context.step, "V/VF": barrier["V"] / full, "b/VF": barrier["b"] / full,
                "f": barrier["f"], "task_grad": mean_abs(task), "budget_grad": mean_abs(budget),
                "log_alpha_mean": float(alphas.mean()), "log_alpha_std": float(alphas.std()),
                "kept_channels": kept})
            self._before = alphas
        return terms

    def after_step(self, context: StepContext) -> None:
        self.pruner.after_step(context)
        if self._before is not None and self.rows and self.rows[-1]["step"] == context.step:
            moved = (torch.cat([p.detach().flatten() for p in self._alphas()])
                     - self._before).abs()
            self.rows[-1]["step_mean"] = float(moved.mean())
            self.rows[-1]["step_spread"] = float(moved.std() / moved.mean().clamp_min(1e-12))
            self._before = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-subset", type=int, default=4000)
    parser.add_argument("--test-subset", type=int, default=1000)
    parser.add_argument("--reference-epochs", type=float, default=1.0)
    parser.add_argument("--prune-epochs", type=float, default=2.0)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bar_collapse"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    data = load_data(args)
    config = short_run_config(args.reference_epochs)
    example = data.train[0][0].unsqueeze(0)
    path = args.out / "reference.pt"
    torch.manual_seed(0)
    if path.is_file():
        reference = torch.load(path, weights_only=False)
    else:
        reference = build_model("wrn-16-2", num_classes=data.num_classes,
                                in_channels=data.in_channels)
        result = train(reference, data, config)
        print(f"reference accuracy {result.test_accuracy:.4f}", flush=True)
        torch.save(reference, path)
    for name in args.settings:
        options = dict(SETTINGS[name])
        target = Target("activation_volume", fraction=args.budget, text=f"{100 * args.budget:g}%")
        torch.manual_seed(0)
        model = copy.deepcopy(reference)
        lam = options.pop("lam", None)
        if lam is not None:
            options["lam"] = 1.0 if isinstance(lam, str) else lam
            options.setdefault("pull", "adam")
        pruner = build_pruner("bar", target=target, teacher=copy.deepcopy(reference).eval(),
                              phase_fractions=(1.0, 0.0, 0.0), **options)
        pruner.prepare(model, example)
        if isinstance(lam, str):  # λ = 1e-5 on raw volume (the paper), in mean-channel units
            per_batch = config.batch_size if lam == "paper/batch" else 1
            pruner.config = replace(pruner.config, lam=1e-5 * pruner.channel_cost / per_batch)
        probe = Probe(pruner, args.every)
        start = time.perf_counter()
        result = train_phases(model, data, replace(config, epochs=args.prune_epochs), probe)
        full = pruner.full_cost["activation_volume"]
        summary = {"setting": name, "options": {
                       **SETTINGS[name], "lam_used": pruner.config.lam,
                       "init_log_alpha": pruner.config.init_log_alpha,
                       "gate_lr": pruner.config.gate_lr, "pull": pruner.config.pull},
                   "final_V/VF": pruner.hard_cost() / full, "budget": args.budget,
                   "accuracy_gated": result.test_accuracy, "seconds":
                   time.perf_counter() - start, "trace": probe.rows}
        print(json.dumps({k: v for k, v in summary.items() if k != "trace"}), flush=True)
        for row in probe.rows[:: max(1, len(probe.rows) // 12)]:
            print("   ", {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})
        (args.out / f"{name}.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
