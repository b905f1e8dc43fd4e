"""Before any training: what the target means for this network, and which pruners can meet it.

The unpruned network is priced once on the run's device profile; a relative target (``50%``)
becomes absolute here, and every candidate pruner is asked, through the protocol alone, whether it
can meet it: ``prepare`` on a throw-away copy of the network raises
:class:`~budgetsearch.pruners.BudgetInfeasible` with the reachable minimum when it cannot. A
target below every candidate's minimum is refused, naming the minimum.

Example:
    >>> from budgetsearch.cost import Target
    >>> from budgetsearch.search.settings import TrialSettings
    >>> from budgetsearch.search.space import load_space
    >>> settings = TrialSettings(model="wrn-10-1", dataset="synthetic", train_subset=64)
    >>> plan = plan_target(Target.parse("flops", "25%"), settings, None,
    ...                    [load_space("bar"), load_space("erf")])
    >>> plan.pruners, round(plan.target.value / plan.full_cost, 2)
    (('bar', 'erf'), 0.25)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from budgetsearch.cost import DeviceProfile, Target
from budgetsearch.pruners import BudgetInfeasible
from budgetsearch.search.objective import build_trial_pruner, split_params
from budgetsearch.search.settings import (
    TrialSettings,
    build_network,
    input_shape,
    settings_inventory,
)
from budgetsearch.search.space import SearchSpace


@dataclass(frozen=True)
class TargetPlan:
    """What the target means for this network on this device, decided before training.

    ``target`` is absolute; ``full_cost`` the unpruned network's cost on its metric;
    ``minimum_cost`` the reachable minimum of each pruner that cannot meet it; ``pruners`` those
    that can, in the order asked; ``notes`` say why one was dropped or that the target is loose.
    """

    target: Target
    full_cost: float
    minimum_cost: dict[str, float]
    pruners: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def budget_fraction(self) -> float:
        """The target as a fraction of the unpruned cost (capped at 1)."""
        return min(1.0, self.target.limit() / self.full_cost) if self.full_cost > 0 else 1.0


def resolve_target(target: Target, settings: TrialSettings,
                   profile: DeviceProfile | None) -> tuple[Target, float]:
    """The absolute target and the unpruned network's cost on its metric.

    Raises:
        ValueError: a latency target without a device profile.
    """
    if target.metric == "latency_ms" and profile is None:
        raise ValueError("a latency target needs --device (a profile in 'budgetsearch devices')")
    full = settings_inventory(settings).price(profile=profile).as_dict()[target.metric]
    assert full is not None
    return target.resolve(float(full)), float(full)


def reachable_pruners(target: Target, settings: TrialSettings, profile: DeviceProfile | None,
                      spaces: Sequence[SearchSpace]
                      ) -> tuple[list[str], dict[str, float], list[str], dict[str, str]]:
    """Ask each space's pruner, on a throw-away copy of ``settings``' network, whether it can
    meet the absolute ``target``: (the pruners that can, in order; the reachable minimum of each
    that cannot; notes saying why one was dropped; why each that cannot prune the network at
    all refused it)."""
    example = torch.zeros(1, *input_shape(settings))
    notes: list[str] = []
    minimum: dict[str, float] = {}
    usable: list[str] = []
    unable: dict[str, str] = {}
    for space in spaces:
        _, options = split_params({}, space)
        pruner = build_trial_pruner(space, options, target, profile)
        try:
            pruner.prepare(build_network(settings), example)
        except BudgetInfeasible as error:
            minimum[space.pruner] = error.minimum
            notes.append(f"{space.pruner} cannot meet the target: {error}")
            continue
        except (ValueError, TypeError) as error:  # the pruner cannot handle this network
            notes.append(f"{space.pruner} cannot prune {settings.model}: {error}")
            unable[space.pruner] = str(error)
            continue
        usable.append(space.pruner)
    return usable, minimum, notes, unable


def plan_target(target: Target, settings: TrialSettings, profile: DeviceProfile | None,
                spaces: Sequence[SearchSpace]) -> TargetPlan:
    """Resolve ``target`` and ask each space's pruner whether it can meet it.

    Raises:
        ValueError: a latency target without a profile, or a target below every candidate's
            reachable minimum (the message states the minimum and the unpruned cost).
    """
    target, full = resolve_target(target, settings, profile)
    usable, minimum, notes, _ = reachable_pruners(target, settings, profile, spaces)
    where = f" on {profile.name}" if profile is not None and target.metric == "latency_ms" else ""
    if not usable and not minimum:
        raise ValueError("no pruner can prune this network: " + "; ".join(notes))
    if not usable:
        best = min(minimum.values())
        raise ValueError(
            f"target {target.describe()} is below what {settings.model} can reach{where}: the "
            f"smallest configuration costs {target.describe(best)} (unpruned: "
            f"{target.describe(full)}); ask for at least {target.describe(best)}")
    if target.is_met(full):
        notes.append(f"the unpruned {settings.model} already meets the target{where} "
                     f"({target.describe(full)} ≤ {target.describe()}); the search still looks "
                     f"for the most accurate configuration within it")
    return TargetPlan(target, full, minimum, tuple(usable), tuple(notes))
