"""One training/evaluation loop for every trial and every baseline.

A pruner plugs in through :class:`TrainingHooks`: its own parameter groups (with their own learning
rate, weight decay or optimizer), the loss terms of each step (it may reweight the task loss, as
knowledge distillation does) and a hook after each optimizer step. A loss that stops being finite
ends the run with ``status="failed"`` and the reason, never silently.

Example:
    >>> from budgetsearch.data import load_dataset
    >>> from budgetsearch.models import build_model
    >>> splits = load_dataset("synthetic", train_subset=128)
    >>> model = build_model("wrn-10-1")
    >>> result = train(model, splits, TrainConfig(epochs=1, progress=False))
    >>> result.status
    'ok'
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from budgetsearch.acceleration import (
    MEMORY_FORMATS,
    PRECISIONS,
    Acceleration,
    choose_acceleration,
)
from budgetsearch.data import DatasetSplits
from budgetsearch.train_hooks import (
    Phase,
    StepContext,
    TrainingHooks,
    optimizer_of,
    phases_of,
)

__all__ = ["Phase", "ProgressCallback", "StepContext", "TrainConfig", "TrainResult",
           "TrainingHooks", "evaluate", "recalibrate_batchnorm", "seed_everything", "train",
           "train_phases"]

OptimizerName = Literal["sgd", "adam"]
ScheduleName = Literal["cosine", "cosine-restarts", "constant"]
#: ``on_progress(epochs, val_accuracy) -> stop``: called during training with the epochs trained
#: so far and the validation accuracy; True stops the run (``status="stopped"``).
ProgressCallback = Callable[[float, float], bool]
#: BatchNorm re-estimation before an intermediate score: fewer batches than the final one (a
#: report every quarter epoch would otherwise cost more than the training between reports).
PROGRESS_RECALIBRATION_BATCHES = 4


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    ``schedule="cosine-restarts"`` restarts the cosine every ``restart_epochs`` epochs (the
    erf-loss paper uses 120 epochs with restarts every 40).

    ``precision`` ("auto", "fp32", "bf16") and ``memory_format`` ("auto", "channels_last",
    "contiguous") choose the acceleration (:func:`budgetsearch.acceleration.choose_acceleration`):
    "auto" uses bf16 autocast and channels_last where the hardware has native bf16.
    """

    epochs: float = 1.0
    batch_size: int = 128
    optimizer: OptimizerName = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: ScheduleName = "cosine"
    restart_epochs: float | None = None
    warmup_steps: int = 0
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    eval_batch_size: int = 512
    bn_recalibration_batches: int = 0
    precision: str = "auto"
    memory_format: str = "auto"

    def __post_init__(self) -> None:
        if not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise ValueError(f"epochs must be a positive number, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be ≥ 0, got {self.weight_decay}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "cosine-restarts", "constant"):
            raise ValueError(
                f"schedule must be 'cosine', 'cosine-restarts' or 'constant', got {self.schedule!r}"
            )
        if self.restart_epochs is not None and self.restart_epochs <= 0:
            raise ValueError(f"restart_epochs must be positive, got {self.restart_epochs}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, "
                             f"got {self.memory_format!r}")


@dataclass
class TrainResult:
    """Outcome of a run. ``status`` is "ok", "failed" (then ``failure`` says why) or "stopped"
    (``on_progress`` asked to stop; ``val_accuracy`` is the last one reported, no test score);
    ``acceleration`` names the precision and memory format used (e.g. "bf16+channels_last")."""

    status: str
    test_accuracy: float | None
    val_accuracy: float | None
    train_loss: float | None
    seconds: float
    steps: int
    epochs_run: float
    failure: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    acceleration: str = "fp32"

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("history")
        return row


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a run repeats."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device | None = None, *,
             acceleration: Acceleration | None = None) -> float:
    """Top-1 accuracy of ``model`` in eval mode on ``loader`` (forward under ``acceleration``'s
    autocast and memory format when given)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    for inputs, targets in loader:
        if acceleration is None:
            logits = model(inputs.to(device))
        else:
            with acceleration.autocast():
                logits = model(acceleration.prepare_inputs(inputs.to(device)))
        correct += (logits.argmax(1).cpu() == targets).sum().item()
        total += len(targets)
    model.train(was_training)
    return correct / max(1, total)


class _DefaultHooks:
    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return []

    def loss_terms(self, context: StepContext) -> dict[str, torch.Tensor]:
        return {"task": context.task_loss}

    def after_step(self, context: StepContext) -> None:
        return None


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, loader: DataLoader, *, batches: int, device: torch.device | None = None
) -> None:
    """Re-estimate every BatchNorm's running statistics on ``batches`` training batches.

    Why: in short runs (and while pruning gates rescale channels) the running averages lag far
    behind the weights, and the eval-mode network can fall to chance while the same weights
    score well with batch statistics. The rest of the model runs in eval mode (deterministic
    gates), BN takes a cumulative average (``momentum=None``), and no weight changes.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches < 1:
        return
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for index, (inputs, _) in enumerate(loader):
        if index >= batches:
            break
        model(inputs.to(device))
    for m, momentum in saved:
        m.momentum = momentum
    model.train(was_training)


def _build_optimizers(
    model: nn.Module, config: TrainConfig, hooks: TrainingHooks
) -> list[torch.optim.Optimizer]:
    extra_groups = hooks.param_groups(config.lr)
    claimed = {id(p) for group in extra_groups for p in group["params"]}
    weights = [p for p in model.parameters() if p.requires_grad and id(p) not in claimed]
    # Weight decay on weights only: BN scales/shifts and biases are not decayed.
    decay = [p for p in weights if p.ndim > 1]
    no_decay = [p for p in weights if p.ndim <= 1]
    groups: dict[str, list[dict[str, Any]]] = {"sgd": [], "adam": []}
    groups[config.optimizer].append({"params": decay, "weight_decay": config.weight_decay})
    groups[config.optimizer].append({"params": no_decay, "weight_decay": 0.0})
    kind = optimizer_of(hooks) or config.optimizer
    for group in extra_groups:
        group = dict(group)
        group.setdefault("lr", config.lr)
        group.setdefault("weight_decay", 0.0)
        groups[kind].append(group)
    optimizers: list[torch.optim.Optimizer] = []
    for kind, kind_groups in groups.items():
        kind_groups = [g for g in kind_groups if g["params"]]
        if not kind_groups:
            continue
        if kind == "sgd":
            optimizers.append(
                torch.optim.SGD(kind_groups, lr=config.lr, momentum=config.momentum, nesterov=True)
            )
        else:
            optimizers.append(torch.optim.Adam(kind_groups, lr=config.lr))
    return optimizers


def _lr_factor(step: int, total_steps: int, steps_per_epoch: int, config: TrainConfig) -> float:
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "cosine-restarts":
        period = max(1, round((config.restart_epochs or config.epochs) * steps_per_epoch))
        phase = (step % period) / period
    else:
        phase = step / max(1, total_steps)
    return 0.5 * (1.0 + math.cos(math.pi * phase))


def train(
    model: nn.Module,
    data: DatasetSplits,
    config: TrainConfig,
    *,
    hooks: TrainingHooks | None = None,
    on_progress: ProgressCallback | None = None,
    progress_every: float = 0.25,
    epoch_offset: float = 0.0,
) -> TrainResult:
    """Train ``model`` on ``data.train`` and evaluate it on ``data.test`` (and ``data.val``).

    Returns a :class:`TrainResult`; a non-finite loss gives ``status="failed"`` with the step at
    which it happened, and the model is left as it was at that step. ``config.precision`` and
    ``config.memory_format`` choose bf16 autocast and channels_last (``result.acceleration``
    names the choice); the model goes back to contiguous parameters at the end.

    With ``on_progress`` and a validation split, the model is scored on the validation split
    each time ``epoch_offset`` + the epochs trained so far crosses a multiple of
    ``progress_every`` before the end, and ``on_progress(epochs, accuracy)`` may stop the run
    (multi-fidelity search: epochs are the resource). The end of the run is not reported here
    (its score is in the result).
    """
    if not (progress_every > 0 and math.isfinite(progress_every)):
        raise ValueError(f"progress_every must be a positive number of epochs, "
                         f"got {progress_every!r}")
    hooks = hooks or _DefaultHooks()
    seed_everything(config.seed)
    device = resolve_device(config.device)
    model.to(device)
    acceleration = choose_acceleration(device, config.precision, config.memory_format,
                                       model=model)
    acceleration.prepare_model(model)
    train_loader, test_loader, val_loader = data.loaders(
        config.batch_size, eval_batch_size=config.eval_batch_size, seed=config.seed
    )
    steps_per_epoch = len(train_loader)
    total_steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    optimizers = _build_optimizers(model, config, hooks)
    base_lrs = [[g["lr"] for g in opt.param_groups] for opt in optimizers]

    start = time.perf_counter()
    history: list[dict[str, float]] = []
    step = 0
    epoch = 0
    running_loss = float("nan")
    failure: str | None = None
    stopped = False
    last_reported: float | None = None
    last_mark = math.floor(epoch_offset / progress_every + 1e-9)
    bar = tqdm(total=total_steps, disable=not config.progress, desc="train", leave=False,
               dynamic_ncols=True)
    model.train()
    while step < total_steps and failure is None:
        correct = seen = 0
        for inputs, targets in train_loader:
            if step >= total_steps:
                break
            inputs, targets = acceleration.prepare_inputs(inputs.to(device)), targets.to(device)
            factor = _lr_factor(step, total_steps, steps_per_epoch, config)
            for opt, lrs in zip(optimizers, base_lrs):
                for group, lr in zip(opt.param_groups, lrs):
                    group["lr"] = lr * factor
            # Only the forward is autocast; the loss, the hooks' terms and backward run in fp32.
            with acceleration.autocast():
                logits = model(inputs)
            logits = logits.float()
            task_loss = F.cross_entropy(logits, targets)
            context = StepContext(inputs, targets, logits, task_loss, step, total_steps, epoch)
            terms = hooks.loss_terms(context)
            loss = torch.stack([t.reshape(()) for t in terms.values()]).sum()
            if not torch.isfinite(loss):
                bad = {k: float(v.detach()) for k, v in terms.items()}
                failure = f"loss became {float(loss.detach())} at epoch {epoch} step {step} ({bad})"
                break
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            hooks.after_step(context)
            step += 1
            value = float(loss.detach())
            running_loss = value if math.isnan(running_loss) else 0.9 * running_loss + 0.1 * value
            correct += (logits.detach().argmax(1) == targets).sum().item()
            seen += len(targets)
            bar.update(1)
            bar.set_postfix(loss=f"{running_loss:.3f}", acc=f"{correct / seen:.3f}")
            if step % 20 == 0 or step == total_steps:
                history.append({"step": step, "loss": value, **{
                    f"loss_{k}": float(v.detach()) for k, v in terms.items()}})
            done = epoch_offset + step / steps_per_epoch
            mark = math.floor(done / progress_every + 1e-9)
            if on_progress is not None and val_loader is not None and step < total_steps \
                    and mark > last_mark:
                last_mark = mark
                recalibrate_batchnorm(model, train_loader, device=device, batches=min(
                    config.bn_recalibration_batches, PROGRESS_RECALIBRATION_BATCHES))
                last_reported = evaluate(model, val_loader, device,
                                         acceleration=acceleration.without_autocast())
                if on_progress(done, last_reported):
                    stopped = True
                    break
        if stopped:
            break
        epoch += 1
    bar.close()

    if failure is not None:
        acceleration.restore_model(model)
        return TrainResult("failed", None, None, running_loss, time.perf_counter() - start, step,
                           step / steps_per_epoch, failure=failure, history=history,
                           acceleration=acceleration.label)
    if stopped:
        acceleration.restore_model(model)
        return TrainResult("stopped", None, last_reported, running_loss,
                           time.perf_counter() - start, step, step / steps_per_epoch,
                           history=history, acceleration=acceleration.label)
    if config.bn_recalibration_batches:
        recalibrate_batchnorm(model, train_loader, batches=config.bn_recalibration_batches,
                              device=device)
    # Evaluation keeps the memory format but not autocast: accuracy is that of the fp32 weights.
    evaluation = acceleration.without_autocast()
    test_accuracy = evaluate(model, test_loader, device, acceleration=evaluation)
    val_accuracy = (evaluate(model, val_loader, device, acceleration=evaluation)
                    if val_loader is not None else None)
    acceleration.restore_model(model)
    return TrainResult(
        status="ok",
        test_accuracy=test_accuracy,
        val_accuracy=val_accuracy,
        train_loss=running_loss,
        seconds=time.perf_counter() - start,
        steps=step,
        epochs_run=step / steps_per_epoch,
        history=history,
        acceleration=acceleration.label,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


PhaseCallback = Callable[[int, Phase, TrainResult], bool]


def train_phases(
    model: nn.Module,
    data: DatasetSplits,
    config: TrainConfig,
    hooks: TrainingHooks,
    *,
    on_phase_end: PhaseCallback | None = None,
    quick_intermediate: bool = True,
    on_progress: ProgressCallback | None = None,
    progress_every: float = 0.25,
    epoch_offset: float = 0.0,
) -> TrainResult:
    """Train through the hooks' phases (a pruner's, e.g. BAR's prune → frozen → fine-tune).

    Each phase gets its share of ``config.epochs`` at ``lr_factor`` × ``config.lr``; the hooks'
    ``begin_phase(phase)`` runs before it. After each phase, ``on_phase_end(index, phase,
    result)`` may return True to stop (the result's status is then ``"stopped"``). With
    ``quick_intermediate`` the phases before the last are scored on the validation split only
    (a full test pass per short phase costs more than the phase). Every phase sees the data in
    a different order (the seed is offset by the phase index).

    ``on_progress(epochs, val_accuracy)`` (see :func:`train`) is called every ``progress_every``
    epochs within the phases and after each phase (``epochs`` counts from ``epoch_offset``, so a
    caller may count training done before, e.g. a reference network's); True stops the run.

    Returns:
        The last phase's :class:`TrainResult`, with ``steps``, ``seconds`` and ``history``
        summed over the phases that ran.
    """
    phases = phases_of(hooks)
    begin = getattr(hooks, "begin_phase", None)
    quick = replace(data, test=data.val) if quick_intermediate and data.val is not None else data
    results: list[TrainResult] = []
    done = epoch_offset
    for index, phase in enumerate(phases):
        if callable(begin):
            begin(phase)
        last = index == len(phases) - 1
        phase_config = replace(config, epochs=config.epochs * phase.fraction,
                               lr=config.lr * phase.lr_factor, seed=config.seed + index)
        result = train(model, data if last else quick, phase_config, hooks=hooks,
                       on_progress=on_progress, progress_every=progress_every,
                       epoch_offset=done)
        results.append(result)
        done += result.epochs_run
        if result.status != "ok":
            break
        stop = on_phase_end is not None and on_phase_end(index, phase, result)
        if on_progress is not None:
            score = result.val_accuracy if result.val_accuracy is not None \
                else result.test_accuracy
            if score is not None:
                stop = bool(on_progress(done, float(score))) or stop
        if stop and not last:
            result.status = "stopped"
            break
    final = results[-1]
    final.steps = sum(r.steps for r in results)
    final.seconds = sum(r.seconds for r in results)
    final.epochs_run = sum(r.epochs_run for r in results)
    final.history = [entry for r in results for entry in r.history]
    if final.status == "stopped":
        final.test_accuracy = None  # scored on the validation split only, mid-way
    return final
