"""Training runs shared by the erf-loss experiments (``erf_table2.py``, ``erf_tradeoff.py``).

One :class:`RunSetting` (model, data, epochs, seed) is used for every row of an experiment, so
dense, thinner-dense and pruned networks see the same data for the same number of steps. Each run
returns a plain dict (one CSV row); plotting lives in the scripts.

Parameter counts are taken from the trained model itself: every parameter, with the pruned
weights counted as zeros after :meth:`ErfPruner.finalize` (real zeros). ``prunable_sparsity`` is
the fraction of the pruned layers' weights that are zero (what the budget constrains, the paper's
Table 2 "Sparsity"); ``overall_sparsity`` counts every parameter (stem, BatchNorm, biases).
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
from budgetsearch.pruners.erf import ErfPruner
from budgetsearch.train import TrainConfig, count_parameters, train

__all__ = ["RunSetting", "ideal_pruned_params", "load_data", "run_dense", "run_pruned",
           "write_rows"]


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


def ideal_pruned_params(setting: RunSetting, data: DatasetSplits, sparsity: float) -> int:
    """Parameters of the model whose pruned layers have exactly ``sparsity`` zeros."""
    model = _build(setting, data)
    pruner = ErfPruner(method="ga", sparsity=0.5)  # only to list the pruned layers
    pruner.prepare(model, data.train[0][0].unsqueeze(0))
    pruned = sum(m.weight.numel() for m in pruner.layers.values())
    return count_parameters(model) - round(sparsity * pruned)


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
               pruner: ErfPruner) -> dict[str, Any]:
    """Train the full-width model under ``pruner``, finalize (real zeros) and count."""
    model = _build(setting, data)
    dense_params = count_parameters(model)
    pruner.prepare(model, data.train[0][0].unsqueeze(0))
    result = train(model, data, setting.train_config(), hooks=pruner)
    pruner.finalize()
    report = pruner.report()
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    cfg = pruner.config
    gaussian = None
    if cfg.method == "adaptive":
        # Gaussian estimate erf(r/√2) of each layer, weighted by its weights (eq. 5).
        total = sum(layer.total for layer in report.layers)
        gaussian = sum(layer.total * (layer.estimated or 0.0) for layer in report.layers) / total
    target = (cfg.sparsity if cfg.method != "adaptive"
              else cfg.budget_sparsity)
    return {
        "method": label, "family": family, "width": 1.0,
        "target_sparsity": target, "lam": cfg.effective_lam if cfg.method == "adaptive" else None,
        "params": nonzero, "dense_params": dense_params,
        "prunable_sparsity": report.overall_sparsity,
        "prunable_sparsity_gaussian": gaussian,
        "overall_sparsity": 1.0 - nonzero / dense_params,
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
