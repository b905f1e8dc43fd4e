"""Issue 16: what one pooling call costs in PyTorch eager, by window, stride and map size.

One command (seconds)::

    PYTHONPATH=. python experiments/pool_reads.py

Times (median of 7 bursts of 50 calls, one thread, batch 1) max and average pools as published
networks run them (3×3 stride 2 with ceil mode or padding, 2×2, 3×3 stride 1) and a ReLU on the
same maps, and prints ns per input read (output elements × window area): the work the latency
model prices a pool by (``LayerRecord.pool_taps``). Output ``results/pool_reads_output.txt``.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

POOLS = {
    "max 3x3/2 ceil": nn.MaxPool2d(3, 2, ceil_mode=True), "max 3x3/2 pad": nn.MaxPool2d(3, 2, 1),
    "max 2x2/2": nn.MaxPool2d(2), "max 3x3/1": nn.MaxPool2d(3, 1, 1),
    "avg 2x2/2": nn.AvgPool2d(2), "avg 3x3/1": nn.AvgPool2d(3, 1, 1),
}
MAPS = ((16, 16), (64, 16), (16, 32), (480, 8), (192, 16), (64, 32), (96, 31), (256, 15))


def per_call_us(module: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        for _ in range(10):
            module(x)
        bursts = []
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(50):
                module(x)
            bursts.append((time.perf_counter() - start) / 50 * 1e6)
    return statistics.median(bursts)


def main() -> None:
    torch.set_num_threads(1)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, one thread; ns per input read (µs per call)")
    print(f"{'C x H x W':>14} " + " ".join(f"{k:>16}" for k in [*POOLS, "relu (per elem)"]))
    for channels, size in MAPS:
        x = torch.randn(1, channels, size, size)
        cells = []
        for pool in POOLS.values():
            us = per_call_us(pool, x)
            window = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
            reads = pool(x).numel() * window * window
            cells.append(f"{us * 1e3 / reads:6.2f} ({us:6.1f})")
        us = per_call_us(nn.ReLU(), x)
        cells.append(f"{us * 1e3 / x.numel():6.2f} ({us:6.1f})")
        print(f"{f'{channels}x{size}x{size}':>14} " + " ".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()
