"""Issue 16: channel-pruned MobileNet-v2s in onnxruntime and eager, pruned widths as they come
or rounded to multiples of 8 and 16, measured against the shipped profiles' prices.

One command (about a minute; time it on a quiet machine)::

    PYTHONPATH=. python experiments/ort_alignment.py

Every inverted-residual block's expansion kept at 30, 60 and 80% (as the benchmark's
``mobilenet_v2@0.6`` is built), its width as rounded or to the nearest multiple of 8 or 16;
each network timed in one interleaved run per runtime (8 rounds of 5), beside its price at the
kept channels (no drift check). Output quoted in experiments/README.md ("Depthwise convs that
oneDNN runs as GEMMs", part 7): ``results/ort_alignment_output.txt``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency_accuracy import _prune_mobilenet_v2, _torchvision  # noqa: E402

from budgetsearch.cost import layer_inventory, load_profile  # noqa: E402
from budgetsearch.profiling.timing import export_onnx, make_runner, time_runners  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, one thread, shipped profiles, no drift check")
    x = torch.randn(1, 3, 32, 32)
    dense = _torchvision("mobilenet_v2", 3).eval()
    inventory = layer_inventory(dense, x)
    nets = [("full", dense, {})]
    for fraction in (0.3, 0.6, 0.8):
        for align in (0, 8, 16):
            small, kept = _prune_mobilenet_v2(dense, fraction, align)
            nets.append((f"{fraction}/align{align}", small, kept))
    for runtime, name in (("onnxruntime", "cpu-2core-x86-ort"), ("pytorch-eager", "cpu-2core-x86")):
        profile = load_profile(name, check=False)
        runners = [make_runner(m, x, runtime=runtime, threads=1,
                               onnx_bytes=export_onnx(m, x) if runtime == "onnxruntime" else None)
                   for _, m, _ in nets]
        times = time_runners(runners, rounds=8, inner=5, warmup=2, threads=1)
        for (label, _, kept), ms in zip(nets, times, strict=True):
            priced = inventory.predict_latency_ms(profile, kept_channels=kept)
            print(f"{runtime:14s} {label:14s} measured {ms:6.3f} ms  priced {priced:6.3f}")


if __name__ == "__main__":
    main()
