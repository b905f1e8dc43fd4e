"""Issue 16: a per-layer model fitted on layers timed inside their networks, against the shipped
per-kind linear model, on PyTorch eager. An experiment: needs scikit-learn, which budgetsearch
does not install (``.venv/bin/pip install scikit-learn``).

One command (about four minutes; time it on a quiet machine)::

    PYTHONPATH=. python experiments/eager_layer_model.py results/latency_accuracy.csv [...]

1. Times every conv and linear layer of the shipped eager profile's 270 fit-set networks
   (216 fit, 54 held out: ``hw_profiles/cpu-2core-x86.csv``) *inside its network* (forward
   pre-/post-hooks, median of 15 passes after 3 warm-up, one thread), with its shape: kernel path
   (PyTorch's own GEMM or oneDNN, by :mod:`budgetsearch.cost.dispatch`; depthwise; grouped;
   linear), channels, kernel, stride, groups, input and output size, FLOPs, weight and
   activation MB.
2. Fits a gradient-boosted regressor of log(time) on the fit networks' layers (the nonlinear,
   shape-aware price a per-kind α·FLOPs + γ·bytes + β cannot be), and prices a network as
   ``a·Σ layer prices + the shipped model's features for everything else`` (BatchNorm, pools,
   activations, adds, ...), ``a`` and those coefficients fitted by NNLS on relative error against
   the fit networks' whole-network times, as the profile is.
3. Prices the benchmark's dense foreign networks from their shapes alone and compares with their
   measured times in each ``latency_accuracy.csv`` given, beside the shipped profile (no drift
   check for either: the benchmark's own times against the fit's day), as priced and after the
   one factor that centres each.

Output quoted in experiments/README.md ("Latency: pools, and a machine of another CPU"):
``results/eager_layer_model_output.txt``.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import layer_inventory, load_profile  # noqa: E402
from budgetsearch.cost.dispatch import (  # noqa: E402
    ONEDNN_MIN_INPUT_ELEMENTS,
    onednn_always,
    onednn_by_size,
)
from budgetsearch.profiling.fit import (  # noqa: E402
    build_fit_set,
    features_for,
    fit_coefficients,
    network_features,
)

RUNTIME = "pytorch-eager"
PATHS = ("gemm", "onednn", "dwconv", "gconv", "linear")
LAYER_KINDS = {"conv", "dwconv", "gconv", "linear", "onednn_conv"}


def kernel_path(r) -> str:  # noqa: ANN001
    if r.op == "linear" or r.kind != "conv":
        return "linear" if r.op == "linear" else r.kind
    shape = {"kernel": r.kernel_size, "stride": r.stride, "batch": 1, "threads": 1,
             "dilation": r.dilation or (1,) * len(r.kernel_size)}
    onednn = onednn_always(groups=r.groups, **shape) or (
        onednn_by_size(**shape)
        and (r.counted_input_elements or r.input_elements) > ONEDNN_MIN_INPUT_ELEMENTS)
    return "onednn" if onednn else "gemm"


def layer_rows(model: torch.nn.Module, x: torch.Tensor, *, time_them: bool, passes: int = 15
               ) -> list[dict]:
    """One row per conv / linear layer: its shape and (``time_them``) ms inside the network."""
    inventory = layer_inventory(model, x)
    modules = dict(model.named_modules())
    layers = [r for r in inventory if r.op in ("conv", "linear") and r.out_channels > 0
              and r.name in modules]
    times: dict[str, list[int]] = collections.defaultdict(list)
    if time_them:
        started: dict[str, int] = {}
        hooks = []
        for r in layers:
            hooks.append(modules[r.name].register_forward_pre_hook(
                lambda m, i, n=r.name: started.__setitem__(n, time.perf_counter_ns())))
            hooks.append(modules[r.name].register_forward_hook(
                lambda m, i, o, n=r.name: times[n].append(time.perf_counter_ns() - started[n])))
        with torch.inference_mode():
            for _ in range(3):
                model(x)
            times.clear()
            for _ in range(passes):
                model(x)
        for hook in hooks:
            hook.remove()
    rows = []
    for r in layers:
        row = {"path": kernel_path(r), "cin": r.in_channels, "cout": r.out_channels,
               "k": r.kernel_size[0] if r.kernel_size else 1,
               "s": r.stride[0] if r.stride else 1, "g": r.groups,
               "hin": r.input_hw[0], "win": r.input_hw[1], "hout": r.output_hw[0],
               "wout": r.output_hw[1], "flops": r.flops, "wmb": r.weight_params * 4e-6,
               "inmb": r.input_elements * 4e-6, "outmb": r.output_elements * 4e-6}
        if time_them:
            calls = max(1, len(times[r.name]) // passes)
            row["ms"] = statistics.median(times[r.name]) * 1e-6 * calls
        rows.append(row)
    return rows


def design(rows: list[dict]) -> np.ndarray:
    d = pd.DataFrame(rows)
    cols = [(d["path"] == p).astype(float) for p in PATHS]
    cols += [d[c].astype(float) for c in ("cin", "cout", "k", "s", "g", "hin", "win", "hout",
                                          "wout")]
    cols += [np.log1p(d["flops"]), np.log1p(d["wmb"] * 1e3), np.log1p(d["inmb"] * 1e3),
             np.log1p(d["outmb"] * 1e3), d["hout"] * d["wout"], d["k"] * d["k"]]
    return np.column_stack(cols)


def shares(predicted: np.ndarray, measured: np.ndarray) -> str:
    errors = predicted / measured - 1
    factor = np.exp(np.median(np.log(measured / predicted)))
    centred = predicted * factor / measured - 1
    return (f"{np.mean(abs(errors) <= .1):4.0%} / {np.mean(abs(errors) <= .2):4.0%} within "
            f"±10 / ±20% (median {np.median(errors) * 100:+5.1f}%), centred "
            f"{np.mean(abs(centred) <= .1):4.0%} / {np.mean(abs(centred) <= .2):4.0%}")


def main() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="latency_accuracy.csv files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}: timing the fit set's conv and linear layers "
          "inside their networks")
    fit, holdout = build_fit_set(216, 54, seed=0)
    rows = {id(b): layer_rows(b.model.eval(), b.example_input, time_them=True)
            for b in [*fit, *holdout]}
    train = [r for b in fit for r in rows[id(b)]]
    regressor = HistGradientBoostingRegressor(max_iter=400, learning_rate=0.05,
                                              min_samples_leaf=10, random_state=0)
    regressor.fit(design(train), np.log([r["ms"] for r in train]))
    held = [r for b in holdout for r in rows[id(b)]]
    ratio = np.exp(regressor.predict(design(held))) / np.array([r["ms"] for r in held]) - 1
    print(f"{len(train)} fit layers; {len(held)} held-out layers: "
          f"{np.mean(abs(ratio) <= .1):.0%} within ±10%, {np.mean(abs(ratio) <= .2):.0%} ±20%")

    features = features_for(RUNTIME)
    rest = [i for i, (kind, _) in enumerate(features) if kind not in LAYER_KINDS]
    rest.append(len(features))  # the per-forward intercept

    def row(inventory, kept, layers) -> np.ndarray:  # noqa: ANN001
        priced = float(np.exp(regressor.predict(design(layers))).sum()) if layers else 0.0
        unit = network_features(types.SimpleNamespace(inventory=inventory, kept_channels=kept),
                                16, RUNTIME, 1)
        return np.concatenate([[priced], unit[rest]])

    measured = pd.read_csv("hw_profiles/cpu-2core-x86.csv")
    measured = measured[measured["runtime"] == RUNTIME]
    times = {(r.set, r.network): r.measured_ms for r in measured.itertuples()}
    a_fit = np.stack([row(layer_inventory(b.model, b.example_input), {}, rows[id(b)])
                      for b in fit])
    a_held = np.stack([row(layer_inventory(b.model, b.example_input), {}, rows[id(b)])
                       for b in holdout])
    coefficients = fit_coefficients(a_fit, np.array([times[("fit", b.label)] for b in fit]))
    t_held = np.array([times[("holdout", b.label)] for b in holdout])
    print(f"held-out networks: layer model {shares(a_held @ coefficients, t_held)}; "
          f"(layer sum weighed {coefficients[0]:.3f})")
    profile = load_profile("cpu-2core-x86", check=False)
    foreign = [n for n in bench.foreign_networks(quick=False) if not n["kept"]]
    ours = np.array([row(n["inventory"], {}, layer_rows(n["model"], n["x"], time_them=False))
                     @ coefficients for n in foreign])
    shipped = np.array([n["inventory"].predict_latency_ms(profile) for n in foreign])
    for path in args.results:
        table = pd.read_csv(path)
        table = table[table["runtime"] == RUNTIME]
        ms = dict(zip(table["network"], table["measured_ms"], strict=True))
        keep = np.array([n["network"] in ms for n in foreign])
        t = np.array([ms[n["network"]] for n in foreign if n["network"] in ms])
        print(f"{path.name}: {len(t)} dense foreign networks")
        print(f"   shipped per-kind linear model  {shares(shipped[keep], t)}")
        print(f"   layer model                    {shares(ours[keep], t)}")
    print("layer model, per network (ms priced; the last file's measured ms, error):")
    for n, p in zip(foreign, ours, strict=True):
        if n["network"] in ms:
            print(f"   {n['network']:30s} {p:7.3f} {ms[n['network']]:7.3f} "
                  f"{100 * (p / ms[n['network']] - 1):+6.1f}%")


if __name__ == "__main__":
    main()
