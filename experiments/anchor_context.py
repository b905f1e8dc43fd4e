"""Issue 16: do the drift check's anchors run alone as they run among other networks?

One command (about a minute; on a quiet machine)::

    PYTHONPATH=. python experiments/anchor_context.py

Times the eager profile's anchors three times two ways, by the profiles' timer and method, 8
rounds of bursts of 5: alone, as the drift check times them (a loop of nine networks), and
interleaved with the latency benchmark's 48 foreign networks (a loop of 57, as the fit set's run
and the benchmark time networks). Prints each way's median ratio to the anchors' recorded times
and, per anchor, alone / interleaved. Alone the anchors find their weights in cache; a check
whose recorded times were taken in another loop than its own reads the loop, not the machine.
Output quoted in experiments/README.md ("Small GEMMs, and a check that compares like with
like"): ``results/anchor_context_output.txt``.
"""

from __future__ import annotations

import datetime
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import load_profile  # noqa: E402
from budgetsearch.profiling.anchors import build_anchor, measure_anchors  # noqa: E402
from budgetsearch.profiling.timing import make_runner, time_runners  # noqa: E402


def main(profile_name: str = "cpu-2core-x86") -> None:
    profile = load_profile(profile_name, check=False)
    names = [a["name"] for a in profile.anchors["networks"]]
    recorded = {a["name"]: a["recorded_ms"] for a in profile.anchors["networks"]}
    print(f"anchors of {profile_name} ({profile.anchors.get('recorded', 'in the fit run')}), "
          f"{datetime.datetime.now():%Y-%m-%d %H:%M}")
    others = [make_runner(n["model"], n["x"], runtime="pytorch-eager", threads=1)
              for n in bench.foreign_networks(quick=False)]
    anchors = [make_runner(*build_anchor(n), runtime="pytorch-eager", threads=1) for n in names]
    for rep in range(3):
        alone = measure_anchors(names, runtime="pytorch-eager", threads=1, rounds=8, inner=5)
        mixed = dict(zip(names, time_runners(anchors + others, rounds=8, inner=5, warmup=1,
                                             threads=1, seed=rep)[:len(names)], strict=True))
        ratio_alone = statistics.median(alone[n] / recorded[n] for n in names)
        ratio_mixed = statistics.median(mixed[n] / recorded[n] for n in names)
        per_anchor = statistics.median(alone[n] / mixed[n] for n in names)
        print(f"pass {rep}: alone / recorded x{ratio_alone:.3f}, in a loop of "
              f"{len(anchors) + len(others)} / recorded x{ratio_mixed:.3f}, alone / in the loop "
              f"per anchor (median) x{per_anchor:.3f}",
              flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
