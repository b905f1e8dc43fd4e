"""Unstructured masks: zero the smallest weights until a priced budget is met.

Shared by the unstructured pruners: global magnitude pruning chooses its masks this way, and
erf-loss uses it to make the finalized network meet its target on counted zeros (the Gaussian
estimate of eq. 5 can be off on weights that are not bell-shaped).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

DensitiesCheck = Callable[[dict[str, float]], bool]


def densities_of(masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of weights kept per layer."""
    # Exact counts: a float32 mean would price 38,781.00015 parameters for 38,781.
    return {name: int(torch.count_nonzero(mask)) / max(1, mask.numel())
            for name, mask in masks.items()}


@torch.no_grad()
def drop_smallest_until(masks: dict[str, torch.Tensor], scores: Mapping[str, torch.Tensor],
                        meets: DensitiesCheck) -> int:
    """Zero the lowest-scoring kept weights across all layers, as few as possible, until
    ``meets(densities)`` holds; ``masks`` (1 = kept) are changed in place.

    The cost of a configuration grows with every weight kept, so ``meets`` is monotone in the
    number dropped and the smallest number is found by bisection over the global score order.

    Args:
        masks: layer name → mask of the layer's weight shape (float or bool, 1 = kept).
        scores: layer name → importance of each weight (same shape; lower goes first).
        meets: whether a configuration of per-layer densities is within the budget.

    Returns:
        The number of weights zeroed (0 when ``masks`` already meets the budget).

    Raises:
        ValueError: even with every weight of these layers zeroed, ``meets`` is false.

    Example:
        >>> masks = {"a": torch.ones(4), "b": torch.ones(2)}
        >>> scores = {"a": torch.tensor([4., 1., 3., 2.]), "b": torch.tensor([0.5, 5.])}
        >>> drop_smallest_until(masks, scores, lambda d: 4 * d["a"] + 2 * d["b"] <= 3)
        3
        >>> masks["a"].tolist(), masks["b"].tolist()
        ([1.0, 0.0, 1.0, 0.0], [0.0, 1.0])
    """
    if meets(densities_of(masks)):
        return 0
    names = list(masks)
    flat_masks = [masks[n].reshape(-1) for n in names]
    kept = [m > 0 for m in flat_masks]
    flat = torch.cat([scores[n].detach().reshape(-1).double().cpu() for n in names])
    alive = torch.cat([k.cpu() for k in kept])
    candidates = torch.nonzero(alive).flatten()
    order = candidates[torch.argsort(flat[candidates], stable=True)]
    sizes = [m.numel() for m in flat_masks]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    original = [m.clone() for m in flat_masks]

    def apply(count: int) -> dict[str, float]:
        chosen = order[:count]
        for mask, base, start, size in zip(flat_masks, original, starts, sizes, strict=True):
            mask.copy_(base)
            local = chosen[(chosen >= start) & (chosen < start + size)] - start
            mask[local.to(mask.device)] = 0
        return densities_of(masks)

    if not meets(apply(len(order))):
        apply(0)
        raise ValueError("the budget cannot be met even with every prunable weight zeroed")
    low, high = 0, len(order)  # meets(high) holds, meets(low) does not
    while high - low > 1:
        mid = (low + high) // 2
        if meets(apply(mid)):
            high = mid
        else:
            low = mid
    apply(high)
    return high
