"""Issue 16: should anchors alone rescale a profile inside the tolerance? A replay of the
2026-12-03 benchmark runs whose eager check applied the anchors alone (no timing), then of
2026-12-02's thirteen runs (another profile and machine).

Each run's output gives the factor the check applied and its own snapshot; its CSV the predicted
and measured times of the 48 foreign networks. Each prediction is taken back to the profile as
recorded (prediction / applied factor) and scored within ±10 % as recorded, as the run rescaled
it, as rescaled by the run's own snapshot beyond 3 %, and by half its own snapshot's drift in
log terms (its square root: a shrinkage for a snapshot whose noise is as large as the drift;
the rule since 2026-12-03 16:50). Runs whose check re-fitted on networks timed now are not
replayed (a re-fit is not one factor), nor 09:30 and 10:12, which applied a stale re-fit (the bug
``anchors.smoothed`` now lapses). From 13:40 to 16:50 the rule (anchors alone rescale only beyond
the tolerance, by this snapshot and the quietest recent one alike) is the "recorded" column:
none of the replayed snapshots read beyond ±10 %. The applied factor is parsed as printed (3
decimals), so a network right at ±10 % may flip.

    python experiments/rescale_replay.py
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PROFILE = "cpu-2core-x86-avx2"
STALE_REFIT = ("1203-0930", "1203-1012")


def main() -> None:
    print(f"{'run':<10} {'applied':>7} {'snapshot':>8} {'needed':>6}  {'as run':>6} "
          f"{'recorded':>8} {'own >3%':>7} {'own half':>8}")
    totals: dict[str, list[float]] = {"as run": [], "recorded": [], "own >3%": [],
                                      "own half": []}
    for output in sorted(RESULTS.glob("latency_accuracy_output_1203-*.txt")):
        run = output.stem.rsplit("_", 1)[1]
        text = output.read_text()
        eager = text.split(f"== {PROFILE}-ort")[0]
        match = re.search(rf"== {PROFILE} \(pytorch-eager.*?drift check: x([\d.]+) \(this "
                          r"snapshot x([\d.]+).*?recalibrated (\w+)", eager)
        table = RESULTS / f"latency_accuracy_{run}.csv"
        if not match or not table.exists():
            print(f"{run:<10} (no {PROFILE} check in its output, or no CSV: skipped)")
            continue
        applied, snapshot = float(match.group(1)), float(match.group(2))
        if "re-fitted on networks timed now" in eager or run in STALE_REFIT:
            print(f"{run:<10} {applied:>7.3f} {snapshot:>8.3f}  (a re-fit applied: not replayed)")
            continue
        scale = applied if match.group(3) == "True" else 1.0
        with open(table) as f:
            pairs = [(float(r["predicted_ms"]) / scale, float(r["measured_ms"]))
                     for r in csv.DictReader(f)
                     if r["profile"] == PROFILE and r["family"] != "compact-wrn"]

        def within(factor: float, pairs: list[tuple[float, float]] = pairs) -> float:
            return sum(abs(p * factor / m - 1) <= 0.10 for p, m in pairs) / len(pairs)

        needed = math.exp(statistics.median(math.log(m / p) for p, m in pairs))
        shares = {"as run": within(scale), "recorded": within(1.0),
                  "own >3%": within(snapshot if abs(snapshot - 1) > 0.03 else 1.0),
                  "own half": within(math.sqrt(snapshot))}
        for key, value in shares.items():
            totals[key].append(value)
        print(f"{run:<10} {applied:>7.3f} {snapshot:>8.3f} {needed:>6.3f}  "
              + " ".join(f"{shares[k]:>{len(k) if len(k) > 6 else 6}.0%}" for k in shares))
    print(f"mean over {len(totals['as run'])} runs"
          + " " * 18 + " ".join(f"{statistics.mean(v):>{max(6, len(k))}.0%}"
                                for k, v in totals.items()))
    other_day()


def other_day() -> None:
    """The same rules on 2026-12-02's thirteen runs (another profile, ``cpu-2core-x86``, on an
    AVX-512 machine; ``drift_history_replay.py``), and on those of them inside the tolerance."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from drift_history_replay import RUNS, load

    print("\n2026-12-02 (cpu-2core-x86):")
    print(f"{'run':<10} {'snapshot':>8} {'needed':>6}  {'recorded':>8} {'own >3%':>7} "
          f"{'own half':>8}")
    rows, inside = [], []
    for run in RUNS:
        _, snapshot, pairs = load(run)

        def within(factor: float, pairs: list[tuple[float, float]] = pairs) -> float:
            return sum(abs(p * factor / m - 1) <= 0.10 for p, m in pairs) / len(pairs)

        needed = math.exp(statistics.median(math.log(m / p) for p, m in pairs))
        shares = (within(1.0), within(snapshot if abs(snapshot - 1) > 0.03 else 1.0),
                  within(math.sqrt(snapshot)))
        rows.append(shares)
        if abs(snapshot - 1) <= 0.10:
            inside.append(shares)
        print(f"{run:<10} {snapshot:>8.3f} {needed:>6.3f}  {shares[0]:>8.0%} {shares[1]:>7.0%} "
              f"{shares[2]:>8.0%}")
    for label, group in ((f"mean over {len(rows)} runs", rows),
                         (f"the {len(inside)} inside ±10%", inside)):
        print(f"{label:<27}" + " ".join(f"{statistics.mean(c):>8.0%}" for c in zip(*group)))


if __name__ == "__main__":
    main()
