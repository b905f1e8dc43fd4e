"""Training speed (images/s) of budgetsearch's train() against a plain fp32 PyTorch loop (issue 17).

Two parts:

- ``speed``: WRN-16-1, batch 128, one torch thread, on Fashion-MNIST images. Variants:
  ``plain-fp32`` (a plain NCHW fp32 loop written out below: model, SGD, cross_entropy; no
  budgetsearch code), and budgetsearch's ``train()`` with ``auto`` acceleration, ``fp32+cl``
  (channels_last only), ``bf16`` (autocast only, contiguous) and ``fp32`` (neither: the loop's
  own overhead against the plain one). Every round runs each variant once from a fresh model,
  each run in a fresh Python process, in an order rotated every round and reversed every other
  round (an in-process first version, fixed order rotation, had the fp32 train() run, which
  always followed the bf16 one, 21 % below the plain loop). A run's throughput is timed from the
  end of its first step (warm-up) to the end of its last, so evaluation and set-up are not
  counted. The table gives medians over rounds. The CPU used by *other* processes during each
  run is read from /proc/stat (all busy jiffies) minus the run's own (/proc/self/stat), in cores.
- ``accuracy``: the same seed and data trained with ``precision="fp32", memory_format=
  "contiguous"`` (bit for bit the loop before acceleration), with fp32 + channels_last (which
  changes only the rounding: the run-to-run noise floor) and with ``auto``; test accuracy of
  each (train() evaluates in fp32), and the auto model evaluated under bf16 autocast as well.

Usage:
    PYTHONPATH=. .venv/bin/python experiments/bench_train_speed.py speed --rounds 7 --steps 20
    PYTHONPATH=. .venv/bin/python experiments/bench_train_speed.py accuracy \
        --train-subset 10000 --epochs 1 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from budgetsearch.acceleration import _cpu_flags, choose_acceleration
from budgetsearch.data import DatasetSplits, load_dataset
from budgetsearch.models import build_model
from budgetsearch.train import StepContext, TrainConfig, evaluate, train

MODEL = "wrn-16-1"
RESULTS = Path(__file__).parent / "results" / "train_speed.csv"
# name -> (precision, memory_format) of budgetsearch's train(); None: the plain loop
VARIANTS: dict[str, tuple[str, str] | None] = {
    "plain-fp32": None,
    "train-auto": ("auto", "auto"),
    "train-fp32+cl": ("fp32", "channels_last"),
    "train-bf16": ("bf16", "contiguous"),
    "train-fp32": ("fp32", "contiguous"),
}


# -- load of other processes ----------------------------------------------------------------------


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot (/proc/stat's first line)."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _own_jiffies() -> int:
    """utime + stime of this process (all threads), in jiffies."""
    with open("/proc/self/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@dataclass
class LoadMeter:
    """CPU used by other processes over a window, in cores (0 = quiet, 2 = both cores busy)."""

    busy: int = 0
    total: int = 0
    own: int = 0

    def start(self) -> None:
        self.busy, self.total = _busy_jiffies()
        self.own = _own_jiffies()

    def others_cores(self) -> float:
        busy, total = _busy_jiffies()
        own = _own_jiffies()
        cores = os.cpu_count() or 1
        elapsed = max(1, total - self.total)
        return max(0.0, (busy - self.busy) - (own - self.own)) / elapsed * cores


# -- the variants ---------------------------------------------------------------------------------


def _fresh_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(MODEL, num_classes=10, in_channels=1)


def _plain_fp32_loop(model: nn.Module, data: DatasetSplits, batch: int, steps: int,
                     seed: int) -> list[float]:
    """The reference: what one writes without budgetsearch (fp32, NCHW, SGD, cross-entropy)."""
    loader = torch.utils.data.DataLoader(data.train, batch_size=batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    model.train()
    stamps = []
    for _, (inputs, targets) in zip(range(steps), loader):
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        stamps.append(time.perf_counter())
    return stamps


class _StepClock:
    """Training hooks that only time the steps (the default hooks' behaviour otherwise)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def param_groups(self) -> list[dict[str, Any]]:
        return []

    def loss_terms(self, context: StepContext) -> dict[str, torch.Tensor]:
        return {"task": context.task_loss}

    def after_step(self, context: StepContext) -> None:
        self.stamps.append(time.perf_counter())


def _budgetsearch_train(model: nn.Module, data: DatasetSplits, batch: int, steps: int, seed: int,
                        precision: str, memory_format: str) -> list[float]:
    clock = _StepClock()
    epochs = steps / -(-len(data.train) // batch)
    config = TrainConfig(epochs=epochs, batch_size=batch, seed=seed, progress=False,
                         device="cpu", precision=precision, memory_format=memory_format)
    result = train(model, data, config, hooks=clock)
    if result.status != "ok":
        raise RuntimeError(f"train() failed: {result.failure}")
    return clock.stamps


def _images_per_second(stamps: list[float], batch: int) -> float:
    # from the end of step 1 (warm-up) to the end of the last step
    return batch * (len(stamps) - 1) / (stamps[-1] - stamps[0])


def _speed_data(args: argparse.Namespace) -> DatasetSplits:
    data = load_dataset(args.dataset, train_subset=args.batch_size * (args.steps + 1), seed=0)
    # a one-batch test set: train() evaluates at the end, outside the timed steps anyway
    return DatasetSplits(data.name, data.train, None,
                         torch.utils.data.Subset(data.test, range(args.batch_size)),
                         data.num_classes, data.in_channels, data.image_size)


def run_one(name: str, data: DatasetSplits, args: argparse.Namespace) -> dict[str, Any]:
    """One timed run of one variant, from a fresh model."""
    model = _fresh_model(args.seed)
    meter = LoadMeter()
    meter.start()
    settings = VARIANTS[name]
    if settings is None:
        stamps = _plain_fp32_loop(model, data, args.batch_size, args.steps, args.seed)
    else:
        stamps = _budgetsearch_train(model, data, args.batch_size, args.steps, args.seed,
                                     *settings)
    others = meter.others_cores()
    rate = _images_per_second(stamps, args.batch_size)
    return {"variant": name, "steps": len(stamps), "batch_size": args.batch_size,
            "images_per_s": round(rate, 1), "step_ms": round(1000 * args.batch_size / rate, 1),
            "others_cores": round(others, 2)}


def run_speed(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every round runs each variant once, in a fresh Python process (so that no run inherits
    another's allocator, oneDNN caches or AMX state), in an order rotated every round and
    reversed every other round (each variant follows each other one)."""
    names = list(VARIANTS)
    rows = []
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        order = names[shift:] + names[:shift]
        if round_index % 2:
            order.reverse()
        for name in order:
            command = [sys.executable, __file__, "one", "--variant", name,
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                       "--seed", str(args.seed), "--dataset", args.dataset,
                       "--threads", str(args.threads)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            row = {"round": round_index, **json.loads(output.strip().splitlines()[-1])}
            rows.append(row)
            print(f"round {round_index} {name:<14} {row['images_per_s']:7.1f} images/s  "
                  f"(others: {row['others_cores']:.2f} cores)", flush=True)
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median images/s per variant and its ratio to the plain loop's median (same run)."""
    by_variant: dict[str, list[float]] = {}
    for row in rows:
        by_variant.setdefault(row["variant"], []).append(row["images_per_s"])
    base = statistics.median(by_variant["plain-fp32"])
    summary = []
    for name, rates in by_variant.items():
        median = statistics.median(rates)
        summary.append({"variant": name, "median_images_per_s": median,
                        "min": min(rates), "max": max(rates),
                        "step_ms": 1000 * rows[0]["batch_size"] / median,
                        "vs_plain": median / base})
    return summary


def _machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = sorted(f for f in (_cpu_flags() or ()) if "bf16" in f or f == "avx512f")
    return (f"{model}, {os.cpu_count()} cores, flags {' '.join(flags) or 'unknown'}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")


def main_speed(args: argparse.Namespace) -> None:
    print(_machine())
    print(f"auto = {choose_acceleration('cpu', model=_fresh_model(0)).reason}")
    rows = run_speed(args)
    summary = summarize(rows)
    others = [row["others_cores"] for row in rows]
    print(f"\nother processes: median {statistics.median(others):.2f} cores "
          f"(min {min(others):.2f}, max {max(others):.2f}) of {os.cpu_count()}")
    print("| variant | images/s (median) | range | ms/step | vs plain fp32 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for item in summary:
        print(f"| {item['variant']} | {item['median_images_per_s']:.0f} | "
              f"{item['min']:.0f}–{item['max']:.0f} | {item['step_ms']:.0f} | "
              f"{item['vs_plain']:.2f}× |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"rows: {args.out}")


# -- accuracy -------------------------------------------------------------------------------------


def main_accuracy(args: argparse.Namespace) -> None:
    print(_machine())
    data = load_dataset(args.dataset, train_subset=args.train_subset, seed=0)
    test_loader = data.loaders(args.batch_size)[1]
    meter = LoadMeter()
    runs = (("fp32", "fp32", "contiguous"), ("fp32+cl", "fp32", "channels_last"),
            ("auto", "auto", "auto"))
    print("| seed | fp32 | fp32+channels_last | auto (bf16+channels_last) | "
          "auto, evaluated under bf16 | auto − fp32 | fp32+cl − fp32 | others (cores) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for seed in args.seeds:
        meter.start()
        accuracy = {}
        for name, precision, memory_format in runs:
            model = _fresh_model(seed)
            config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=seed,
                                 progress=False, device="cpu", precision=precision,
                                 memory_format=memory_format)
            accuracy[name] = 100 * train(model, data, config).test_accuracy  # fp32 evaluation
            if name == "auto":
                bf16 = choose_acceleration("cpu", precision="bf16", model=model)
                accuracy["auto-bf16-eval"] = 100 * evaluate(model, test_loader,
                                                             acceleration=bf16)
        print(f"| {seed} | {accuracy['fp32']:.2f} | {accuracy['fp32+cl']:.2f} | "
              f"{accuracy['auto']:.2f} | {accuracy['auto-bf16-eval']:.2f} | "
              f"{accuracy['auto'] - accuracy['fp32']:+.2f} | "
              f"{accuracy['fp32+cl'] - accuracy['fp32']:+.2f} | {meter.others_cores():.2f} |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="part", required=True)
    speed = sub.add_parser("speed", help="images/s of the variants (interleaved rounds)")
    speed.add_argument("--rounds", type=int, default=7)
    speed.add_argument("--steps", type=int, default=20,
                       help="steps per run; the first is warm-up, not timed")
    speed.add_argument("--seed", type=int, default=0)
    speed.add_argument("--out", type=Path, default=RESULTS)
    one = sub.add_parser("one", help="(internal) one timed run of one variant, as JSON")
    one.add_argument("--variant", choices=list(VARIANTS), required=True)
    one.add_argument("--steps", type=int, default=20)
    one.add_argument("--seed", type=int, default=0)
    accuracy = sub.add_parser("accuracy", help="test accuracy of fp32 vs auto, same seed/data")
    accuracy.add_argument("--train-subset", type=int, default=10_000)
    accuracy.add_argument("--epochs", type=float, default=1.0)
    accuracy.add_argument("--seeds", type=int, nargs="+", default=[0])
    for part in (speed, one, accuracy):
        part.add_argument("--dataset", default="fashion-mnist")
        part.add_argument("--batch-size", type=int, default=128)
        part.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part == "speed":
        main_speed(args)
    elif args.part == "one":
        print(json.dumps(run_one(args.variant, _speed_data(args), args)))
    else:
        main_accuracy(args)


if __name__ == "__main__":
    main()
