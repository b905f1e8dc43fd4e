"""Width arithmetic for thinner dense baselines (erf-loss paper, eq. 12)."""

from __future__ import annotations

import math


def scale_channels(channels: int, width_multiplier: float) -> int:
    """Channels of a layer in the thinner twin: ``⌊w·C⌋``, at least 1 (eq. 12 with w = √r)."""
    # The tiny epsilon keeps ⌊0.5·32⌋ = 16 exact despite float rounding of w.
    return max(1, math.floor(channels * width_multiplier + 1e-9))


def thinner_dense_width(compression_ratio: float) -> float:
    """Width multiplier of the dense twin keeping ``compression_ratio`` of the parameters.

    eq. (12) of the erf-loss paper: ``C' = ⌊√r_c · C⌋`` for input and output channels, so that a
    layer's parameters (∝ C_in·C_out) scale by ≈ r_c.

    Example:
        >>> round(thinner_dense_width(0.25), 3)
        0.5
    """
    if not 0.0 < compression_ratio <= 1.0:
        raise ValueError(
            f"compression_ratio must be the kept fraction of parameters in (0, 1], "
            f"got {compression_ratio}"
        )
    return math.sqrt(compression_ratio)
