"""Issue 16: does fitting the eager per-kind model on its layers too (not only whole networks)
price foreign networks better? Offline, on timings already taken, plus one layer collection.

One command (about four minutes, time it on a quiet machine; layer times are cached in
``results/eager_layer_rows_times.csv`` for re-runs)::

    PYTHONPATH=. python experiments/eager_layer_rows.py results/latency_accuracy_1223.csv [...]

The fit by whole networks cannot tell apart kinds that come together: every conv of the fit set
is followed by a BatchNorm or an activation, so the fit may give a conv's per-call cost to them
(the shipped eager profile prices a conv call at 0 ms and a BatchNorm's at 0.01). This times
every conv and linear layer of the 216 fit networks *inside its network* (forward hooks, two
rounds of 8 passes, median; :func:`eager_layer_model.layer_rows`), and adds one row per layer
to the NNLS fit (its price under each unit profile against its time, relative error), the
layer rows weighted ``w`` times the network rows in all. ``w = 0`` is the shipped fit. Per
``w``: held-out networks, the layers themselves, and the benchmark's dense foreign networks in
each CSV given (no drift check; as priced, and centred by the one factor that centres them).

Output quoted in experiments/README.md ("Depthwise convs on GEMMs"):
``results/eager_layer_rows_output.txt``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.optimize import nnls

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402
from eager_layer_model import layer_rows, shares  # noqa: E402

from budgetsearch.cost import layer_inventory  # noqa: E402
from budgetsearch.profiling import fit as fit_module  # noqa: E402

RUNTIME = "pytorch-eager"
CACHE = Path(__file__).resolve().parent / "results" / "eager_layer_rows_times.csv"


def layer_times(fit: list) -> dict[tuple[str, str], float]:  # noqa: ANN001
    if CACHE.exists():
        table = pd.read_csv(CACHE)
        return {(n, layer): float(ms) for n, layer, ms in zip(
            table["network"], table["layer"], table["ms"], strict=True)}
    print(f"{time.strftime('%H:%M')}: timing the fit networks' conv and linear layers")
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(2):
        for b in fit:
            inventory = layer_inventory(b.model, b.example_input)
            modules = dict(b.model.named_modules())
            names = [r.name for r in inventory if r.op in ("conv", "linear")
                     and r.out_channels > 0 and r.name in modules]
            rows = layer_rows(b.model.eval(), b.example_input, time_them=True, passes=8)
            for name, row in zip(names, rows, strict=True):
                times.setdefault((b.label, name), []).append(row["ms"])
    medians = {k: statistics.median(v) for k, v in times.items()}
    pd.DataFrame([{"network": n, "layer": layer, "ms": ms} for (n, layer), ms in
                  medians.items()]).round(6).to_csv(CACHE, index=False)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="latency_accuracy.csv files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fit, holdout = fit_module.build_fit_set(216, 54, seed=0)
    times = layer_times(fit)
    units = fit_module._units(16, RUNTIME, 1)
    layer_design, layer_ms = [], []
    for b in fit:
        inventory = layer_inventory(b.model, b.example_input)
        per_unit = [inventory.layer_latency_ms(u) for u in units]
        for r in inventory:
            if (b.label, r.name) in times:
                layer_design.append([p[r.name] for p in per_unit] + [0.0])
                layer_ms.append(times[(b.label, r.name)])
    a_layers, t_layers = np.array(layer_design), np.array(layer_ms)
    measured = pd.read_csv("hw_profiles/cpu-2core-x86.csv")
    measured = measured[measured["runtime"] == RUNTIME]
    by_label = {(r.set, r.network): r.measured_ms for r in measured.itertuples()}

    def rows(networks: list, which: str) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        return (np.stack([fit_module.network_features(b, 16, RUNTIME, 1) for b in networks]),
                np.array([by_label[(which, b.label)] for b in networks]))

    a_fit, t_fit = rows(fit, "fit")
    a_held, t_held = rows(holdout, "holdout")
    foreign = [n for n in bench.foreign_networks(quick=False) if not n["kept"]]
    sets = []
    for path in args.results:
        table = pd.read_csv(path)
        table = table[(table["runtime"] == RUNTIME) & (table["family"] != "compact-wrn")]
        ms = dict(zip(table["network"], table["measured_ms"], strict=True))
        kept = [n for n in foreign if n["network"] in ms]
        design = np.stack([fit_module.network_features(
            types.SimpleNamespace(inventory=n["inventory"], kept_channels={}), 16, RUNTIME, 1)
            for n in kept])
        sets.append((path.name, design, np.array([ms[n["network"]] for n in kept])))
    print(f"{len(t_layers)} layer rows of {len(fit)} fit networks; {len(foreign)} dense foreign")
    for w in (0.0, 0.3, 1.0):
        weight = np.sqrt(w * len(t_fit) / len(t_layers))
        a = np.vstack([a_fit / t_fit[:, None], weight * a_layers / t_layers[:, None]])
        b = np.concatenate([np.ones(len(t_fit)), np.full(len(t_layers), weight)])
        scale = np.maximum(np.abs(a).max(axis=0), 1e-12)
        coefficients, _ = nnls(a / scale, b, maxiter=50_000)
        coefficients /= scale
        print(f"w = {w:3.1f}: held-out {shares(a_held @ coefficients, t_held)}")
        print(f"          layers   {shares(a_layers @ coefficients, t_layers)}")
        for name, design, t in sets:
            print(f"          {name}: foreign {shares(design @ coefficients, t)}")


if __name__ == "__main__":
    main()
