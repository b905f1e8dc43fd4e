"""Training runs shared by the erf-loss experiments (``erf_table2.py``, ``erf_tradeoff.py``).

One :class:`RunSetting` (model, data, epochs, seed) is used for every row of an experiment, so
dense, thinner-dense and pruned networks see the same data for the same number of steps. Each run
returns a plain dict (one CSV row); plotting lives in the scripts.

Pruned runs drive the pruner through its protocol alone: ``build_pruner(name, **options)``,
``prepare``, :func:`budgetsearch.train.train_phases` over the pruner's phases, ``finalize`` and
``report``; the pruner and its options are data (``PRUNER`` and the option dicts of the scripts).

Parameter counts are taken from the trained model itself: every parameter, with the pruned
weights counted as zeros after ``finalize`` (real zeros). ``prunable_sparsity`` is the fraction of
the pruned layers' weights that are zero (what the budget constrains, the paper's Table 2
"Sparsity"); ``overall_sparsity`` counts every parameter (stem, BatchNorm, biases).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from budgetsearch.data import DatasetSplits, load_dataset
from budgetsearch.models import build_model, thinner_dense_width
from budgetsearch.pruners import PrunerReport, build_pruner
from budgetsearch.train import TrainConfig, count_parameters, train, train_phases

__all__ = ["PRUNER", "RunSetting", "ideal_pruned_params", "load_data", "run_dense",
           "run_pruned", "write_rows"]

#: The pruner the erf-loss experiments study (data: the name given to ``build_pruner``).
PRUNER = "erf"


@dataclass(frozen=True)
class RunSetting:
    """What every run of an experiment shares."""

    model: str = "wrn-16-2"
    dataset: str = "fashion-mnist"  # or cifar10 / cifar100 for users who have the data
    data_dir: str | None = None
    train_subset: int = 4000
    epochs: float = 2.0
    batch_size: int = 128
    lr: float = 0.05
    seed: int = 0
    bn_recalibration_batches: int = 10

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           seed=self.seed, progress=False,
                           bn_recalibration_batches=self.bn_recalibration_batches)


def load_data(setting: RunSetting) -> DatasetSplits:
    """The setting's data set (Fashion-MNIST by default) with its training subset (the full
    10 000-image test set)."""
    return load_dataset(setting.dataset, data_dir=setting.data_dir,
                        train_subset=setting.train_subset, seed=setting.seed)


def _build(setting: RunSetting, data: DatasetSplits, width: float = 1.0) -> torch.nn.Module:
    torch.manual_seed(setting.seed)
    return build_model(setting.model, num_classes=data.num_classes, in_channels=data.in_channels,
                       width_multiplier=width)


def ideal_pruned_params(setting: RunSetting, data: DatasetSplits, sparsity: float,
                        pruner: str = PRUNER, **options: Any) -> int:
    """Parameters of the model whose pruned layers have exactly ``sparsity`` zeros (the layers
    the pruner, built with ``options``, prunes: its report lists them)."""
    model = _build(setting, data)
    options = options or {"method": "ga", "sparsity": 0.5}  # only to list the pruned layers
    probe = build_pruner(pruner, **options)
    probe.prepare(model, data.train[0][0].unsqueeze(0))
    pruned = sum(layer.total for layer in probe.report().layers if layer.pruned)
    return count_parameters(model) - round(sparsity * pruned)


def _target_sparsity(report: PrunerReport) -> float | None:
    """What sparsity the run asked for: the layers' fixed targets (weighted by their weights), or
    one minus the budget's kept fraction; None when the sparsity was learnt freely."""
    fixed = [layer for layer in report.layers if layer.pruned and layer.target is not None]
    if fixed:
        return sum(layer.total * float(layer.target) for layer in fixed) / sum(
            layer.total for layer in fixed)
    fraction = report.budget.get("fraction")
    return None if fraction is None else 1.0 - float(fraction)


def _gaussian_estimate(report: PrunerReport) -> float | None:
    """The pruner's own estimate of the sparsity of the layers it learnt freely (the Gaussian
    erf(r/√2) of each, eq. 5), weighted by their weights; None when every layer had a fixed
    target."""
    learnt = [layer for layer in report.layers if layer.pruned and layer.target is None]
    total = sum(layer.total for layer in learnt)
    if not total:
        return None
    return sum(layer.total * (layer.estimated or 0.0) for layer in learnt) / total


def run_dense(setting: RunSetting, data: DatasetSplits, *, label: str,
              compression_ratio: float = 1.0) -> dict[str, Any]:
    """Train the dense model, or its thinner twin keeping ``compression_ratio`` of the
    parameters (eq. 12: every layer's channels × √r_c)."""
    width = thinner_dense_width(compression_ratio)
    model = _build(setting, data, width)
    result = train(model, data, setting.train_config())
    dense_params = count_parameters(_build(setting, data))
    params = count_parameters(model)
    return {
        "method": label, "family": "dense", "width": round(width, 4), "target_sparsity": None,
        "lam": None, "params": params, "dense_params": dense_params,
        "prunable_sparsity": None, "prunable_sparsity_gaussian": None,
        "overall_sparsity": 1.0 - params / dense_params,
        "test_accuracy": result.test_accuracy, "status": result.status,
        "seconds": round(result.seconds, 1), **{f"setting_{k}": v
                                                 for k, v in asdict(setting).items()},
    }


def run_pruned(setting: RunSetting, data: DatasetSplits, *, label: str, family: str,
               options: dict[str, Any], pruner: str = PRUNER) -> dict[str, Any]:
    """Train the full-width model under the pruner ``pruner`` built with ``options`` (its
    phases, one trainer), finalize (real zeros) and count."""
    model = _build(setting, data)
    dense_params = count_parameters(model)
    hooks = build_pruner(pruner, **options)
    hooks.prepare(model, data.train[0][0].unsqueeze(0))
    config = setting.train_config()
    groups = hooks.param_groups(config.lr)  # the pruner's own parameters (the bounds), if any
    result = train_phases(model, data, config, hooks)
    hooks.finalize()
    report = hooks.report()
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    return {
        "method": label, "family": family, "width": 1.0, "pruner": pruner,
        "target_sparsity": _target_sparsity(report), "lam": report.extra.get("lam"),
        "params": nonzero, "dense_params": dense_params,
        "prunable_sparsity": report.overall_sparsity,
        "prunable_sparsity_gaussian": _gaussian_estimate(report),
        "overall_sparsity": 1.0 - nonzero / dense_params,
        "pruner_optimizer": (hooks.param_group_optimizer or config.optimizer) if groups else None,
        "pruner_lr": groups[0]["lr"] if groups else None,
        "test_accuracy": result.test_accuracy, "status": result.status,
        "seconds": round(result.seconds, 1), **{f"setting_{k}": v
                                                 for k, v in asdict(setting).items()},
    }


def fmt(value: Any, digits: int = 2, scale: float = 100.0) -> str:
    """A percentage for a markdown table ("–" for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{scale * value:.{digits}f}"


def wall(start: float) -> str:
    """Seconds since ``start`` as ``12m34s``."""
    seconds = time.perf_counter() - start
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def write_rows(rows: list[dict[str, Any]], out: Path, stem: str, meta: dict[str, Any]) -> None:
    """``OUT/STEM.csv`` (one row per run, every key any row has) and ``OUT/STEM.json`` (``meta``
    plus the machine and the load average at the end)."""
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    meta = meta | {"machine": platform.processor() or platform.machine(),
                   "cpus": os.cpu_count(), "load_average_end": os.getloadavg()}
    (out / f"{stem}.json").write_text(json.dumps(meta, indent=2))
