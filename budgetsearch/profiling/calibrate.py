"""A measured profile calibrated on the user's own network: time it once here, scale the
profile toward that network's measured time.

A search prices pruned versions of one network. The profile's model prices families it never
saw a few % off (torchvision's 3–5 % fast against its own fit families on 2026-12-03), and the
drift check reads the machine's speed from anchors, not from this network. Where the profile
stands for this machine, the network itself is at hand: one timing of it, by the profile's own
method, reads both errors in its price, and its pruned relatives keep the model's relative
prices. On a shared machine that timing is itself as noisy as the check, so by default half
the gap applies (:data:`CALIBRATION_SHARE`).

Example (a profile measured on this machine; another machine's is refused):
    >>> from budgetsearch.cost import load_profile
    >>> profile = load_profile("cpu-2core-x86-avx2")                   # doctest: +SKIP
    >>> x = torch.zeros(1, 3, 32, 32)
    >>> calibration = calibrate_to_network(profile, model, x)          # doctest: +SKIP
    >>> calibration.summary()                                          # doctest: +SKIP
    'latency calibrated on ResNet as it runs here: 7.412 ms measured, 7.781 ms priced ...'
"""

from __future__ import annotations

import datetime
import math
import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from budgetsearch.cost import DeviceProfile, is_positive_number, layer_inventory

#: Rounds of the calibration timing; none starts after :data:`CALIBRATION_SECONDS` (so a slow
#: network gets fewer). A network's time is its quietest round, and a longer window
#: finds a quieter one: in five runs of 2026-12-03 that timed both, the whole gap over 32
#: rounds (≤ 8 s) left more of the pruned relatives within ±10 % than over 8 (≤ 3 s) in four
#: (62/45/88/88 % against 57/28/62/75 %) and as many in the fifth (100 %).
CALIBRATION_ROUNDS = 32
CALIBRATION_SECONDS = 8.0
#: The share of the gap (measured / priced, in log terms) a calibration applies: the square
#: root by default. One network timed for a few seconds on a shared machine lands about as far
#: from its time over the next minutes as the drift-checked price does (±5–15 %), and the
#: estimate that weighs two readings of equal noise alike is their geometric mean (the drift
#: check's rule inside its tolerance, ``anchors.INSIDE_SHARE``). On 2026-12-03
#: (``experiments/network_calibration.py``; README, "Calibrated on your network") half was never
#: the worst of the drift check alone, half and the whole gap; on the noisy machine of the
#: afternoon the check alone was as often nearer; on the quiet one of the evening (three runs)
#: half held 88/92/100 % of the pruned relatives within ±10 %, the whole gap 88/100/95 %, the
#: check 88/85/85 %: so calibrating is opt-in, and 1 (the whole gap) is for a quiet machine.
CALIBRATION_SHARE = 0.5
#: Bursts of calls per round (the profiles' method: :mod:`budgetsearch.profiling.timing`).
_INNER = 5


@dataclass(frozen=True)
class NetworkCalibration:
    """What one calibration measured: the network's time here, its price before, the factor."""

    profile: DeviceProfile
    network: str
    measured_ms: float
    priced_ms: float
    rounds: int
    seconds: float
    share: float = CALIBRATION_SHARE
    date: str = ""

    @property
    def gap(self) -> float:
        """measured / priced, by the profile as it was given."""
        return self.measured_ms / self.priced_ms

    @property
    def factor(self) -> float:
        """The gap to the power :attr:`share`: every time of :attr:`profile` is this × the
        profile it scaled."""
        return float(self.gap ** self.share)

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping (what the calibrated profile's provenance and a run's config hold)."""
        return {"network": self.network, "measured_ms": round(self.measured_ms, 4),
                "priced_ms": round(self.priced_ms, 4), "share": self.share,
                "factor": round(self.factor, 4),
                "rounds": self.rounds, "seconds": round(self.seconds, 2), "date": self.date}

    def summary(self) -> str:
        """One line: what was timed, what it was priced, the factor applied."""
        how = ("the whole gap" if self.share == 1 else "half the gap, in log terms"
               if self.share == 0.5 else f"{self.share:g} of the gap, in log terms")
        return (f"latency calibrated on {self.network} as it runs here: {self.measured_ms:.3f} ms "
                f"measured, {self.priced_ms:.3f} ms priced by {self.profile.name}; its prices "
                f"x{self.factor:.3f} ({how})")


def calibration_refusal(profile: DeviceProfile) -> str | None:
    """Why ``profile`` cannot be calibrated by timing a network here (None when it can): a
    datasheet profile, or one measured on another machine or in a runtime not installed here
    (its prices stand for that device, which this machine does not run)."""
    from budgetsearch.profiling.anchors import not_this_machine

    if profile.source != "measured":
        return f"{profile.name} is a {profile.source} profile, not measured on this machine"
    elsewhere = not_this_machine(profile)
    return f"{profile.name} was {elsewhere}" if elsewhere else None


def calibrate_to_network(profile: DeviceProfile, model: nn.Module, example_input: torch.Tensor,
                         *, name: str = "", rounds: int = CALIBRATION_ROUNDS,
                         seconds: float = CALIBRATION_SECONDS,
                         share: float = CALIBRATION_SHARE) -> NetworkCalibration:
    """Time ``model`` on ``example_input`` here, by ``profile``'s runtime, threads and method,
    and scale ``profile`` (per-call and per-byte terms alike) by (measured / priced) ** ``share``
    (:data:`CALIBRATION_SHARE`; 1 prices ``model`` at exactly its measured time).

    Up to ``rounds`` rounds, none started after ``seconds`` (one at least: 3 warm-up calls and
    5 timed ones).
    ``profile`` is taken as given: loaded with its drift check (the default), the factor is
    what remains after it. The calibrated profile keeps its name and records the calibration in
    ``provenance["calibrated_on"]``.

    Raises:
        ValueError: ``profile`` does not stand for this machine (:func:`calibration_refusal`),
            ``rounds`` < 1, ``seconds`` not positive, ``share`` outside [0, 1], or ``profile``
            prices ``model`` at no time. Whatever the runtime raises for a network it cannot
            run (a forward that fails, an ONNX export it refuses) propagates.
    """
    from budgetsearch.profiling.anchors import recorded_timing
    from budgetsearch.profiling.timing import make_runner, quietest_round, time_rounds

    refusal = calibration_refusal(profile)
    if refusal:
        raise ValueError(f"cannot calibrate on a network here: {refusal}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a whole number ≥ 1, got {rounds!r}")
    if not is_positive_number(seconds):
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ValueError(f"share must be a number in [0, 1], got {share!r}")
    name = name or type(model).__name__
    model = model.eval()
    priced = layer_inventory(model, example_input).predict_latency_ms(profile)
    if not math.isfinite(priced) or priced <= 0:
        raise ValueError(f"cannot calibrate on {name}: {profile.name} prices it at {priced} ms")
    threads = profile.threads
    started, date = time.perf_counter(), datetime.datetime.now().isoformat(timespec="seconds")
    runner = make_runner(model, example_input, runtime=profile.runtime, threads=threads)
    # the profiles' method; no round starts after ``seconds`` (a slow network gets fewer)
    recorded = recorded_timing(profile)
    per_round = time_rounds([runner], rounds=rounds, inner=_INNER, threads=threads,
                            deadline_s=seconds, settle=recorded["settle"],
                            settle_mb=recorded["settle_mb"])
    measured = float(quietest_round(per_round)[0])
    calibration = NetworkCalibration(profile, name, measured, priced, int(per_round.shape[1]),
                                     time.perf_counter() - started, float(share), date)
    scaled = profile.scaled(calibration.factor)
    scaled = replace(scaled, provenance={**dict(profile.provenance),
                                         "calibrated_on": calibration.as_dict()})
    return replace(calibration, profile=scaled)


__all__ = ["CALIBRATION_ROUNDS", "CALIBRATION_SHARE", "NetworkCalibration", "calibrate_to_network",
           "calibration_refusal"]
