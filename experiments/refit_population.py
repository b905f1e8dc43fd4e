"""Issue 16: why do the drift check's re-fits over-read a speed-up? Population or moment.

One command (about four minutes)::

    PYTHONPATH=. python experiments/refit_population.py

On 2026-12-03 five of six re-fits read a speed-up 4–10 % larger than the 48 torchvision
networks then needed (experiments/README.md, "Re-fits over-read a speed-up"). Two readings fit:
the re-fit's draw of 36 fit-set networks drifts otherwise than torchvision's networks, or the 20 s
of the check, at the start of a run, run faster than the minutes after. This times, by the
re-fit's method and against the shipped eager AVX2 profile (no drift check), four blocks in a
row: the draw alone (as the check does), the torchvision networks alone (as the benchmark's
passes do), both interleaved in one loop, and the draw alone again; and prints per block the
draw's median ratio measured / predicted and its two re-fit factors, and the torchvision
networks' median ratio (what they "need"). Output quoted in experiments/README.md:
``results/refit_population_output.txt``.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import load_profile  # noqa: E402
from budgetsearch.profiling.recalibrate import (  # noqa: E402
    fit_factors,
    overhead_parts,
    recalibration_networks,
)
from budgetsearch.profiling.timing import make_runner, quietest_round, time_rounds  # noqa: E402

PROFILE = "cpu-2core-x86-avx2"


def main() -> None:
    profile = load_profile(PROFILE, check=False)
    draw = recalibration_networks()
    foreign = bench.foreign_networks(quick=False)
    eager = {"runtime": "pytorch-eager", "threads": 1}
    draw_runs = [make_runner(n.model, n.example_input, **eager) for n in draw]
    foreign_runs = [make_runner(n["model"], n["x"], **eager) for n in foreign]
    parts = overhead_parts(profile, draw)
    draw_pred = parts.sum(1)
    foreign_pred = bench.predict(foreign, profile)
    print(f"refit population, {datetime.datetime.now():%Y-%m-%d %H:%M}, {PROFILE} as shipped "
          f"(no drift check): {len(draw)} re-fit networks, {len(foreign)} torchvision networks")

    def block(label: str, runners: list, *, with_draw: bool, with_foreign: bool) -> None:
        times = quietest_round(time_rounds(runners, rounds=8, inner=5, warmup=2, threads=1))
        text = [f"{label:28s}"]
        if with_draw:
            ms = times[:len(draw)]
            overhead, work = fit_factors(parts, ms)
            text.append(f"re-fit draw x{np.median(ms / draw_pred):.3f} (factors x{overhead:.3f}"
                        f" / x{work:.3f})")
        if with_foreign:
            ms = times[-len(foreign):]
            text.append(f"torchvision networks need x{np.median(ms / foreign_pred):.3f}")
        print("  ".join(text))

    block("draw alone", draw_runs, with_draw=True, with_foreign=False)
    block("torchvision alone", foreign_runs, with_draw=False, with_foreign=True)
    block("both, interleaved", draw_runs + foreign_runs, with_draw=True, with_foreign=True)
    block("draw alone, again", draw_runs, with_draw=True, with_foreign=False)


if __name__ == "__main__":
    main()
