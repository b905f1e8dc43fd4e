"""What onnxruntime compiles away, measured: the evidence behind the onnxruntime profile's terms.

One command (on a quiet machine; it prints the day and the load)::

    PYTHONPATH=. python experiments/ort_compiled.py

1. **Channel alignment.** Two 3×3 convs (+ReLU) at C→C channels on a 14×14 map, C from 32 to
   128, timed in onnxruntime and PyTorch eager (1 thread, batch 1): GFLOP/s per C. onnxruntime
   runs convs whose channels are multiples of 8 in its blocked NCHWc kernels; eager's rate is
   smooth in C (it pads the channel block instead: the profile's ``channel_block``).
2. **Prepacked weights.** One 512→512 3×3 conv on 1×1 … 4×4 maps: onnxruntime reads only the
   weights of the taps that meet the input (1/9 on a 1×1 map), eager reorders every weight per
   call.
3. **Fusion.** onnxruntime's own profiler (per-node kernel times of the optimized graph) on four
   torchvision networks, by node type, beside what the shipped onnxruntime profile prices per
   op kind: which ops the graph still runs (Conv with BatchNorm, activation and residual add
   folded in) and which it removed.

Results: ``experiments/results/ort_compiled.json`` (and the printed tables).
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from budgetsearch.cost import layer_inventory, load_profile
from budgetsearch.profiling.timing import (
    export_onnx,
    make_runner,
    onnxruntime_profile,
    time_runners,
)

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency_accuracy import LoadMeter, _torchvision  # noqa: E402


def _runners(model: nn.Module, x: torch.Tensor) -> tuple[Any, Any]:
    model.eval()
    return (make_runner(model, x, runtime="onnxruntime", threads=1,
                        onnx_bytes=export_onnx(model, x)),
            make_runner(model, x, runtime="pytorch-eager", threads=1))


def alignment(rounds: int) -> list[dict[str, float]]:
    channels = (32, 33, 40, 48, 56, 63, 64, 65, 72, 80, 96, 100, 128)
    pairs = []
    for c in channels:
        model = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        pairs.append(_runners(model, torch.randn(1, c, 14, 14)))
    ort = time_runners([p[0] for p in pairs], rounds=rounds, inner=10)
    eager = time_runners([p[1] for p in pairs], rounds=rounds, inner=10)
    rows = []
    print("1. channel alignment: two 3x3 convs C->C on 14x14 (GFLOP/s; 1 FLOP = 1 multiply-add)")
    print(f"{'C':>5} {'C % 8':>6} {'ort us':>8} {'ort GF/s':>9} {'eager us':>9} {'eager GF/s':>11}")
    for c, a, b in zip(channels, ort, eager, strict=True):
        flops = 2 * c * c * 9 * 14 * 14
        rows.append({"channels": c, "ort_us": a * 1e3, "eager_us": b * 1e3,
                     "ort_gflops": flops / a / 1e6, "eager_gflops": flops / b / 1e6})
        print(f"{c:>5} {c % 8:>6} {a * 1e3:>8.1f} {flops / a / 1e6:>9.1f} {b * 1e3:>9.1f} "
              f"{flops / b / 1e6:>11.1f}")
    return rows


def prepacked(rounds: int) -> list[dict[str, float]]:
    sizes = (1, 2, 3, 4)
    pairs = [_runners(nn.Sequential(nn.Conv2d(512, 512, 3, padding=1, bias=False)),
                      torch.randn(1, 512, s, s)) for s in sizes]
    ort = time_runners([p[0] for p in pairs], rounds=rounds, inner=10)
    eager = time_runners([p[1] for p in pairs], rounds=rounds, inner=10)
    print("\n2. weights read: one 512->512 3x3 conv (9.4 MB of weights) on small maps")
    rows = []
    for s, a, b in zip(sizes, ort, eager, strict=True):
        rows.append({"map": s, "ort_us": a * 1e3, "eager_us": b * 1e3})
        print(f"  {s}x{s}: onnxruntime {a * 1e3:7.1f} us   eager {b * 1e3:7.1f} us")
    return rows


def fusion(names: tuple[str, ...]) -> list[dict[str, Any]]:

    profile = load_profile("cpu-2core-x86-ort", check=False)
    print("\n3. onnxruntime's per-node kernel time (median of 50 runs) by node type, against "
          "what the shipped profile prices per op kind (us), 3x32x32")
    rows = []
    for name in names:
        model = _torchvision(name, 3).eval()
        x = torch.randn(1, 3, 32, 32)
        events = onnxruntime_profile(model, x, runs=50, warmup=0)
        times: dict[str, list[float]] = {}
        types: dict[str, str] = {}
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                node = event["name"][: -len("_kernel_time")]
                times.setdefault(node, []).append(event["dur"])
                types[node] = event["args"].get("op_name", "?")
        by_type: dict[str, float] = {}
        for node, values in times.items():
            by_type[types[node]] = by_type.get(types[node], 0.0) + float(np.median(values))
        inventory = layer_inventory(model, x)
        priced: dict[str, float] = {}
        for record, ms in zip(inventory.layers, inventory.layer_latency_ms(profile).values(),
                              strict=True):
            priced[record.latency_kind] = priced.get(record.latency_kind, 0.0) + ms * 1e3
        for op, ms in zip(inventory.extra_ops, inventory.extra_latency_ms(profile).values(),
                          strict=True):
            kind = f"fused_{op.kind}" if op.fused else op.kind
            priced[kind] = priced.get(kind, 0.0) + ms * 1e3
        rows.append({"network": name, "measured_by_node_type_us": by_type,
                     "priced_by_kind_us": priced})
        print(f"  {name}: measured {sum(by_type.values()):.0f} us "
              + ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_type.items(), key=lambda i: -i[1]))
              + f"\n  {'':{len(name)}}  priced {sum(priced.values()):.0f} us "
              + ", ".join(f"{k} {v:.0f}" for k, v in sorted(priced.items(), key=lambda i: -i[1])
                          if v >= 0.5))
    return rows


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    meter = LoadMeter()
    started = time.strftime("%Y-%m-%d %H:%M")
    print(f"what onnxruntime compiles away, {started}, torch {torch.__version__}")
    results = {"date": started, "alignment": alignment(10), "prepacked": prepacked(10),
               "fusion": fusion(("resnet18", "mobilenet_v2", "regnet_x_400mf",
                                 "squeezenet1_1"))}
    load = meter.others()
    results["load"] = load
    print(f"\nload over the run ({load['window_s']:.0f} s): other processes "
          f"{load['others_pct']:.0f}% (= {load['others_cores']:.2f} of {os.cpu_count()} cores)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ort_compiled.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
