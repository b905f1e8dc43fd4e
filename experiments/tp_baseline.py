"""Torch-Pruning's L1 filter-magnitude pruner as an experiment-only baseline (issue 19, part 3).

Torch-Pruning (``torch-pruning``, a dev/experiment dependency, never imported by
``budgetsearch/``) prunes a model in place along its dependency graph: every coupled group loses
the same fraction ``ratio`` of its channels, those with the smallest L1 norm
(``MagnitudeImportance(p=1)``, ``global_pruning=False``), the head's outputs untouched. The ratio
is found by bisection so that the pruned network's cost, priced by budgetsearch's own cost model
(and device profile, for latency), meets the target.

Example:
    >>> import torch
    >>> from budgetsearch.cost import Target
    >>> from budgetsearch.models import build_model
    >>> model = build_model("wrn-10-1")
    >>> target = Target("flops", fraction=0.25, text="25%")
    >>> pruned, ratio, cost = prune_to_target(model, torch.zeros(1, 1, 28, 28), target)
    >>> cost["flops"] <= 0.25 * 1.0001 * full_cost(model, torch.zeros(1, 1, 28, 28))["flops"]
    True
"""

from __future__ import annotations

import copy

import torch
import torch_pruning as tp
from torch import nn

from budgetsearch.cost import DeviceProfile, Target, is_met, layer_inventory

BISECTION_STEPS = 12
#: Highest ratio tried (Torch-Pruning leaves a group unpruned when asked to empty it, so the
#: cost is not monotone in the ratio near 1).
MAX_RATIO = 0.9


def full_cost(model: nn.Module, example: torch.Tensor,
              profile: DeviceProfile | None = None) -> dict[str, float]:
    """Every metric of ``model`` priced by budgetsearch's cost model."""
    cost = layer_inventory(model, example).price(profile=profile).as_dict()
    return {k: float(v) for k, v in cost.items() if v is not None}


def magnitude_prune(model: nn.Module, example: torch.Tensor, ratio: float) -> nn.Module:
    """A pruned copy of ``model``: Torch-Pruning's MagnitudePruner (L1), uniform ``ratio``."""
    pruned = copy.deepcopy(model).eval()
    heads = [m for m in pruned.modules() if isinstance(m, nn.Linear)]
    pruner = tp.pruner.MagnitudePruner(pruned, example, importance=tp.importance.
                                       MagnitudeImportance(p=1), pruning_ratio=ratio,
                                       global_pruning=False, ignored_layers=heads)
    pruner.step()
    return pruned


def prune_to_target(model: nn.Module, example: torch.Tensor, target: Target,
                    profile: DeviceProfile | None = None
                    ) -> tuple[nn.Module, float, dict[str, float]]:
    """The least-pruned network (bisection on the uniform ratio) whose cost meets ``target``
    (a relative target is resolved against ``model``'s own cost)."""
    full = full_cost(model, example, profile)
    limit = target.resolve(full[target.metric]).limit()
    low, high = 0.0, MAX_RATIO  # cost(low) > limit ≥ cost(high)
    best = magnitude_prune(model, example, high)
    best_cost = full_cost(best, example, profile)
    if not is_met(best_cost[target.metric], limit):
        raise ValueError(f"Torch-Pruning cannot reach {target.metric} ≤ {limit:.4g} "
                         f"(ratio {MAX_RATIO} costs {best_cost[target.metric]:.4g})")
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        candidate = magnitude_prune(model, example, middle)
        cost = full_cost(candidate, example, profile)
        if is_met(cost[target.metric], limit):
            high, best, best_cost = middle, candidate, cost
        else:
            low = middle
    return best, high, best_cost
