"""Issue 16: what a dense conv on PyTorch eager's GEMM path costs by its output area.

One command (about 20 s; on a quiet machine, it prints the day and the CPU)::

    PYTHONPATH=. python experiments/small_gemm.py

Times five dense convs that PyTorch eager runs on its own im2col + GEMM path (one thread, batch
1; 1×1 at stride 1, or 3×3 on an input under 20,480 elements) on a 1×N input for N = 1..16 and
a few larger N, by the profiles' own timer and method (:mod:`budgetsearch.profiling.timing`),
and prints µs and µs per MB of weights. The per-MB price does not follow the FLOPs: it is flat
(and several times the N = 1 price) over 2..15 positions, where MKL repacks the weights each
call, then grows with N. What the eager profile's small-GEMM table
(:class:`budgetsearch.cost.SmallGemm`) prices. Output quoted in experiments/README.md
("Small GEMMs"): ``results/small_gemm_output.txt``.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from budgetsearch.profiling.anchors import cpu_name  # noqa: E402
from budgetsearch.profiling.timing import make_runner, time_runners  # noqa: E402

CONVS = [(256, 256, 1), (512, 512, 1), (1024, 512, 1), (128, 128, 3), (64, 64, 1)]
AREAS = [*range(1, 17), 20, 25, 32, 49, 64]


def main() -> None:
    print(f"small GEMMs on PyTorch eager's GEMM path, {datetime.datetime.now():%Y-%m-%d %H:%M}, "
          f"{cpu_name()}, torch {torch.__version__}, 1 thread, "
          f"MKL {torch.backends.mkl.is_available()}")
    runners, keys = [], []
    torch.manual_seed(0)
    for cin, cout, k in CONVS:
        conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False).eval()
        for n in AREAS:
            runners.append(make_runner(conv, torch.randn(1, cin, 1, n), runtime="pytorch-eager",
                                       threads=1))
            keys.append((cin, cout, k, n))
    times = dict(zip(keys, time_runners(runners, rounds=5, inner=5, warmup=2), strict=True))
    print("N    " + "".join(f"{f'{a}->{b} {k}x{k}':>24s}" for a, b, k in CONVS))
    for n in AREAS:
        cells = []
        for cin, cout, k in CONVS:
            us = times[(cin, cout, k, n)] * 1e3
            megabytes = cin * cout * k * k * 4 / 1e6
            cells.append(f"{us:8.1f} us {us / megabytes:6.0f} us/MB")
        print(f"{n:<4d} " + "".join(f"{c:>24s}" for c in cells))


if __name__ == "__main__":
    main()
