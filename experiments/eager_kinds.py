"""Issue 16: where PyTorch eager spends a network's time, by op kind, against a profile's price.

One command (seconds per network)::

    PYTHONPATH=. python experiments/eager_kinds.py googlenet/64 squeezenet1_0/64 resnet18/32

For each torchvision ``name/size`` (a 3×size×size input, batch 1, one thread): the forward time
(30 passes after 5 warm-up), then the same passes under torch's profiler, each top-level aten
call's time summed by kind (conv, pool, batchnorm, activation, ...) and scaled so the kinds add up
to the unprofiled forward (the profiler's own per-call cost spread pro rata), beside what the
profile (default ``cpu-2core-x86``, ``--profile`` names another; no drift check: compare the
kinds' shares, not the day's level) prices each kind at. Found the max pools the inventory did
not hold (experiments/README.md, "Pools"); output ``results/eager_kinds_output.txt``.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import layer_inventory, load_profile  # noqa: E402

# aten calls → the kinds a profile prices (conv covers dense, grouped, depthwise and oneDNN)
KIND_OF = {
    "conv2d": "conv", "linear": "linear", "batch_norm": "batchnorm",
    "max_pool2d": "maxpool", "avg_pool2d": "pool", "adaptive_avg_pool2d": "pool", "mean": "pool",
    "relu": "activation", "relu_": "activation", "hardtanh": "activation",
    "hardtanh_": "activation", "silu": "activation", "silu_": "activation",
    "sigmoid": "activation", "hardswish": "activation", "hardswish_": "activation",
    "hardsigmoid": "activation", "hardsigmoid_": "activation",
    "add": "binary", "add_": "binary", "mul": "binary", "cat": "concat",
    "flatten": "reshape", "view": "reshape", "reshape": "reshape", "transpose": "reshape",
    "chunk": "reshape", "dropout": "reshape", "contiguous": "concat",
}
PRICED_AS = {"dwconv": "conv", "gconv": "conv", "onednn_conv": "conv",
             "fused_batchnorm": "batchnorm", "fused_activation": "activation",
             "fused_binary": "binary"}


def measured_by_kind(model: torch.nn.Module, x: torch.Tensor, passes: int = 30
                     ) -> tuple[float, dict[str, float]]:
    """(forward ms, ms per kind scaled to add up to it)."""
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        start = time.perf_counter()
        for _ in range(passes):
            model(x)
        forward = (time.perf_counter() - start) / passes * 1e3
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(passes):
                model(x)
    total: collections.Counter[str] = collections.Counter()
    for event in prof.events():
        if event.cpu_parent is None and event.name.startswith("aten::"):
            op = event.name.removeprefix("aten::")
            total[KIND_OF.get(op, op)] += event.cpu_time_total / 1e3 / passes
    scale = forward / max(sum(total.values()), 1e-12)
    return forward, {k: v * scale for k, v in total.items()}


def priced_by_kind(model: torch.nn.Module, x: torch.Tensor, profile_name: str
                   ) -> tuple[float, dict[str, float]]:
    profile = load_profile(profile_name, check=False)
    inventory = layer_inventory(model, x)
    layers = inventory.layer_latency_ms(profile)
    extras = inventory.extra_latency_ms(profile)
    total: collections.Counter[str] = collections.Counter()
    for record in inventory:
        total[PRICED_AS.get(record.latency_kind, record.latency_kind)] += layers[record.name]
    for op in inventory.extra_ops:
        kind = f"fused_{op.kind}" if op.fused else op.kind
        total[PRICED_AS.get(kind, kind)] += extras[op.name]
    return inventory.predict_latency_ms(profile), dict(total)


def main() -> None:
    profile_name, networks = bench.torchvision_from_command_line(__doc__.split("\n")[0])
    for spec, model, x in networks:
        forward, measured = measured_by_kind(model, x)
        predicted, priced = priced_by_kind(model, x, profile_name)
        print(f"{spec}: forward {forward:.3f} ms, priced {predicted:.3f} ms")
        for kind in sorted(set(measured) | set(priced), key=lambda k: -measured.get(k, 0.0)):
            ran, price = measured.get(kind, 0.0), priced.get(kind, 0.0)
            if ran > 0.01 or price > 0.01:
                print(f"   {kind:12s} ran {ran:7.3f} ms   priced {price:7.3f} ms")


if __name__ == "__main__":
    main()
