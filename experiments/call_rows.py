"""Issue 16: do chains of one op kind, timed beside the fit set, price foreign networks better?

One command (about five minutes; time it on a quiet machine)::

    PYTHONPATH=. python experiments/call_rows.py RESULTS_CSV [...]

The eager fit prices each op kind's call by a per-call constant fitted on whole networks. In
the fit set a conv nearly always comes with a BatchNorm and an activation, so the three
constants are collinear: the shipped AVX2 profile fits a dense conv's call at 0 µs, a ReLU's at
32 µs and an add's at 69 µs (a ReLU module call costs a few µs). Priced that way, a network with
other ratios of convs to activations (SqueezeNet's concat-heavy fire modules, MnasNet's narrow
blocks) is mis-priced by its mix, not its work.

This re-fits the shipped eager profile (``hw_profiles/cpu-2core-x86-avx2.csv``, timing none of
its networks again) with *call rows* added: small networks that chain one op kind
(conv 1×1 and 3×3, depthwise, grouped, linear, BatchNorm, activations, add, SE gating, concat,
pools) on small tensors, timed now interleaved with a sample of the profile's held-out networks,
whose median ratio to their recorded times rescales the call rows to the profile's day. Per
weight given to the call rows: held-out share within ±10 %, and the foreign networks of each
``RESULTS_CSV`` (a ``latency_accuracy.csv`` of this profile) within ±10 % as priced (no drift
check) and after the factor that centres them (the model's scatter).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.optimize import nnls
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import layer_inventory, load_profile  # noqa: E402
from budgetsearch.profiling.fit import (  # noqa: E402
    build_fit_set,
    features_for,
    network_features,
)
from budgetsearch.profiling.timing import make_runner, time_runners  # noqa: E402

CALLS = 16  # calls per chain: their per-call cost dominates the chain's time


class _Repeat(nn.Module):
    """``CALLS`` functional calls inline in one forward (as a block's forward runs them)."""

    def __init__(self, op: str, channels: int) -> None:
        super().__init__()
        self.op = op
        self.register_buffer("scale", torch.full((1, channels, 1, 1), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(CALLS):
            if self.op == "add":
                x = x + x
            elif self.op == "gate":
                x = x * self.scale
            elif self.op == "cat":
                x = torch.cat(x.chunk(2, dim=1)[::-1], dim=1)
            elif self.op == "flatten":
                x = x.flatten(1).view_as(x)
        return x


def call_chains() -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(label, model, input) of each chain, on two tensor sizes."""
    chains = []
    for c, hw in ((16, 4), (32, 8)):
        x = torch.randn(1, c, hw, hw)
        modules = {
            "conv1x1": lambda c=c: nn.Conv2d(c, c, 1, bias=False),
            "conv3x3": lambda c=c: nn.Conv2d(c, c, 3, padding=1, bias=False),
            "dwconv3x3": lambda c=c: nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
            "gconv3x3": lambda c=c: nn.Conv2d(c, c, 3, padding=1, groups=4, bias=False),
            "batchnorm": lambda c=c: nn.BatchNorm2d(c),
            "relu": lambda: nn.ReLU(inplace=True),
            "relu6": lambda: nn.ReLU6(inplace=True),
            "hardswish": lambda: nn.Hardswish(),
            "maxpool": lambda: nn.MaxPool2d(3, 1, 1),
            "avgpool": lambda: nn.AvgPool2d(3, 1, 1),
        }
        for label, make in modules.items():
            chains.append((f"{label}/{c}x{hw}", nn.Sequential(*[make() for _ in range(CALLS)]), x))
        for op in ("add", "gate", "cat", "flatten"):
            chains.append((f"{op}/{c}x{hw}", _Repeat(op, c), x))
        v = torch.randn(1, c * 8)
        chains.append((f"linear/{c * 8}", nn.Sequential(
            *[nn.Linear(c * 8, c * 8) for _ in range(CALLS)]), v))
    return chains


class _Built:
    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        self.model, self.example_input = model.eval(), x
        self.inventory, self.kept_channels = layer_inventory(self.model, x), {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--profile", default="cpu-2core-x86-avx2")
    args = parser.parse_args()
    profile = load_profile(args.profile, check=False)
    block = profile.channel_block
    csv = Path("hw_profiles") / f"{profile.name}.csv"
    measured = pd.read_csv(csv)
    measured = measured[measured["runtime"] == "pytorch-eager"]
    times = {(r.network, r.set): r.measured_ms for r in measured.itertuples()}
    fit, holdout = build_fit_set(216, 54, seed=int(profile.provenance.get("seed", 0)))
    tf = np.array([times[(b.label, "fit")] for b in fit])
    th = np.array([times[(b.label, "holdout")] for b in holdout])

    def row(built) -> np.ndarray:  # noqa: ANN001
        return network_features(built, block, "pytorch-eager", 1, profile.small_gemm)

    xf = np.stack([row(b) for b in fit])
    xh = np.stack([row(b) for b in holdout])
    chains = call_chains()
    built_chains = [_Built(m, x) for _, m, x in chains]
    xc = np.stack([row(b) for b in built_chains])
    # the chains timed now, interleaved with a sample of held-out networks (their drift since
    # the profile's day rescales the chains to it)
    sample = holdout[::3]
    runners = [make_runner(b.model, b.example_input, runtime="pytorch-eager", threads=1)
               for b in [*built_chains, *sample]]
    started = time.strftime("%Y-%m-%d %H:%M")
    busy0 = bench._proc_stat()
    now = time_runners(runners, rounds=8, inner=5, warmup=3, threads=1)
    busy1 = bench._proc_stat()
    th_sample = np.array([times[(b.label, "holdout")] for b in sample])
    drift = float(np.median(now[len(chains):] / th_sample))
    tc = now[:len(chains)] / drift
    others = 100 * ((busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1]) * 2 - 1)
    print(f"{started}, profile {profile.name} ({profile.provenance.get('date')}); chains timed "
          f"with {len(sample)} held-out networks, drift x{drift:.3f} since the profile; CPU busy "
          f"beyond this process about {max(0.0, others):.0f}% of one core")
    foreign = bench.foreign_networks(quick=False)
    xo = np.stack([network_features(types_row(n), block, "pytorch-eager", 1, profile.small_gemm)
                   for n in foreign])
    runs = []
    for path in args.results:
        table = pd.read_csv(path)
        table = table[(table["runtime"] == "pytorch-eager") & (table["profile"] == profile.name)]
        ms = dict(zip(table["network"], table["measured_ms"], strict=True))
        keep = [i for i, n in enumerate(foreign) if n["network"] in ms]
        runs.append((path.stem, keep, np.array([ms[foreign[i]["network"]] for i in keep])))
    names = [f"{k}.{t}" for k, t in features_for("pytorch-eager", small_gemm=True)] + ["intercept"]
    for weight in (0.0, 0.1, 0.3, 1.0, 3.0):
        coef = _weighted_fit(xf, tf, xc, tc, weight)
        held = xh @ coef / th * 100 - 100
        chain_err = xc @ coef / tc * 100 - 100
        parts = [f"weight {weight:4.1f}: held-out {np.mean(abs(held) <= 10):4.0%}, chains "
                 f"median |err| {np.median(abs(chain_err)):5.1f}%"]
        for stem, keep, to in runs:
            pred = xo[keep] @ coef
            err = pred / to * 100 - 100
            factor = np.exp(np.median(np.log(to / pred)))
            centred = pred * factor / to * 100 - 100
            parts.append(f"{stem[-4:]}: {np.mean(abs(err) <= 10):4.0%} "
                         f"centred {np.mean(abs(centred) <= 10):4.0%}")
        print("; ".join(parts))
        overheads = {n: round(float(c) * 1e3, 1) for n, c in zip(names, coef, strict=True)
                     if n.endswith("overhead_ms")}
        print("   per-call µs:", overheads)
    print("chains (ms now / drift):", {label: round(float(v), 4)
                                        for (label, _, _), v in zip(chains, tc, strict=True)})


def _weighted_fit(xf: np.ndarray, tf: np.ndarray, xc: np.ndarray, tc: np.ndarray,
                  weight: float) -> np.ndarray:
    """NNLS on relative error, each call row's error counting ``weight`` times a fit network's."""
    w = np.concatenate([np.ones(len(tf)), np.full(len(tc), weight)])
    a = np.vstack([xf, xc]) / np.concatenate([tf, tc])[:, None] * w[:, None]
    keep = w > 0
    a, w = a[keep], w[keep]
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)  # as fit_coefficients, for nnls
    solution, _ = nnls(a / scale, w, maxiter=20_000)
    return solution / scale


def types_row(n: dict):  # noqa: ANN201
    import types

    return types.SimpleNamespace(inventory=n["inventory"], kept_channels=n["kept"])


if __name__ == "__main__":
    main()
