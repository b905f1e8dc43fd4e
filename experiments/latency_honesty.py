"""Experiment 6 (issue 9): FLOP reduction vs measured latency reduction, with the cost model's
prediction beside it, on the measured device (this machine's CPU, profile ``cpu-2core-x86``).

Models: the unpruned WRN-16-2 (1×28×28, Fashion-MNIST shape); BAR's compact networks at 2×, 4×,
8×, 16× volume reduction (``experiments/bar_budgets.py`` writes them to
``experiments/results/bar/wrn16-2_bar_*x.pt``); and unstructured (erf-loss-style) WRN-16-2s with
50%, 85% and 95% of the conv/linear weights zeroed by magnitude (the library's ``magnitude``
pruner, the same density in every conv/linear layer, ``finalize`` gives real zeros; priced from
its ``pruned_configuration()``). Unstructured zeros are priced as the FLOPs fvcore would count on
the non-zero weights (density × dense FLOPs), the figure papers report, while the profile declares
no sparse speed-up, so the predicted latency stays dense.

All networks are timed as ``budgetsearch profile`` times them (interleaved rounds in shuffled
order, batch 1, one torch thread, median), so that load from other processes on a shared
machine hits them alike.

    .venv/bin/python experiments/latency_honesty.py            # writes experiments/results/latency/
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from budgetsearch.cost import layer_inventory, load_profile  # noqa: E402
from budgetsearch.models import build_model  # noqa: E402
from budgetsearch.models.files import load_model_file  # noqa: E402
from budgetsearch.profiling.timing import time_networks  # noqa: E402
from budgetsearch.pruners import build_pruner  # noqa: E402

SHAPE = (1, 28, 28)
PROFILE = "cpu-2core-x86"
#: The unstructured baseline (data: the pruner name and options given to ``build_pruner``):
#: every conv/linear layer (``min_weights=0``) at the same density (``scope="layer"``).
UNSTRUCTURED = ("magnitude", {"scope": "layer", "min_weights": 0})


def magnitude_pruned(model: nn.Module, sparsity: float) -> tuple[nn.Module, dict[str, float]]:
    """Zero the smallest-magnitude ``sparsity`` of the conv/linear weights with the unstructured
    baseline pruner (in place) and return the finalized model and its per-layer densities (the
    erf-loss pruner's fixed-sparsity end state)."""
    name, options = UNSTRUCTURED
    pruner = build_pruner(name, sparsity=sparsity, **options)
    pruner.prepare(model, torch.zeros(1, *SHAPE))
    model = pruner.finalize()
    return model, dict(pruner.pruned_configuration()["densities"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bar-dir", type=Path, default=Path("experiments/results/bar"))
    parser.add_argument("--repeats", type=int, default=15, help="rounds of 5 timed passes")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/latency"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    profile = load_profile(PROFILE)
    dense = build_model("wrn-16-2", num_classes=10, in_channels=1).eval()
    inventory = layer_inventory(dense, torch.zeros(1, *SHAPE))
    dense_cost = inventory.price(profile=profile)
    models: dict[str, nn.Module] = {"dense": dense}
    rows: dict[str, dict[str, object]] = {"dense": {
        "kind": "dense", "flops": dense_cost.flops, "predicted_ms": dense_cost.latency_ms}}
    for factor in (2, 4, 8, 16):
        path = args.bar_dir / f"wrn16-2_bar_{factor}x.pt"
        if not path.is_file():
            print(f"skipped BAR {factor}x: {path} missing (run experiments/bar_budgets.py)")
            continue
        compact = load_model_file(path).eval()
        cost = layer_inventory(compact, torch.zeros(1, *SHAPE)).price(profile=profile)
        name = f"BAR {factor}x volume"
        models[name] = compact
        rows[name] = {"kind": "structured (BAR, compact)", "flops": cost.flops,
                      "predicted_ms": cost.latency_ms}
    for sparsity in (0.5, 0.85, 0.95):
        model, densities = magnitude_pruned(copy.deepcopy(dense), sparsity)
        cost = inventory.price(densities=densities, profile=profile)
        name = f"unstructured {sparsity:.0%}"
        models[name] = model
        rows[name] = {"kind": "unstructured (zeros)", "flops": cost.flops,
                      "predicted_ms": cost.latency_ms}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    # The profiler's own timing (interleaved rounds, shuffled order): how the profile was fitted.
    x = torch.zeros(1, *SHAPE)
    times = time_networks([(m, x) for m in models.values()], rounds=args.repeats)
    measured = dict(zip(models, times.tolist(), strict=True))
    seconds = time.perf_counter() - start
    table = pd.DataFrame([{"model": name, **row, "measured_ms": measured[name]}
                          for name, row in rows.items()])
    base = table.iloc[0]
    table["flop_reduction"] = base["flops"] / table["flops"]
    table["predicted_speedup"] = base["predicted_ms"] / table["predicted_ms"]
    table["measured_speedup"] = base["measured_ms"] / table["measured_ms"]
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "latency_honesty.csv", index=False)
    meta = {"repeats": args.repeats, "threads": 1, "profile": PROFILE, "seconds": seconds,
            "loadavg_1m_before": load_before, "loadavg_1m_after": os.getloadavg()[0]}
    (args.out / "latency_honesty.json").write_text(json.dumps(meta, indent=1))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(json.dumps(meta))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, marker in (("structured (BAR, compact)", "o"), ("unstructured (zeros)", "s")):
        part = table[table["kind"] == kind]
        ax.scatter(part["flop_reduction"], part["measured_speedup"], marker=marker,
                   label=f"{kind}: measured")
        ax.scatter(part["flop_reduction"], part["predicted_speedup"], marker=marker,
                   facecolors="none", edgecolors="k", label=f"{kind}: cost model")
    top = float(table["flop_reduction"].max()) * 1.2
    ax.plot([1, top], [1, top], "k:", lw=1, label="speed-up = FLOP reduction")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOP reduction vs dense WRN-16-2 (×, fvcore: 1 FLOP = 1 multiply-add)")
    ax.set_ylabel("latency speed-up vs dense (×, batch 1, 1 thread)")
    ax.set_title("FLOP reduction vs latency on this CPU (cpu-2core-x86)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "latency_honesty.png", dpi=120)


if __name__ == "__main__":
    main()
