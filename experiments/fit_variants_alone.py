"""Issue 16: which latency-model terms hold on networks timed alone (timing nothing).

Rebuilds a measured profile's fit set, reads its measured times from the profile's CSV, and
the foreign networks' own-process times (``fresh_ms``) from one benchmark CSV; then fits
variants of the design matrix (terms dropped, the small-GEMM table or not) by the profile's own
NNLS and scores each: held-out within ±10%, foreign within ±10% as fitted and centred.

    PYTHONPATH=. python experiments/fit_variants_alone.py PROFILE BENCHMARK_CSV
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rescore_profiles import foreign_networks  # noqa: E402

from budgetsearch.cost import load_profile  # noqa: E402
from budgetsearch.profiling.fit import (  # noqa: E402
    _fitted_table,
    _units,
    build_fit_set,
    channel_block_of,
    features_for,
    fit_coefficients,
)
from budgetsearch.profiling.networks import shapes_from_text  # noqa: E402


def design(networks: list, units: tuple) -> np.ndarray:
    rows = []
    for n in networks:
        inv = n.inventory if hasattr(n, "inventory") and not isinstance(n, dict) else n["inventory"]
        kept = n.kept_channels if not isinstance(n, dict) else n["kept"]
        rows.append([inv.predict_latency_ms(u, kept_channels=kept) for u in units] + [1.0])
    return np.array(rows)


def module_calls(model, x) -> int:
    """How many nn.Module calls one forward pass makes (containers included)."""
    import torch

    count = [0]
    handles = [m.register_forward_pre_hook(lambda *_: count.__setitem__(0, count[0] + 1))
               for m in model.modules()]
    try:
        with torch.inference_mode():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return count[0]


def within(pred: np.ndarray, meas: np.ndarray) -> float:
    return float(np.mean(np.abs(pred / meas - 1) <= 0.10))


def main() -> None:
    profile = load_profile(sys.argv[1], check=False)
    bench = pd.read_csv(sys.argv[2])
    runtime, prov = profile.runtime, profile.provenance
    csv = pd.read_csv(Path(profile.path).with_suffix(".csv") if profile.path.endswith(".yaml")
                      else profile.path)
    csv = csv[csv["runtime"] == runtime]
    n_fit, n_hold = int((csv["set"] == "fit").sum()), int((csv["set"] == "holdout").sum())
    fit, hold = build_fit_set(n_fit, n_hold, seed=int(prov.get("seed", 0)),
                              shapes=shapes_from_text(prov.get("input_shapes")))
    times = {(r.network, r.set): r.measured_ms for r in csv.itertuples()}
    t_fit = np.array([times[(n.label, "fit")] for n in fit])
    t_hold = np.array([times[(n.label, "holdout")] for n in hold])
    rows = bench[bench["profile"] == profile.name]
    fresh = dict(zip(rows["network"], rows["fresh_ms"], strict=True))
    foreign = [n for n in foreign_networks() if n["network"] in fresh]
    t_for = np.array([fresh[n["network"]] for n in foreign])
    calls = [np.array([[module_calls(n.model, n.example_input)] for n in fit]),
             np.array([[module_calls(n.model, n.example_input)] for n in hold]),
             np.array([[module_calls(n["model"], n["x"])] for n in foreign])]
    block = channel_block_of(runtime, prov)
    table = _fitted_table(runtime, profile.small_gemm)
    sets = {"table": table, "no table": None} if table is not None else {"as fitted": None}
    for set_name, tab in sets.items():
        feats = [*features_for(runtime, small_gemm=tab is not None), ("network", "intercept")]
        units = _units(block, runtime, profile.threads, tab)
        a_fit, a_hold, a_for = (design(x, units) for x in (fit, hold, foreign))
        if "--calls" in sys.argv:
            a_fit, a_hold, a_for = (np.hstack([a, c]) for a, c in zip((a_fit, a_hold, a_for),
                                                                      calls, strict=True))
            feats = [*feats, ("module", "calls")]
        groups = {"all": []}
        for kind in dict.fromkeys(k for k, _ in feats):
            groups[f"-{kind}"] = [i for i, f in enumerate(feats) if f[0] == kind]
        for term in ("ms_per_weight_mb", "ms_per_mb", "overhead_ms"):
            groups[f"-{term}"] = [i for i, f in enumerate(feats) if f[1] == term]
        for name, drop in list(groups.items())[:1] if "--all-only" in sys.argv else groups.items():
            keep = np.ones(len(feats), bool)
            keep[drop] = False
            c = np.zeros(len(feats))
            c[keep] = fit_coefficients(a_fit[:, keep], t_fit)
            p_hold, p_for = a_hold @ c, a_for @ c
            factor = np.median(t_for / p_for)
            print(f"{set_name:9s} {name:28s} held-out {within(p_hold, t_hold):.0%}  foreign "
                  f"{within(p_for, t_for):.0%} (median {100 * (np.median(p_for / t_for) - 1):+.1f}%"
                  f"), centred {within(p_for * factor, t_for):.0%}", flush=True)
            if feats[-1][0] == "module" and name == "all":
                print(f"   ms per module call {c[-1] * 1e3:.2f} us, per network {c[-2]:.4f} ms")


if __name__ == "__main__":
    main()
