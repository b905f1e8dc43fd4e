"""Issue 16: how slow are a network's first calls after another network ran, and does a
process's history move its steady state? (2026-12-04, 20:32: the reason for
``timing.SETTLE``.)

Times 22 torchvision networks (the benchmark's quick set; ``--anchors``: the shipped eager
profile's nine anchors instead) in rounds of bursts of 24 back-to-back calls, each burst right
after another network's, and prints each call position's median time over the burst's steady
state (the median of calls 13-24), with the median of the first 5 (the old burst statistic);
in three process states: bare, after building the benchmark's 52 networks (each called once),
and after freeing them.

    PYTHONPATH=. python experiments/burst_position.py [--anchors]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import load_profile  # noqa: E402
from budgetsearch.profiling.anchors import build_anchor  # noqa: E402
from budgetsearch.profiling.timing import make_runner  # noqa: E402

BURST = 24


def bursts(runners: list, rounds: int = 3) -> np.ndarray:
    per = np.zeros((len(runners), rounds, BURST))
    for r in range(rounds):
        for i, run in enumerate(runners):
            for k in range(BURST):
                begin = time.perf_counter_ns()
                run()
                per[i, r, k] = (time.perf_counter_ns() - begin) * 1e-6
    return per


def summary(state: str, per: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    steady = np.median(per[:, :, 12:], axis=2).min(axis=1)
    first5 = np.median(per[:, :, :5], axis=2).min(axis=1)
    position = np.median(per.min(axis=1) / steady[:, None], axis=0)
    print(f"{state:<6} call 1-10 / steady state: {' '.join(f'{p:.2f}' for p in position[:10])}"
          f" | median of the first 5 / steady x{np.median(first5 / steady):.3f}")
    return steady, first5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", action="store_true")
    args = parser.parse_args()
    bench.one_thread_quietly()
    torch.set_num_threads(1)
    if args.anchors:
        profile = load_profile(bench.shipped_profiles_of_this_machine()[0], check=False)
        pairs = [build_anchor(a["name"]) for a in profile.anchors["networks"]]
    else:
        pairs = [(n["model"], n["x"]) for n in bench.foreign_networks(quick=True)]
    runners = [make_runner(m, x, runtime="pytorch-eager", threads=1) for m, x in pairs]
    for run in runners:
        for _ in range(3):
            run()
    bare = summary("bare", bursts(runners))
    others = bench.foreign_networks(quick=False) + bench.compact_networks()
    kept = [make_runner(n["model"], n["x"], runtime="pytorch-eager", threads=1) for n in others]
    for run in kept:
        run()
    busy = summary("busy", bursts(runners))
    del kept, others
    gc.collect()
    freed = summary("freed", bursts(runners))
    for state, (steady, first5) in (("busy", busy), ("freed", freed)):
        print(f"{state} / bare: steady state x{np.median(steady / bare[0]):.3f}, median of the "
              f"first 5 x{np.median(first5 / bare[1]):.3f}")


if __name__ == "__main__":
    main()
