"""Issue 16: does the drift re-fit read this machine slower for timing its draw over fewer rounds?

The profile's networks (and the benchmark's passes) take a network's time as its minimum over 8
interleaved rounds; the re-fit took 3 rounds (about 6 s for its 36 networks). On a machine whose
speed swings from one few seconds to the next, a minimum over fewer rounds in a shorter window
reads slower. Times the re-fit's draw over 8 rounds, three times, and compares the minimum over
the first 3 rounds with the minimum over all 8 (eager, one thread, the shipped AVX2 profile's).

    PYTHONPATH=. python experiments/refit_rounds.py

Output quoted in experiments/README.md: ``results/refit_rounds_output.txt``.
"""

from __future__ import annotations

import time

import numpy as np

from budgetsearch.profiling.recalibrate import INNER, WARMUP, recalibration_networks
from budgetsearch.profiling.timing import make_runner, time_rounds


def main() -> None:
    networks = recalibration_networks()
    runners = [make_runner(n.model, n.example_input, runtime="pytorch-eager", threads=1)
               for n in networks]
    print(f"{time.strftime('%Y-%m-%d %H:%M')}: {len(runners)} networks of the re-fit's draw, "
          f"8 interleaved rounds of {INNER} calls, three times")
    for repeat in range(3):
        started = time.time()
        per_round = time_rounds(runners, rounds=8, inner=INNER, warmup=WARMUP, threads=1,
                                seed=repeat)
        first3, all8 = per_round[:, :3].min(axis=1), per_round.min(axis=1)
        print(f"repeat {repeat}: {time.time() - started:.0f} s; minimum over the first 3 rounds "
              f"/ over all 8: median x{np.median(first3 / all8):.3f}, 90th percentile "
              f"x{np.percentile(first3 / all8, 90):.3f}")


if __name__ == "__main__":
    main()
