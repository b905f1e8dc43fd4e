"""Targets to budgets: parse ``10ms`` / ``50M`` / ``1.5M``, and check feasibility before training.

A target is a ceiling on one cost metric of the deployed model on one device profile. Before any
training, :func:`plan_target` prices the full network and the smallest configuration each pruner
can reach (one channel per layer for channel pruning, zero weight density for unstructured
pruning) with the cost model, and refuses a target below the reachable minimum, naming it.

Example:
    >>> parse_duration_ms("500us")
    0.5
    >>> parse_count("1.5M", name="target_params")
    1500000.0
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from budgetsearch.cost import DeviceProfile, LayerInventory

TargetMetric = Literal["latency_ms", "flops", "params"]

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(us|µs|ms|s)\s*$")
_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGbB]?)\s*$")
_TO_MS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}
_CLI_FLAG = {"latency_ms": "--target-latency", "flops": "--target-flops",
             "params": "--target-params"}
_UNIT = {"latency_ms": "ms", "flops": "FLOPs", "params": "parameters"}


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def parse_duration_ms(text: str, *, name: str = "target_latency") -> float:
    """A positive duration like ``'10ms'``, ``'500us'`` or ``'0.01s'``, in milliseconds.

    Raises:
        ValueError: no unit, an unknown unit, zero, negative, NaN or infinite.
    """
    match = _DURATION.match(str(text))
    value = float(match.group(1)) * _TO_MS[match.group(2)] if match else float("nan")
    if not _finite_positive(value):
        raise ValueError(
            f"{name} must be a positive duration like '10ms', '500us' or '0.01s', got {text!r}"
        )
    return value


def parse_count(text: str, *, name: str) -> float:
    """A positive count like ``'50M'``, ``'1.5M'``, ``'200k'``, ``'2G'`` or ``'123456'``.

    Raises:
        ValueError: not a positive finite number with an optional k/M/G suffix.
    """
    match = _COUNT.match(str(text))
    value = float(match.group(1)) * _SCALE[match.group(2).lower()] if match else float("nan")
    if not _finite_positive(value):
        raise ValueError(
            f"{name} must be a positive count like '50M', '1.5M' or '200k', got {text!r}"
        )
    return value


def parse_timeout_seconds(text: str, *, name: str = "timeout") -> float:
    """A positive wall-clock limit like ``'30m'``, ``'90s'``, ``'2h'`` or ``'600'`` (seconds)."""
    match = re.match(r"^\s*([0-9]*\.?[0-9]+)\s*(s|m|min|h)?\s*$", str(text))
    scale = {None: 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
    value = float(match.group(1)) * scale[match.group(2)] if match else float("nan")
    if not _finite_positive(value):
        raise ValueError(f"{name} must be a positive duration like '30m', '90s' or '2h', "
                         f"got {text!r}")
    return value


@dataclass(frozen=True)
class Target:
    """A ceiling on one cost metric: ``latency_ms`` (on a profile), ``flops`` or ``params``."""

    metric: TargetMetric
    value: float
    text: str = ""

    def __post_init__(self) -> None:
        if self.metric not in _UNIT:
            raise ValueError(f"target metric must be one of {', '.join(_UNIT)}, "
                             f"got {self.metric!r}")
        if not _finite_positive(self.value):
            raise ValueError(f"target value must be positive and finite, got {self.value}")

    @property
    def cost_key(self) -> str:
        """Column of the results table / key of :meth:`Cost.as_dict` this target bounds."""
        return self.metric

    @property
    def pruner_metric(self) -> str:
        """The name the pruners use for this metric (``latency`` for ``latency_ms``)."""
        return "latency" if self.metric == "latency_ms" else self.metric

    def describe(self, value: float | None = None) -> str:
        """``'10 ms'`` / ``'50,000,000 FLOPs'`` (of ``value`` when given)."""
        v = self.value if value is None else value
        if self.metric == "latency_ms":
            return f"{v:.4g} ms"
        return f"{v:,.0f} {_UNIT[self.metric]}"


def target_from_options(*, latency: str | None = None, flops: str | None = None,
                        params: str | None = None) -> Target | None:
    """The one target given (None when none is); two at once is an error."""
    given = {k: v for k, v in (("latency_ms", latency), ("flops", flops), ("params", params))
             if v is not None}
    if len(given) > 1:
        flags = ", ".join(_CLI_FLAG[k] for k in given)
        raise ValueError(f"give one target at a time, got {flags}")
    if not given:
        return None
    metric, text = next(iter(given.items()))
    if metric == "latency_ms":
        return Target("latency_ms", parse_duration_ms(text), str(text))
    return Target(metric, parse_count(text, name=f"target_{metric}"), str(text))  # type: ignore[arg-type]


def minimal_channels(inventory: LayerInventory) -> dict[str, tuple[int, int]]:
    """The smallest channel configuration channel pruning can reach: every residual branch
    removed (mixed connectivity lets BAR drop whole blocks), one channel out of the stem and into
    the classifier; the network's input channels and the classes cannot be pruned."""
    kept: dict[str, tuple[int, int]] = {}
    first = True
    for record in inventory.layers:
        if record.in_channels is None or record.out_channels is None:
            continue
        if first and record.op == "conv":
            kept[record.name] = (record.in_channels, 1)
            first = False
        elif record.op == "linear":
            kept[record.name] = (1, record.out_channels)
        elif "." not in record.name:  # top-level layers after the blocks (final norm, pooling)
            kept[record.name] = (1, 1)
        else:
            kept[record.name] = (0, 0)
    return kept


def minimal_densities(inventory: LayerInventory) -> dict[str, float]:
    """Unstructured pruning at its limit: every weight layer at density 0."""
    return {r.name: 0.0 for r in inventory.layers if r.op in ("conv", "linear")}


@dataclass(frozen=True)
class TargetPlan:
    """What the target means for this model on this device, decided before training.

    ``budget_fraction`` is the target as a fraction of the full network's cost (capped at 1);
    ``pruners`` are the pruners that can meet it; ``notes`` say why one was dropped or why the
    target is loose.
    """

    target: Target
    full_cost: float
    minimum_cost: dict[str, float]
    budget_fraction: float
    pruners: tuple[str, ...]
    notes: tuple[str, ...]


def plan_target(target: Target, inventory: LayerInventory, profile: DeviceProfile | None, *,
                pruners: dict[str, str], model_label: str = "the model") -> TargetPlan:
    """Check ``target`` against what each pruner can reach, before any training.

    Args:
        target: the ceiling.
        inventory: the full network's layer inventory.
        profile: device profile (needed for a latency target).
        pruners: candidate pruner name → granularity (``"channel"`` / ``"unstructured"``).
        model_label: how messages name the network.

    Raises:
        ValueError: a latency target without a profile, or a target below every candidate's
            reachable minimum (the message states the minimum).
    """
    if target.metric == "latency_ms" and profile is None:
        raise ValueError("a latency target needs --device (a profile in hw_profiles/)")
    key = target.cost_key
    full = float(inventory.price(profile=profile).as_dict()[key])  # type: ignore[arg-type]
    notes: list[str] = []
    minimum: dict[str, float] = {}
    usable: list[str] = []
    for name, granularity in pruners.items():
        if granularity == "unstructured":
            if (target.metric == "latency_ms" and profile is not None
                    and not profile.supports_sparse_speedup and target.value < full):
                notes.append(
                    f"{name} (unstructured) cannot lower latency on {profile.name}: the profile "
                    f"declares no sparse speed-up (sparse_speedup = {profile.sparse_speedup}), "
                    f"so zeroed weights cost as much time as kept ones; using channel pruning")
                minimum[name] = full
                continue
            cost = inventory.price(densities=minimal_densities(inventory), profile=profile)
        else:
            cost = inventory.price(kept_channels=minimal_channels(inventory), profile=profile)
        minimum[name] = float(cost.as_dict()[key])  # type: ignore[arg-type]
        if minimum[name] <= target.value:
            usable.append(name)
        else:
            notes.append(f"{name} cannot reach {target.describe()} (its minimum is "
                         f"{target.describe(minimum[name])})")
    where = f" on {profile.name}" if profile is not None and key == "latency_ms" else ""
    if not usable:
        best = min(minimum.values()) if minimum else full
        raise ValueError(
            f"target {target.describe()} is below what {model_label} can reach{where}: the "
            f"smallest configuration costs {target.describe(best)} (unpruned: "
            f"{target.describe(full)}); ask for at least {target.describe(best)}"
        )
    if full <= target.value:
        notes.append(f"the unpruned {model_label} already meets the target{where} "
                     f"({target.describe(full)} ≤ {target.describe()}); the search still looks "
                     f"for the most accurate configuration within it")
    return TargetPlan(target, full, minimum, min(1.0, target.value / full), tuple(usable),
                      tuple(notes))
