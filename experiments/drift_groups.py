"""Issue 16: when a machine drifts unevenly, can the anchors say by how much each kind of work
drifted? A replay of one latency_accuracy.py run, no timing.

On 2026-12-03 the machine ran the cpu-2core-x86 anchors x1.58-x2.37 of their recorded times
(one factor: x1.86), and the one factor left ResNets +25-38 % over-predicted and overhead-bound
networks 10-16 % under: per-call overhead, arithmetic and memory traffic had slowed by different
factors. This script splits every prediction of the shipped profile into four groups (per-call
overhead, FLOPs, activation bytes, weight bytes with the small-GEMM table), fits one factor per
group to the anchors' ratios today / recorded (least squares on relative error, factors ≥ 0;
one to four groups, the groups merged as named), and scores each against the run's measured
times; the same fit on the foreign networks themselves is the oracle (the best any such
rescaling can do).

    PYTHONPATH=. python experiments/drift_groups.py [--csv experiments/results/latency_accuracy.csv
        --summary experiments/results/latency_accuracy_summary.json]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from budgetsearch.cost import OpLatency, layer_inventory, load_profile
from budgetsearch.cost.profiles import DeviceProfile
from budgetsearch.profiling.anchors import build_anchor
from experiments.latency_accuracy import foreign_networks

GROUPS = ("overhead", "compute", "activations", "weights")
# the groupings tried: each tuple is the groups that share one factor
SETTINGS = {
    "one factor": (GROUPS,),
    "overhead | rest": (("overhead",), ("compute", "activations", "weights")),
    "overhead | compute | memory": (("overhead",), ("compute",), ("activations", "weights")),
    "four groups": tuple((g,) for g in GROUPS),
}


def only(profile: DeviceProfile, group: str) -> DeviceProfile:
    """``profile`` with every coefficient outside ``group`` set to 0."""
    keep = {g: float(g == group) for g in GROUPS}

    def op(c: OpLatency) -> OpLatency:
        return OpLatency(ms_per_gflop=c.ms_per_gflop * keep["compute"],
                         ms_per_mb=c.ms_per_mb * keep["activations"],
                         overhead_ms=c.overhead_ms * keep["overhead"],
                         ms_per_weight_mb=None if c.ms_per_weight_mb is None
                         else c.ms_per_weight_mb * keep["weights"])

    table = profile.small_gemm
    if table is not None:
        table = replace(table, scale=table.scale * keep["weights"])
    return replace(profile, ops={k: op(c) for k, c in profile.ops.items()},
                   network_overhead_ms=profile.network_overhead_ms * keep["overhead"],
                   small_gemm=table)


def parts(inventories: list, profile: DeviceProfile, kept: list | None = None) -> np.ndarray:
    """Per network, the predicted ms of each group (columns in GROUPS order)."""
    kept = kept or [{}] * len(inventories)
    return np.array([[inv.predict_latency_ms(only(profile, g), kept_channels=k) for g in GROUPS]
                     for inv, k in zip(inventories, kept, strict=True)])


def fit(p: np.ndarray, target: np.ndarray, setting: tuple) -> np.ndarray:
    """One factor per merged group (NNLS on relative error): factors per column of GROUPS."""
    from scipy.optimize import nnls

    columns = np.column_stack([p[:, [GROUPS.index(g) for g in merged]].sum(1)
                               for merged in setting])
    factors, _ = nnls(columns / target[:, None], np.ones(len(target)))
    out = np.zeros(len(GROUPS))
    for f, merged in zip(factors, setting, strict=True):
        out[[GROUPS.index(g) for g in merged]] = f
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    results = Path(__file__).resolve().parent / "results"
    parser.add_argument("--csv", type=Path, default=results / "latency_accuracy.csv")
    parser.add_argument("--summary", type=Path,
                        default=results / "latency_accuracy_summary.json")
    parser.add_argument("--profile", default="cpu-2core-x86")
    args = parser.parse_args()
    import json

    profile = load_profile(args.profile, check=False)
    check = json.loads(args.summary.read_text())["profiles"][args.profile]["check"]
    rows = pd.read_csv(args.csv)
    rows = rows[rows.profile == args.profile].set_index("network")
    nets = [n for n in foreign_networks(quick=False) if n["network"] in rows.index]
    measured = rows.loc[[n["network"] for n in nets], "measured_ms"].to_numpy()
    p_nets = parts([n["inventory"] for n in nets], profile, [n["kept"] for n in nets])
    recorded = {a["name"]: float(a["recorded_ms"]) for a in profile.anchors["networks"]}
    names = [n for n in recorded if n in check["today_ms"]]
    anchors = []
    for name in names:
        model, x = build_anchor(name)
        anchors.append(layer_inventory(model, x))
    p_anchors = parts(anchors, profile)
    ratios = np.array([check["today_ms"][n] / recorded[n] for n in names])
    print(f"{args.csv.name}: {len(nets)} foreign networks, {len(names)} anchors (today / "
          f"recorded x{ratios.min():.2f}-x{ratios.max():.2f}); anchors' predicted shares:")
    for name, row in zip(names, p_anchors, strict=True):
        shares = row / row.sum()
        print(f"  {name:<28} " + " ".join(f"{g} {s:.2f}" for g, s in zip(GROUPS, shares,
                                                                         strict=True)))
    # the anchors' recorded times are what the profile's factors of 1 stand for: a group factor
    # scales a part of the recorded time, so the anchors' parts are taken at recorded scale
    p_recorded = p_anchors * (np.array([recorded[n] for n in names])
                              / p_anchors.sum(1))[:, None]
    print(f"{'setting':<30} {'factors (overhead compute activations weights)':<48} "
          f"within ±10%  oracle")
    for label, setting in SETTINGS.items():
        if label == "one factor":
            factors = np.full(len(GROUPS), np.median(ratios))
        else:
            factors = fit(p_recorded, ratios * p_recorded.sum(1), setting) / 1.0
        predicted = p_nets @ factors
        share = np.mean(np.abs(predicted / measured - 1) <= 0.10)
        best = fit(p_nets, measured, setting)
        oracle = np.mean(np.abs(p_nets @ best / measured - 1) <= 0.10)
        text = " ".join(f"{f:.2f}" for f in factors)
        print(f"{label:<30} {text:<48} {share:>10.0%}  {oracle:.0%} "
              f"({' '.join(f'{f:.2f}' for f in best)})")


if __name__ == "__main__":
    main()
