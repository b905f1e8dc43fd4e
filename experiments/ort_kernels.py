"""Issue 16: what onnxruntime's own per-node profiler says about the shipped ORT profile.

One command::

    PYTHONPATH=. python experiments/ort_kernels.py

1. **Is the profiler's kernel time the time a network takes?** For a few torchvision networks
   at 3×32×32: the forward time by the project's timer and method, against the profiled
   session's own total and the sum of its per-node kernel times (profiling on). If the
   profiler inflates kernel times, its per-node times cannot be fitted beside whole networks.
2. **Where the shipped profile misprices a network, by layer.** Each conv of RegNet-X-400MF
   (priced +57–91 % on 2026-12-02) and ResNet-18 priced by ``cpu-2core-x86-ort`` against its
   kernel time, summed by (kind, aligned) and for the worst layer shapes.
3. **Which channel counts run the fast kernels.** One 3×3 conv (+ReLU) on a 16×16 map at
   several input / output channel counts, groups and depthwise widths, timed by the project's
   method: GMAC/s. The shipped profile calls a conv "aligned" when its input and output
   channels per group are multiples of 8; onnxruntime's ``NchwcTransformer`` source states a
   different rule (input channels in whole 16-blocks or fewer than 16, any output count,
   depthwise channels in whole blocks). This measures which one the kernels follow.
4. **Does a conv timed alone cost what it costs inside a network?** (The premise of a predictor
   fitted on sampled single kernels, as nn-Meter does.) Every conv of ResNet-18 and
   MobileNet-v2 at 3×32×32 rebuilt alone (same weights, padding, stride, input size) and timed
   by the project's method, less an empty session's time, summed; against the same convs'
   kernel times inside the profiled network.

Output: printed; ``experiments/results/ort_kernels_output.txt`` holds the run quoted in
``experiments/README.md``.
"""

from __future__ import annotations

import collections
import datetime
import json
import statistics
import warnings
from pathlib import Path
from typing import Any

import torch
import torchvision

from budgetsearch.cost import layer_inventory, load_profile
from budgetsearch.profiling.timing import make_runner, onnxruntime_profile, time_runners

NETWORKS = ("regnet_x_400mf", "resnet18", "mobilenet_v2", "shufflenet_v2_x1_0")


def profiled(model: torch.nn.Module, x: torch.Tensor, runs: int = 40
             ) -> tuple[float, list[tuple[tuple[int, ...], float]]]:
    """(median session ms, [(conv key, median kernel ms)]) with onnxruntime profiling on.

    A conv key is (out channels, in channels per group, kh, kw, in h, in w, out h, out w)."""
    events = onnxruntime_profile(model, x, runs=runs, warmup=5)
    totals, kernels, keys = [], collections.defaultdict(list), {}
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            totals.append(event["dur"] * 1e-3)
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernels[event["name"]].append(event["dur"] * 1e-3)
            args = event["args"]
            shapes = [next(iter(s.values())) for s in args.get("input_type_shape", [])[:2]]
            out = [next(iter(s.values())) for s in args.get("output_type_shape", [])[:1]]
            if args.get("op_name") in ("Conv", "FusedConv") and len(shapes) == 2 and out \
                    and all(len(s) == 4 for s in (*shapes, *out)):
                (x_, w), y = shapes, out[0]
                keys[event["name"]] = (w[0], w[1], w[2], w[3], x_[2], x_[3], y[2], y[3])
            else:
                keys[event["name"]] = ()
    per_node = [(keys[n], statistics.median(v[5:])) for n, v in kernels.items()]
    return statistics.median(totals[5:]), per_node


def inflation() -> list[dict[str, Any]]:
    print("1. forward ms: the project's timer (8 rounds) | profiled session | sum of kernels")
    rows = []
    x = torch.randn(1, 3, 32, 32)
    models = {n: getattr(torchvision.models, n)(num_classes=10).eval() for n in NETWORKS}
    runners = [make_runner(m, x, runtime="onnxruntime", threads=1) for m in models.values()]
    timed = time_runners(runners, rounds=8, inner=5, warmup=3)
    for (name, model), ms in zip(models.items(), timed, strict=True):
        total, nodes = profiled(model, x)
        kernels = sum(t for _, t in nodes)
        rows.append({"network": name, "timer_ms": float(ms), "profiled_session_ms": total,
                     "kernel_sum_ms": kernels, "nodes": len(nodes)})
        print(f"  {name:20s} {ms:6.3f} | {total:6.3f} | {kernels:6.3f}  ({len(nodes)} nodes; "
              f"kernels / timer {kernels / ms:.2f})")
    return rows


def by_layer(name: str) -> dict[str, Any]:
    profile = load_profile("cpu-2core-x86-ort", check=False)
    model = getattr(torchvision.models, name)(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    inventory = layer_inventory(model, x)
    _, nodes = profiled(model, x)
    times = collections.defaultdict(list)
    for key, ms in nodes:
        times[key].append(ms)
    predicted = inventory.layer_latency_ms(profile)
    step = profile.channel_alignment
    kinds: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
    shapes: dict[tuple, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for r in inventory:
        if r.op != "conv" or len(r.kernel_size) != 2:
            continue
        key = (r.out_channels, r.in_channels // r.groups, *r.kernel_size, *r.input_hw,
               *r.output_hw)
        if not times.get(key):
            continue
        measured = times[key].pop(0)
        aligned = (step and r.kind in ("conv", "gconv") and (r.in_channels // r.groups) % step == 0
                   and (r.out_channels // r.groups) % step == 0)
        kind = ("aligned_" if aligned else "") + r.kind
        for table, k in ((kinds, kind), (shapes, (kind, *key, r.groups))):
            table[k][0] += predicted[r.name]
            table[k][1] += measured
            table[k][2] += 1
    print(f"\n2. {name} at 3x32x32: shipped cpu-2core-x86-ort price against kernel time, us")
    for kind, (p, m, n) in sorted(kinds.items(), key=lambda i: -i[1][0]):
        print(f"  {kind:16s} {n:3d} layers  priced {p * 1e3:7.0f}  kernels {m * 1e3:7.0f}")
    worst = sorted(shapes.items(), key=lambda i: -(i[1][0] - i[1][1]))[:4]
    for (kind, cout, cin_g, kh, kw, hi, wi, ho, wo, g), (p, m, n) in worst:
        print(f"  worst: {kind} {cin_g * g}->{cout} g{g} {kh}x{kw} on {hi}x{wi}->{ho}x{wo}, "
              f"x{n}: priced {p / n * 1e3:5.1f} us each, kernel {m / n * 1e3:5.1f} us")
    return {"network": name, "kinds": {k: v[:2] for k, v in kinds.items()}}


def alignment() -> list[dict[str, Any]]:
    cases = [("dense, input channels", cin, 64, 1) for cin in (8, 12, 16, 24, 32, 40, 48, 56,
                                                                63, 64)]
    cases += [("dense, output channels", 64, cout, 1) for cout in (24, 40, 63, 64)]
    cases += [("depthwise", c, c, c) for c in (24, 32, 48, 96, 100)]
    cases += [(f"grouped, {cpg} per group", g * cpg, g * cpg, g)
              for g, cpg in ((8, 8), (4, 16), (6, 24), (2, 32))]
    runners, macs = [], []
    for _, cin, cout, groups in cases:
        model = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, padding=1, groups=groups),
                                    torch.nn.ReLU()).eval()
        x = torch.randn(1, cin, 16, 16)
        runners.append(make_runner(model, x, runtime="onnxruntime", threads=1))
        macs.append(cout * (cin // groups) * 9 * 256)
    timed = time_runners(runners, rounds=8, inner=20, warmup=3)
    print("\n3. one 3x3 conv + ReLU on 16x16 in onnxruntime: us, GMAC/s")
    rows = []
    for (label, cin, cout, groups), ms, mac in zip(cases, timed, macs, strict=True):
        rate = mac / ms / 1e6
        rows.append({"case": label, "in": cin, "out": cout, "groups": groups, "us": ms * 1e3,
                     "gmac_per_s": rate})
        print(f"  {label:24s} {cin:4d} -> {cout:4d}, groups {groups:3d}: {ms * 1e3:7.1f} us "
              f"{rate:6.1f} GMAC/s")
    return rows


def standalone(name: str) -> dict[str, Any]:
    import copy

    model = getattr(torchvision.models, name)(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    inventory = layer_inventory(model, x)
    _, nodes = profiled(model, x)
    in_network = sum(ms for key, ms in nodes if key)
    runners = []
    for r in inventory:
        if r.op != "conv":
            continue
        conv = copy.deepcopy(model.get_submodule(r.name))
        runners.append(make_runner(torch.nn.Sequential(conv).eval(),
                                   torch.randn(1, r.in_channels, *r.input_hw),
                                   runtime="onnxruntime", threads=1))
    empty = make_runner(torch.nn.Sequential(torch.nn.ReLU()).eval(), torch.randn(1, 8, 4, 4),
                        runtime="onnxruntime", threads=1)
    timed = time_runners([*runners, empty], rounds=8, inner=5, warmup=3)
    alone = float(sum(max(t - timed[-1], 0.0) for t in timed[:-1]))
    print(f"  {name:14s} {len(runners)} convs: alone {alone:6.3f} ms, inside the network "
          f"{in_network:6.3f} ms (alone / inside {alone / in_network:.2f}); empty session "
          f"{timed[-1] * 1e3:.1f} us")
    return {"network": name, "convs": len(runners), "alone_ms": alone,
            "in_network_ms": in_network, "empty_session_ms": float(timed[-1])}


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    print(f"ort_kernels, {datetime.datetime.now():%Y-%m-%d %H:%M}, torch {torch.__version__}")
    results = {"inflation": inflation(), "layers": [by_layer("regnet_x_400mf"),
                                                    by_layer("resnet18")],
               "alignment": alignment()}
    print("\n4. each conv timed alone (summed) against its kernel time inside the network")
    results["standalone"] = [standalone("resnet18"), standalone("mobilenet_v2")]
    out = Path(__file__).resolve().parent / "results" / "ort_kernels.json"
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
