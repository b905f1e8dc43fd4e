"""Issue 16: how far does one drift-check snapshot read from the quietest of three, which is
what a profile records (``fit.ANCHOR_SNAPSHOTS``)? Back-to-back snapshots of a profile's anchors,
timed as the check times them (``anchors.measure_anchors`` with the profile's rounds and
bursts), each as its median ratio to the recorded times; then the median single snapshot
against the median quietest of each three in a row. A single snapshot reading above the
quietest of three by a steady margin is a bias the check brings to every reading.

    PYTHONPATH=. python experiments/anchor_snapshots.py [PROFILE] [--snapshots 12]
        [--after-building]

Default profile: this machine's shipped eager one. Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import DeviceProfile, load_profile  # noqa: E402
from budgetsearch.profiling.anchors import measure_anchors  # noqa: E402


def snapshot_ratio(profile: DeviceProfile) -> float:
    """One snapshot of ``profile``'s anchors as the drift check takes it (its rounds and bursts):
    the median ratio of today's times to the recorded ones."""
    recorded = {a["name"]: float(a["recorded_ms"]) for a in profile.anchors["networks"]}
    timing = {k: int(profile.anchors[k]) for k in ("rounds", "inner") if k in profile.anchors}
    today = measure_anchors(list(recorded), runtime=profile.runtime, threads=profile.threads,
                            **timing)
    return statistics.median(today[n] / recorded[n] for n in recorded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default=None)
    parser.add_argument("--snapshots", type=int, default=12)
    parser.add_argument("--after-building", action="store_true",
                        help="first build the benchmark's 52 networks and keep them alive (the "
                        "process the benchmark's check runs in)")
    args = parser.parse_args()
    bench.one_thread_quietly()
    kept = []
    if args.after_building:
        kept = bench.foreign_networks(quick=False) + bench.compact_networks()
        print(f"built and kept {len(kept)} networks first")
    name = args.profile or bench.shipped_profiles_of_this_machine()[0]
    profile = load_profile(name, check=False)
    load = bench.LoadMeter()
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"anchor snapshots of {name} ({profile.runtime}), {now}; recorded: "
          f"{profile.anchors.get('recorded', 'in the fit run')}")
    ratios = []
    for k in range(args.snapshots):
        ratio = snapshot_ratio(profile)
        ratios.append(ratio)
        print(f"snapshot {k + 1:2d}: x{ratio:.3f}")
    triples = [min(ratios[i:i + 3]) for i in range(0, len(ratios) - 2, 3)]
    single, quietest = statistics.median(ratios), statistics.median(triples)
    print(f"median single snapshot x{single:.3f}; median quietest of three x{quietest:.3f}: "
          f"one snapshot reads {100 * (single / quietest - 1):+.1f}% against the quietest of "
          f"three; spread of singles x{min(ratios):.3f}-x{max(ratios):.3f}")
    print(f"load: {load.others()}")
    del kept


if __name__ == "__main__":
    main()
