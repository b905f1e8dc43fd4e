"""Hard-Concrete channel gates (Louizos et al.; BAR paper, supplementary section 7).

A function and its thin module twin, after ``torchvision.ops.stochastic_depth``:
:func:`hard_concrete_sample` draws gates from log α, :class:`HardConcreteGate` owns one log α per
channel and multiplies a ``(N, C, H, W)`` tensor by its gates. In training the gates are sampled
per batch (supp. eq. 4); in evaluation they are deterministic (ε replaced by its mean, 1/2).

Example:
    >>> gate = HardConcreteGate(8)
    >>> x = torch.randn(2, 8, 4, 4)
    >>> gate.eval()(x).shape
    torch.Size([2, 8, 4, 4])
    >>> float(gate.prob_nonzero().sum()) > 6
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Temperature β, stretch limits γ < 0 and ζ > 1 (supp. section 7.1, from Louizos et al.).
BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1
#: Louizos' reference code keeps log α within about ±4.6 (= log 100) so that no gate saturates.
LOG_ALPHA_LIMIT = math.log(100.0)
#: Uniform noise is drawn from [ε, 1 − ε] so that log ε − log(1 − ε) stays finite.
NOISE_EPS = 1e-6
#: log α above which the deterministic gate is non-zero: sigmoid(log α)(ζ − γ) + γ > 0.
LOG_ALPHA_ALIVE = math.log(-GAMMA / ZETA)


def prob_nonzero(log_alpha: torch.Tensor) -> torch.Tensor:
    """``P(z > 0) = sigmoid(log α − β log(−γ/ζ))``: supp. eq. (5), one term per gate."""
    return torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))


def deterministic_gate(log_alpha: torch.Tensor) -> torch.Tensor:
    """Gate value at evaluation: supp. eq. (4) with ε at its mean 1/2 (so log ε − log(1−ε) = 0).

    This is the Louizos et al. test-time estimator ``clamp(sigmoid(log α)(ζ − γ) + γ, 0, 1)``;
    a channel is hard-pruned when it is exactly zero (eq. (4) of the paper: ``E[z] > 0``).
    """
    return torch.clamp(torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def hard_concrete_sample(
    log_alpha: torch.Tensor, training: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Gates drawn from the Hard-Concrete distribution with parameters ``log_alpha``.

    In training, supp. eq. (4): ``clamp(sigmoid((log ε − log(1−ε) + log α)/β)(ζ−γ)+γ, 0, 1)`` with
    ``ε ~ U[1e-6, 1−1e-6]``; otherwise :func:`deterministic_gate`. ``log_alpha`` is clamped to
    ±:data:`LOG_ALPHA_LIMIT` first (gradients pass only inside the limits).

    Args:
        log_alpha: one location parameter per gate.
        training: sample (True) or return the deterministic gate (False).
        generator: optional random generator for the noise.
    """
    log_alpha = log_alpha.clamp(-LOG_ALPHA_LIMIT, LOG_ALPHA_LIMIT)
    if not training:
        return deterministic_gate(log_alpha)
    u = torch.rand(log_alpha.shape, generator=generator, device=log_alpha.device,
                   dtype=log_alpha.dtype)
    u = u.clamp(NOISE_EPS, 1.0 - NOISE_EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return torch.clamp(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


class HardConcreteGate(nn.Module):
    """One Hard-Concrete gate per channel of a ``(N, C, ...)`` tensor.

    ``log_alpha`` starts at ``init_log_alpha`` plus ``U(0, 0.01)`` noise (supp. section 4).
    ``min_alive`` ≥ 1 marks a gate whose layer must keep at least that many channels (the
    fatal-pruning clamp, section 4.1); :meth:`clamp_alive` enforces it. ``determinism`` in
    [0, 1] is the deterministic gate's share of a training gate, ``(1 − w)·sample + w·det``
    (0, the paper's, by default; BAR's ``gate_anneal`` raises it over the pruning phase so
    that training ends on the gates evaluation and the hard prune use).
    """

    def __init__(self, channels: int, *, init_log_alpha: float = 0.0, min_alive: int = 0) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels}")
        if not 0 <= min_alive <= channels:
            raise ValueError(f"min_alive must be in [0, {channels}], got {min_alive}")
        self.channels = channels
        self.min_alive = min_alive
        self.log_alpha = nn.Parameter(torch.full((channels,), float(init_log_alpha)))
        with torch.no_grad():
            self.log_alpha.add_(torch.rand(channels) * 0.01)
        self.last_gate: torch.Tensor | None = None
        self.frozen = False
        self.determinism = 0.0

    def freeze(self) -> None:
        """Hard-prune phase: stop learning log α and use the deterministic gate from now on."""
        self.frozen = True
        self.log_alpha.requires_grad_(False)

    def sample(self) -> torch.Tensor:
        """Gates of this forward pass: sampled in training (blended with the deterministic gate
        by ``determinism``), deterministic in evaluation (and once frozen)."""
        training = self.training and not self.frozen
        z = hard_concrete_sample(self.log_alpha, training)
        if training and self.determinism > 0.0:
            z = torch.lerp(z, self.deterministic(), self.determinism)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.sample()
        self.last_gate = z
        return x * z.view(1, -1, *([1] * (x.dim() - 2)))

    def prob_nonzero(self) -> torch.Tensor:
        """``P(z_i > 0)`` per channel (supp. eq. 5), differentiable in log α."""
        return prob_nonzero(self.log_alpha.clamp(-LOG_ALPHA_LIMIT, LOG_ALPHA_LIMIT))

    def deterministic(self) -> torch.Tensor:
        """Deterministic gate values (no gradient needed by callers, but kept)."""
        return deterministic_gate(self.log_alpha.clamp(-LOG_ALPHA_LIMIT, LOG_ALPHA_LIMIT))

    @torch.no_grad()
    def set_kept(self, kept: torch.Tensor) -> None:
        """Open the channels ``kept`` (a boolean mask or channel indices) fully, shut the rest:
        a channel choice made outside the gates (filter norms, a rewind) written into them."""
        self.log_alpha.fill_(-LOG_ALPHA_LIMIT)
        self.log_alpha[kept] = LOG_ALPHA_LIMIT

    def kept_mask(self) -> torch.Tensor:
        """Boolean mask of the channels a hard prune keeps (deterministic gate > 0, eq. 4)."""
        return self.deterministic().detach() > 0

    @torch.no_grad()
    def clamp_alive(self, margin: float = 0.05) -> None:
        """Raise the largest log α values so that at least ``min_alive`` gates stay non-zero.

        Section 4.1: "we clamp the highest value of Φ so at least one feature map is kept".
        """
        if self.min_alive == 0:
            return
        top = torch.topk(self.log_alpha, self.min_alive).indices
        floor = LOG_ALPHA_ALIVE + margin
        self.log_alpha[top] = torch.clamp(self.log_alpha[top], min=floor)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, min_alive={self.min_alive}, frozen={self.frozen}"
