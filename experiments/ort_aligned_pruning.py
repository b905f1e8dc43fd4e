"""Issue 16: channel-magnitude pruning with and without the onnxruntime profile's channel
alignment, the delivered networks timed in onnxruntime.

One command (a minute or two; time it on a quiet machine)::

    PYTHONPATH=. python experiments/ort_aligned_pruning.py

torchvision's MobileNet-v2 and ResNet-18 (10 classes, 3×32×32) pruned by channel-magnitude
(uniform scope) to 40, 60 and 80% of their FLOPs, given the ``cpu-2core-x86-ort`` profile
(kept widths rounded to its ``channel_alignment`` of 8) or not (widths as they come); each
delivered network exported and timed in one interleaved onnxruntime run (8 rounds of 5), beside
its price. No training: the structure alone sets the time. Output quoted in
experiments/README.md ("Depthwise convs that oneDNN runs as GEMMs", part 8):
``results/ort_aligned_pruning_output.txt``.
"""

from __future__ import annotations

import copy
import time

import torch
import torchvision

from budgetsearch.cost import Target, index_op_elements, layer_inventory, load_profile
from budgetsearch.profiling.timing import export_onnx, make_runner, time_runners
from budgetsearch.pruners import build_pruner


def main() -> None:
    torch.set_num_threads(1)
    profile = load_profile("cpu-2core-x86-ort", check=False)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, one thread, {profile.name} (no drift check)")
    x = torch.zeros(1, 3, 32, 32)
    rows = []
    for name in ("mobilenet_v2", "resnet18"):
        torch.manual_seed(0)
        full = getattr(torchvision.models, name)(num_classes=10).eval()
        inventory = layer_inventory(full, x)
        rows.append((f"{name} unpruned", full, inventory.predict_latency_ms(profile)))
        for fraction in (0.4, 0.6, 0.8):
            for aligned in (False, True):
                target = Target("flops", fraction=fraction, text=f"{fraction:.0%}").resolve(
                    inventory.total_flops)
                pruner = build_pruner("channel-magnitude", target=target, scope="uniform",
                                      profile=profile if aligned else None)
                pruner.prepare(copy.deepcopy(full), x)
                compact = pruner.finalize().eval()
                kept = pruner.pruned_configuration()["kept_channels"]
                price = inventory.price(kept_channels=kept, profile=profile,
                                        index_ops=index_op_elements(compact, x))
                label = f"{name} flops {fraction:.0%} {'aligned' if aligned else 'as they come'}"
                rows.append((label, compact, price.latency_ms))
    runners = [make_runner(m, x, runtime="onnxruntime", threads=1, onnx_bytes=export_onnx(m, x))
               for _, m, _ in rows]
    times = time_runners(runners, rounds=8, inner=5, warmup=2, threads=1)
    for (label, _, priced), ms in zip(rows, times, strict=True):
        print(f"{label:42s} measured {ms:6.3f} ms  priced {priced:6.3f} ms")


if __name__ == "__main__":
    main()
