"""The cost vocabulary: metric names, aliases, units, labels, and targets on them.

One module owns what a cost is called and when a target is met, so that every command, pruner and
table agrees. The canonical names are the columns of every results table and the keys of
:meth:`budgetsearch.cost.Cost.as_dict`:

==================== ============ ==================================================
name                 unit         meaning
==================== ============ ==================================================
``params``           parameters   weights and biases kept (non-zero for sparse nets)
``flops``            FLOPs        fvcore: 1 FLOP = 1 fused multiply-add
``activation_volume`` activations  Σ conv/linear output elements (BAR paper, eq. 4)
``memory_bytes``     bytes        float32 weights + peak activations
``latency_ms``       ms           batch-1 latency predicted by a device profile
==================== ============ ==================================================

A :class:`Target` is a ceiling on one of them, absolute (``"10ms"``, ``"500us"``, ``"0.01s"``,
``"50M"``, ``"1.5M"``) or relative to the unpruned network (``"50%"``). :func:`is_met` is the one
test of "within the target", with one tolerance (:data:`TOLERANCE`).

Example:
    >>> Target.parse("latency", "500us").value
    0.5
    >>> half = Target.parse("flops", "50%")
    >>> half.is_relative, half.resolve(full=2.0e6).value
    (True, 1000000.0)
    >>> is_met(1.0e6, half.resolve(full=2.0e6))
    True
    >>> canonical_metric("parameters")
    'params'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

FLOP_CONVENTION = "fvcore: 1 FLOP = 1 fused multiply-add"

#: Relative slack of :func:`is_met`: a priced cost may exceed the target by this fraction (float
#: rounding of sums over layers), never more.
TOLERANCE = 1e-6


@dataclass(frozen=True)
class MetricInfo:
    """What one metric is called and how its values read."""

    name: str
    unit: str
    label: str
    short: str
    kind: str  # "duration" (values in ms), "count" or "bytes"


METRICS: dict[str, MetricInfo] = {
    "params": MetricInfo("params", "parameters", "parameters", "params", "count"),
    "flops": MetricInfo("flops", "FLOPs", "FLOPs (fvcore: 1 FLOP = 1 multiply-add)", "FLOPs",
                        "count"),
    "activation_volume": MetricInfo("activation_volume", "activations",
                                    "activation volume (BAR eq. 4)", "volume", "count"),
    "memory_bytes": MetricInfo("memory_bytes", "bytes", "memory (float32 weights + peak "
                               "activations, bytes)", "memory", "bytes"),
    "latency_ms": MetricInfo("latency_ms", "ms", "latency at batch 1 (ms)", "latency", "duration"),
}

#: Other spellings users and older files use; each maps to one canonical name.
ALIASES: dict[str, str] = {
    "latency": "latency_ms", "time": "latency_ms", "ms": "latency_ms",
    "parameters": "params", "param": "params", "weights": "params",
    "flop": "flops", "macs": "flops", "mac": "flops",
    "volume": "activation_volume", "activation-volume": "activation_volume",
    "activations": "activation_volume",
    "memory": "memory_bytes", "bytes": "memory_bytes", "memory-bytes": "memory_bytes",
    "latency-ms": "latency_ms",
}

#: Metrics a pruner's budget (and so a search target) may count; a :class:`Target` may bound any
#: metric (``pareto --target`` also on memory).
TARGET_METRICS = ("latency_ms", "flops", "params", "activation_volume")

#: The command-line flag of each target metric.
TARGET_FLAGS = {"latency_ms": "--target-latency", "flops": "--target-flops",
                "params": "--target-params", "activation_volume": "--target-volume"}

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)"
_DURATION = re.compile(rf"^\s*{_NUMBER}\s*(us|µs|ms|s)\s*$")
_COUNT = re.compile(rf"^\s*{_NUMBER}\s*([kKmMgGbB]?)\s*$")
_PERCENT = re.compile(rf"^\s*{_NUMBER}\s*%\s*$")
_TO_MS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}


def canonical_metric(name: str) -> str:
    """The canonical name of ``name`` (itself or an alias), case-insensitive.

    Raises:
        ValueError: not a metric name nor an alias (the message lists the names).
    """
    key = str(name).strip().lower().replace(" ", "_")
    if key in METRICS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    if key.replace("_", "-") in ALIASES:
        return ALIASES[key.replace("_", "-")]
    raise ValueError(f"metric must be one of {', '.join(METRICS)} (or an alias such as latency, "
                     f"parameters, volume), got {name!r}")


def metric_label(name: str) -> str:
    """Axis label of a metric (for plots and tables)."""
    return METRICS[canonical_metric(name)].label


def format_value(metric: str, value: float) -> str:
    """``'10 ms'`` / ``'50,000,000 FLOPs'`` / ``'1,234 parameters'``."""
    info = METRICS[canonical_metric(metric)]
    if info.kind == "duration":
        return f"{value:.4g} ms"
    return f"{value:,.0f} {info.unit}"


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def is_positive_number(value: Any) -> bool:
    """``value`` is a real number (not a bool, not text), finite and above 0."""
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and _finite_positive(float(value)))


def parse_duration_ms(text: str, *, name: str = "target_latency") -> float:
    """A positive duration like ``'10ms'``, ``'500us'`` or ``'0.01s'``, in milliseconds.

    Raises:
        ValueError: no unit, an unknown unit, zero, negative, NaN or infinite.
    """
    match = _DURATION.match(str(text))
    value = float(match.group(1)) * _TO_MS[match.group(2)] if match else float("nan")
    if not _finite_positive(value):
        raise ValueError(f"{name} must be a positive duration like '10ms', '500us' or '0.01s', "
                         f"got {text!r}")
    return value


def parse_count(text: str, *, name: str) -> float:
    """A positive count like ``'50M'``, ``'1.5M'``, ``'200k'``, ``'2G'`` or ``'123456'``.

    Raises:
        ValueError: not a positive finite number with an optional k/M/G suffix.
    """
    match = _COUNT.match(str(text))
    value = float(match.group(1)) * _SCALE[match.group(2).lower()] if match else float("nan")
    if not _finite_positive(value):
        raise ValueError(f"{name} must be a positive count like '50M', '1.5M' or '200k', "
                         f"got {text!r}")
    return value


def parse_bytes(text: str, *, name: str) -> float:
    """A positive size like ``'2MiB'``, ``'512KiB'``, ``'3M'``, ``'3MB'`` or ``'1000'`` bytes."""
    match = re.match(rf"^\s*{_NUMBER}\s*([kKmMgG]i[bB])\s*$", str(text))
    if match:
        power = {"k": 10, "m": 20, "g": 30}[match.group(2)[0].lower()]
        value = float(match.group(1)) * 2.0**power
        if _finite_positive(value):
            return value
    stripped = re.sub(r"(?<=[kKmMgG])[bB]\s*$", "", str(text).strip())
    try:
        return parse_count(stripped, name=name)
    except ValueError:
        raise ValueError(f"{name} must be a positive size like '2MiB', '512KiB' or '3M', "
                         f"got {text!r}") from None


def parse_percent(text: str, *, name: str) -> float:
    """A share like ``'50%'`` as a fraction in (0, 1] (0.5).

    Raises:
        ValueError: not a percentage in (0, 100].
    """
    match = _PERCENT.match(str(text))
    value = float(match.group(1)) / 100.0 if match else float("nan")
    if not (_finite_positive(value) and value <= 1.0):
        raise ValueError(f"{name} must be a percentage in (0%, 100%] like '50%', got {text!r}")
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
    """A ceiling on one cost metric of the deployed network.

    Exactly one of ``value`` (absolute, in the metric's unit: ms for latency) and ``fraction``
    (relative to the unpruned network's cost on the same metric and device) is set. A relative
    target becomes absolute with :meth:`resolve`; both are kept (``fraction`` stays for the
    record).

    Attributes:
        metric: canonical metric name (aliases are accepted and canonicalised).
        value: the ceiling in the metric's unit, or None while relative and unresolved.
        fraction: the ceiling as a share of the unpruned network's cost, or None.
        text: what the user wrote (``"10ms"``, ``"50%"``), for messages and the config.
    """

    metric: str
    value: float | None = None
    fraction: float | None = None
    text: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", canonical_metric(self.metric))
        if self.value is None and self.fraction is None:
            raise ValueError("a target needs a value or a fraction, got neither")
        if self.value is not None and not _finite_positive(float(self.value)):
            raise ValueError(f"target value must be positive and finite, got {self.value!r}")
        if self.fraction is not None and not (_finite_positive(float(self.fraction))
                                              and self.fraction <= 1.0):
            raise ValueError(f"target fraction must be in (0, 1], got {self.fraction!r}")

    @classmethod
    def parse(cls, metric: str, text: str | float, *, flag: str | None = None) -> Target:
        """Parse a target from text: ``'10ms'``, ``'500us'``, ``'0.01s'`` (latency), ``'50M'``,
        ``'1.5M'``, ``'200k'`` (counts) or ``'50%'`` (any metric, relative).

        Raises:
            ValueError: unknown metric, or a value that does not read as the metric's unit (the
                message names the flag and the value).
        """
        canonical = canonical_metric(metric)
        flag = flag or TARGET_FLAGS.get(canonical, f"target on {canonical}")
        raw = str(text).strip()
        if raw.endswith("%"):
            return cls(canonical, fraction=parse_percent(raw, name=flag), text=raw)
        if METRICS[canonical].kind == "duration":
            return cls(canonical, parse_duration_ms(raw, name=flag), text=raw)
        if METRICS[canonical].kind == "bytes":
            return cls(canonical, parse_bytes(raw, name=flag), text=raw)
        return cls(canonical, parse_count(raw, name=flag), text=raw)

    @property
    def is_relative(self) -> bool:
        """True when the target was given as a share of the unpruned network's cost."""
        return self.fraction is not None

    @property
    def is_resolved(self) -> bool:
        """True when the absolute ceiling is known."""
        return self.value is not None

    @property
    def cost_key(self) -> str:
        """Column of the results table / key of ``Cost.as_dict()`` this target bounds."""
        return self.metric

    def resolve(self, full: float) -> Target:
        """This target with its absolute ceiling, given the unpruned network's ``full`` cost.

        An absolute target is returned as is; a relative one gets ``value = fraction × full``.
        """
        if self.fraction is None or self.value is not None:
            return self
        if not _finite_positive(float(full)):
            raise ValueError(f"cannot resolve {self.text or self.fraction} of "
                             f"{self.metric}: the unpruned cost is {full!r}")
        return replace(self, value=float(self.fraction) * float(full))

    def limit(self) -> float:
        """The absolute ceiling.

        Raises:
            ValueError: a relative target not yet resolved against the unpruned network.
        """
        if self.value is None:
            raise ValueError(f"the relative target {self.text or self.fraction} on "
                             f"{self.metric} must be resolved against the unpruned network first "
                             "(Target.resolve(full))")
        return float(self.value)

    def fraction_of(self, full: float) -> float:
        """The ceiling as a share of ``full`` (may exceed 1 when the target does not bind)."""
        if self.value is None:
            return float(self.fraction)  # type: ignore[arg-type]
        return float(self.value) / float(full) if full > 0 else math.inf

    def describe(self, value: float | None = None) -> str:
        """``'10 ms'`` / ``'50,000,000 FLOPs'`` (of ``value`` when given); a relative target
        reads ``'50% of the unpruned network's FLOPs'`` until resolved."""
        if value is not None:
            return format_value(self.metric, value)
        if self.value is None:
            return (f"{100 * float(self.fraction):.4g}% of the unpruned network's "  # type: ignore[arg-type]
                    f"{METRICS[self.metric].short}")
        text = format_value(self.metric, self.value)
        if self.fraction is not None:
            text += f" ({100 * self.fraction:.4g}% of the unpruned network)"
        return text

    def as_dict(self) -> dict[str, object]:
        """Plain mapping (for config files)."""
        return {"metric": self.metric, "value": self.value, "fraction": self.fraction,
                "text": self.text}

    def is_met(self, achieved: float | None) -> bool:
        """Whether a cost of ``achieved`` meets this (resolved) target; see :func:`is_met`."""
        return is_met(achieved, self)


def tolerated(limit: float) -> float:
    """The largest cost that still meets a ceiling of ``limit`` (for vectorised checks:
    ``costs <= tolerated(limit)`` is :func:`is_met` over a column)."""
    return float(limit) * (1.0 + TOLERANCE)


def is_met(achieved: float | None, target: Target | float) -> bool:
    """The one test of "within the target": ``achieved ≤ limit × (1 + TOLERANCE)``.

    None and NaN never meet a target.
    """
    if achieved is None:
        return False
    try:
        value = float(achieved)
    except (TypeError, ValueError):
        return False
    if math.isnan(value):
        return False
    limit = target.limit() if isinstance(target, Target) else float(target)
    return value <= tolerated(limit)


def target_from_options(**given: str | None) -> Target | None:
    """The one target given as ``metric=text`` keywords (None values ignored); two at once is an
    error naming both flags.

    Example:
        >>> target_from_options(latency="10ms", flops=None).value
        10.0
    """
    chosen = {canonical_metric(k): v for k, v in given.items() if v is not None}
    if len(chosen) > 1:
        flags = ", ".join(TARGET_FLAGS.get(k, k) for k in chosen)
        raise ValueError(f"give one target at a time, got {flags}")
    if not chosen:
        return None
    metric, text = next(iter(chosen.items()))
    return Target.parse(metric, text)  # type: ignore[arg-type]
