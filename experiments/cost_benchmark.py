"""Benchmark: pricing pruned WRN-16-8 configurations without re-tracing vs re-tracing with fvcore.

Run: ``.venv/bin/python experiments/cost_benchmark.py [--configs 20000] [--retraces 5]``.
Prints configurations priced per second by ``LayerInventory.price`` (with and without a latency
profile) and by building + re-tracing the physically pruned network with fvcore, and checks that
both give the same FLOPs and parameters (FLOPs: fvcore, 1 FLOP = 1 fused multiply-add).
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from fvcore.nn import FlopCountAnalysis, parameter_count

from budgetsearch.cost import layer_inventory, load_profile
from budgetsearch.models import build_model
from budgetsearch.profiling.variants import block_names, prune_block_channels


def random_config(model: torch.nn.Module, inventory, rng: random.Random):  # noqa: ANN001, ANN201
    """Random inner channels per block (BAR-style) and the matching kept_channels mapping."""
    kept, kept_channels = {}, {}
    for name in block_names(model):
        conv1, conv2 = inventory[f"{name}.conv1"], inventory[f"{name}.conv2"]
        k = rng.randint(1, conv1.out_channels)
        kept[name] = k
        kept_channels[f"{name}.conv1"] = (conv1.in_channels, k)
        kept_channels[f"{name}.bn2"] = (k, k)
        kept_channels[f"{name}.conv2"] = (k, conv2.out_channels)
    return kept, kept_channels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", type=int, default=20_000)
    parser.add_argument("--retraces", type=int, default=5)
    parser.add_argument("--device", default="jetson-orin-nano")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = torch.zeros(1, 1, 28, 28)
    model = build_model("wrn-16-8")
    start = time.perf_counter()
    inventory = layer_inventory(model, x)
    trace_s = time.perf_counter() - start
    profile = load_profile(args.device)
    rng = random.Random(0)
    configs = [random_config(model, inventory, rng) for _ in range(args.configs)]
    convs = inventory.names("conv")
    densities = [{n: rng.uniform(0.05, 1.0) for n in convs} for _ in range(args.configs)]

    print(f"WRN-16-8, input 1x1x28x28, {len(inventory)} layers; one fvcore trace + inventory: "
          f"{trace_s:.2f} s")
    for label, kwargs_of in (
        ("kept channels, no profile", lambda i: {"kept_channels": configs[i][1]}),
        ("kept channels + latency", lambda i: {"kept_channels": configs[i][1], "profile": profile}),
        ("densities + latency", lambda i: {"densities": densities[i], "profile": profile}),
    ):
        start = time.perf_counter()
        for i in range(args.configs):
            inventory.price(**kwargs_of(i))
        rate = args.configs / (time.perf_counter() - start)
        print(f"price(), {label:<26}: {rate:>10,.0f} configurations/s")

    start = time.perf_counter()
    worst = 0.0
    for i in range(args.retraces):
        kept, kept_channels = configs[i]
        small = prune_block_channels(model, kept).eval()
        analysis = FlopCountAnalysis(small, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        flops, params = analysis.total(), parameter_count(small)[""]
        cost = inventory.price(kept_channels=kept_channels)
        worst = max(worst, abs(cost.flops - flops) / flops, abs(cost.params - params) / params)
    rate = args.retraces / (time.perf_counter() - start)
    print(f"fvcore re-trace of the built pruned network   : {rate:>10,.2f} configurations/s")
    print(f"largest relative difference price() vs fvcore, {args.retraces} configs: {worst:.2e}")
    with open("/proc/loadavg") as stream:
        print(f"machine load (1/5/15-min averages): {stream.read().split()[:3]}")


if __name__ == "__main__":
    main()
