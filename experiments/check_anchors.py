"""Issue 16: which re-timed networks tell the day's drift of the networks a user prices?

One command (≈ 3 minutes, a quiet machine)::

    PYTHONPATH=. python experiments/check_anchors.py

For each shipped CPU profile, times in one interleaved run (the profiles' own timer and method)
its drift-check anchors (six hand-built networks until commit d54f842, held-out fit-set networks
since), 18 of the profile's held-out fit-set networks (two per family, whose
profiling-day times are in the measurements CSV) and the 48 foreign torchvision networks of
``latency_accuracy.py``, then prints three factors and the share of the foreign networks within
±10 % each leaves:

* the anchors' median ratio today / recorded: what the automatic check applies;
* the held-out networks' median ratio today / recorded: a check on fit-set networks;
* the foreign networks' own median ratio measured / predicted (an oracle: it also holds the
  model's bias on these families).

With ``--loops`` it instead checks the shipped profiles' own anchors the way the drift check
does (alone, in a short loop: ``measure_anchors``) against all 54 held-out networks in one long
loop and the foreign networks in another, twice: how far a short loop of a few networks runs
from the long interleaved one the profile and the benchmark time in.

Output quoted in experiments/README.md ("One drift factor, not two"):
``results/check_anchors_output.txt`` (two runs, 07:29 and 07:31, on the six hand-built anchors the
profiles carried then: commit d54f842 and before; from the next commit the anchors are held-out
fit-set networks, and the first two factors nearly coincide); ``--loops``:
``results/check_anchors_loops_output.txt`` (08:08, on the profiles measured at 07:54).
"""

from __future__ import annotations

import datetime
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def _setup(title: str) -> tuple[Any, Any, pd.DataFrame, list[Any], list[dict[str, Any]]]:
    """(the benchmark module, its load meter, the profiles' measurements, the 54 held-out
    networks, the foreign networks), with the run's title printed."""
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(HERE))
    import latency_accuracy as bench

    from budgetsearch.profiling.fit import build_fit_set

    meter = bench.LoadMeter()
    print(f"{title}, {datetime.datetime.now():%Y-%m-%d %H:%M}")
    table = pd.read_csv(HERE.parent / "hw_profiles" / "cpu-2core-x86.csv")
    _, holdout = build_fit_set(216, 54, seed=0)
    return bench, meter, table, holdout, bench.foreign_networks(False)


def _print_load(meter: Any) -> None:
    load = meter.others()
    print(f"\nload over the run ({load['window_s']:.0f} s): other processes "
          f"{load['others_pct']:.0f}% (= {load['others_cores']:.2f} of 2 cores)")


def main() -> None:
    from budgetsearch.cost import load_profile
    from budgetsearch.profiling.anchors import build_anchor

    bench, meter, table, holdout, foreign = _setup("check_anchors")
    sample = [n for i, n in enumerate(holdout)
              if sum(m.family == n.family for m in holdout[:i]) < 2]
    for name in ("cpu-2core-x86", "cpu-2core-x86-ort"):
        profile = load_profile(name, check=False)
        recorded_anchor = {a["name"]: float(a["recorded_ms"]) for a in profile.anchors["networks"]}
        anchors = [dict(zip(("model", "x"), build_anchor(a), strict=True)) for a in recorded_anchor]
        rows = table[(table.runtime == profile.runtime) & (table.set == "holdout")]
        recorded_fit = dict(zip(rows.network, rows.measured_ms, strict=True))
        held = [{"model": n.model, "x": n.example_input} for n in sample]
        everything = anchors + held + foreign
        runners = bench.build_runners(everything, profile)
        times = bench.measure(runners, profile, rounds=8)
        del runners
        a_today = times[:len(anchors)]
        h_today = times[len(anchors):len(anchors) + len(held)]
        f_today = times[len(anchors) + len(held):]
        anchor_ratio = np.array([t / r for t, r in zip(a_today, recorded_anchor.values(),
                                                       strict=True)])
        held_ratio = np.array([t / recorded_fit[n.label] for t, n in zip(h_today, sample,
                                                                         strict=True)])
        predicted = bench.predict(foreign, profile)
        need = f_today / predicted
        print(f"\n== {name} ({profile.runtime})")
        print("anchors today / recorded: " + ", ".join(
            f"{a} x{r:.3f}" for a, r in zip(recorded_anchor, anchor_ratio, strict=True)))
        print(f"held-out fit networks today / recorded: median x{np.median(held_ratio):.3f} "
              f"(range x{held_ratio.min():.3f}..x{held_ratio.max():.3f}, {len(held)} networks)")
        for label, factor in (("anchors' median (the check)", np.median(anchor_ratio)),
                              ("held-out networks' median", np.median(held_ratio)),
                              ("foreign networks' own (oracle)", np.exp(np.median(np.log(need))))):
            errors = 100 * (predicted * factor - f_today) / f_today
            print(f"  {label:<32} x{factor:.3f}: {np.mean(np.abs(errors) <= 10):.0%} within ±10%,"
                  f" {np.mean(np.abs(errors) <= 20):.0%} within ±20%, median signed "
                  f"{np.median(errors):+.1f}%")
    _print_load(meter)


def loops() -> None:
    """The drift check's factor, the held-out networks' and the foreign networks' own, twice."""
    from budgetsearch.cost import load_profile
    from budgetsearch.profiling.anchors import measure_anchors

    bench, meter, table, holdout, foreign = _setup("check_anchors --loops")
    for name in ("cpu-2core-x86", "cpu-2core-x86-ort"):
        profile = load_profile(name, check=False)
        recorded = {a["name"]: float(a["recorded_ms"]) for a in profile.anchors["networks"]}
        rows = table[(table.runtime == profile.runtime) & (table.set == "holdout")]
        held_ms = dict(zip(rows.network, rows.measured_ms, strict=True))
        threads = int(profile.provenance.get("threads", 1))
        print(f"\n== {name} ({profile.runtime}); anchors: {profile.anchors.get('method', '')}")
        predicted = bench.predict(foreign, profile)
        for rep in range(2):
            today = measure_anchors(list(recorded), runtime=profile.runtime, threads=threads)
            check = float(np.median([today[a] / recorded[a] for a in recorded]))
            runners = bench.build_runners(
                [{"model": n.model, "x": n.example_input} for n in holdout], profile)
            held = float(np.median([t / held_ms[n.label] for t, n in zip(
                bench.measure(runners, profile, rounds=2), holdout, strict=True)]))
            runners = bench.build_runners(foreign, profile)
            need = float(np.exp(np.median(np.log(
                bench.measure(runners, profile, rounds=4) / predicted))))
            del runners
            print(f"  pass {rep + 1}: the check (its anchors alone) x{check:.3f}; all 54 held-out "
                  f"in one loop x{held:.3f}; the foreign networks' own factor x{need:.3f}")
    _print_load(meter)


if __name__ == "__main__":
    loops() if "--loops" in sys.argv[1:] else main()
