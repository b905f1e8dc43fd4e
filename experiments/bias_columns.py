"""Issue 16: does a weight-size or a narrow-conv term take out the eager model's remaining bias?
Offline, on timings already taken.

One command (about three minutes: the fit set and the foreign networks are rebuilt and traced)::

    R=experiments/results; PYTHONPATH=. python experiments/bias_columns.py \
        $R/latency_accuracy_1203-{0823,0910,1038,1058,1139,1155,1229,1324,1341,1358,1417,1426}.csv

``--runtime onnxruntime`` (first) does the same for the onnxruntime profile
(``cpu-2core-x86-avx2-ort``, its rows of the same CSV).

Centred per run, the eager AVX2 profile's errors on the 48 foreign networks correlate with the
log of each network's weight MB (−0.65 over nine runs of 2026-12-03): SqueezeNet and
ShuffleNet-v2-0.5 (≤ 6 MB) are over-priced. This re-fits the shipped eager profile
(``hw_profiles/cpu-2core-x86-avx2.csv``, as ``budgetsearch profile --refit`` does) with one
candidate column at a time and scores the held-out networks and, on each ``RESULTS_CSV`` of these
profiles, the foreign networks as priced (no drift check) and centred (the model's scatter):

* the network's weight MB, whole, beyond 1–16 MB, or up to 1–16 MB;
* dense convs (not depthwise) whose narrower side (input channels per group, or output
  channels) is at most 16, 32 or 64: their calls, their GFLOPs.

Output quoted in experiments/README.md ("A machine of the same name without AVX-512", item 12):
``results/bias_columns_output.txt``.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import DeviceProfile, LayerInventory, load_profile  # noqa: E402
from budgetsearch.profiling.fit import (  # noqa: E402
    build_fit_set,
    fit_coefficients,
    network_features,
)

#: the profile pair whose fit set is re-fitted (``PROFILE_PAIR=cpu-2core-x86-xeon`` for another
#: machine's pair; its measurements CSV must be beside it in hw_profiles/)
_PAIR = os.environ.get("PROFILE_PAIR", "cpu-2core-x86-avx2")
PROFILES = {"pytorch-eager": _PAIR, "onnxruntime": f"{_PAIR}-ort"}


def weight_mb(inventory: LayerInventory, kept: dict) -> float:
    """The network's weights at its kept channels, MB (fp32)."""
    total = 0.0
    for r in inventory:
        if not r.weight_params:
            continue
        share = 1.0
        if r.name in kept and r.op in ("conv", "linear"):
            ci, co = kept[r.name]
            share = co / r.out_channels if r.depthwise else ci * co / (r.in_channels
                                                                        * r.out_channels)
        total += r.weight_params * 4 / 1e6 * share
    return total


def narrow(inventory: LayerInventory, kept: dict, limit: int) -> tuple[float, float]:
    """(calls, GFLOPs) of dense convs and linears whose narrower side is at most ``limit``."""
    calls, gflops = 0.0, 0.0
    for r in inventory:
        if r.op in ("conv", "linear") and r.out_channels > 0 and not r.depthwise:
            ci, co = kept.get(r.name, (r.in_channels, r.out_channels))
            if min(ci / max(1, r.groups or 1), co) <= limit:
                calls += 1
                gflops += r.flops * ci * co / (r.in_channels * r.out_channels) * 1e-9
    return calls, gflops


def recorded_times(runtime: str) -> dict[tuple[str, str], float]:
    """(network label, set) → the ms the shipped AVX2 profile of ``runtime`` was fitted on."""
    measured = pd.read_csv(Path(__file__).resolve().parents[1] / "hw_profiles"
                           / f"{PROFILES['pytorch-eager']}.csv")  # both runtimes' rows
    measured = measured[measured["runtime"] == runtime]
    return {(r.network, r.set): r.measured_ms for r in measured.itertuples()}


def foreign_runs(paths: list[Path], runtime: str, names: list[str]
                 ) -> list[tuple[list[int], np.ndarray]]:
    """Per benchmark CSV, (indexes into ``names``, their measured ms) under ``runtime``'s
    profile of :data:`PROFILES`."""
    runs = []
    for path in paths:
        table = pd.read_csv(path)
        table = table[(table["runtime"] == runtime) & (table["profile"] == PROFILES[runtime])]
        ms = dict(zip(table["network"], table["measured_ms"], strict=True))
        keep = [i for i, n in enumerate(names) if n in ms]
        if keep:
            runs.append((keep, np.array([ms[names[i]] for i in keep])))
    return runs


@dataclass
class OfflineFit:
    """One runtime's shipped AVX2 profile and what re-fitting it offline needs: its fit and
    held-out networks with their recorded times, the benchmark's foreign networks with their
    times in each run, and everyone's design rows (``rows``: "fit", "holdout", "foreign")."""

    runtime: str
    profile: DeviceProfile
    fit: list[Any]
    holdout: list[Any]
    foreign: list[dict[str, Any]]
    fit_ms: np.ndarray
    held_ms: np.ndarray
    runs: list[tuple[list[int], np.ndarray]]
    rows: dict[str, np.ndarray]

    def row(self, inventory: LayerInventory, kept: dict) -> np.ndarray:
        """The fit's design row of a network priced through ``inventory`` at ``kept``."""
        built = types.SimpleNamespace(inventory=inventory, kept_channels=kept)
        return network_features(built, self.profile.channel_block, self.runtime, 1,
                                self.profile.small_gemm)


def offline_fit(runtime: str, paths: list[Path]) -> OfflineFit:
    """Build (and trace) the fit set and the foreign networks of ``runtime``'s profile, with
    the foreign networks' times in each benchmark CSV of ``paths``."""
    profile = load_profile(PROFILES[runtime], check=False)
    times = recorded_times(runtime)
    fit, holdout = build_fit_set(216, 54, seed=int(profile.provenance.get("seed", 0)))
    foreign = bench.foreign_networks(quick=False)
    data = OfflineFit(
        runtime, profile, fit, holdout, foreign,
        fit_ms=np.array([times[(b.label, "fit")] for b in fit]),
        held_ms=np.array([times[(b.label, "holdout")] for b in holdout]),
        runs=foreign_runs(paths, runtime, [n["network"] for n in foreign]), rows={})
    data.rows = {"fit": np.stack([data.row(b.inventory, b.kept_channels) for b in fit]),
                 "holdout": np.stack([data.row(b.inventory, b.kept_channels) for b in holdout]),
                 "foreign": np.stack([data.row(n["inventory"], n["kept"]) for n in foreign])}
    return data


def foreign_shares(rows: np.ndarray, coef: np.ndarray,
                   runs: list[tuple[list[int], np.ndarray]]) -> tuple[float, float, float]:
    """The foreign networks' share within ±10 % as priced and centred (the one factor per run
    that centres them), averaged over ``runs``, and the worst run's centred share."""
    priced, centred = [], []
    for keep, ms in runs:
        pred = rows[keep] @ coef
        factor = np.exp(np.median(np.log(ms / pred)))
        priced.append(np.mean(np.abs(pred / ms - 1) <= 0.10))
        centred.append(np.mean(np.abs(pred * factor / ms - 1) <= 0.10))
    return float(np.mean(priced)), float(np.mean(centred)), float(min(centred))


def candidates() -> dict[str, Callable[[LayerInventory, dict], float]]:
    columns: dict[str, Callable[[LayerInventory, dict], float]] = {
        "weight MB": weight_mb}
    for cut in (1, 2, 4, 8, 16):
        columns[f"weight MB beyond {cut}"] = lambda i, k, c=cut: max(weight_mb(i, k) - c, 0.0)
        columns[f"weight MB up to {cut}"] = lambda i, k, c=cut: min(weight_mb(i, k), c)
    for limit in (16, 32, 64):
        columns[f"narrow (<= {limit}) conv calls"] = lambda i, k, n=limit: narrow(i, k, n)[0]
        columns[f"narrow (<= {limit}) conv GFLOPs"] = lambda i, k, n=limit: narrow(i, k, n)[1]
    return columns


def main() -> None:
    args = sys.argv[1:]
    runtime = "pytorch-eager"
    if args[:1] == ["--runtime"]:
        runtime, args = args[1], args[2:]
    data = offline_fit(runtime, [Path(p) for p in args])
    items = {"fit": [(b.inventory, b.kept_channels) for b in data.fit],
             "holdout": [(b.inventory, b.kept_channels) for b in data.holdout],
             "foreign": [(n["inventory"], n["kept"]) for n in data.foreign]}
    base, tf, th, runs = data.rows, data.fit_ms, data.held_ms, data.runs
    print(f"{PROFILES[runtime]} ({runtime}): {len(data.fit)} fit, {len(data.holdout)} held-out, "
          f"{len(data.foreign)} foreign networks over {len(runs)} runs' times")

    def score(label: str, extra: dict[str, np.ndarray]) -> None:
        design = {k: np.hstack([base[k], extra[k]]) for k in base}
        coef = fit_coefficients(design["fit"], tf)
        held = design["holdout"] @ coef / th * 100 - 100
        priced, centred, worst = foreign_shares(design["foreign"], coef, runs)
        print(f"{label:32s} held-out {np.mean(np.abs(held) <= 10):4.0%}; foreign as priced "
              f"{priced:4.0%}, centred {centred:4.0%} (worst run {worst:4.0%}); added "
              f"coefficient {coef[base['fit'].shape[1]:].round(4)}")

    score("base (the shipped model)", {k: np.zeros((len(v), 0)) for k, v in base.items()})
    for label, column in candidates().items():
        score(label, {k: np.array([[column(i, kept)] for i, kept in items[k]])
                      for k in items})


if __name__ == "__main__":
    main()
