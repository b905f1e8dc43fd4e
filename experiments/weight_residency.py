"""Issue 16: does a MB of weights cost more once a network's weights outgrow the cache?
(2026-12-04, 21:10; tried as a profile table, not kept: experiments/README.md, "The night of
2026-12-04".)

Chains of 1024->1024 1x1 convs on a 1x1 map (GEMVs, 4.2 MB of weights each), 2 to 64 of them,
timed by the profiles' method (steady state after untimed calls, interleaved rounds); prints
each chain's ms per MB of weights and GB/s.

    PYTHONPATH=. python experiments/weight_residency.py [ROUNDS]
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from budgetsearch.profiling.timing import make_runner, time_runners

WIDTH = 1024
LENGTHS = (2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64)


def main() -> None:
    torch.set_num_threads(1)
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    runners, sizes = [], []
    for length in LENGTHS:
        chain = nn.Sequential(*[nn.Conv2d(WIDTH, WIDTH, 1, bias=False)
                                for _ in range(length)]).eval()
        runners.append(make_runner(chain, torch.randn(1, WIDTH, 1, 1), runtime="pytorch-eager",
                                   threads=1))
        sizes.append(length * WIDTH * WIDTH * 4 / 1e6)
    for mb, ms in zip(sizes, time_runners(runners, rounds=rounds, inner=5, warmup=2),
                      strict=True):
        print(f"{mb:7.1f} MB  {ms:8.3f} ms  {ms / mb * 1000:6.2f} us/MB  {mb / ms:6.1f} GB/s")


if __name__ == "__main__":
    main()
