"""Issue 16: would one more term in the latency model price foreign networks better? Offline.

One command (two to three minutes per runtime: every network is rebuilt and traced once)::

    PYTHONPATH=. python experiments/latency_extra_terms.py RESULTS_CSV --runtime pytorch-eager

Builds the fit's design rows for the shipped CPU profile's fit and held-out networks (their times
from ``hw_profiles/cpu-2core-x86.csv``) and for the benchmark's foreign networks (their times in
``RESULTS_CSV``, a ``latency_accuracy.csv`` of these profiles), adds candidate columns, fits again
(NNLS on relative error, as ``budgetsearch profile`` does) and prints, per candidate, the held-out
share within ±10% and the foreign shares within ±10% / ±20% as priced and after the one factor
that centres them. Candidates, each measured to matter on one machine (experiments/README.md,
"Pools, and a machine of another CPU"):

* weights that do not stay in cache: MB of weights beyond 32 MB (this machine's L3) in the
  network; all of them when the network holds more; per layer beyond 2 MB (its L2) or 1 MB; a
  ramp from 16 to 48 MB;
* squeeze-excitation gating (a 4-D multiply broadcast over a 1×1 map): its MB and its calls;
* a dense conv's FLOPs priced by its output area (six buckets, 1 to over 256 positions): a GEMM's
  efficiency depends on its N, which pruning channels never changes.

Output quoted there: ``results/latency_extra_terms_output.txt``.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.profiling.fit import (  # noqa: E402
    build_fit_set,
    fit_coefficients,
    network_features,
)

L3_MB, L2_MB = 32.0, 2.0
COLUMNS = ("weights beyond L3", "all weights if over L3", "per layer beyond L2",
           "per layer beyond 1 MB", "ramp 16-48 MB", "gating MB", "gating calls")
# GFLOPs of dense convs (and of those on PyTorch's own GEMM path) by output area: a GEMM's
# efficiency depends on its N (the output positions), which pruning channels never changes
AREA_BUCKETS = ((1, 1), (2, 4), (5, 16), (17, 64), (65, 256), (257, 10**9))
BUCKET_COLUMNS = tuple(f"dense conv GFLOPs, area {lo}-{hi}" for lo, hi in AREA_BUCKETS)


class _Gating(TorchFunctionMode):
    """MB and calls of 4-D multiplies broadcast over a 1×1 map (squeeze-excitation)."""

    def __init__(self) -> None:
        super().__init__()
        self.mb, self.calls = 0.0, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") in ("mul", "__mul__", "mul_", "__rmul__") \
                and len(args) == 2 and all(isinstance(a, torch.Tensor) for a in args):
            a, b = args
            if a.dim() == 4 and b.dim() == 4 and a.shape != b.shape \
                    and (tuple(b.shape[2:]) == (1, 1) or tuple(a.shape[2:]) == (1, 1)):
                self.mb += out.numel() * 4 / 1e6
                self.calls += 1
        return out


def extra_columns(inventory, kept, model, x) -> list[float]:  # noqa: ANN001
    weights = []
    for r in inventory:
        if r.op in ("conv", "linear") and r.weight_params:
            ci, co = kept.get(r.name, (r.in_channels, r.out_channels))
            share = co / r.out_channels if r.depthwise else ci * co / (r.in_channels
                                                                        * r.out_channels)
            weights.append(r.weight_params * 4 / 1e6 * share)
    w = np.array(weights or [0.0])
    total = float(w.sum())
    gating = _Gating()
    with torch.no_grad(), gating:
        model.eval()(x)
    buckets = [0.0] * len(AREA_BUCKETS)
    for r in inventory:
        if r.kind == "conv" and r.out_channels > 0:
            ci, co = kept.get(r.name, (r.in_channels, r.out_channels))
            area = r.output_hw[0] * r.output_hw[1]
            k = next(i for i, (lo, hi) in enumerate(AREA_BUCKETS) if lo <= area <= hi)
            buckets[k] += r.flops * ci * co / (r.in_channels * r.out_channels) * 1e-9
    return [max(0.0, total - L3_MB), total * (total > L3_MB), float(np.maximum(w - L2_MB, 0).sum()),
            float(np.maximum(w - 1.0, 0).sum()), total * min(1.0, max(0.0, (total - 16) / 32)),
            gating.mb, float(gating.calls), *buckets]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--runtime", choices=("pytorch-eager", "onnxruntime"),
                        default="pytorch-eager")
    args = parser.parse_args()
    runtime = args.runtime
    measured = pd.read_csv("hw_profiles/cpu-2core-x86.csv")
    measured = measured[measured["runtime"] == runtime]
    times = {(r.network, r.set): r.measured_ms for r in measured.itertuples()}
    table = pd.read_csv(args.results)
    table = table[(table["runtime"] == runtime) & (table["family"] != "compact-wrn")]
    foreign_ms = dict(zip(table["network"], table["measured_ms"], strict=True))
    fit, holdout = build_fit_set(216, 54, seed=0)
    foreign = [n for n in bench.foreign_networks(quick=False) if n["network"] in foreign_ms]

    def design(items, get) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        base, extra = [], []
        for item in items:
            inventory, kept, model, x = get(item)
            row = types.SimpleNamespace(inventory=inventory, kept_channels=kept)
            base.append(network_features(row, 16, runtime, 1))
            extra.append(extra_columns(inventory, kept, model, x))
        return np.array(base), np.array(extra)

    built = lambda b: (b.inventory, b.kept_channels, b.model, b.example_input)  # noqa: E731
    xf, ef = design(fit, built)
    xh, eh = design(holdout, built)
    xo, eo = design(foreign, lambda n: (n["inventory"], n["kept"], n["model"], n["x"]))
    tf = np.array([times[(b.label, "fit")] for b in fit])
    th = np.array([times[(b.label, "holdout")] for b in holdout])
    to = np.array([foreign_ms[n["network"]] for n in foreign])
    print(f"{runtime}: {len(fit)} fit, {len(holdout)} held-out, {len(foreign)} foreign networks; "
          f"foreign times from {args.results}")
    n = len(COLUMNS)
    candidates = [("base (the shipped model)", [])] + [(c, [i]) for i, c in enumerate(COLUMNS)]
    candidates.append(("dense conv GFLOPs by output area", list(range(n, n + len(AREA_BUCKETS)))))
    for name, cols in candidates:
        coef = fit_coefficients(np.hstack([xf, ef[:, cols]]), tf)
        held = np.hstack([xh, eh[:, cols]]) @ coef / th * 100 - 100
        pred = np.hstack([xo, eo[:, cols]]) @ coef
        errors = pred / to * 100 - 100
        factor = np.exp(np.median(np.log(to / pred)))
        centred = pred * factor / to * 100 - 100
        print(f"{name:26s} held-out {np.mean(abs(held) <= 10):4.0%}; foreign "
              f"{np.mean(abs(errors) <= 10):4.0%} / {np.mean(abs(errors) <= 20):4.0%} "
              f"(median {np.median(errors):+5.1f}%), centred {np.mean(abs(centred) <= 10):4.0%}"
              f" / {np.mean(abs(centred) <= 20):4.0%}; added coefficient "
              f"{coef[xf.shape[1]:].round(4).tolist()}")


if __name__ == "__main__":
    main()
