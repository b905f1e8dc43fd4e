"""Ray Tune engine throughput: the same small sweep with 1 vs 2 trials at once (issue 6).

Each configuration runs ``budgetsearch run --engine ray`` in a fresh process (which starts its own
local Ray): 4 identical BAR trials of wrn-10-1 (every hyperparameter fixed, so each trial does
the same work) on a few hundred Fashion-MNIST images, 1 torch thread and 1 CPU per trial, no
early stopping. Configurations alternate (1, 2, 1, 2, ...) so that a change in the load of this
shared machine hits both; ``os.getloadavg()`` is recorded before and after every run.

Two rates per run: trials/minute over the trials' own span (first trial start to last trial
end, from Tune's experiment state) and over the whole command (Ray start-up included).

Usage:
    BUDGETSEARCH_DATA=/usr/share/datasets/fashion-mnist \
        .venv/bin/python experiments/bench_ray_throughput.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Every option fixed (a one-choice categorical is the only searched name): identical trials.
SPACE = """\
pruner: bar
parameters:
  lam: {type: categorical, choices: [1.0]}
fixed: {budget: 0.5, hardness: 5.0, kd_alpha: 0.0, lr: 0.002, epochs: 1.0, transition: sigmoid,
        gate_lr: 0.05}
"""


def trial_span_s(run_dir: Path) -> float:
    """Seconds from the first trial's start to the last trial's end (Tune's own clock)."""
    [state] = (run_dir / "ray" / "budgetsearch").glob("experiment_state-*.json")
    starts, ends = [], []
    for _, runtime_json in json.loads(state.read_text())["trial_data"]:
        result = json.loads(runtime_json)["last_result"]
        ends.append(float(result["timestamp"]))
        starts.append(float(result["timestamp"]) - float(result["time_total_s"]))
    return max(ends) - min(starts)


def run_once(concurrent: int, args: argparse.Namespace, work: Path, index: int) -> dict[str, Any]:
    """One sweep at ``concurrent`` trials at once; its timings and the load around it."""
    space = work / "space.yaml"
    space.write_text(SPACE)
    out = work / f"run-{index}-c{concurrent}"
    command = [str(Path(sys.executable).parent / "budgetsearch"), "run", "--engine", "ray",
               "--max-concurrent", str(concurrent), "--cpus-per-trial", "1",
               "--space", str(space), "--model", "wrn-10-1", "--dataset", "fashion-mnist",
               "--train-subset", str(args.train_subset), "--batch-size", "64",
               "--trials", str(args.trials), "--threads", "1", "--sampler", "random",
               "--seed", "0", "--no-pruning", "--no-progress", "--timeout", "none",
               "--out", str(out)]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    load_before = os.getloadavg()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    if done.returncode != 0:
        raise RuntimeError(f"sweep failed (rc {done.returncode}):\n{done.stdout}\n{done.stderr}")
    with open(out / "results.csv") as handle:
        # results.csv starts with the unpruned reference's row: count the trials only.
        rows = [r for r in csv.DictReader(handle) if r.get("kind") != "reference"]
    span = trial_span_s(out)
    return {
        "max_concurrent": concurrent, "trials": len(rows),
        "statuses": sorted({r["status"] for r in rows}),
        "trial_seconds_median": statistics.median(float(r["seconds"]) for r in rows),
        "trial_span_s": span, "wall_s": wall,
        "trials_per_min_span": 60 * len(rows) / span, "trials_per_min_wall": 60 * len(rows) / wall,
        "loadavg_before": list(load_before), "loadavg_after": list(load_after),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("BUDGETSEARCH_DATA"))
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--train-subset", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/ray"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        for index in range(args.repeats):
            for concurrent in (1, 2):
                run = run_once(concurrent, args, Path(tmp), index)
                print(json.dumps(run), flush=True)
                runs.append(run)
    summary: dict[str, Any] = {"cpu_count": os.cpu_count(), "trials": args.trials,
                               "train_subset": args.train_subset, "model": "wrn-10-1",
                               "dataset": "fashion-mnist", "runs": runs}
    for key in ("trials_per_min_span", "trials_per_min_wall"):
        median = {c: statistics.median(r[key] for r in runs if r["max_concurrent"] == c)
                  for c in (1, 2)}
        summary[key] = {"concurrent_1": median[1], "concurrent_2": median[2],
                        "ratio_2_over_1": median[2] / median[1]}
    (args.out / "throughput.json").write_text(json.dumps(summary, indent=1))
    with open(args.out / "throughput.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[k for k in runs[0] if k != "statuses"],
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(runs)
    for key in ("trials_per_min_span", "trials_per_min_wall"):
        s = summary[key]
        print(f"{key}: 1 at once {s['concurrent_1']:.2f}, 2 at once {s['concurrent_2']:.2f}, "
              f"ratio {s['ratio_2_over_1']:.2f}")


if __name__ == "__main__":
    main()
