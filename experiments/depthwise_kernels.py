"""Issue 16: which oneDNN kernel runs a depthwise conv, and what it costs (PyTorch eager, one
thread).

One command (under a minute; time it on a quiet machine)::

    PYTHONPATH=. python experiments/depthwise_kernels.py

For each depthwise conv of a fixed list (channels, kernel, stride, map; same padding): its time
by the profiles' timer and method (:func:`budgetsearch.profiling.timing.time_runners`, 20
interleaved rounds of 10 calls), the implementation oneDNN's verbose log names for it
(``jit_dw``: its depthwise kernel; ``gemm:jit``: one im2col + GEMM per channel, run in a
subprocess so that the log can be read), and what
:func:`budgetsearch.cost.dispatch.onednn_depthwise_on_gemm` says. Output quoted in
experiments/README.md ("Depthwise convs that oneDNN runs as GEMMs"):
``results/depthwise_kernels_output.txt``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cost"))

from test_dispatch import _onednn_implementations  # noqa: E402

from budgetsearch.cost.dispatch import onednn_depthwise_on_gemm  # noqa: E402
from budgetsearch.profiling.fit import simd_channel_block  # noqa: E402
from budgetsearch.profiling.timing import make_runner, time_runners  # noqa: E402

CONVS = [(1152, 3, 1, 1), (1152, 5, 1, 1), (672, 7, 1, 1), (672, 7, 1, 2), (480, 5, 2, 2),
         (480, 5, 1, 2), (240, 7, 2, 4), (240, 7, 1, 4), (120, 5, 2, 8), (96, 5, 1, 32)]


def main() -> None:
    torch.set_num_threads(1)
    cases = [{"input": [size, size], "kernel": [k, k], "padding": [k // 2] * 2,
              "dilation": [1, 1], "stride": [s, s], "channels": c, "multiplier": 1}
             for c, k, s, size in CONVS]
    kernels = _onednn_implementations(cases, threads=1)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, one thread")
    print("channels kernel stride map     µs  oneDNN kernel          rule says")
    runners = [make_runner(nn.Conv2d(c, c, k, s, k // 2, groups=c, bias=False).eval(),
                           torch.randn(1, c, size, size), runtime="pytorch-eager", threads=1)
               for c, k, s, size in CONVS]
    times = time_runners(runners, rounds=20, inner=10, warmup=2, threads=1)
    for (c, k, s, size), case, kernel, ms in zip(CONVS, cases, kernels, times, strict=True):
        rule = onednn_depthwise_on_gemm(input_hw=case["input"], kernel=case["kernel"],
                                        stride=case["stride"], padding=case["padding"],
                                        dilation=case["dilation"],
                                        lanes=simd_channel_block())
        micros = 1e3 * float(ms)
        print(f"{c:8d} {k}x{k}    {s:6d} {size:2d}x{size:<2d} {micros:6.1f}  "
              f"{kernel:22s} {'GEMMs' if rule else 'depthwise kernel'}")


if __name__ == "__main__":
    main()
