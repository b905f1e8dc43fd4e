"""The short markdown report of ``budgetsearch pareto``: fronts, hypervolumes, hardware table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from budgetsearch.pareto.fronts import COST_LABELS, Front, HardwareChoice

FLOP_NOTE = "FLOPs follow fvcore: 1 FLOP = 1 fused multiply-add."


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if 1e3 <= abs(value) < 1e15 and (value.is_integer() or abs(value) >= 1e4):
            return f"{value:,.0f}"  # counts (parameters, FLOPs) read best in full
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    if value is None:
        return "–"
    return str(value)


def markdown_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """A GitHub markdown table of ``columns`` (those present) of ``frame``."""
    columns = [c for c in columns if c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def render_report(*, run_dir: str, command: str, metric: str,
                  fronts: Mapping[str, Mapping[str, Front]],
                  hypervolumes: Mapping[str, Mapping[str, float]],
                  references: Mapping[str, tuple[float, float]],
                  choice: HardwareChoice | None, plots: Sequence[str],
                  counts: Mapping[str, int], notes: Sequence[str] = (),
                  show_run: bool = False, regenerate: Sequence[str] = ()) -> str:
    """Markdown text of the report (the caller writes it).

    ``show_run`` adds the run column to the tables (several runs merged: trial ids repeat);
    ``regenerate`` lists the commands that remake the report from nothing (the runs, the
    baselines, then ``command``); they close the report.
    """
    run_column = ["run"] if show_run else []
    made = f"Made by `{command}`" + ("; the commands that regenerate everything, training "
                                     "included, close the report." if regenerate else ".")
    out = [f"# Pareto report: {run_dir}", "", made, "",
           "Rows by kind: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ". "
           + FLOP_NOTE, ""]
    for cost, groups in fronts.items():
        ref = references.get(cost)
        metric, _, device = cost.partition(" on ")  # "latency_ms on jetson-nano"
        where = f" on {device}" if device else ""
        out += [f"## Accuracy vs {COST_LABELS.get(metric, metric)}{where}", ""]
        if ref is not None:
            out += [f"Hypervolume against the reference point (cost {_fmt(float(ref[0]))}, "
                    f"accuracy {ref[1]:.4g}); larger is better:", ""]
            hv = hypervolumes.get(cost, {})
            out.append(" · ".join(f"{name} {hv.get(name, 0.0):.4g}" for name in groups))
            out.append("")
        for name, front in groups.items():
            if front.empty:
                out += [f"- **{name}**: empty front — {front.note}", ""]
                continue
            out += [f"**{name}** front ({len(front.points)} trial(s)):", "",
                    markdown_table(front.points, [*run_column, "trial_id", "kind", "pruner",
                                                  "width", "accuracy", front.metric]), ""]
    if choice is not None:
        target = f"{choice.metric} ≤ {choice.target:g}" if choice.target is not None else \
            "no cost target"
        acc = f"accuracy ≥ {choice.min_accuracy:g}" if choice.min_accuracy is not None else \
            "any accuracy"
        meeting = ", ".join(choice.devices_meeting) or "none"
        out += ["## Hardware selection", "",
                f"Every trial re-priced on each device (no retraining). Question: {target} at "
                f"{acc}. Devices that meet it: **{meeting}**.", "",
                markdown_table(choice.table, ["device", "meets", "feasible_trials", *run_column,
                                              "trial_id",
                                              "pruner", "kind", "accuracy", choice.metric,
                                              "params", "flops", f"cheapest_{choice.metric}"]),
                ""]
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    out += ["## Plots", ""] + [f"- [{p}]({p})" for p in plots] + [""]
    if regenerate:
        out += ["## Regenerate", "", "From the repository root, in this order (`budgetsearch run` "
                "wants `--force` to reuse a non-empty folder; training again, on another "
                "machine or under other load, gives close, not identical, numbers):", "", "```"]
        out += list(regenerate) + ["```", ""]
    return "\n".join(out)
