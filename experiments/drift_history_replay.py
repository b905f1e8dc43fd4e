"""Issue 16: which of a machine's recent drift-check snapshots should rescale a profile?
A replay of the thirteen latency_accuracy.py runs of 2026-12-02 15:13-16:11 (no timing).

Each run's output gives the check's applied factor and its own snapshot; its CSV the predicted
and measured times of the 48 foreign networks. A prediction is rescaled to what another rule
would have applied (prediction / applied × rule's factor), and scored within ±10 %. The runs at
15:47 onwards follow a re-fit that started a new history.

    python experiments/drift_history_replay.py
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = ("1513", "1514", "1516", "1518", "1520", "1522", "1547", "1549", "1551", "1553", "1555",
        "1609", "1611")
NEW_HISTORY = "1547"
PROFILE = "cpu-2core-x86"


def load(run: str) -> tuple[float, float, list[tuple[float, float]]]:
    """(applied factor, this run's snapshot, [(prediction at factor 1, measured ms)])."""
    text = (RESULTS / f"latency_accuracy_output_{run}.txt").read_text()
    match = re.search(r"== cpu-2core-x86 \(pytorch-eager.*?drift check: x([\d.]+) \(this "
                      r"snapshot x([\d.]+)", text)
    assert match, run
    applied, snapshot = float(match.group(1)), float(match.group(2))
    with open(RESULTS / f"latency_accuracy_{run}.csv") as f:
        rows = [r for r in csv.DictReader(f)
                if r["profile"] == PROFILE and r["family"] != "compact-wrn"]
    return applied, snapshot, [(float(r["predicted_ms"]) / applied, float(r["measured_ms"]))
                               for r in rows]


def within(pairs: list[tuple[float, float]], factor: float) -> float:
    return sum(abs(p * factor / m - 1) <= 0.10 for p, m in pairs) / len(pairs)


def main() -> None:
    rules = {"median of last 6 (applied)": None, "this snapshot": lambda h: h[-1],
             "quietest of last 6": lambda h: min(h[-6:]),
             "quietest of last 3": lambda h: min(h[-3:]),
             "median of last 6": lambda h: statistics.median(h[-6:])}
    totals = {rule: [] for rule in rules}
    history: list[float] = []
    print(f"{'run':<5} {'needed':>7}  " + "  ".join(f"{r:>26}" for r in rules))
    for run in RUNS:
        applied, snapshot, pairs = load(run)
        if run == NEW_HISTORY:
            history = []
        history.append(snapshot)
        needed = math.exp(statistics.median(math.log(m / p) for p, m in pairs))
        cells = []
        for rule, pick in rules.items():
            factor = applied if pick is None else pick(history)
            share = within(pairs, factor)
            totals[rule].append(share)
            cells.append(f"x{factor:.3f} {share:>4.0%}")
        print(f"{run:<5} x{needed:.3f}  " + "  ".join(f"{c:>26}" for c in cells))
    print("mean  " + " " * 8 + "  ".join(f"{statistics.mean(v):>26.0%}" for v in totals.values()))


if __name__ == "__main__":
    main()
