"""How anything that takes part in training (a pruner) meets the training loop.

This module imports only torch, so that both the trainer (:mod:`budgetsearch.train`) and the
pruners (:mod:`budgetsearch.pruners`) can depend on it without depending on each other.

A hooks object may bring its own parameter groups (plain ``torch.optim`` dicts with absolute
learning rates), add loss terms to each step, act after each optimizer step, and split training
into named :class:`Phase` s (BAR: prune → frozen → fine-tune) that one trainer runs in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class StepContext:
    """What a hook sees of one training step."""

    inputs: torch.Tensor
    targets: torch.Tensor
    logits: torch.Tensor
    task_loss: torch.Tensor
    step: int
    total_steps: int
    epoch: int

    @property
    def progress(self) -> float:
        """Fraction of the phase done, in [0, 1] (the BAR budget schedule's ``t``)."""
        return self.step / max(1, self.total_steps)


@dataclass(frozen=True)
class Phase:
    """One stretch of training: a share of the run's epochs at a multiple of its learning rate.

    Attributes:
        name: what the phase does (``"train"``, ``"prune"``, ``"frozen"``, ``"finetune"``).
        fraction: share of the run's epochs, in (0, 1]; a pruner's shares sum to 1.
        lr_factor: the phase's learning rate as a multiple of the run's.
    """

    name: str
    fraction: float = 1.0
    lr_factor: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"Phase {self.name!r}: fraction must be in (0, 1], got "
                             f"{self.fraction!r}")
        if not self.lr_factor > 0:
            raise ValueError(f"Phase {self.name!r}: lr_factor must be positive, got "
                             f"{self.lr_factor!r}")


#: The phases of a hooks object that does not split training.
SINGLE_PHASE = (Phase("train"),)


@runtime_checkable
class TrainingHooks(Protocol):
    """How a pruner takes part in training (every pruner implements it)."""

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer groups of the hooks' own parameters, as plain ``torch.optim`` dicts
        (``params``, ``lr`` absolute, ``weight_decay``), given the weights' learning rate."""
        ...

    def loss_terms(self, context: StepContext) -> dict[str, torch.Tensor]:
        """The named terms whose sum is the step's loss; include ``context.task_loss`` (possibly
        reweighted) under ``"task"``."""
        ...

    def after_step(self, context: StepContext) -> None:
        """Called after each optimizer step (e.g. to re-apply masks)."""
        ...


def phases_of(hooks: object) -> tuple[Phase, ...]:
    """The hooks' phases (:data:`SINGLE_PHASE` when it declares none)."""
    phases = getattr(hooks, "phases", None)
    return tuple(phases()) if callable(phases) else SINGLE_PHASE


def optimizer_of(hooks: object) -> str | None:
    """The optimizer (``"sgd"``/``"adam"``) the hooks' groups are tuned for; None: the weights'."""
    return getattr(hooks, "param_group_optimizer", None)
