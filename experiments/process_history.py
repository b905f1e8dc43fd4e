"""Issue 16: how a process's history slows a network, and how long a network's weights take to
be cached (2026-12-05). Two measurements, in this order:

1. **History.** The nine drift-check anchors of a profile, timed (the profile's method, two
   snapshots, median) in a fresh process, then again after fit-set networks (the profile's CSV
   rows, shuffled) were built, run once and freed: 12, 24, 48, then all. Set
   ``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0`` (or ``--no-onednn``) to see the part oneDNN's caches hold.
2. **Caching.** torchvision networks at 3x32x32, each after 300 MB were written: the ratio of
   each of 24 back-to-back calls to the network's steady state (median over 8 repeats), and the
   last call more than 5% above it.

3. **Interleaved.** Twelve torchvision networks at 3x32x32 timed interleaved (the profiles'
   rounds) with 3 untimed calls per visit, then with one more per 3 MB of weights
   (``timing.SETTLE_MB``), each against its steady state alone (20 untimed calls).

    PYTHONPATH=. python experiments/process_history.py [PROFILE] [--no-onednn] [--skip-caching]
        [--only-interleaved]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gc
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from budgetsearch.cost import load_profile  # noqa: E402
from budgetsearch.profiling.networks import build_labelled  # noqa: E402
from budgetsearch.profiling.timing import make_runner, time_runners  # noqa: E402

CACHING = ("mobilenet_v2", "regnet_x_400mf", "efficientnet_b0", "googlenet", "densenet121",
           "resnet18", "resnet34", "resnet50")


def history(profile_name: str) -> None:
    profile = load_profile(profile_name, check=False)
    anchors = [a["name"] for a in profile.anchors["networks"]]
    runners = [make_runner(*build_labelled(a), runtime="pytorch-eager", threads=1)
               for a in anchors]
    base: np.ndarray | None = None

    def snapshot(step: str) -> None:
        nonlocal base
        t = np.median([time_runners(runners, rounds=6, inner=5, warmup=3, threads=1)
                       for _ in range(2)], axis=0)
        base = t if base is None else base
        print(f"  {step:<44} anchors x{np.median(t / base):.3f} of the fresh process",
              flush=True)

    snapshot("fresh process")
    path = Path(profile.path).with_suffix(".csv")
    rows = [r for r in csv.DictReader(path.open()) if r["runtime"] == "pytorch-eager"]
    random.Random(0).shuffle(rows)
    done = 0
    for upto in (12, 24, 48, len(rows)):
        nets = [build_labelled(r["network"]) for r in rows[done:upto]]
        time_runners([make_runner(m, x, runtime="pytorch-eager", threads=1) for m, x in nets],
                     rounds=1, inner=1, warmup=1, threads=1)
        del nets
        gc.collect()
        snapshot(f"after {upto} fit-set networks ran (freed)")
        done = upto


def caching() -> None:
    import torchvision

    x = torch.randn(1, 3, 32, 32)
    written = torch.empty(300_000_000 // 4)
    for name in CACHING:
        net = getattr(torchvision.models, name)().eval()
        mb = sum(p.numel() for p in net.parameters()) * 4 / 1e6
        calls: list[list[int]] = [[] for _ in range(24)]
        with torch.inference_mode():
            for _ in range(3):
                net(x)
            for _ in range(8):
                written.fill_(1.0)
                for i in range(24):
                    begin = time.perf_counter_ns()
                    net(x)
                    calls[i].append(time.perf_counter_ns() - begin)
        med = [statistics.median(c) / 1e6 for c in calls]
        steady = statistics.median(med[16:])
        slow = [i + 1 for i, m in enumerate(med) if m / steady > 1.05]
        print(f"  {name:<16} {mb:5.1f} MB  steady {steady:6.3f} ms  >5% slow up to call "
              f"{max(slow) if slow else 0:2d}: " + " ".join(f"{m / steady:.2f}" for m in med),
              flush=True)


INTERLEAVED = ("resnet18", "resnet34", "mobilenet_v2", "mobilenet_v3_large",
               "shufflenet_v2_x1_0", "squeezenet1_1", "mnasnet0_5", "efficientnet_b0",
               "regnet_x_400mf", "regnet_y_400mf", "googlenet", "densenet121")


def interleaved() -> None:
    import torchvision

    x = torch.randn(1, 3, 32, 32)
    runs = [make_runner(getattr(torchvision.models, n)().eval(), x, runtime="pytorch-eager",
                        threads=1) for n in INTERLEAVED]
    fixed = time_runners(runs, rounds=6, inner=5, warmup=3, threads=1, settle_mb=0.0)
    by_mb = time_runners(runs, rounds=6, inner=5, warmup=3, threads=1)
    alone = np.array([time_runners([r], rounds=6, inner=5, warmup=3, threads=1, settle=20)[0]
                      for r in runs])
    for name, f, b, a in zip(INTERLEAVED, fixed, by_mb, alone, strict=True):
        print(f"  {name:<20} alone {a:6.3f} ms; interleaved, 3 untimed x{f / a:.3f}, "
              f"by weight MB x{b / a:.3f}")
    print(f"  median: 3 untimed x{np.median(fixed / alone):.3f}, by weight MB "
          f"x{np.median(by_mb / alone):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default="cpu-2core-x86-xeon")
    parser.add_argument("--no-onednn", action="store_true")
    parser.add_argument("--skip-caching", action="store_true")
    parser.add_argument("--only-interleaved", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    if args.no_onednn:
        torch.backends.mkldnn.enabled = False
    print(f"process history and weight caching, {datetime.datetime.now():%Y-%m-%d %H:%M}, "
          f"{args.profile}, oneDNN {'off' if args.no_onednn else 'on'}")
    if args.only_interleaved:
        print("3. interleaved against alone")
        interleaved()
        return
    print("1. history")
    history(args.profile)
    if not args.skip_caching:
        print("2. caching (ratio of each call to the steady state, after 300 MB were written)")
        caching()


if __name__ == "__main__":
    main()
