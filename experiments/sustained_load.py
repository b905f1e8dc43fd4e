"""Issue 16: does this VM slow down under sustained one-core load (a boost budget), and recover
idle? ResNet-18 (3x32x32, eager, one thread) back to back in 5 s windows: busy 180 s, idle 90 s,
busy 40 s, then at 50 % duty 60 s; each window's minimum, median and the hypervisor's steal.

    PYTHONPATH=. python experiments/sustained_load.py

Output quoted in experiments/README.md: ``results/sustained_load_output.txt``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

WINDOW_S = 5.0


def _steal_and_total() -> tuple[float, float]:
    """(steal, total) jiffies of all CPUs."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[7], sum(fields)


def phase(name: str, seconds: float, run: Callable[[], None], pause_s: float = 0.0) -> None:
    """Time ``run`` back to back (``pause_s`` between calls) and print each window."""
    started = time.time()
    rows = []
    while time.time() - started < seconds:
        window = time.time()
        steal0, total0 = _steal_and_total()
        times = []
        while time.time() - window < WINDOW_S:
            begin = time.perf_counter_ns()
            run()
            times.append((time.perf_counter_ns() - begin) * 1e-6)
            if pause_s:
                time.sleep(pause_s)
        steal1, total1 = _steal_and_total()
        rows.append((time.time() - started, min(times), statistics.median(times),
                     100 * (steal1 - steal0) / max(1.0, total1 - total0)))
    for at, low, middle, steal in rows:
        print(f"{name} t={at:5.0f}s min {low:6.3f} ms median {middle:6.3f} ms steal {steal:4.1f}%",
              flush=True)


def main() -> None:
    torch.set_num_threads(1)
    net = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)

    def run() -> None:
        with torch.inference_mode():
            net(x)

    phase("busy", 180, run)
    time.sleep(90)
    phase("after 90 s idle", 40, run)
    phase("light (50% duty)", 60, run, pause_s=0.004)


if __name__ == "__main__":
    main()
