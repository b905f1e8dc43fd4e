"""Issue 16: each conv and linear layer's time inside its network against its price, by kernel
path and kernel size (PyTorch eager, one thread).

One command (seconds per network; time it on a quiet machine)::

    PYTHONPATH=. python experiments/eager_layer_prices.py efficientnet_b0/32 mobilenet_v2/32

For each torchvision ``name/size`` (a 3×size×size input, batch 1): the forward time (the
profiles' timer and method, 6 rounds of 5), the shipped eager profile's price (no drift check),
then per kernel path (PyTorch's GEMM, oneDNN, depthwise, grouped, linear:
:func:`eager_layer_model.kernel_path`) and kernel size, the layers' summed time inside the
network (forward hooks, median of 30 passes) against their summed price. Found the depthwise
convs oneDNN runs as GEMMs (experiments/README.md, "Depthwise convs that oneDNN runs as GEMMs");
output ``results/eager_layer_prices_output.txt``.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402
from eager_layer_model import layer_rows  # noqa: E402

from budgetsearch.cost import layer_inventory, load_profile  # noqa: E402
from budgetsearch.profiling.timing import make_runner, time_runners  # noqa: E402


def main() -> None:
    profile_name, networks = bench.torchvision_from_command_line(__doc__.split("\n")[0])
    profile = load_profile(profile_name, check=False)
    for spec, model, x in networks:
        inventory = layer_inventory(model, x)
        priced = inventory.layer_latency_ms(profile)
        modules = dict(model.named_modules())
        records = [r for r in inventory if r.op in ("conv", "linear") and r.out_channels > 0
                   and r.name in modules]
        rows = layer_rows(model, x, time_them=True, passes=30)
        by_path: dict[tuple[str, int], list[float]] = collections.defaultdict(lambda: [0, 0, 0])
        for record, row in zip(records, rows, strict=True):
            entry = by_path[(row["path"], row["k"])]
            entry[0] += row["ms"]
            entry[1] += priced[record.name]
            entry[2] += 1
        forward = float(time_runners([make_runner(model, x, runtime="pytorch-eager", threads=1)],
                                     rounds=6, inner=5, warmup=2, threads=1)[0])
        print(f"{spec}: forward {forward:.3f} ms, priced "
              f"{inventory.predict_latency_ms(profile):.3f} ms")
        for (path, k), (ran, price, count) in sorted(by_path.items()):
            print(f"   {path:7s} {k}x{k}  {count:3d} layers  ran {ran:7.3f} ms  priced "
                  f"{price:7.3f} ms")


if __name__ == "__main__":
    main()
