"""The maths of the erf-loss pruner (Retsinas et al., *Weight pruning via adaptive sparsity loss*).

Pure functions, no state: the two fixed-sparsity bound functions (binary search, eq. 2; Gaussian
assumption, eq. 3), the Straight-Through-Estimator pruning operation (section 3.3.3, appendix
eqs. 13–18) and the adaptive sparsity loss (eqs. 5, 6, 8) with its thin module twin
:class:`ErfSparsityLoss`. :mod:`budgetsearch.pruners.erf` builds the pruner on them.

Conventions: a *bound* ``b`` is absolute (same units as the weights); a *relative bound*
``r = b / σ`` is in units of the layer's weight standard deviation σ, as the appendix writes it
(its ``b`` is our ``r``). σ is always detached (appendix, Remark).

Example:
    >>> import torch
    >>> w = torch.randn(10_000)
    >>> b = gaussian_bound(w, 0.5)
    >>> round(float((w.abs() < b).float().mean()), 1)
    0.5
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "BinarySearchResult",
    "ErfSparsityLoss",
    "binary_search_bound",
    "counted_sparsity",
    "erf_sparsity",
    "erf_sparsity_loss",
    "gaussian_bound",
    "relative_bound_for_sparsity",
    "ste_prune",
    "ste_prune_relative",
]

_SQRT2 = math.sqrt(2.0)


def _check_sparsity(sparsity: float, name: str = "sparsity") -> None:
    if not (isinstance(sparsity, (int, float)) and 0.0 <= sparsity < 1.0):
        raise ValueError(f"{name} must be a fraction in [0, 1), got {sparsity!r}")


def relative_bound_for_sparsity(sparsity: float) -> float:
    """``r = √2·erfinv(s)``: the bound in σ units that prunes ``s`` of a Gaussian layer (eq. 3).

    Example:
        >>> round(relative_bound_for_sparsity(0.6827), 3)   # one σ holds 68.27 %
        1.0
    """
    _check_sparsity(sparsity)
    return _SQRT2 * float(torch.erfinv(torch.tensor(float(sparsity), dtype=torch.float64)))


def gaussian_bound(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Gaussian-assumption bound ``b = σ·√2·erfinv(s)`` (eq. 3), σ the detached weight std.

    Returns a 0-d tensor on the weight's device.

    Example:
        >>> w = torch.randn(100_000)
        >>> b = gaussian_bound(w, 0.85)
        >>> abs(float((w.abs() < b).float().mean()) - 0.85) < 0.01
        True
    """
    _check_sparsity(sparsity)
    sigma = weight.detach().std()
    return sigma * relative_bound_for_sparsity(sparsity)


class BinarySearchResult(NamedTuple):
    """Bound found by :func:`binary_search_bound`, the sparsity it attains and the counting passes
    it took (each pass is one comparison over the whole tensor)."""

    bound: float
    sparsity: float
    passes: int


def binary_search_bound(
    weight: torch.Tensor,
    sparsity: float,
    *,
    epsilon: float = 5e-4,
    start: float | None = None,
    max_passes: int = 60,
) -> BinarySearchResult:
    """Find ``b`` with ``|#{|w| < b}/#W − s| < ε`` (eq. 2) by bracketed bisection.

    A plain bisection over ``[0, max|w|]`` needs ~30 counting passes. In online pruning the bound
    moves little between steps, so the search starts from ``start`` (the last step's bound, or the
    Gaussian guess of eq. 3 when None), widens a bracket around it geometrically, then narrows it
    with false-position steps safeguarded by bisection: usually 2–4 passes.

    When no bound can meet ``ε`` (a small layer whose attainable sparsities are multiples of
    ``1/#W``, or tied magnitudes) the best bound found within ``max_passes`` is returned.

    Args:
        weight: any tensor; its magnitudes are thresholded.
        sparsity: target fraction of weights below the bound, in [0, 1).
        epsilon: margin ε of eq. (2), > 0.
        start: initial guess of the bound (> 0), e.g. the previous step's result.
        max_passes: most counting passes to spend.

    Example:
        >>> w = torch.randn(50_000)
        >>> result = binary_search_bound(w, 0.9, epsilon=1e-3)
        >>> abs(result.sparsity - 0.9) < 1e-3
        True
    """
    _check_sparsity(sparsity)
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon!r}")
    magnitudes = weight.detach().abs().reshape(-1)
    n = magnitudes.numel()
    if n == 0:
        raise ValueError("weight must not be empty")
    if sparsity == 0.0:
        return BinarySearchResult(0.0, 0.0, 0)
    # A count can only move in steps of 1/n: never ask for more precision than half a step.
    tolerance = max(epsilon, 0.5 / n + 1e-12)
    passes = 0

    def frac(bound: float) -> float:
        nonlocal passes
        passes += 1
        return int(torch.count_nonzero(magnitudes < bound)) / n

    if start is None or not (start > 0 and math.isfinite(start)):
        start = float(weight.detach().std()) * relative_bound_for_sparsity(sparsity)
        if not start > 0:
            start = float(magnitudes.max()) or 1.0
    best = (math.inf, start, math.nan)  # (|error|, bound, attained)

    def consider(bound: float, attained: float) -> bool:
        nonlocal best
        error = abs(attained - sparsity)
        if error < best[0]:
            best = (error, bound, attained)
        return error < tolerance

    # 1. Bracket: lo attains < s, hi attains ≥ s; widen geometrically from the start.
    attained = frac(start)
    if consider(start, attained):
        return BinarySearchResult(start, attained, passes)
    step = 0.02
    if attained < sparsity:
        lo, f_lo = start, attained
        hi = start * (1 + step)
        f_hi = frac(hi)
        while f_hi < sparsity and passes < max_passes:
            if consider(hi, f_hi):
                return BinarySearchResult(hi, f_hi, passes)
            lo, f_lo = hi, f_hi
            step *= 4
            hi = start * (1 + step)
            f_hi = frac(hi)
    else:
        hi, f_hi = start, attained
        lo = start / (1 + step)
        f_lo = frac(lo)
        while f_lo >= sparsity and passes < max_passes:
            if consider(lo, f_lo):
                return BinarySearchResult(lo, f_lo, passes)
            hi, f_hi = lo, f_lo
            step *= 4
            lo = start / (1 + step)
            f_lo = frac(lo)
    if consider(hi, f_hi):
        return BinarySearchResult(hi, f_hi, passes)
    if consider(lo, f_lo):
        return BinarySearchResult(lo, f_lo, passes)

    # 2. Narrow: false position (the count is nearly linear in b over a tight bracket), with a
    # bisection step whenever interpolation would land too close to an end.
    last_moved: bool | None = None  # True: lo moved last, False: hi moved last
    bisect_next = False
    while passes < max_passes:
        if bisect_next or f_hi <= f_lo:
            mid = 0.5 * (lo + hi)
        else:
            mid = lo + (sparsity - f_lo) * (hi - lo) / (f_hi - f_lo)
            width = hi - lo
            mid = min(max(mid, lo + 0.05 * width), hi - 0.05 * width)
        f_mid = frac(mid)
        if consider(mid, f_mid):
            break
        moved_lo = f_mid < sparsity
        if moved_lo:
            lo, f_lo = mid, f_mid
        else:
            hi, f_hi = mid, f_mid
        # False position stalls when one end keeps moving: then bisect once.
        bisect_next = not bisect_next and moved_lo == last_moved
        last_moved = moved_lo
        if hi - lo <= 1e-12 * max(hi, 1e-30):
            break
    _, bound, attained = best
    return BinarySearchResult(bound, attained, passes)


def counted_sparsity(weight: torch.Tensor, bound: float | torch.Tensor) -> float:
    """Fraction of weights with ``|w| < bound`` (the left side of eq. 2)."""
    magnitudes = weight.detach().abs()
    return float(torch.count_nonzero(magnitudes < bound)) / max(1, magnitudes.numel())


class _STEPrune(torch.autograd.Function):
    """Eq. (1) forward with a fixed bound; identity backward (eq. 16)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return weight * (weight.abs() >= bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


class _STEPruneRelative(torch.autograd.Function):
    """Eqs. (14)/(15) forward ``w̃ = rσ·T(w/(rσ))``; backward eq. (16) for w and (18) for r."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, weight: torch.Tensor, ratio: torch.Tensor, sigma: torch.Tensor
    ) -> torch.Tensor:
        pruned = weight.abs() < ratio * sigma
        ctx.save_for_backward(weight, pruned, ratio)
        return weight.masked_fill(pruned, 0.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, None]:  # type: ignore[override]
        weight, pruned, ratio = ctx.saved_tensors
        grad_ratio = None
        if ctx.needs_input_grad[1]:
            # eq. (18): ∂L/∂r = Σ_i (w̃_i − w_i)/r · ∂L/∂w̃_i; only pruned weights contribute
            # (w̃_i − w_i = −w_i there, 0 elsewhere). With r = 0 nothing is pruned: the sum is 0.
            total = -(weight * grad).masked_fill(~pruned, 0.0).sum()
            safe = torch.where(ratio > 0, ratio, torch.ones_like(ratio))
            grad_ratio = torch.where(ratio > 0, total / safe, torch.zeros_like(total))
            grad_ratio = grad_ratio.reshape(ratio.shape)
        # eq. (16): ∂w̃/∂w = 1 (straight through), pruned weights keep learning.
        return grad, grad_ratio, None


def ste_prune(weight: torch.Tensor, bound: float | torch.Tensor) -> torch.Tensor:
    """Magnitude pruning with a fixed bound (eq. 1) and a Straight-Through Estimator.

    Forward: ``w̃ = w`` where ``|w| ≥ b``, else 0. Backward: ``∂L/∂w = ∂L/∂w̃`` for every weight
    (eq. 16), so pruned weights keep being trained and can come back (section 3.3.3).

    Example:
        >>> w = torch.tensor([0.1, -2.0, 0.5], requires_grad=True)
        >>> ste_prune(w, 0.4).tolist()
        [0.0, -2.0, 0.5]
    """
    if not isinstance(bound, torch.Tensor):
        bound = torch.tensor(float(bound), dtype=weight.dtype, device=weight.device)
    return _STEPrune.apply(weight, bound.detach())


def ste_prune_relative(
    weight: torch.Tensor, ratio: torch.Tensor, sigma: torch.Tensor | None = None
) -> torch.Tensor:
    """Pruning with a trainable bound in σ units: ``w̃ = rσ·T(w/(rσ))`` (eq. 15).

    ``weight`` gets the straight-through gradient (eq. 16); ``ratio`` (``r``, a 0-d tensor) gets
    ``Σ (w̃ − w)/r · ∂L/∂w̃`` (eqs. 17–18); σ (default: the weight's std) is detached.

    Example:
        >>> w = torch.tensor([0.1, -2.0, 0.5], requires_grad=True)
        >>> r = torch.tensor(0.5, requires_grad=True)
        >>> ste_prune_relative(w, r, torch.tensor(1.0)).sum().backward()
        >>> round(float(r.grad), 6)   # only w₀ = 0.1 is pruned: (0 − 0.1)/0.5
        -0.2
    """
    if sigma is None:
        sigma = weight.detach().std()
    return _STEPruneRelative.apply(weight, ratio, sigma.detach())


def erf_sparsity(bound: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian estimate of a layer's sparsity, ``s = erf(b/(σ√2))`` (eq. 5); σ is detached."""
    return torch.erf(bound / (sigma.detach() * _SQRT2))


def erf_sparsity_loss(
    bounds: torch.Tensor, sigmas: torch.Tensor, contributions: torch.Tensor | None = None
) -> torch.Tensor:
    """Adaptive sparsity loss ``L_s = 1 − (1/N)·Σ c_i·erf(b_i/(σ_i√2))`` (eqs. 6 and 8).

    ``L_s`` is the (weighted) density of the network under the Gaussian assumption. With
    ``contributions=None`` every ``c_i = 1`` (eq. 6, "avg"). For a weighted loss pass ``c_i`` that
    average to 1 (``c_i = N·m_i/Σ_j m_j`` for a per-layer cost ``m``): eq. (9)'s normalisation
    to a sum of 1 combined with eq. (8)'s ``1/N`` would make ``L_s`` an ``N``-th of a density.
    Then ``1 − L_s`` is exactly the network's fraction of the cost ``m`` removed.

    Its gradient with respect to one ``b_i`` is ``−c_i/N · 2e^{−b_i²/(2σ_i²)}/(σ_i√(2π))``
    (eq. 19 for one layer).

    Args:
        bounds: absolute bounds ``b_i`` (any shape, differentiable).
        sigmas: weight standard deviations ``σ_i`` (same shape; detached here).
        contributions: optional ``c_i`` (same shape).

    Example:
        >>> b = torch.tensor([0.0, 10.0])
        >>> float(erf_sparsity_loss(b, torch.ones(2)))   # one dense layer, one empty one
        0.5
    """
    sparsities = erf_sparsity(bounds, sigmas)
    if contributions is not None:
        sparsities = sparsities * contributions
    return 1.0 - sparsities.mean()


class ErfSparsityLoss(nn.Module):
    """Module twin of :func:`erf_sparsity_loss` holding the contribution weights ``c_i``.

    Example:
        >>> loss = ErfSparsityLoss(torch.tensor([0.5, 1.5]))
        >>> round(float(loss(torch.tensor([0.0, 100.0]), torch.ones(2))), 3)
        0.25
    """

    contributions: torch.Tensor | None

    def __init__(self, contributions: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("contributions", contributions)

    def forward(self, bounds: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        return erf_sparsity_loss(bounds, sigmas, self.contributions)
