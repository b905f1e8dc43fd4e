"""Drawing (matplotlib, Agg backend): the only module of the package that imports matplotlib.

Each function takes plain data made by :mod:`budgetsearch.pareto.fronts` /
:mod:`budgetsearch.pareto.reprice` and writes ``STEM.png`` and ``STEM.svg``, returning both paths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from budgetsearch.pareto.fronts import (  # noqa: E402
    COST_LABELS,
    Front,
    feasibility,
    reference_rows,
    split_kinds,
    usable_trials,
)

# Groups (pruners, runs) take colours in the order they appear; the dense baselines are black.
_COLORS = {"baseline": "black"}
_CYCLE = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink",
          "tab:olive", "tab:cyan"]


def _color(name: str, seen: dict[str, str]) -> str:
    if name in _COLORS:
        return _COLORS[name]
    if name not in seen:
        seen[name] = _CYCLE[len(seen) % len(_CYCLE)]
    return seen[name]


def _save(fig: Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=130, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def _use_log(values: pd.Series) -> bool:
    v = values[values > 0]
    return len(v) > 1 and float(v.max()) / float(v.min()) > 20


def _draw_front_axes(ax: Axes, table: pd.DataFrame, metric: str, fronts: Mapping[str, Front],
                     *, target: float | None, min_accuracy: float | None,
                     shade: bool = True, annotate: bool = True,
                     log_for_target: bool = True) -> None:
    usable = usable_trials(table, metric)
    feasible = feasibility(usable, metric, target)
    pruned, baselines = split_kinds(usable)
    seen: dict[str, str] = {}
    if "pruner" in pruned:
        groups = pruned.groupby(pruned["pruner"].fillna("?").astype(str), sort=True)
    else:
        groups = [("pruned", pruned)]
    for name, rows in groups:
        name = str(name)
        color = _color(name, seen)
        ok = rows[feasible.loc[rows.index]]
        bad = rows[~feasible.loc[rows.index]]
        if not ok.empty:
            ax.scatter(ok[metric], ok["accuracy"], s=22, color=color, alpha=0.45, zorder=2,
                       label=f"{name} trials ({len(ok)})")
        if not bad.empty:
            ax.scatter(bad[metric], bad["accuracy"], s=30, marker="x", color=color, alpha=0.6,
                       zorder=2, label=f"{name} infeasible ({len(bad)})")
        front = fronts.get(name)
        if front is not None and not front.empty:
            ax.step(front.points[metric], front.points["accuracy"], where="post", color=color,
                    linewidth=1.8, zorder=3, label=f"{name} Pareto front")
            ax.scatter(front.points[metric], front.points["accuracy"], s=40, color=color,
                       edgecolor="black", linewidth=0.6, zorder=4)
    if not baselines.empty:
        curve = baselines.sort_values(metric)
        ax.plot(curve[metric], curve["accuracy"], color="black", marker="s", markersize=5,
                linewidth=1.5, linestyle="-", zorder=3,
                label="thinner dense baseline (width √r)")
        if "width" in curve and annotate:
            for _, row in curve.iterrows():
                ax.annotate(f"×{float(row['width']):.2f}", (row[metric], row["accuracy"]),
                            textcoords="offset points", xytext=(4, -10), fontsize=7)
    reference = reference_rows(usable)
    if not reference.empty:
        ax.scatter(reference[metric], reference["accuracy"], s=60, marker="D", color="white",
                   edgecolor="black", linewidth=1.2, zorder=4,
                   label=f"unpruned reference ({len(reference)})")
    xs_all = usable[metric].astype(float)
    positive = xs_all[xs_all > 0]
    # A target far from every point (10 ms against 0.4 ms models) stays in view on a log axis:
    # on a linear one it would squash the points into one column, and left out it would leave
    # the whole plot looking feasible.
    far_target = (log_for_target and target is not None and target > 0 and not positive.empty
                  and not positive.min() / 3 <= target < positive.max() * 3)
    if _use_log(usable[metric]) or far_target:
        ax.set_xscale("log")
    if metric != "latency_ms":
        ax.xaxis.set_major_formatter(FuncFormatter(_count_tick))
    ax.set_xlabel(COST_LABELS.get(metric, metric))
    ax.set_ylabel("test accuracy")
    if not usable.empty:
        lo = float(usable["accuracy"].min())
        hi = float(usable["accuracy"].max())
        pad = max(0.02, 0.08 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
        xs = usable[metric].astype(float)
        if ax.get_xscale() == "log":
            lo, hi = float(xs[xs > 0].min()), float(xs.max())
            if target is not None and target > 0:
                lo, hi = min(lo, target), max(hi, target)
            ax.set_xlim(lo / 1.3, hi * 1.3)
        else:
            span = float(xs.max() - xs.min()) or float(xs.max()) or 1.0
            ax.set_xlim(max(0.0, float(xs.min()) - 0.08 * span), float(xs.max()) + 0.08 * span)
            # Bring a target within reach into view, on either side: a target left of every
            # point (nothing meets it) is the answer the plot has to show.
            x0, x1 = ax.get_xlim()
            if target is not None and x0 / 3 <= target < x1 * 3:
                ax.set_xlim(min(x0, max(0.0, target - 0.08 * span)), max(x1, target * 1.05))
    if shade:
        _shade_feasible(ax, metric, target, min_accuracy)
    ax.grid(True, alpha=0.3)


def _count_tick(value: float, _position: object = None) -> str:
    """``175k``, ``2.5M``: tick labels for counts, whose axis label gives the unit."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _amount(value: float, metric: str) -> str:
    """``60,000`` / ``0.48 ms``: a budget as a reader writes it."""
    if metric == "latency_ms":
        return f"{value:.3g} ms"
    return f"{value:,.0f}" if value >= 1000 else f"{value:g}"


def _shade_feasible(ax: Axes, metric: str, target: float | None,
                    min_accuracy: float | None) -> None:
    """Shade cost ≤ target and accuracy ≥ min_accuracy within the current limits."""
    if target is None and min_accuracy is None:
        return
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    right = min(x1, target) if target is not None else x1
    low = max(y0, min_accuracy) if min_accuracy is not None else y0
    if right > x0 and low < y1:
        ax.fill_between([x0, right], [low, low], [y1, y1], color="tab:green", alpha=0.10,
                        zorder=0, label="feasible region", linewidth=0)
    if target is not None and x0 < target < x1:
        ax.axvline(target, color="tab:green", linestyle="--", linewidth=1,
                   label=f"target ≤ {_amount(target, metric)}")
    if min_accuracy is not None and y0 < min_accuracy < y1:
        ax.axhline(min_accuracy, color="tab:green", linestyle=":", linewidth=1,
                   label=f"accuracy ≥ {min_accuracy:g}")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def plot_front(table: pd.DataFrame, metric: str, fronts: Mapping[str, Front], stem: Path, *,
               target: float | None = None, min_accuracy: float | None = None,
               title: str = "") -> list[Path]:
    """Accuracy vs ``metric``: trials per pruner, their fronts, the baseline curve, the feasible
    region shaded and infeasible trials as crosses."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    _draw_front_axes(ax, table, metric, fronts, target=target, min_accuracy=min_accuracy)
    ax.set_title(title or f"accuracy vs {metric}")
    # Outside the axes: inside, it hid trials in the lower right corner.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _save(fig, stem)


def plot_devices(repriced: pd.DataFrame, metric: str,
                 fronts_per_device: Mapping[str, Mapping[str, Front]], choice: pd.DataFrame,
                 stem: Path, *, target: float | None = None,
                 min_accuracy: float | None = None, several_runs: bool = False,
                 sources: Mapping[str, str] | None = None) -> list[Path]:
    """One panel per device: accuracy vs its re-priced ``metric``, the best qualifying model
    starred (hardware selection). ``several_runs``: name the chosen trial with its run;
    ``sources``: where each device's numbers come from ("datasheet", "measured")."""
    devices = list(fronts_per_device)
    cols = min(3, len(devices))
    rows = int(np.ceil(len(devices) / cols))
    # One latency axis for all devices: how far apart the devices are is the point of the figure.
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False,
                             sharey=True, sharex=True)
    best = choice.set_index("device") if not choice.empty else choice
    for ax, device in zip(axes.flat, devices, strict=False):
        part = repriced[repriced["device"] == device]
        _draw_front_axes(ax, part, metric, fronts_per_device[device], target=target,
                         min_accuracy=min_accuracy, shade=False, annotate=False,
                         log_for_target=False)  # one shared axis, set below
        meets = bool(best.loc[device, "meets"]) if device in best.index else False
        if meets:
            ax.scatter([best.loc[device, metric]], [best.loc[device, "accuracy"]], marker="*",
                       s=220, color="gold", edgecolor="black", zorder=5, label="best that meets")
            trial = str(best.loc[device, "trial_id"])
            if several_runs and "run" in best.columns:
                trial = f"{best.loc[device, 'run']}/{trial}"
            verdict = (f"meets: {trial}, "
                       f"accuracy {best.loc[device, 'accuracy']:.3f}")
        else:
            cheapest = usable_trials(part, metric)[metric].astype(float)
            verdict = ("does not meet the target" if cheapest.empty else
                       f"does not meet: its cheapest model is {_amount(cheapest.min(), metric)}")
        source = f" ({sources[device]})" if sources and device in sources else ""
        ax.set_title(f"{device}{source}\n{verdict}", fontsize=9)
    for ax in list(axes.flat)[len(devices):]:
        ax.set_visible(False)
    # Shared axes: one x range for all panels (each panel set its own), then the shading.
    used = list(axes.flat)[:len(devices)]
    xs = usable_trials(repriced, metric)[metric].astype(float) if metric in repriced else None
    if xs is not None and not xs.empty:
        lo, hi = float(xs.min()), float(xs.max())
        if target is not None:
            lo, hi = min(lo, target), max(hi, target)
        pad = 0.06 * ((hi - lo) or hi or 1.0)
        used[0].set_xlim(max(0.0, lo - pad), hi + pad)
    for ax in used:
        _shade_feasible(ax, metric, target, min_accuracy)
    # One legend for the figure (the panels share their entries), below the panels.
    # Counts differ per device (a trial feasible on one is not on another): entries without them.
    handles: dict[str, object] = {}
    for ax in used:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(re.sub(r" \(\d+\)$", "", label), handle)
    fig.suptitle("hardware selection: every trial re-priced on each device", fontsize=11)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=min(5, len(handles)), fontsize=7, frameon=False)
    return _save(fig, stem)


def plot_layer_sparsity(layers: pd.DataFrame, stem: Path, *, title: str = "") -> list[Path]:
    """Per-layer sparsity of one trial (erf-loss paper Fig. 5), with each layer's weight count."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(layers) + 2), 4.2))
    x = np.arange(len(layers))
    ax.bar(x, layers["sparsity"] * 100, color="tab:orange", edgecolor="black", linewidth=0.5)
    ax.set_xticks(x, layers["layer"], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("sparsity (% of weights pruned)")
    ax.set_ylim(0, 100)
    ax.grid(True, axis="y", alpha=0.3)
    twin = ax.twinx()
    twin.plot(x, layers["weights"], color="tab:blue", marker="o", markersize=3, linewidth=1)
    twin.set_yscale("log")
    twin.set_ylabel("weights in the layer (count, log scale)", color="tab:blue")
    total = float(layers["weights"].sum())
    kept = float(layers["kept_weights"].sum())
    ax.set_title(title or "per-layer sparsity")
    ax.text(0.01, 0.97, f"overall: {100 * (1 - kept / total):.1f}% of {int(total):,} weights "
            "pruned", transform=ax.transAxes, va="top", fontsize=8)
    fig.tight_layout()
    return _save(fig, stem)


def plot_kept_channels(layers: pd.DataFrame, stem: Path, *, title: str = "") -> list[Path]:
    """Kept vs full output channels per conv layer of one trial (BAR paper Fig. 7)."""
    convs = layers[layers["op"] == "conv"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(convs) + 2), 4.2))
    x = np.arange(len(convs))
    ax.bar(x, convs["out_channels"], color="lightgray", edgecolor="black", linewidth=0.5,
           label="full width")
    ax.bar(x, convs["kept_out"], width=0.55, color="tab:blue", label="kept")
    ax.set_xticks(x, convs["layer"], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("output channels (count)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "kept channels per layer")
    fig.tight_layout()
    return _save(fig, stem)
