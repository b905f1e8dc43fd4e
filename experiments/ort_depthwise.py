"""Issue 16: what a depthwise conv costs in onnxruntime when it cannot block its channels.

One command (under a minute; the machine should be otherwise idle)::

    PYTHONPATH=. python experiments/ort_depthwise.py [--profile cpu-2core-x86-avx2-ort]

onnxruntime runs a depthwise conv in its blocked (NCHWc) kernel only when the channels are a
multiple of the profile's ``channel_alignment``; otherwise it runs one small GEMM per channel.
A channel-pruned network lands on the second almost everywhere (a channel-magnitude
MobileNet-v2 at 70 % of its FLOPs ran 2.9× slower than the unpruned one, its 777-channel
depthwise convs on 1×1 maps 115 µs each). This times one depthwise conv alone, bias-free, at
kernel 3/5/7 on 1×1-16×16 maps, with a blocked and an unblocked channel count, and prints
each beside the profile's price (as shipped, no drift check: compare the shapes, not the day's
level); then which channel counts run blocked, depthwise and dense (multiples of 8, of 4 only,
of neither).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import layer_inventory, load_profile  # noqa: E402
from budgetsearch.profiling.timing import export_onnx, onnx_runner, time_runners  # noqa: E402

CASES = [(hw, k, c) for hw in (1, 2, 4, 8, 16) for k in (3, 5, 7)
         for c in (776, 777, 96, 97) if not (c > 500 and hw > 8)]
# which channel counts block: multiples of 8, of 4 only, and of neither; depthwise and dense
ALIGNMENT = [(hw, c, groups) for hw in (1, 4) for c in (768, 772, 774, 776, 780)
             for groups in ("depthwise",)] + [
    (8, c, "dense") for c in (64, 68, 66, 63, 128, 132, 130)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu-2core-x86-avx2-ort")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = bench.LoadMeter()
    profile = load_profile(args.profile, check=False)
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}, onnxruntime, one thread; prices by "
          f"{profile.name} as shipped (channel_alignment {profile.channel_alignment})")
    runners, prices = [], []
    for hw, k, c in CASES:
        conv = nn.Sequential(nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False)).eval()
        x = torch.randn(1, c, hw, hw)
        runners.append(onnx_runner(export_onnx(conv, x), x, threads=1))
        prices.append(layer_inventory(conv, x).predict_latency_ms(profile))
    measured = time_runners(runners, rounds=5, inner=20, warmup=5, threads=1)
    print(f"{'map':>5} {'k':>2} {'channels':>8} {'blocked':>7} {'ran µs':>8} {'µs/ch':>6} "
          f"{'priced µs':>9}")
    for (hw, k, c), ms, price in zip(CASES, measured, prices, strict=True):
        blocked = c % profile.channel_alignment == 0 if profile.channel_alignment else False
        print(f"{hw:>2}x{hw:<2} {k:>2} {c:>8} {'yes' if blocked else 'no':>7} {ms * 1e3:8.1f} "
              f"{ms * 1e3 / c:6.3f} {price * 1e3:9.1f}")
    convs = []
    for hw, c, groups in ALIGNMENT:
        conv = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False,
                                       groups=c if groups == "depthwise" else 1)).eval()
        x = torch.randn(1, c, hw, hw)
        convs.append(onnx_runner(export_onnx(conv, x), x, threads=1))
    times = time_runners(convs, rounds=5, inner=20, warmup=5, threads=1)
    print("which channel counts run blocked (3×3 convs):")
    print(f"{'conv':>9} {'map':>5} {'channels':>8} {'mod 8':>5} {'ran µs':>8} {'GMAC/s':>7}")
    for (hw, c, groups), ms in zip(ALIGNMENT, times, strict=True):
        macs = c * 9 * hw * hw * (1 if groups == "depthwise" else c)
        print(f"{groups:>9} {hw:>2}x{hw:<2} {c:>8} {c % 8:>5} {ms * 1e3:8.1f} "
              f"{macs / (ms * 1e6):7.2f}")
    print(f"load: {load.others()}")


if __name__ == "__main__":
    main()
