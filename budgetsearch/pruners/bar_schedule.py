"""BAR's budget barrier (eq. 5) and the schedule of its upper margin b (eq. 7, supp. eq. 1).

Example:
    >>> barrier(0.5, a=1.0, b=2.0)
    0.0
    >>> round(barrier(1.5, a=1.0, b=2.0), 6)   # (0.5)² / (0.5 · 1)
    0.5
    >>> round(transition(0.0, 10.0), 9), round(transition(1.0, 10.0), 9)
    (0.0, 1.0)
"""

from __future__ import annotations

import math
from typing import Literal

TransitionName = Literal["sigmoid", "linear", "exponential"]

#: Value of the barrier at and past its asymptote V ≥ b. The public re-implementation uses 1e10;
#: it multiplies L_S / V_F ≤ 1 and λ, so the loss stays finite (and Adam, which updates the gates,
#: is insensitive to the scale of a gradient).
BARRIER_CAP = 1e10


def barrier(volume: float, a: float, b: float, *, cap: float = BARRIER_CAP) -> float:
    """``f(V, a, b)`` of eq. (5): 0 for V ≤ a, ``(V−a)²/((b−V)(b−a))`` between, ``cap`` for V ≥ b.

    ``f`` is a plain float: BAR uses it as a non-differentiated multiplier of ``L_S`` (eq. 6),
    since V (eq. 4) counts hard gates and has no gradient. The value is capped at ``cap`` (also
    between a and b, where it grows without bound near b) so no inf/NaN reaches the optimizer.
    """
    if not b > a:
        raise ValueError(f"the barrier needs b > a, got a={a}, b={b}")
    if volume <= a:
        return 0.0
    if volume >= b:
        return cap
    return min(cap, (volume - a) ** 2 / ((b - volume) * (b - a)))


def transition(t: float, hardness: float = 10.0, kind: TransitionName = "sigmoid") -> float:
    """``T(t)`` from 0 at ``t = 0`` to 1 at ``t = 1``.

    ``"sigmoid"``: supp. eq. (1), ``T(t, d) = (sigmoid(d(t − 0.5)) − δ)/(1 − 2δ)``,
    ``δ = sigmoid(−0.5 d)``; ``d → 0`` tends to the linear transition. ``"linear"``: ``T = t``.
    ``"exponential"``: fast at first, slow at the end (section 3.4),
    ``T = (1 − e^{−d t})/(1 − e^{−d})``.
    """
    t = min(1.0, max(0.0, t))
    if kind == "linear" or (kind != "exponential" and hardness <= 1e-6):
        if kind not in ("linear", "sigmoid"):
            raise ValueError(f"kind must be 'sigmoid', 'linear' or 'exponential', got {kind!r}")
        return t
    if hardness <= 0:
        raise ValueError(f"hardness must be positive, got {hardness}")
    if kind == "sigmoid":
        delta = _sigmoid(-0.5 * hardness)
        return (_sigmoid(hardness * (t - 0.5)) - delta) / (1.0 - 2.0 * delta)
    if kind == "exponential":
        return (1.0 - math.exp(-hardness * t)) / (1.0 - math.exp(-hardness))
    raise ValueError(f"kind must be 'sigmoid', 'linear' or 'exponential', got {kind!r}")


def budget_margins(
    t: float,
    full: float,
    budget: float,
    *,
    hardness: float = 10.0,
    kind: TransitionName = "sigmoid",
    start_factor: float = 1.0,
) -> tuple[float, float]:
    """Lower and upper margins ``(a, b)`` at training progress ``t`` ∈ [0, 1].

    eq. (7): ``b = (1 − T(t)) V_F + T(t) B`` and ``a = B − 1e-4 V_F``. ``start_factor`` scales
    the starting point (the public re-implementation starts at 1.01 V_F, so that the barrier is
    finite at the first step where V = V_F).
    """
    if not 0 < budget <= full * start_factor:
        raise ValueError(f"budget must be in (0, {full * start_factor}], got {budget}")
    progress = transition(t, hardness, kind)
    upper = (1.0 - progress) * full * start_factor + progress * budget
    lower = budget - 1e-4 * full
    return lower, upper


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
