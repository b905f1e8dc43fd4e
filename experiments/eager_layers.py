"""Issue 16: PyTorch eager's own time per conv / linear layer against the eager profile's price.

One command (seconds)::

    PYTHONPATH=. python experiments/eager_layers.py resnet18 32

Times each conv and linear module of a torchvision network inside the network's forward pass
(forward pre-/post-hooks around the module, median of 30 passes after 5 warm-up, one thread) and
prints it beside a profile's price of that layer (default ``cpu-2core-x86`` as shipped; a third
argument names another; no drift check: compare the layers' ratios, not the day's level), with
the kernel PyTorch runs a dense conv on (``oneDNN``, else its im2col + GEMM path). Outputs quoted
in experiments/README.md ("onnxruntime's own kernel times", "PyTorch eager's two conv kernels"):
``results/eager_layers_output.txt``, ``results/eager_layers_dispatch_output.txt``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import defaultdict

import torch
import torchvision

from budgetsearch.cost import layer_inventory, load_profile
from budgetsearch.cost.dispatch import ONEDNN_MIN_INPUT_ELEMENTS, onednn_always, onednn_by_size


def main(name: str, size: int, profile_name: str = "cpu-2core-x86") -> None:
    torch.set_num_threads(1)
    profile = load_profile(profile_name, check=False)
    model = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(1, 3, size, size)
    inventory = layer_inventory(model, x)
    priced = inventory.layer_latency_ms(profile)
    modules = dict(model.named_modules())
    times: dict[str, list[float]] = defaultdict(list)
    started: dict[str, float] = {}

    def before(layer: str):  # noqa: ANN202 - a forward pre-hook
        return lambda module, inputs: started.__setitem__(layer, time.perf_counter())

    def after(layer: str):  # noqa: ANN202 - a forward hook
        return lambda module, inputs, output: times[layer].append(
            time.perf_counter() - started[layer])

    timed = [r for r in inventory if r.op in ("conv", "linear") and r.name in modules]
    for r in timed:
        modules[r.name].register_forward_pre_hook(before(r.name))
        modules[r.name].register_forward_hook(after(r.name))
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        times.clear()
        begin = time.perf_counter()
        for _ in range(30):
            model(x)
        whole = (time.perf_counter() - begin) / 30 * 1e3
    print(f"{name} at 3x{size}x{size}, {time.strftime('%Y-%m-%d %H:%M')}: forward {whole:.3f} ms "
          f"(hooks on), priced {inventory.predict_latency_ms(profile):.3f} ms")
    for r in timed:
        ms = statistics.median(times[r.name])
        kernel = "x".join(map(str, r.kernel_size)) or "-"
        path = "oneDNN" if r.op == "conv" and r.groups == 1 and (
            onednn_always(kernel=r.kernel_size, stride=r.stride, dilation=r.dilation,
                          groups=r.groups, batch=r.batch, threads=1)
            or (onednn_by_size(kernel=r.kernel_size, stride=r.stride, dilation=r.dilation,
                               batch=r.batch, threads=1)
                and r.input_elements > ONEDNN_MIN_INPUT_ELEMENTS)) else ""
        print(f"  {r.name:24s} {r.op:6s} {path:6s} {r.in_channels:4d}->{r.out_channels:4d} "
              f"k{kernel:3s} "
              f"on {r.input_hw[0]}x{r.input_hw[1]} weights {r.weight_params * 4 / 1e6:5.2f} MB: "
              f"priced {priced[r.name] * 1e3:7.1f} us, ran {ms * 1e6:7.1f} us")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "resnet18",
         int(sys.argv[2]) if len(sys.argv) > 2 else 32,
         sys.argv[3] if len(sys.argv) > 3 else "cpu-2core-x86")
