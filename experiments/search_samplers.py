"""Constrained TPE vs Optuna's RandomSampler on one search, over sampler seeds (issues 6 and 17).

Every run searches the same space (``search_spaces/bar.yaml``) under the same binding target on
the same data split, starting from the same unpruned reference network: the reference is trained
once into ``WORK/_reference/reference/`` and copied into each run folder before the run starts,
so :func:`~budgetsearch.search.reference.ensure_reference` reuses it. Only the sampler and the
sampler's seed (``OptunaOptions.seed``; ``TrialSettings.seed``, which fixes the split and the
training, stays 0) change between runs. Trial pruning is off for both samplers, so a trained
trial costs the same whichever sampler proposed it. The target is the pruner's budget (the
pruner derives it at ``prepare``; the space searches no budget), so no trial slot is lost to an
infeasible budget: the ``rejected_before_training`` and ``trained_over_target`` columns are
kept as the check that this holds (both should be 0).

Per run: best feasible validation accuracy, its test accuracy, trials-to-best (1-based index of
the first trial reaching the run's best), feasible / trained-but-over-target / rejected-before-
training / failed trials, wall time. Per sampler: mean ± std over seeds.

Example:
    .venv/bin/python experiments/search_samplers.py --target-params 50k --trials 20 \\
        --seeds 0 1 2 3 4 --out experiments/results/samplers
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from budgetsearch.cost import Target, parse_count
from budgetsearch.search.optuna_driver import OptunaOptions
from budgetsearch.search.reference import REFERENCE_DIR, ensure_reference
from budgetsearch.search.request import RunRequest
from budgetsearch.search.runner import run_search
from budgetsearch.search.settings import TrialSettings

SAMPLERS = ("tpe", "random")
COLOURS = {"tpe": "tab:blue", "random": "tab:orange"}
# Fashion-MNIST has 10 balanced classes: a trial at or below this validation accuracy learnt
# nothing (flagged in the tables).
CHANCE_ACCURACY = 0.15


def copy_reference(source_run: Path, run_dir: Path) -> None:
    """Copy the trained reference into ``run_dir/reference`` with its paths pointing at the copy.

    The reference's ``row.json`` names its own model file; left as it is, every run would load
    the first folder's file (the same weights, but the run folders would not stand alone).
    """
    target = run_dir / REFERENCE_DIR
    shutil.copytree(source_run / REFERENCE_DIR, target)
    row = json.loads((target / "row.json").read_text())
    row["model_path"] = str(target / "model.pt")
    row["pruned_config_path"] = str(target / "pruned_config.json")
    (target / "row.json").write_text(json.dumps(row, default=str))


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """``frame[name]`` as floats, NaN where the column is absent (a hyperparameter the space
    does not search)."""
    if name in frame:
        return frame[name].astype(float)
    return pd.Series(math.nan, index=frame.index, dtype=float)


def trial_table(table: pd.DataFrame, *, sampler: str, seed: int) -> pd.DataFrame:
    """The pruned trials of one run in the order they ran, with the best-so-far curve."""
    trials = table[table["kind"] == "pruned"].sort_values("trial_id").reset_index(drop=True)
    feasible = (trials["status"] == "ok") & trials["feasible"].astype(bool)
    out = pd.DataFrame({
        "sampler": sampler, "sampler_seed": seed, "trial": range(1, len(trials) + 1),
        "trial_id": trials["trial_id"], "status": trials["status"],
        "feasible": feasible, "val_accuracy": trials["val_accuracy"].astype(float),
        "test_accuracy": trials["accuracy"].astype(float),
        "params": trials["params"].astype(float), "budget": _column(trials, "hp_budget"),
        "epochs": _column(trials, "hp_epochs"), "seconds": trials["seconds"].astype(float),
    })
    out["best_so_far_val"] = best_so_far(out)
    return out


def best_so_far(trials: pd.DataFrame) -> pd.Series:
    """Best feasible validation accuracy up to each trial of one run (NaN before the first)."""
    # cummax leaves NaN at the rejected trials; the best so far carries over them.
    return trials["val_accuracy"].where(trials["feasible"].astype(bool)).cummax().ffill()


def run_row(trials: pd.DataFrame, *, wall_s: float, target: float,
            load: tuple[float, float]) -> dict[str, Any]:
    """One run's figures (see the module docstring)."""
    feasible = trials[trials["feasible"]]
    row: dict[str, Any] = {
        "sampler": trials["sampler"].iloc[0], "sampler_seed": int(trials["sampler_seed"].iloc[0]),
        "trials": len(trials), "feasible": len(feasible),
        "trained_over_target": int(((trials["status"] == "ok") & ~trials["feasible"]).sum()),
        "rejected_before_training": int((trials["status"] == "infeasible").sum()),
        "failed": int((trials["status"] == "failed").sum()),
        "pruned": int((trials["status"] == "pruned").sum()),
        "at_chance": int((feasible["val_accuracy"] <= CHANCE_ACCURACY).sum()),
        "best_val_accuracy": math.nan, "best_test_accuracy": math.nan, "trials_to_best": math.nan,
        "best_params": math.nan, "best_params_over_target": math.nan, "best_budget": math.nan,
        "trained_seconds": float(trials.loc[trials["status"] != "infeasible", "seconds"].sum()),
        "wall_s": wall_s, "load_1m_start": load[0], "load_1m_end": load[1],
    }
    if not feasible.empty:
        best = feasible.loc[feasible["val_accuracy"].idxmax()]  # idxmax: the first of ties
        row.update(best_val_accuracy=float(best["val_accuracy"]),
                   best_test_accuracy=float(best["test_accuracy"]),
                   trials_to_best=int(best["trial"]), best_params=float(best["params"]),
                   best_params_over_target=float(best["params"]) / target,
                   best_budget=float(best["budget"]))
    return row


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (n−1) over sampler seeds, per sampler; best-* over runs with a feasible
    trial (``runs_with_feasible`` says how many)."""
    columns = ["best_val_accuracy", "best_test_accuracy", "trials_to_best", "feasible",
               "trained_over_target", "rejected_before_training", "failed", "at_chance",
               "trained_seconds", "wall_s"]
    rows = []
    for sampler, group in runs.groupby("sampler", sort=False):
        row: dict[str, Any] = {"sampler": sampler, "runs": len(group),
                               "runs_with_feasible": int(group["best_val_accuracy"].notna().sum())}
        for column in columns:
            values = group[column].astype(float).dropna()
            row[f"{column}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{column}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def plot_best_so_far(trials: pd.DataFrame, path: Path, *, reference_val: float | None,
                     title: str) -> None:
    """Left: best-so-far feasible validation accuracy vs trial index, one line per run (runs
    nudged sideways so that identical curves stay visible). Right: every trial's validation
    accuracy (filled: feasible; hollow: trained but over the target; ×: rejected before
    training, drawn at the bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    styles = ["-", "--", ":", "-."]
    groups = list(trials.groupby(["sampler", "sampler_seed"], sort=False))
    trained = trials[trials["status"] != "infeasible"]["val_accuracy"].dropna()
    floor = min([reference_val or 1.0, *trained.tolist()]) - 0.05
    for k, ((sampler, seed), run) in enumerate(groups):
        x = run["trial"] + (k - (len(groups) - 1) / 2) * 0.04
        style = dict(color=COLOURS[sampler], linestyle=styles[int(seed) % len(styles)])
        left.step(list(x) + [x.iloc[-1] + 0.5], list(run["best_so_far_val"])
                  + [run["best_so_far_val"].iloc[-1]], where="post", linewidth=1.8,
                  label=f"{sampler}, sampler seed {seed}", **style)
        ok = run[run["feasible"]]
        over = run[(run["status"] == "ok") & ~run["feasible"]]
        rejected = run[run["status"] == "infeasible"]
        xr = (k - (len(groups) - 1) / 2) * 0.06
        right.scatter(ok["trial"] + xr, ok["val_accuracy"], color=COLOURS[sampler], s=22)
        right.scatter(over["trial"] + xr, over["val_accuracy"], facecolors="none",
                      edgecolors=COLOURS[sampler], s=22)
        right.scatter(rejected["trial"] + xr, [floor + 0.01] * len(rejected), marker="x",
                      color=COLOURS[sampler], s=14, linewidths=0.8)
    for ax in (left, right):
        if reference_val is not None:
            ax.axhline(reference_val, color="grey", linewidth=1, linestyle=(0, (1, 3)),
                       label="unpruned reference (over target)" if ax is left else None)
        ax.set_xlabel("trial (rejected-before-training trials count)")
        ax.set_xticks(sorted(trials["trial"].unique()))
        ax.grid(alpha=0.3)
    left.set_ylim(bottom=floor)
    left.set_ylabel("validation accuracy")
    left.set_title("best feasible so far", fontsize=10)
    right.set_title("each trial (●: feasible, ○: over target, ×: rejected untrained)",
                    fontsize=10)
    left.legend(fontsize=7, loc="upper left", ncol=2, bbox_to_anchor=(0, 0.93))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def combine_runs(args: argparse.Namespace, title: str, target_value: float) -> None:
    """OUT's tables and figure from finished run folders (``--from-runs``). A run's wall time
    is not in its folder: ``wall_s`` is then the sum of its trials' seconds."""
    all_trials, runs, references = [], [], []
    for work in args.from_runs:
        references.append(json.loads((work / "_reference" / REFERENCE_DIR / "row.json")
                                     .read_text()))
        for seed in args.seeds:
            for sampler in args.samplers:
                path = work / f"{sampler}-s{seed}" / "results.csv"
                if not path.is_file():
                    continue
                table = pd.read_csv(path)
                trials = trial_table(table, sampler=sampler, seed=seed)
                if len(trials) < args.trials:
                    print(f"{path}: {len(trials)} of {args.trials} trials, left out")
                    continue
                runs.append(run_row(trials, wall_s=float(trials["seconds"].sum()),
                                    target=target_value, load=(math.nan, math.nan)))
                all_trials.append(trials)
    trials_frame, runs_frame, summary_frame = write_tables(all_trials, runs, args.out)
    info = {"command": "experiments/search_samplers.py --from-runs " + " ".join(
                str(w) for w in args.from_runs),
            "references": [{k: r[k] for k in ("val_accuracy", "accuracy", "params", "seconds")}
                           for r in references],
            "reference": {k: references[0][k] for k in ("val_accuracy", "accuracy", "params",
                                                        "seconds")},
            "space": args.space, "trial_pruning": False,
            "tpe_n_startup_trials": OptunaOptions().n_startup_trials}
    (args.out / "run.json").write_text(json.dumps(info, indent=1, default=str))
    plot_best_so_far(trials_frame, args.out / "best_so_far.png",
                     reference_val=references[0]["val_accuracy"], title=title)
    print(summary_frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))



def write_tables(all_trials: list[pd.DataFrame], runs: list[dict[str, Any]], out: Path
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """trials.csv, runs.csv and summary.csv in ``out``: (trials, runs, summary) frames."""
    trials_frame = pd.concat(all_trials, ignore_index=True)
    runs_frame = pd.DataFrame(runs)
    summary_frame = summarize(runs_frame)
    trials_frame.to_csv(out / "trials.csv", index=False)
    runs_frame.to_csv(out / "runs.csv", index=False)
    summary_frame.to_csv(out / "summary.csv", index=False)
    return trials_frame, runs_frame, summary_frame

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target-params", default="50k")
    parser.add_argument("--model", default="wrn-16-1")
    parser.add_argument("--space", default="bar")
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="fashion-mnist (default); synthetic for a quick check")
    parser.add_argument("--train-subset", type=int, default=1500)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--reference-epochs", type=float, default=2.0)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--test-subset", type=int, default=None,
                        help="score on the first N test images (default: all 10,000)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("runs/samplers"),
                        help="run folders (study.db, trials, models); not committed")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/samplers"))
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw best_so_far.png from OUT/trials.csv and OUT/run.json")
    parser.add_argument("--from-runs", type=Path, nargs="+", metavar="WORK",
                        help="rebuild OUT's tables and figure from the run folders "
                        "(SAMPLER-sSEED/results.csv) of one or more --work folders, e.g. two "
                        "processes that ran different seeds side by side")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    target_value = parse_count(args.target_params, name="target_params")
    title = (f"{args.model}, {args.dataset} {args.train_subset} images, params ≤ "
             f"{args.target_params}, {args.trials} trials, no trial pruning")
    if args.plot_only:
        info = json.loads((args.out / "run.json").read_text())
        trials = pd.read_csv(args.out / "trials.csv")
        trials["best_so_far_val"] = trials.groupby(["sampler", "sampler_seed"], group_keys=False,
                                                   sort=False).apply(best_so_far)
        trials.to_csv(args.out / "trials.csv", index=False)
        plot_best_so_far(trials, args.out / "best_so_far.png",
                         reference_val=info["reference"]["val_accuracy"], title=title)
        return

    if args.from_runs:
        combine_runs(args, title, target_value)
        return

    started = time.perf_counter()
    load_start = os.getloadavg()
    settings = TrialSettings(
        model=args.model, dataset=args.dataset, train_subset=args.train_subset,
        val_fraction=args.val_fraction,
        target=Target("params", target_value, text=args.target_params), seed=0,
        threads=args.threads, reference_epochs=args.reference_epochs,
        test_subset=args.test_subset)
    source = args.work / "_reference"
    shutil.rmtree(args.work, ignore_errors=True)
    reference = ensure_reference(settings, source)
    print(f"reference {args.model}: val {reference['val_accuracy']:.4f}, test "
          f"{reference['accuracy']:.4f}, {reference['seconds']:.0f} s", flush=True)

    all_trials, runs = [], []
    # Seed-major order, samplers alternating: a drift in the machine's load falls on both.
    for seed in args.seeds:
        for sampler in args.samplers:
            run_dir = args.work / f"{sampler}-s{seed}"
            copy_reference(source, run_dir)
            request = RunRequest(settings=settings, space=args.space, optuna=OptunaOptions(
                trials=args.trials, timeout_s=None, sampler=sampler, seed=seed, prune=False))
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            summary = run_search(request, run_dir, progress=False,
                                 command=f"experiments/search_samplers.py ({sampler}, seed {seed})")
            wall = time.perf_counter() - t0
            trials = trial_table(summary.table, sampler=sampler, seed=seed)
            row = run_row(trials, wall_s=wall, target=target_value,
                          load=(load_before, os.getloadavg()[0]))
            all_trials.append(trials)
            runs.append(row)
            print(f"{sampler} seed {seed}: best val {row['best_val_accuracy']:.4f} at trial "
                  f"{row['trials_to_best']}, {row['feasible']} feasible, "
                  f"{row['rejected_before_training']} rejected, {row['failed']} failed, "
                  f"{wall:.0f} s, load {row['load_1m_end']:.2f}", flush=True)
    trials_frame, runs_frame, summary_frame = write_tables(all_trials, runs, args.out)
    info = {
        "command": "experiments/search_samplers.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k != "plot_only"),
        "settings": replace(settings, reference_path=None).as_dict(),
        "space": args.space, "trial_pruning": False, "tpe_n_startup_trials":
            OptunaOptions().n_startup_trials,
        "reference": {k: reference[k] for k in ("val_accuracy", "accuracy", "params", "seconds")},
        "wall_s": time.perf_counter() - started, "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(), "cpus": os.cpu_count(), "machine": platform.processor()
        or platform.machine(), "torch_threads": args.threads,
    }
    (args.out / "run.json").write_text(json.dumps(info, indent=1, default=str))
    plot_best_so_far(trials_frame, args.out / "best_so_far.png",
                     reference_val=reference["val_accuracy"], title=title)
    print(summary_frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wall {info['wall_s']:.0f} s, load {info['loadavg_end']}")


if __name__ == "__main__":
    main()
