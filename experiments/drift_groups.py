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

    PYTHONPATH=. python experiments/drift_groups.py            # times everything now (~3 min)
    PYTHONPATH=. python experiments/drift_groups.py --replay   # a latency_accuracy.py run's times

With timing, the same factors are also fitted to draws of the fit-set generator's networks timed
now (what the drift check's re-fit, budgetsearch/profiling/recalibrate.py, times: 36 by
default), to choose how many groups such a draw can tell apart.
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
    "overhead | compute, act. | weights": (("overhead",), ("compute", "activations"),
                                           ("weights",)),
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


def evaluate(label: str, p_fit: np.ndarray, target: np.ndarray, p_nets: np.ndarray,
             measured: np.ndarray) -> None:
    """Fit every setting on (p_fit, target), print the share of the foreign networks within
    ±10 % it leaves, beside the oracle (the setting fitted on the foreign networks)."""
    print(f"fitted on {label}:")
    print(f"  {'setting':<30} {'factors (overhead compute activations weights)':<46} "
          f"within ±10%  oracle (its factors)")
    for name, setting in SETTINGS.items():
        factors = fit(p_fit, target, setting)
        share = np.mean(np.abs(p_nets @ factors / measured - 1) <= 0.10)
        best = fit(p_nets, measured, setting)
        oracle = np.mean(np.abs(p_nets @ best / measured - 1) <= 0.10)
        print(f"  {name:<30} {' '.join(f'{f:.2f}' for f in factors):<46} {share:>10.0%}  "
              f"{oracle:.0%} ({' '.join(f'{f:.2f}' for f in best)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    results = Path(__file__).resolve().parent / "results"
    parser.add_argument("--replay", action="store_true",
                        help="no timing: the foreign networks' times and the anchors' from a "
                             "latency_accuracy.py run (--csv, --summary)")
    parser.add_argument("--csv", type=Path, default=results / "latency_accuracy.csv")
    parser.add_argument("--summary", type=Path,
                        default=results / "latency_accuracy_summary.json")
    parser.add_argument("--profile", default="cpu-2core-x86")
    parser.add_argument("--refit-networks", type=int, nargs="+", default=[36, 72],
                        help="draw sizes of the re-fit (recalibrate.py) to try")
    args = parser.parse_args()
    import datetime
    import json

    profile = load_profile(args.profile, check=False)
    nets = foreign_networks(quick=False)
    p_nets = parts([n["inventory"] for n in nets], profile, [n["kept"] for n in nets])
    recorded = {a["name"]: float(a["recorded_ms"]) for a in profile.anchors["networks"]}
    names = list(recorded)
    p_anchors = parts([layer_inventory(*build_anchor(name)) for name in names], profile)
    # an anchor's parts at its recorded time: the factors scale what was recorded
    p_recorded = p_anchors * (np.array([recorded[n] for n in names]) / p_anchors.sum(1))[:, None]
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}, profile {args.profile}")
    if args.replay:
        check = json.loads(args.summary.read_text())["profiles"][args.profile]["check"]
        rows = pd.read_csv(args.csv)
        rows = rows[rows.profile == args.profile].set_index("network")
        keep = [i for i, n in enumerate(nets) if n["network"] in rows.index]
        nets, p_nets = [nets[i] for i in keep], p_nets[keep]
        measured = rows.loc[[n["network"] for n in nets], "measured_ms"].to_numpy()
        today = np.array([check["today_ms"][n] for n in names])
        print(f"replay of {args.csv.name}: {len(nets)} foreign networks")
        evaluate("the anchors (the check's own times)", p_recorded, today, p_nets, measured)
        return
    from budgetsearch.profiling import recalibrate
    from budgetsearch.profiling.anchors import measure_anchors
    from experiments.latency_accuracy import build_runners, measure

    runners = build_runners(nets, profile)
    draws = {count: recalibrate.recalibration_networks(count)
             for count in sorted(args.refit_networks)}
    # one timing of each, the re-fit's draws first (as a check runs before the networks are)
    started = datetime.datetime.now()
    anchors_ms = measure_anchors(names, runtime=profile.runtime,
                                 threads=int(profile.provenance.get("threads", 1)),
                                 rounds=int(profile.anchors.get("rounds", 8)),
                                 inner=int(profile.anchors.get("inner", 5)))
    draw_ms = {count: recalibrate.time_draw(profile, draw) for count, draw in draws.items()}
    measured = measure(runners, profile, rounds=5)
    print(f"timed in {(datetime.datetime.now() - started).total_seconds():.0f} s: "
          f"{len(nets)} foreign networks (5 rounds), draws of {list(draws)} (the re-fit's "
          f"rounds), the anchors")
    evaluate("the anchors", p_recorded, np.array([anchors_ms[n] for n in names]), p_nets,
             measured)
    for count, draw in draws.items():
        p_draw = parts([n.inventory for n in draw], profile, [n.kept_channels for n in draw])
        evaluate(f"{count} fit-generator networks (recalibrate.py's draw)", p_draw,
                 draw_ms[count], p_nets, measured)


if __name__ == "__main__":
    main()
