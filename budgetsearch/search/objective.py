"""The one trial function both engines call: configure, train, prune, evaluate, write artifacts.

:func:`run_trial` takes one set of hyperparameters and the run-wide :class:`TrialSettings`, and
returns a results-table row (see ``RESULT_COLUMNS``). It drives the pruner blind, through the
protocol of :mod:`budgetsearch.pruners.base`: the pruner is built from the run's target and
device profile (it turns the target into its own budget), ``prepare`` raises
:class:`~budgetsearch.pruners.BudgetInfeasible` before any training when the target cannot be
met (the trial is recorded ``"infeasible"``), one trainer runs the pruner's phases, and the
result is re-priced from ``pruned_configuration()`` on the whole network. Intermediate accuracy
goes to ``report(step, accuracy)`` after each phase (and every ``report_every`` epochs with it
given); when that returns True the trial stops and is recorded as ``"pruned"``. ``step`` counts
hundredths of an epoch of training behind the network, the reference's included for a trial that
starts from it, so that trials of every family are compared at equal compute.

A pruner whose class says ``starts_from_reference = False`` (``dense``) starts from random
weights, without a teacher, and trains ``reference_epochs`` more than the sampled ``epochs``.

Example:
    >>> from pathlib import Path
    >>> import tempfile
    >>> from budgetsearch.cost import Target
    >>> from budgetsearch.search.space import load_space
    >>> settings = TrialSettings(model="wrn-10-1", dataset="synthetic", train_subset=64,
    ...                          target=Target.parse("params", "50k"), reference_epochs=0)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     row = run_trial({"lr": 0.01, "epochs": 0.5}, settings, Path(folder), trial_id="t0",
    ...                     engine="optuna", space=load_space("magnitude"))
    >>> row["status"], row["feasible"], row["params"] <= 50_000
    ('ok', True, True)
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from budgetsearch.cost import DeviceProfile, Target, index_op_elements
from budgetsearch.files import write_text_atomic
from budgetsearch.models.deploy import save_network
from budgetsearch.pruners import BudgetInfeasible, Pruner, build_pruner, pruner_class
from budgetsearch.search.reference import load_reference_weights
from budgetsearch.search.results import (
    ARTIFACT_COLUMNS,
    INTERRUPTED_BY_KILL,
    INTERRUPTED_BY_USER,
    RESULT_COLUMNS,
    ROW_FILE,
    empty_row,
    objective_value,
    run_relative,
    write_row,
)
from budgetsearch.search.settings import (
    BN_RECALIBRATION_BATCHES,
    TrialSettings,
    build_network,
    full_inventory,
    input_shape,
    run_profile,
    settings_inventory,
    trial_data,
)
from budgetsearch.search.space import TRAIN_KEYS, SearchSpace
from budgetsearch.train import (
    Phase,
    TrainConfig,
    TrainResult,
    phases_of,
    seed_everything,
    train_phases,
)

__all__ = [
    "ARTIFACT_COLUMNS", "BN_RECALIBRATION_BATCHES", "INTERRUPTED_BY_KILL",
    "INTERRUPTED_BY_USER", "REPORT_STEPS_PER_EPOCH", "RESULT_COLUMNS", "ROW_FILE",
    "TrialSettings", "build_trial_pruner", "empty_row", "full_inventory", "objective_value",
    "report_step", "run_trial", "split_params", "validate_space", "write_row",
]

ReportFn = Callable[[int, float], bool]
#: ``report``'s step unit: hundredths of an epoch (steps are integers for Optuna's pruners).
REPORT_STEPS_PER_EPOCH = 100
#: A placeholder target for checking a space when the run has none (pruners validate options
#: with a target in hand).
_PROBE_TARGET = Target("params", fraction=0.5, text="50%")


def split_params(params: dict[str, Any], space: SearchSpace) -> tuple[dict[str, Any],
                                                                       dict[str, Any]]:
    """(training settings, pruner options) of one trial: ``TRAIN_KEYS`` go to training."""
    merged = {**space.fixed, **params}
    training = {k: v for k, v in merged.items() if k in TRAIN_KEYS}
    options = {k: v for k, v in merged.items() if k not in TRAIN_KEYS}
    return training, options


def build_trial_pruner(space: SearchSpace, options: dict[str, Any], target: Target | None,
                       profile: DeviceProfile | str | None,
                       teacher: torch.nn.Module | None = None) -> Pruner:
    """The pruner of one trial, configured from the target and the device profile."""
    return build_pruner(space.pruner, target=target, profile=profile, teacher=teacher, **options)


def _extremes(spec: Any) -> list[Any]:
    if spec.type == "categorical":
        return list(spec.choices)
    if spec.type == "int":
        return [int(spec.low), int(spec.high)]
    return [spec.low, spec.high]


def validate_space(space: SearchSpace, target: Target | None = None) -> None:
    """Check, before any trial, that every value the space can propose is a valid option.

    Each searched parameter is tried at its ends (every choice of a categorical one), the others
    held at a valid value, through the pruner's own constructor (with the run's target) and
    :class:`TrainConfig`, so an unknown option name or a range outside what the pruner accepts
    fails the run at once instead of failing every trial.

    Raises:
        ValueError: unknown pruner, a ``budget`` searched beside a target (the target is the
            budget), or a value the pruner or training rejects (the message names the file, the
            parameter, the value and the pruner's rule).
    """
    where = space.path or space.name
    try:
        pruner_class(space.pruner)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    if target is not None and "budget" in {**space.fixed, **space.parameters}:
        raise ValueError(f"{where}: 'budget' is derived from the target ({target.describe()}); "
                         "remove it from the space (searching it could only miss the target)")
    probe_target = target if target is not None else _PROBE_TARGET
    profile = None if probe_target.metric != "latency_ms" else "jetson"
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
            build_trial_pruner(space, options, probe_target, profile)
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


def report_step(epochs: float) -> int:
    """``report``'s step for ``epochs`` of training (hundredths of an epoch)."""
    return round(epochs * REPORT_STEPS_PER_EPOCH)


def run_trial(params: dict[str, Any], settings: TrialSettings, trial_dir: Path, *,
              trial_id: str, engine: str, space: SearchSpace,
              report: ReportFn | None = None,
              report_every: float | None = None) -> dict[str, Any]:
    """Run one trial and return its results row (also written to ``trial_dir/row.json``).

    ``report(step, val_accuracy)`` is called after each phase and, with ``report_every``, every
    that many epochs within them (see the module docstring for ``step``).

    Never raises for a failed trial: a NaN loss or an error in the pruner gives
    ``status="failed"`` with the reason in ``failure``.
    """
    start = time.perf_counter()
    trial_dir.mkdir(parents=True, exist_ok=True)
    row = empty_row(trial_id, engine, settings, space.pruner, params)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        _run(params, settings, trial_dir, space, report, report_every, row)
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


def _pruning_ends(pruner: Pruner, epochs: float, behind: float) -> float:
    """Epochs behind the network when the pruner's last ``"prune"`` phase ends (``behind``
    for a pruner without one)."""
    done, end = behind, behind
    for phase in phases_of(pruner):
        done += phase.fraction * epochs
        if phase.name == "prune":
            end = done
    return end


def _start_network(settings: TrialSettings, from_reference: bool = True
                   ) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """The trial's network (the run's reference weights where there are) and its teacher (a
    frozen copy of the trained reference, or None when trials start from random weights)."""
    seed_everything(settings.seed)
    model = build_network(settings)
    if settings.reference_path is None or not from_reference:
        return model, None
    load_reference_weights(model, settings.reference_path)
    return model, copy.deepcopy(model).eval()


def _run(params: dict[str, Any], settings: TrialSettings, trial_dir: Path, space: SearchSpace,
         report: ReportFn | None, report_every: float | None, row: dict[str, Any]) -> None:
    target = settings.target
    training, options = split_params(params, space)
    profile = run_profile(settings)
    data = trial_data(settings)
    shape = input_shape(settings)
    from_reference = pruner_class(space.pruner).starts_from_reference
    model, teacher = _start_network(settings, from_reference)
    epochs = float(training.get("epochs", settings.epochs))
    # The compute behind the network: a trial from the reference adds to the reference's epochs;
    # one from scratch trains those epochs itself.
    behind = 0.0
    if not from_reference:
        epochs += settings.reference_epochs
    elif settings.reference_path is not None:
        behind = settings.reference_epochs
    pruner = build_trial_pruner(space, options, target, profile, teacher)
    try:
        model = pruner.prepare(model, torch.zeros(1, *shape))
    except BudgetInfeasible as error:
        # Known before training: the trial is infeasible, not failed, and costs no training.
        # The row records the smallest cost reachable on the target's metric (why infeasible).
        row.update(status="infeasible", feasible=False, failure=f"{error}; not trained",
                   **{error.metric: error.minimum})
        return
    config = TrainConfig(
        epochs=epochs,
        batch_size=int(training.get("batch_size", settings.batch_size)),
        optimizer="adam", lr=float(training.get("lr", settings.lr)),
        weight_decay=float(training.get("weight_decay", settings.weight_decay)),
        seed=settings.seed, device=settings.torch_device, progress=False,
        bn_recalibration_batches=BN_RECALIBRATION_BATCHES,
    )
    # Until a pruner's "prune" phase ends its network is over the target and its accuracy says
    # little of where it ends (BAR's gates are still closing: trials at 0.72 mid-pruning ended
    # at 0.2–0.4): those reports carry NaN, which early stopping ignores (the run's deadline
    # still applies).
    quiet_until = _pruning_ends(pruner, epochs, behind)

    def on_progress(done: float, accuracy: float) -> bool:
        if done < quiet_until - 1e-9:
            accuracy = float("nan")
        return report is not None and bool(report(report_step(done), accuracy))

    if report_every is not None:
        result = train_phases(model, data, config, pruner, on_progress=on_progress,
                              progress_every=report_every, epoch_offset=behind)
    else:  # one report per phase (Ray's ASHA counts reports as its resource)
        phase_ends = [behind]

        def on_phase_end(index: int, phase: Phase, result: TrainResult) -> bool:
            phase_ends.append(phase_ends[-1] + result.epochs_run)
            return on_progress(phase_ends[-1], _accuracy_of(result))

        result = train_phases(model, data, config, pruner, on_phase_end=on_phase_end)
    # on_phase_end reported every phase, the last one included (its answer ignored: it ended).
    status = "pruned" if result.status == "stopped" else result.status
    # A trial stopped early was scored on the validation set only, mid-pruning: its "test
    # accuracy" would be that intermediate figure beside the cost of a network never built.
    row.update(status=status, failure=result.failure, val_accuracy=_accuracy_of(result)
               if status == "pruned" else result.val_accuracy, accuracy=result.test_accuracy)
    if status == "failed":
        return
    compact = pruner.finalize()
    outcome = pruner.report()
    configuration = dict(pruner.pruned_configuration())
    # The delivered network may run gathers the full network at its kept channels never does
    # (a compact mixed-connectivity ResNet: 3-4 per block, measured ~10% of its time); the
    # configuration records them, so that every price of the trial (here, pareto's) adds them.
    device = next((p.device for p in compact.parameters()), torch.device("cpu"))
    gathers = index_op_elements(compact, torch.zeros(1, *shape, device=device))
    if gathers:
        configuration["index_ops"] = gathers
    inventory = settings_inventory(settings)
    cost = inventory.price(kept_channels=configuration.get("kept_channels"),
                           densities=configuration.get("densities"), index_ops=gathers,
                           profile=profile)
    row.update(cost.as_dict())
    if status == "ok":
        # model.ts (plain PyTorch, any class) and deploy.json beside budgetsearch's model.pt
        saved = save_network(compact, torch.zeros(1, *shape), trial_dir, row["trial_id"])
        row["model_path"] = run_relative(saved, trial_dir) if saved is not None else None
    config_path = trial_dir / "pruned_config.json"
    write_text_atomic(config_path, json.dumps({
        "model": settings.model, "width": settings.width, "input_shape": list(shape),
        "num_classes": data.num_classes, **configuration}, indent=1))
    report_path = trial_dir / "report.json"
    write_text_atomic(report_path, json.dumps({
        **outcome.as_dict(), "options": options, "training": asdict(config)},
        indent=1, default=str))
    row.update(pruned_config_path=run_relative(config_path, trial_dir),
               report_path=run_relative(report_path, trial_dir))
    row["feasible"] = status == "ok" and (target is None or target.is_met(row.get(target.metric)))
