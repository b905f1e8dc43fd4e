"""Issue 16: how much faster does each fit-set network run alone in a process of its own than
in the profiling run's process of 270? (2026-12-04, 21:58-22:02.)

Each of the profile's held-out networks is built and timed in a new Python process of its own
(the profiles' method, 8 rounds), against its time in the fit run (the measurements CSV beside
the profile); prints each ratio and their medians by fit-run time, writes ``--out`` (CSV), and,
with ``--factors``, the two drift factors (per-call overhead, the rest) that make the profile
as fitted (``--fitted``: its YAML before ``provenance.process_state``) price those own-process
times (``recalibrate.fit_factors``, as a drift re-fit does).

    PYTHONPATH=. python experiments/process_state_holdout.py [PROFILE] [--out CSV]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from budgetsearch.cost import layer_inventory, load_profile
from budgetsearch.profiling.networks import build_labelled
from budgetsearch.profiling.recalibrate import fit_factors, overhead_parts
from budgetsearch.profiling.timing import RUNTIME_SUFFIX, in_new_process

CHILD = """
import sys, torch
from budgetsearch.profiling.networks import build_labelled
from budgetsearch.profiling.timing import make_runner, time_runners
torch.set_num_threads(1)
model, x = build_labelled(sys.argv[1])
run = make_runner(model.eval(), x, runtime="pytorch-eager", threads=1)
print(float(time_runners([run], rounds=8, inner=5, warmup=3, threads=1)[0]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default="cpu-2core-x86-xeon")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--fitted", default=None, help="the profile's YAML before its process "
                        "factor, to fit two factors to the own-process times")
    parser.add_argument("--times", type=Path, default=None, help="a CSV this script wrote: use "
                        "its times instead of timing again")
    parser.add_argument("--rescore", type=Path, nargs="*", default=[], help="benchmark CSVs "
                        "(latency_accuracy_*.csv with fresh_ms) to score the shipped profile and "
                        "the two-factor one on (needs --fitted)")
    args = parser.parse_args()
    profile = load_profile(args.profile, check=False)
    # the measurements beside the profile, named as `budgetsearch profile` names them (no suffix)
    suffix = RUNTIME_SUFFIX.get(profile.runtime, "")
    table = Path(str(profile.path)).with_name(
        f"{profile.name.removesuffix(suffix) if suffix else profile.name}.csv")
    rows = pd.read_csv(table)
    held = rows[(rows["runtime"] == profile.runtime) & (rows["set"] == "holdout")]
    fresh = []
    if args.times is not None:
        saved = pd.read_csv(args.times).set_index("network")
        fresh = [float(saved.loc[label, "fresh_ms"]) for label in held["network"]]
    for label, ms in zip(held["network"], held["measured_ms"], strict=True):
        if args.times is not None:
            continue
        fresh.append(float(in_new_process(CHILD, [label], what=f"timing {label}")))
        print(f"{label:32s} fit run {ms:8.3f} ms, own process {fresh[-1]:8.3f} ms, "
              f"x{fresh[-1] / ms:.3f}", flush=True)
    fit_ms, own = held["measured_ms"].to_numpy(), np.array(fresh)
    ratio = own / fit_ms
    print(f"median x{np.median(ratio):.3f}; by fit-run time: < 2 ms x"
          f"{np.median(ratio[fit_ms < 2]):.3f}, 2-8 ms x"
          f"{np.median(ratio[(fit_ms >= 2) & (fit_ms < 8)]):.3f}, ≥ 8 ms x"
          f"{np.median(ratio[fit_ms >= 8]):.3f}")
    if args.out:
        pd.DataFrame({"network": held["network"], "fit_ms": fit_ms, "fresh_ms": own}).to_csv(
            args.out, index=False)
    if args.fitted:
        fitted = load_profile(args.fitted, check=False)
        networks = []
        for label in held["network"]:
            model, x = build_labelled(label)
            networks.append(SimpleNamespace(inventory=layer_inventory(model.eval(), x),
                                            kept_channels=None))
        overhead, work = fit_factors(overhead_parts(fitted, networks), own)
        print(f"two factors that price the own-process times: per-call overhead x{overhead:.3f},"
              f" the rest x{work:.3f}")
        rescore(args.rescore, profile, fitted.rescaled(overhead=overhead, work=work))


def rescore(tables: list[Path], shipped: Any, two: Any) -> None:
    """Each table's foreign networks (own-process times) priced by ``shipped`` and ``two``, no
    drift check: within ±10%, median signed error, centred."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from rescore_profiles import foreign_networks, price_ratios

    foreign = foreign_networks()
    for table in tables:
        rows = pd.read_csv(table)
        rows = rows[rows["profile"] == shipped.name]
        for label, profile in (("shipped", shipped), ("two factors", two)):
            ratio = np.array(list(price_ratios(rows, profile, foreign, "fresh_ms").values()))
            print(f"{table.name} {label:<12}: {np.mean(abs(ratio - 1) <= 0.1):.0%} within ±10%, "
                  f"median {100 * (np.median(ratio) - 1):+.1f}%, centred "
                  f"{np.mean(abs(ratio / np.median(ratio) - 1) <= 0.1):.0%}")


if __name__ == "__main__":
    main()
