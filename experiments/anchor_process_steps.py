"""Issue 16: which step of the benchmark's process slows its eager anchors? The benchmark's
check after building read them 12-25% slower than its check before building (2026-12-04,
19:26-19:33). One process walks the benchmark's steps and takes anchor snapshots (as the check
times them) after each: bare; after a drift re-fit's draw is built and timed; after the 52
foreign and compact networks are built; after their runners; after one interleaved timing pass
of them; after they are freed; after glibc's ``malloc_trim(0)``.

    PYTHONPATH=. python experiments/anchor_process_steps.py [PROFILE] [--snapshots 5]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402
from anchor_snapshots import snapshot_ratio  # noqa: E402

from budgetsearch.cost import load_profile  # noqa: E402
from budgetsearch.profiling.recalibrate import recalibration_networks, time_draw  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default=None)
    parser.add_argument("--snapshots", type=int, default=5)
    args = parser.parse_args()
    bench.one_thread_quietly()
    name = args.profile or bench.shipped_profiles_of_this_machine()[0]
    profile = load_profile(name, check=False)
    load = bench.LoadMeter()
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"anchor snapshots of {name} along the benchmark's steps, {now}")

    def snapshots(step: str) -> None:
        ratios = [snapshot_ratio(profile) for _ in range(args.snapshots)]
        print(f"{step:<44} median x{statistics.median(ratios):.3f} "
              f"(x{min(ratios):.3f}-x{max(ratios):.3f})")

    snapshots("bare")
    draw = recalibration_networks()
    time_draw(profile, draw)
    snapshots("after a re-fit's draw, built and timed")
    networks = bench.foreign_networks(quick=False) + bench.compact_networks()
    snapshots(f"after building {len(networks)} networks")
    runners = bench.build_runners(networks, profile)
    snapshots("after their runners")
    bench.measure(runners, profile, rounds=1)
    snapshots("after one interleaved pass of them")
    del runners, networks, draw
    gc.collect()
    snapshots("after freeing them")
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc: hand free heap pages back to the system
    snapshots("after malloc_trim(0)")
    print(f"load: {load.others()}")


if __name__ == "__main__":
    main()
