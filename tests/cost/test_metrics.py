"""The cost vocabulary (budgetsearch.cost.metrics): names, aliases, parsing, targets, is_met."""

from __future__ import annotations

import math

import pytest

from budgetsearch.cost.metrics import (
    METRICS,
    TOLERANCE,
    Target,
    canonical_metric,
    is_met,
    metric_label,
    parse_count,
    parse_duration_ms,
    parse_timeout_seconds,
    target_from_options,
    tolerated,
)

# -- names and aliases --------------------------------------------------------------------------


def test_canonical_names_are_the_cost_columns() -> None:
    assert list(METRICS) == ["params", "flops", "activation_volume", "memory_bytes",
                             "latency_ms"]
    for name in METRICS:
        assert canonical_metric(name) == name


@pytest.mark.parametrize(("alias", "name"), [
    ("latency", "latency_ms"), ("Latency", "latency_ms"), ("latency-ms", "latency_ms"),
    ("parameters", "params"), ("weights", "params"), ("macs", "flops"), ("FLOPs", "flops"),
    ("volume", "activation_volume"), ("activation-volume", "activation_volume"),
    ("memory", "memory_bytes"), (" bytes ", "memory_bytes"),
])
def test_aliases_map_to_one_canonical_name(alias: str, name: str) -> None:
    assert canonical_metric(alias) == name
    assert Target(alias, 1.0).metric == name  # a target canonicalises its metric


def test_unknown_metric_lists_the_names() -> None:
    with pytest.raises(ValueError, match="metric must be one of params, flops, "
                                         "activation_volume, memory_bytes, latency_ms.*'speed'"):
        canonical_metric("speed")
    with pytest.raises(ValueError, match="metric must be one of"):
        Target.parse("speed", "10ms")


def test_labels() -> None:
    assert metric_label("latency") == "latency at batch 1 (ms)"
    assert "1 FLOP = 1 multiply-add" in metric_label("flops")


# -- parsing (moved here from the search's targets module) --------------------------------------


@pytest.mark.parametrize(("text", "ms"), [("10ms", 10.0), ("500us", 0.5), ("500µs", 0.5),
                                          ("0.01s", 10.0), ("1e-1ms", 0.1), (" 2 ms ", 2.0)])
def test_durations(text: str, ms: float) -> None:
    assert parse_duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["10xs", "-5ms", "0", "0ms", "nan", "nanms", "1e309ms", "10",
                                  ""])
def test_bad_durations_name_the_rule(text: str) -> None:
    # A bare number is refused: "10" could be ms or s.
    with pytest.raises(ValueError, match="target_latency must be a positive duration like "
                                         f"'10ms', '500us' or '0.01s', got {text!r}"):
        parse_duration_ms(text)


def test_counts() -> None:
    assert parse_count("50M", name="target_flops") == 50e6
    assert parse_count("1.5M", name="target_params") == 1.5e6
    assert parse_count("200k", name="x") == 2e5
    assert parse_count("2G", name="x") == 2e9
    assert parse_count("123456", name="x") == 123456.0
    for bad in ("-1M", "0", "nan", "1e309", "5Q", "", "10ms"):
        with pytest.raises(ValueError, match="target_params must be a positive count"):
            parse_count(bad, name="target_params")


def test_timeouts() -> None:
    assert parse_timeout_seconds("30m") == 1800.0
    assert parse_timeout_seconds("90s") == 90.0
    assert parse_timeout_seconds("2h") == 7200.0
    assert parse_timeout_seconds("600") == 600.0
    for bad in ("soon", "0", "-5m", ""):
        with pytest.raises(ValueError, match="timeout must be a positive duration like '30m'"):
            parse_timeout_seconds(bad)


# -- targets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("metric", "text", "value"), [
    ("latency", "10ms", 10.0), ("latency_ms", "500us", 0.5), ("latency", "0.01s", 10.0),
    ("flops", "50M", 50e6), ("params", "1.5M", 1.5e6), ("volume", "200k", 2e5),
])
def test_absolute_targets(metric: str, text: str, value: float) -> None:
    target = Target.parse(metric, text)
    assert target.value == pytest.approx(value) and target.fraction is None
    assert target.text == text and not target.is_relative and target.is_resolved
    assert target.limit() == pytest.approx(value)
    assert target.resolve(full=1e12) is target  # an absolute target does not move
    assert target.as_dict() == {"metric": canonical_metric(metric), "value": target.value,
                                "fraction": None, "text": text}


@pytest.mark.parametrize("metric", ["latency", "flops", "params", "activation_volume", "memory"])
def test_relative_targets_resolve_against_the_unpruned_cost(metric: str) -> None:
    target = Target.parse(metric, "50%")
    assert target.is_relative and not target.is_resolved
    assert target.fraction == 0.5 and target.value is None and target.text == "50%"
    resolved = target.resolve(full=2.0e6)
    assert resolved.value == pytest.approx(1.0e6) and resolved.fraction == 0.5  # kept
    assert resolved.is_relative and resolved.is_resolved and resolved.metric == target.metric
    assert resolved.limit() == pytest.approx(1.0e6)
    assert resolved.resolve(full=9.0) is resolved  # resolved once, not twice


def test_unresolved_relative_target_refuses_limit_and_is_met() -> None:
    target = Target.parse("flops", "50%")
    with pytest.raises(ValueError, match="relative target 50% on flops must be resolved"):
        target.limit()
    with pytest.raises(ValueError, match="must be resolved"):
        target.is_met(1.0)
    with pytest.raises(ValueError, match="cannot resolve 50% of flops"):
        target.resolve(full=0.0)
    with pytest.raises(ValueError, match="cannot resolve"):
        target.resolve(full=math.nan)


@pytest.mark.parametrize("text", ["0%", "150%", "-5%", "nan%", "%"])
def test_bad_percentages(text: str) -> None:
    with pytest.raises(ValueError, match=r"--target-flops must be a percentage in \(0%, 100%\]"):
        Target.parse("flops", text)


def test_parse_errors_name_the_flag_and_the_value() -> None:
    with pytest.raises(ValueError, match="--target-latency must be a positive duration .*'10'"):
        Target.parse("latency", "10")
    with pytest.raises(ValueError, match="--target-params must be a positive count .*'5Q'"):
        Target.parse("params", "5Q")
    with pytest.raises(ValueError, match="--my-flag must be a positive count"):
        Target.parse("flops", "x", flag="--my-flag")


def test_target_needs_a_valid_value_or_fraction() -> None:
    with pytest.raises(ValueError, match="needs a value or a fraction"):
        Target("flops")
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="target value must be positive and finite"):
            Target("flops", bad)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"target fraction must be in \(0, 1\]"):
            Target("flops", fraction=bad)


def test_describe() -> None:
    assert Target.parse("latency", "10ms").describe() == "10 ms"
    assert Target.parse("latency", "500us").describe() == "0.5 ms"
    assert Target.parse("flops", "50M").describe() == "50,000,000 FLOPs"
    assert Target.parse("params", "1.5M").describe() == "1,500,000 parameters"
    assert Target.parse("params", "1.5M").describe(1234.4) == "1,234 parameters"  # of a value
    half = Target.parse("flops", "50%")
    assert half.describe() == "50% of the unpruned network's FLOPs"
    assert half.resolve(2.0e6).describe() == "1,000,000 FLOPs (50% of the unpruned network)"


def test_target_from_options() -> None:
    assert target_from_options(latency=None, flops=None) is None
    target = target_from_options(latency="10ms", flops=None)
    assert target == Target("latency_ms", 10.0, text="10ms")
    assert target_from_options(params="50%").fraction == 0.5
    with pytest.raises(ValueError, match="give one target at a time, got --target-latency, "
                                         "--target-flops"):
        target_from_options(latency="1ms", flops="5M")


# -- is_met: the one test of "within the target" -------------------------------------------------


@pytest.mark.parametrize("limit", [1.0, 10.0, 5.0e7])
def test_is_met_tolerance_edge(limit: float) -> None:
    target = Target("flops", limit)
    assert is_met(limit, target) and target.is_met(limit)  # exactly at the limit
    assert is_met(limit * (1 - 1e-3), target)
    assert is_met(limit * (1 + 1e-7), target)  # float rounding of sums over layers
    assert not is_met(limit * (1 + 1e-5), target)  # a real miss
    assert not target.is_met(limit * (1 + 1e-5))
    assert tolerated(limit) == pytest.approx(limit * (1 + TOLERANCE), rel=1e-15)
    assert is_met(limit, limit) and not is_met(limit * (1 + 1e-5), limit)  # a bare limit


@pytest.mark.parametrize("achieved", [None, math.nan, float("nan"), "nan", "not a number"])
def test_none_and_nan_never_meet_a_target(achieved: object) -> None:
    target = Target("params", 1.0e9)
    assert not is_met(achieved, target)  # type: ignore[arg-type]
    assert not target.is_met(achieved)  # type: ignore[arg-type]


def test_relative_target_is_met_once_resolved() -> None:
    target = Target.parse("params", "50%").resolve(full=1000.0)
    assert target.is_met(500.0) and not target.is_met(501.0)


def test_docstring_examples_run() -> None:
    import doctest

    from budgetsearch.cost import metrics

    assert doctest.testmod(metrics).failed == 0
