"""The one trial function both engines call: price, train, prune, evaluate, write artifacts.

:func:`run_trial` takes one set of hyperparameters and the run-wide :class:`TrialSettings`, and
returns a results-table row (see ``RESULT_COLUMNS``). Before training it prices the configuration
the hyperparameters ask for; one that cannot meet the target is recorded as ``"infeasible"``
without training. Intermediate accuracy goes to ``report(step, accuracy)``; when that returns
True the trial stops and is recorded as ``"pruned"``.

Example:
    >>> settings = TrialSettings(model="wrn-10-1", dataset="synthetic")      # doctest: +SKIP
    >>> row = run_trial({"lam": 1.0, "budget": 0.5}, settings, Path("t0"),
    ...                 trial_id="t0", engine="optuna", space=load_space("bar"))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from budgetsearch.cost import DeviceProfile, LayerInventory, layer_inventory, load_profile
from budgetsearch.data import DatasetSplits, load_dataset
from budgetsearch.files import torch_save_atomic, write_text_atomic
from budgetsearch.models import build_model
from budgetsearch.pruners import Pruner, PrunerReport, build_pruner, pruner_class
from budgetsearch.search.space import TRAIN_KEYS, SearchSpace
from budgetsearch.search.targets import Target
from budgetsearch.train import TrainConfig, TrainResult, seed_everything, train

RESULT_COLUMNS = (
    "trial_id", "engine", "kind", "pruner", "model", "width", "status", "failure", "accuracy",
    "val_accuracy", "params", "flops", "activation_volume", "memory_bytes", "latency_ms",
    "device", "target_metric", "target_value", "feasible", "seconds",
)
ARTIFACT_COLUMNS = ("model_path", "pruned_config_path", "report_path")
ReportFn = Callable[[int, float], bool]
# Phases of a pruner with a hard-prune step (BAR): fractions of the trial's epochs.
PHASE_FRACTIONS = (0.6, 0.25, 0.15)
FINETUNE_LR_FACTOR = 0.1


@dataclass(frozen=True)
class TrialSettings:
    """Run-wide settings of every trial (hyperparameters come per trial)."""

    model: str = "wrn-16-2"
    width: float = 1.0
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    train_subset: int | None = 2000
    val_fraction: float = 0.2
    batch_size: int = 64
    lr: float = 2e-3
    epochs: float = 1.0
    weight_decay: float = 5e-4
    device_profile: str | None = None
    target: Target | None = None
    seed: int = 0
    torch_device: str = "cpu"
    threads: int | None = None
    # The unpruned network is trained this long once per run; every trial starts from it and BAR
    # distils from it (search/reference.py). 0: trials start from random weights, without KD.
    reference_epochs: float = 2.0
    reference_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping (for the resolved config)."""
        data = asdict(self)
        data["target"] = (None if self.target is None else
                          {"metric": self.target.metric, "value": self.target.value})
        return data


@functools.lru_cache(maxsize=4)
def _splits(dataset: str, data_dir: str | None, train_subset: int | None, val_fraction: float,
            seed: int) -> DatasetSplits:
    # Loaded once per worker process: every trial of a run uses the same split.
    return load_dataset(dataset, data_dir=data_dir, train_subset=train_subset,
                        val_fraction=val_fraction, seed=seed)


@functools.lru_cache(maxsize=16)
def full_inventory(model: str, width: float, input_shape: tuple[int, int, int],
                   num_classes: int) -> LayerInventory:
    """Layer inventory of the unpruned network (traced once per process)."""
    net = build_model(model, num_classes=num_classes, in_channels=input_shape[0],
                      width_multiplier=width)
    return layer_inventory(net, torch.zeros(1, *input_shape))


def split_params(params: dict[str, Any], space: SearchSpace) -> tuple[dict[str, Any],
                                                                       dict[str, Any]]:
    """(training settings, pruner options) of one trial: ``TRAIN_KEYS`` go to training."""
    merged = {**space.fixed, **params}
    training = {k: v for k, v in merged.items() if k in TRAIN_KEYS}
    options = {k: v for k, v in merged.items() if k not in TRAIN_KEYS}
    return training, options


def price_before_training(options: dict[str, Any], granularity: str, inventory: LayerInventory,
                          profile: DeviceProfile | None, target: Target | None) -> float | None:
    """The target metric's cost that these pruner options commit to, known before training.

    A channel pruner with ``budget`` b (fraction of the full cost, enforced at the hard prune)
    ends at ≤ b × full; an unstructured pruner with ``budget`` b keeps a fraction b of the weights
    (priced with uniform densities, so a device without sparse speed-up gains no latency).
    None when nothing is known (no target, or no budget option).
    """
    if target is None or "budget" not in options:
        return None
    budget = float(options["budget"])
    full = inventory.price(profile=profile).as_dict()[target.cost_key]
    if full is None:
        return None
    if granularity == "channel":
        return budget * float(full)
    densities = {r.name: budget for r in inventory.layers if r.op in ("conv", "linear")}
    return float(inventory.price(densities=densities, profile=profile).as_dict()[target.cost_key])  # type: ignore[arg-type]


def _extremes(spec: Any) -> list[Any]:
    if spec.type == "categorical":
        return list(spec.choices)
    if spec.type == "int":
        return [int(spec.low), int(spec.high)]
    return [spec.low, spec.high]


def validate_space(space: SearchSpace) -> None:
    """Check, before any trial, that every value the space can propose is a valid option.

    Each searched parameter is tried at its ends (every choice of a categorical one), the others
    held at a valid value, through the pruner's own constructor and :class:`TrainConfig`, so an
    unknown option name or a range outside what the pruner accepts fails the run at once instead
    of failing every trial.

    Raises:
        ValueError: unknown pruner, or a value the pruner or training rejects (the message names
            the file, the parameter, the value and the pruner's rule).
    """
    where = space.path or space.name
    try:
        pruner_class(space.pruner)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    base = dict(space.fixed)
    for name, spec in space.parameters.items():
        base[name] = _extremes(spec)[0]
    probes: list[tuple[str | None, Any]] = [(None, None)]
    probes += [(name, v) for name, spec in space.parameters.items() for v in _extremes(spec)]
    for name, value in probes:
        merged = dict(base) if name is None else {**base, name: value}
        training = {k: v for k, v in merged.items() if k in TRAIN_KEYS}
        options = {k: v for k, v in merged.items() if k not in TRAIN_KEYS}
        try:
            build_pruner(space.pruner, **options)
            TrainConfig(**{k: (int(v) if k == "batch_size" else float(v))
                           for k, v in training.items()})
        except (ValueError, TypeError) as error:
            if name is None:  # the base point failed: name the parameter the error names
                rule = str(error).split(";")[0]  # "unknown option(s) [...]; valid: ..."
                named = [n for n in merged if re.search(rf"\b{re.escape(n)}\b", rule)]
                name = max(named, key=len) if named else None
                value = merged.get(name) if name is not None else None
            if name is None:
                what = "the fixed settings"
            elif name in space.parameters:
                what = f"parameters.{name} = {value!r}"
            else:
                what = f"fixed.{name} = {value!r}"
            raise ValueError(f"{where}: {what} is not valid for pruner {space.pruner!r}: "
                             f"{error}") from None


def _accuracy_of(result: TrainResult) -> float:
    value = result.val_accuracy if result.val_accuracy is not None else result.test_accuracy
    return float(value) if value is not None else float("nan")


def _train_pruned(model: nn.Module, pruner: Pruner, data: DatasetSplits, config: TrainConfig,
                  report: ReportFn | None) -> tuple[TrainResult, str]:
    """Train with the pruner; a pruner with ``hard_prune`` (BAR) runs prune → frozen → finetune
    phases, reporting accuracy after each. Returns (last result, status)."""
    if not hasattr(pruner, "hard_prune"):
        result = train(model, data, config, hooks=pruner)
        if result.status == "ok" and report is not None and report(1, _accuracy_of(result)):
            return result, "pruned"
        return result, result.status
    epochs = [config.epochs * f for f in PHASE_FRACTIONS]
    phases = [replace(config, epochs=epochs[0]), replace(config, epochs=epochs[1]),
              replace(config, epochs=epochs[2], lr=config.lr * FINETUNE_LR_FACTOR)]
    # Intermediate phases are scored on the validation set only (the test set is evaluated once,
    # at the end): a 10,000-image test pass per phase would cost more than a short phase.
    quick = replace(data, test=data.val) if data.val is not None else data
    result: TrainResult | None = None
    for step, phase in enumerate(phases, start=1):
        if step == 2:
            pruner.hard_prune()  # type: ignore[attr-defined]
        result = train(model, data if step == len(phases) else quick, phase, hooks=pruner)
        if result.status != "ok":
            return result, result.status
        if step < len(phases) and report is not None and report(step, _accuracy_of(result)):
            return result, "pruned"
    assert result is not None
    if report is not None:
        report(len(phases), _accuracy_of(result))
    return result, "ok"


def pruned_configuration(pruner: Pruner, report: PrunerReport) -> dict[str, Any]:
    """``{"kept_channels": {layer: [in, out]}}`` or ``{"densities": {layer: d}}`` of the result,
    enough to re-price it on any device profile without retraining."""
    if pruner.granularity == "channel":
        from budgetsearch.pruners.bar_layout import prune_plan

        kept = pruner.kept_channels(prune_plan(pruner.layout))  # type: ignore[attr-defined]
        return {"kept_channels": {k: [int(a), int(b)] for k, (a, b) in kept.items()}}
    return {"densities": {r.name: (r.kept / r.total if r.total else 1.0) for r in report.layers}}


def empty_row(trial_id: str, engine: str, settings: TrialSettings, pruner: str,
              params: dict[str, Any]) -> dict[str, Any]:
    """A row with every column present (NaN/None where nothing is known yet)."""
    target = settings.target
    row: dict[str, Any] = {c: None for c in RESULT_COLUMNS + ARTIFACT_COLUMNS}
    row.update(trial_id=trial_id, engine=engine, kind="pruned", pruner=pruner,
               model=settings.model, width=settings.width, status="failed",
               device=settings.device_profile,
               target_metric=target.metric if target else None,
               target_value=target.value if target else None, feasible=False, seconds=0.0)
    row.update({f"hp_{k}": v for k, v in params.items()})
    return row


BN_RECALIBRATION_BATCHES = 20
ROW_FILE = "row.json"
INTERRUPTED_BY_USER = "interrupted by the user (Ctrl-C); its slot is re-run on --resume"
INTERRUPTED_BY_KILL = ("interrupted: the process stopped during this trial (killed or crashed); "
                       "its slot was re-run on --resume")


def run_trial(params: dict[str, Any], settings: TrialSettings, trial_dir: Path, *,
              trial_id: str, engine: str, space: SearchSpace,
              report: ReportFn | None = None) -> dict[str, Any]:
    """Run one trial and return its results row (also written to ``trial_dir/row.json``).

    Never raises for a failed trial: a NaN loss or an error in the pruner gives
    ``status="failed"`` with the reason in ``failure``.
    """
    start = time.perf_counter()
    trial_dir.mkdir(parents=True, exist_ok=True)
    row = empty_row(trial_id, engine, settings, space.pruner, params)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        _run(params, settings, trial_dir, space, report, row)
    except Exception as error:  # a trial's own failure is data, not a crash of the search
        row.update(status="failed", failure=f"{type(error).__name__}: {error}")
    except KeyboardInterrupt:
        # Ctrl-C: record the trial as failed (the search re-runs its slot on --resume), then stop.
        row.update(status="failed", failure=INTERRUPTED_BY_USER, feasible=False,
                   seconds=time.perf_counter() - start)
        write_row(trial_dir, row)
        raise
    row["seconds"] = time.perf_counter() - start
    write_row(trial_dir, row)
    return row


def write_row(trial_dir: Path, row: dict[str, Any]) -> Path:
    """Write a trial's ``row.json`` (write-then-rename: a killed process leaves no half row)."""
    path = trial_dir / ROW_FILE
    write_text_atomic(path, json.dumps(row, default=str))
    return path


def _run(params: dict[str, Any], settings: TrialSettings, trial_dir: Path, space: SearchSpace,
         report: ReportFn | None, row: dict[str, Any]) -> None:
    target = settings.target
    training, options = split_params(params, space)
    granularity = pruner_class(space.pruner).granularity
    profile = load_profile(settings.device_profile) if settings.device_profile else None
    data = _splits(settings.dataset, settings.data_dir, settings.train_subset,
                   settings.val_fraction, settings.seed)
    shape = (data.in_channels, data.image_size, data.image_size)
    inventory = full_inventory(settings.model, settings.width, shape, data.num_classes)
    if space.pruner == "bar":
        # The budget counts the target's metric; the profile prices latency either way.
        if target is not None:
            options.setdefault("metric", target.pruner_metric)
        if profile is not None:
            options.setdefault("profile", settings.device_profile)
    if space.pruner == "erf":
        if target is not None and target.metric in ("flops", "params"):
            options["weighting"] = target.metric  # eq. 8: c_i count the target's metric
        if profile is not None:
            options.setdefault("profile", settings.device_profile)
    committed = price_before_training(options, granularity, inventory, profile, target)
    if target is not None and committed is not None and committed > target.value * (1 + 1e-9):
        row.update(status="infeasible", feasible=False, **{target.cost_key: committed},
                   failure=f"priced before training at {target.describe(committed)} > target "
                           f"{target.describe()}; not trained")
        return
    if space.pruner == "bar" and settings.reference_path is None:
        # A frozen copy of an untrained network teaches noise (section 3.5 distils from the
        # trained, unpruned network): without a reference, no distillation.
        options["distillation"] = False
    pruner = build_pruner(space.pruner, **options)
    seed_everything(settings.seed)
    model = build_model(settings.model, num_classes=data.num_classes, in_channels=shape[0],
                        width_multiplier=settings.width)
    if settings.reference_path is not None:
        from budgetsearch.search.reference import load_reference_weights

        load_reference_weights(model, settings.reference_path)  # BAR's teacher is this copy
    try:
        model = pruner.prepare(model, torch.zeros(1, *shape))
    except ValueError as error:
        # The pruner prices its budget at prepare (BAR): a budget below what it can reach is
        # known before training, so the trial is infeasible, not failed.
        if "cannot be met" not in str(error):
            raise
        row.update(status="infeasible", feasible=False, failure=f"{error}; not trained")
        return
    config = TrainConfig(
        epochs=float(training.get("epochs", settings.epochs)),
        batch_size=int(training.get("batch_size", settings.batch_size)),
        optimizer="adam", lr=float(training.get("lr", settings.lr)),
        weight_decay=float(training.get("weight_decay", settings.weight_decay)),
        seed=settings.seed, device=settings.torch_device, progress=False,
        # Short pruning runs leave BN running statistics far behind the (re-gated) weights: the
        # eval network fell to chance in every trial of a 12-trial run without this.
        bn_recalibration_batches=BN_RECALIBRATION_BATCHES,
    )
    result, status = _train_pruned(model, pruner, data, config, report)
    # A trial stopped early was scored on the validation set only, mid-pruning (soft gates): its
    # "test accuracy" would be that intermediate figure beside the cost of a network never built.
    stopped = status == "pruned"
    row.update(status=status, failure=result.failure,
               val_accuracy=_accuracy_of(result) if stopped else result.val_accuracy,
               accuracy=None if stopped else result.test_accuracy)
    if status == "failed":
        return
    compact = pruner.finalize()
    outcome = pruner.report()
    configuration = pruned_configuration(pruner, outcome)
    cost = inventory.price(kept_channels=configuration.get("kept_channels"),
                           densities=configuration.get("densities"), profile=profile)
    row.update({k: v for k, v in cost.as_dict().items()})
    if status == "ok":
        model_path = trial_dir / "model.pt"
        torch_save_atomic(compact.cpu(), model_path)
        row["model_path"] = str(model_path)
    config_path = trial_dir / "pruned_config.json"
    write_text_atomic(config_path, json.dumps({
        "model": settings.model, "width": settings.width, "input_shape": list(shape),
        "num_classes": data.num_classes, **configuration}, indent=1))
    report_path = trial_dir / "report.json"
    write_text_atomic(report_path, json.dumps({
        "pruner": outcome.pruner, "granularity": outcome.granularity, "cost": outcome.cost,
        "budget": outcome.budget, "overall_sparsity": outcome.overall_sparsity,
        "layers": outcome.layer_table(), "extra": outcome.extra,
        "options": options, "training": asdict(config)}, indent=1, default=str))
    row.update(pruned_config_path=str(config_path), report_path=str(report_path))
    achieved = row.get(target.cost_key) if target is not None else None
    row["feasible"] = status == "ok" and (
        target is None or (achieved is not None and not math.isnan(achieved)
                           and achieved <= target.value * (1 + 1e-9)))


def objective_value(row: dict[str, Any]) -> float:
    """The accuracy the search maximizes: validation accuracy if there is one, else test."""
    for key in ("val_accuracy", "accuracy"):
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return float(value)
    return 0.0
