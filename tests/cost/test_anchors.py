"""The drift check: ≤ 2 s, recalibration with faked timings, the state file, the off switch."""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import pytest

from budgetsearch.cost import load_profile, profile_from_dict
from budgetsearch.profiling.anchors import (
    ANCHORS,
    check_drift,
    checked,
    factors_source,
    last_check,
    measure_anchors,
    recalibration,
)

MEASURED = {
    "name": "toy",
    "source": "measured",
    "provenance": {"tool": "test", "threads": 1, "runtime": "pytorch-eager"},
    "latency_model": {
        "combine": "sum", "bytes_per_element": 4, "network_overhead_ms": 0.1,
        "ops": {"conv": {"ms_per_gflop": 10.0, "ms_per_mb": 0.5, "overhead_ms": 0.01,
                         "ms_per_weight_mb": 0.2},
                "activation": {"ms_per_gflop": 0.0, "ms_per_mb": 0.3, "overhead_ms": 0.004}},
    },
    "sparse_speedup": 0.0,
    "predictor_error": None,
    "anchors": {"networks": [{"name": n, "recorded_ms": 1.0 + i} for i, n in enumerate(ANCHORS)]},
}


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BUDGETSEARCH_STATE_DIR", str(tmp_path))
    return tmp_path


def _recorded(profile) -> dict[str, float]:  # noqa: ANN001
    return {a["name"]: a["recorded_ms"] for a in profile.anchors["networks"]}


def _check(profile, *factors: float, save: bool = True) -> dict:  # noqa: ANN001
    """``check_drift``'s record on snapshots that read ``factors`` × the recorded times, one
    per snapshot it takes (the last one repeated)."""
    recorded = _recorded(profile)
    queue = list(factors)

    def measure(names: list[str]) -> dict[str, float]:
        factor = queue.pop(0) if len(queue) > 1 else queue[0]
        return {n: ms * factor for n, ms in recorded.items()}

    return check_drift(profile, save=save, announce=lambda line: None, measure=measure).last_check


@pytest.mark.parametrize("speed", [2.0, 0.5])
def test_a_machine_twice_as_fast_or_slow_is_recalibrated(state: Path, speed: float) -> None:
    profile = profile_from_dict(MEASURED)
    lines: list[str] = []
    today = {n: ms / speed for n, ms in _recorded(profile).items()}  # faked timings
    fixed = check_drift(profile, measure=lambda names: today, announce=lines.append)
    assert fixed.last_check["recalibrated"]
    assert fixed.last_check["scale"] == pytest.approx(1 / speed)
    assert fixed.op_latency("conv").ms_per_gflop == pytest.approx(10.0 / speed)
    assert fixed.op_latency("conv").weight_ms_per_mb == pytest.approx(0.2 / speed)
    assert fixed.network_overhead_ms == pytest.approx(0.1 / speed)
    assert len(lines) == 1 and ("faster" if speed > 1 else "slower") in lines[0]
    assert last_check("toy")["scale"] == pytest.approx(1 / speed)  # the state file


def test_drift_inside_the_tolerance_rescales_by_half_of_it(state: Path) -> None:
    """Inside the tolerance the anchors rescale by half their drift in log terms (the square
    root of their factor): a snapshot's noise is as large as the drift it reads there
    (anchors.INSIDE_SHARE). No line on stderr; the check records what it read."""
    profile = profile_from_dict(MEASURED)
    for speed in (1.06, 0.92):
        today = {n: ms * speed for n, ms in _recorded(profile).items()}
        same = check_drift(profile, measure=lambda names, t=today: t, announce=pytest.fail,
                           save=False)
        check = same.last_check
        assert check["recalibrated"] and check["shrunk"]
        assert check["scale"] == pytest.approx(math.sqrt(speed), abs=1e-4)
        assert check["overhead_scale"] == check["work_scale"] == check["scale"]
        assert same.op_latency("conv").ms_per_gflop == pytest.approx(
            10.0 * math.sqrt(speed), rel=1e-4)
        assert all(v == pytest.approx(100 * (math.sqrt(speed) - 1), abs=0.02)
                   for v in check["residual_pct"].values())
        assert factors_source(check, 3) == "half the drift of this snapshot, inside the tolerance"


def test_the_tolerance_is_the_same_both_ways_and_no_drift_is_no_rescaling(state: Path) -> None:
    """x1.100 and x0.900 both sit at the 10% tolerance (inside it: half their drift), not on
    either side by a rounding error; a snapshot reading x1.000 rescales nothing."""
    profile = profile_from_dict(MEASURED)
    for speed in (1.1, 0.9):
        check = check_drift(profile, save=False, announce=pytest.fail, measure=lambda names,
                            f=speed: {n: ms * f for n, ms in _recorded(profile).items()}
                            ).last_check
        assert check["shrunk"] == "this snapshot"
        assert check["scale"] == pytest.approx(math.sqrt(speed), abs=1e-4)
    same = check_drift(profile, save=False, announce=pytest.fail, measure=lambda names: dict(
        _recorded(profile)))
    assert same.last_check["shrunk"] and not same.last_check["recalibrated"]
    assert same.op_latency("conv") == profile.op_latency("conv")


def test_a_stored_half_drift_check_is_reused_with_its_factors(
        state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process within the hour prices by the stored check's half-drift factors, and
    ``devices`` says where they came from."""
    from budgetsearch.commands.devices import _device_summary
    from budgetsearch.profiling import anchors

    profile = profile_from_dict(MEASURED)
    monkeypatch.setattr(anchors, "unchecked_reason", lambda p: None)
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "1")
    assert _check(profile, 0.94)["shrunk"] == "this snapshot"
    monkeypatch.setattr(anchors, "_CHECKED", {})  # another process
    monkeypatch.setattr(anchors, "check_drift", lambda *a, **k: pytest.fail("timed again"))
    reused = checked(profile)
    assert reused.op_latency("conv").ms_per_gflop == pytest.approx(10.0 * math.sqrt(0.94),
                                                                   rel=1e-4)
    shown = _device_summary(profile, last_check("toy"))["last_check"]
    assert shown["shrunk"] == "this snapshot" and shown["snapshot_scale"] == pytest.approx(0.94)
    assert factors_source(shown, 1) == "half the drift of this snapshot, inside the tolerance"


def test_anchors_alone_rescale_when_this_snapshot_and_the_quietest_are_beyond_it(
        state: Path) -> None:
    """Beyond the tolerance by this snapshot but not by a quieter recent one: a busy second,
    not a new speed; the profile stands. Both beyond it: rescaled by the quietest."""
    profile = profile_from_dict(MEASURED)
    assert _check(profile, 1.02)["shrunk"] == "this snapshot"
    busy = _check(profile, 1.3)  # no re-fit here: half the quietest reading's drift
    assert busy["snapshot_scale"] == pytest.approx(1.3)
    assert busy["shrunk"] == "the quietest recent snapshot"
    assert busy["scale"] == pytest.approx(math.sqrt(1.02), abs=1e-4)
    fresh = profile.scaled(1.0 / 1.25)  # other recorded times: a history of its own
    first = check_drift(fresh, announce=lambda line: None, measure=lambda names: {
        n: ms * 1.25 for n, ms in _recorded(fresh).items()})
    assert first.last_check["recalibrated"] and not first.last_check["shrunk"]
    assert first.op_latency("conv").ms_per_gflop == pytest.approx(10.0 / 1.25 * 1.25)
    # a later snapshot inside the tolerance takes half its own drift, whatever the floor
    later = check_drift(fresh, announce=pytest.fail, measure=lambda names: {
        n: ms * 1.04 for n, ms in _recorded(fresh).items()})
    assert later.last_check["scale"] == pytest.approx(math.sqrt(1.04), abs=1e-4)
    assert later.last_check["shrunk"]
    # and a floor beyond it (x0.85) does not rescale a machine whose anchors now read x0.95
    quick = profile.scaled(1.0 / 0.85)
    assert check_drift(quick, announce=lambda line: None, measure=lambda names: {
        n: ms * 0.85 for n, ms in _recorded(quick).items()}).last_check["recalibrated"]
    now = check_drift(quick, announce=pytest.fail, measure=lambda names: {
        n: ms * 0.95 for n, ms in _recorded(quick).items()}).last_check
    assert now["scale"] == pytest.approx(math.sqrt(0.95), abs=1e-4) and now["shrunk"]
    # the anchors' errors shown are those of the profile as it is used
    assert all(v == pytest.approx(100 * (0.95 / math.sqrt(0.95) - 1), abs=0.02)
               for v in now["residual_pct"].values())


def test_a_floor_the_other_way_does_not_rescale(state: Path) -> None:
    """An earlier snapshot read x0.88, this one x1.15 (its re-fit off): both beyond the
    tolerance, but opposite ways; the floor must not price a machine now reading slower."""
    profile = profile_from_dict(MEASURED)
    assert _check(profile, 0.88)["recalibrated"]
    now = _check(profile, 1.15)
    assert now["scale"] == pytest.approx(0.88) and not now["recalibrated"]


def test_simulated_profile_of_a_slower_day_predicts_today(state: Path) -> None:
    """A profile recorded on a 2× slower day (coefficients and anchors ×2) comes back to today."""
    profile = profile_from_dict(MEASURED)
    today = _recorded(profile)
    slow_day = profile.scaled(2.0)
    fixed = check_drift(slow_day, measure=lambda names: today, announce=lambda line: None)
    assert fixed.op_latency("activation").overhead_ms == pytest.approx(0.004)


def test_recalibration_uses_the_median_ratio() -> None:
    result = recalibration({"a": 1.0, "b": 2.0, "c": 4.0}, {"a": 2.0, "b": 4.4, "c": 100.0})
    assert result["scale"] == pytest.approx(2.2) and result["residual_pct"]["b"] == 0.0


def test_dispatch_and_arithmetic_drifting_apart_get_two_factors(state: Path) -> None:
    """Oracle: anchors whose overhead share scales by 0.6 and the rest by 1.0 (what a busy
    neighbour core did to the profiling machine) give back exactly those two factors, and the
    recalibrated profile scales β by the first and α, γ, γ_w by the second."""
    shares = [0.9, 0.05, 0.3, 0.6, 0.15, 0.2]
    data = {**MEASURED, "anchors": {"factors": 2, "networks": [
        {"name": n, "recorded_ms": 1.0 + i, "overhead_share": shares[i]}
        for i, n in enumerate(ANCHORS)]}}
    profile = profile_from_dict(data)
    today = {a["name"]: a["recorded_ms"] * (0.6 * a["overhead_share"]
                                            + 1.0 * (1 - a["overhead_share"]))
             for a in profile.anchors["networks"]}
    fixed = check_drift(profile, measure=lambda names: today, announce=lambda line: None)
    check = fixed.last_check
    assert check["recalibrated"]
    assert check["overhead_scale"] == pytest.approx(0.6, abs=1e-3)
    assert check["work_scale"] == pytest.approx(1.0, abs=1e-3)
    assert max(abs(r) for r in check["residual_pct"].values()) < 0.1
    assert fixed.op_latency("conv").overhead_ms == pytest.approx(0.006, rel=1e-3)
    assert fixed.op_latency("conv").ms_per_gflop == pytest.approx(10.0, rel=1e-3)
    assert fixed.network_overhead_ms == pytest.approx(0.06, rel=1e-3)
    # a stored check is re-applied the same way (a worker process reusing the state file), and
    # one stored before the two factors existed carries only its scale
    from budgetsearch.profiling.anchors import _recalibrated

    assert _recalibrated(profile, check).op_latency("conv").overhead_ms == pytest.approx(
        0.006, rel=1e-3)
    assert _recalibrated(profile, {"scale": 2.0}).op_latency("conv").ms_per_gflop == 20.0


def test_alike_overhead_shares_fall_back_to_one_median_factor() -> None:
    recorded = {"a": 1.0, "b": 2.0, "c": 4.0}
    result = recalibration(recorded, {"a": 2.0, "b": 4.0, "c": 8.8},
                           {"a": 0.5, "b": 0.55, "c": 0.6},  # too alike to tell two factors
                           factors=2)
    assert result["overhead_scale"] == result["work_scale"] == result["scale"] == 2.0


def test_one_factor_unless_the_profile_asks_for_two(state: Path) -> None:
    """By default (no ``anchors.factors``, or 1) even anchors whose overhead and work drifted
    apart rescale every coefficient by their median ratio."""
    shares = [0.9, 0.05, 0.3, 0.6, 0.15, 0.2]
    networks = [{"name": n, "recorded_ms": 1.0 + i, "overhead_share": shares[i]}
                for i, n in enumerate(ANCHORS)]
    today = {a["name"]: a["recorded_ms"] * (0.4 * a["overhead_share"]
                                            + 1.0 * (1 - a["overhead_share"])) for a in networks}
    median = sorted(today[n] / a["recorded_ms"] for n, a in zip(ANCHORS, networks))
    for anchors in ({"networks": networks}, {"factors": 1, "networks": networks}):
        profile = profile_from_dict({**MEASURED, "anchors": anchors})
        fixed = check_drift(profile, measure=lambda names: today, announce=lambda line: None)
        check = fixed.last_check
        assert check["overhead_scale"] == check["work_scale"] == check["scale"]
        assert check["scale"] == pytest.approx((median[2] + median[3]) / 2, abs=1e-4)
        assert fixed.op_latency("conv").ms_per_gflop == pytest.approx(10.0 * check["scale"])
    for bad in (3, 0, True, "2"):
        with pytest.raises(ValueError, match=r"'anchors.factors' must be 1 \(one drift factor\) "
                                             rf"or 2 .*got {bad!r}"):
            profile_from_dict({**MEASURED, "anchors": {"factors": bad, "networks": networks}})


def test_overhead_share_must_be_a_fraction() -> None:
    data = {**MEASURED, "anchors": {"networks": [
        {"name": "conv-stack-32", "recorded_ms": 1.0, "overhead_share": 1.5}]}}
    with pytest.raises(ValueError, match="overhead_share' must be in \\[0, 1\\], got 1.5"):
        profile_from_dict(data)


def test_real_anchor_check_takes_at_most_two_seconds() -> None:
    started = time.perf_counter()
    times = measure_anchors(list(ANCHORS), runtime="pytorch-eager", threads=1)
    assert time.perf_counter() - started <= 2.0
    assert set(times) == set(ANCHORS) and all(t > 0 for t in times.values())


def test_the_shipped_anchors_are_held_out_fit_networks_checked_within_two_seconds() -> None:
    """The profiles anchor on one held-out network per fit family (the one of middling time), each
    rebuilt from its label as profiled: the same layers as the network the profiling run timed."""
    from budgetsearch.profiling.anchors import build_anchor
    from budgetsearch.profiling.networks import FAMILIES, NetworkSpec, build_spec

    profile = load_profile("cpu-2core-x86", check=False)
    names = [a["name"] for a in profile.anchors["networks"]]
    assert sorted(n.split("#")[0] for n in names) == sorted(FAMILIES)
    for name in names[:3]:
        model, x = build_anchor(name)
        family, rest = name.split("#")
        seed, shape = rest.split("/")
        built = build_spec(NetworkSpec(family, (1, *map(int, shape.split("x"))), int(seed)))
        assert tuple(x.shape) == tuple(built.example_input.shape)
        assert sum(p.numel() for p in model.parameters()) == sum(
            p.numel() for p in built.model.parameters())
    started = time.perf_counter()
    times = measure_anchors(names, runtime="pytorch-eager", threads=1)
    assert time.perf_counter() - started <= 2.0
    assert set(times) == set(names) and all(t > 0 for t in times.values())


HOSTILE_LABELS = ["wrn#12", "nosuch#1/3x32x32", "wrn#x/3x32x32", "wrn#1/3x32", "wrn#1/0x32x32",
                  "conv-stack", "wrn#\uff11/3x32x32", "wrn#\u00b2/3x32x32", "wrn#-1/3x32x32",
                  "plain#1/3x100000x100000", "wrn#1/300x32x32", "wrn#1/3x4x4", " wrn#1/3x32x32"]


@pytest.mark.parametrize("name", HOSTILE_LABELS)
def test_an_anchor_name_that_names_nothing_is_refused(name: str) -> None:
    import re

    from budgetsearch.profiling.anchors import build_anchor

    with pytest.raises(ValueError, match="got " + re.escape(repr(name)) + "$"):
        build_anchor(name)


@pytest.mark.parametrize("name", [n for n in HOSTILE_LABELS
                                  if "#" in n and n != "nosuch#1/3x32x32"])
def test_a_profile_naming_a_malformed_anchor_is_refused_on_load(name: str) -> None:
    import re

    data = {**MEASURED, "anchors": {"networks": [{"name": name, "recorded_ms": 1.0}]}}
    with pytest.raises(ValueError, match=r"'anchors.networks\[0\].name' must be a fit-set "
                                         r"network .*got " + re.escape(repr(name)) + "$"):
        profile_from_dict(data)


def test_an_anchor_that_cannot_be_built_fails_the_check_in_one_line(state: Path) -> None:
    # well formed, so the profile loads; no such family, so the check cannot build it
    profile = profile_from_dict({**MEASURED, "anchors": {"networks": [
        {"name": "nosuch#1/3x32x32", "recorded_ms": 1.0}]}})
    with pytest.raises(ValueError) as refused:
        check_drift(profile, announce=lambda line: None)
    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("toy: drift-check anchor 'nosuch#1/3x32x32' cannot be built")


def test_anchors_are_each_familys_middling_held_out_network() -> None:
    from types import SimpleNamespace

    import numpy as np

    from budgetsearch.profiling.fit import pick_anchors

    nets = [SimpleNamespace(family=f, label=f"{f}#{i}/1x28x28")
            for f, i in (("a", 1), ("a", 2), ("a", 3), ("a", 4), ("b", 5), ("c", 6), ("c", 7))]
    times = np.array([4.0, 1.0, 3.0, 2.0, 9.0, 5.0, 6.0])
    assert pick_anchors(nets, times) == {"a#4/1x28x28": 2.0, "b#5/1x28x28": 9.0,
                                         "c#6/1x28x28": 5.0}


def test_check_can_be_turned_off(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "0")
    profile = profile_from_dict(MEASURED)
    assert checked(profile) is profile
    assert load_profile("jetson").last_check is None


def test_check_is_off_in_the_test_suite_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from budgetsearch.profiling.anchors import check_enabled

    monkeypatch.delenv("BUDGETSEARCH_DRIFT_CHECK", raising=False)
    assert not check_enabled()
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "1")
    assert check_enabled()


def test_a_cached_anchor_export_belongs_to_its_network(state: Path) -> None:
    """The same label built into another network (a changed generator) must not reuse the
    export of the old one: the cache is keyed by the network's layers and shapes."""
    import torch
    from torch import nn

    from budgetsearch.profiling.anchors import _network_key, _onnx_cached

    x = torch.zeros(1, 4)
    assert _network_key(nn.Linear(4, 3), x) == _network_key(nn.Linear(4, 3), x)
    assert _network_key(nn.Linear(4, 3), x) != _network_key(nn.Linear(4, 5), x)
    small, wide = nn.Sequential(nn.Linear(4, 3)), nn.Sequential(nn.Linear(4, 5))
    assert _onnx_cached("wrn#1/3x32x32", small, x) != _onnx_cached("wrn#1/3x32x32", wide, x)
    assert len(list((state / "anchors").iterdir())) == 2


def test_a_profile_of_another_cpu_is_not_checked_and_says_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile stands for the CPU it was measured on: on another one its anchors' times say
    nothing about it, so the check is skipped and `devices` / the CLI say why."""
    from budgetsearch.profiling import anchors

    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "1")
    monkeypatch.setattr(anchors, "cpu_name", lambda: "Some Other CPU")
    profile = profile_from_dict({**MEASURED, "provenance": {
        **MEASURED["provenance"], "cpu": "Intel(R) Xeon(R) Processor"}})
    reason = anchors.unchecked_reason(profile)
    assert reason and "Intel(R) Xeon(R) Processor" in reason and "Some Other CPU" in reason
    assert checked(profile) is profile  # nothing timed, nothing rescaled


def test_anchors_another_generator_drew_are_not_rebuilt(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same label builds another network once the fit-set generator changed: a check that
    timed it would compare two networks. Hand-built anchors do not depend on it."""
    from budgetsearch.profiling import anchors
    from budgetsearch.profiling.networks import GENERATOR_VERSION

    monkeypatch.setattr(anchors, "cpu_name", lambda: "Test CPU")
    here = {**MEASURED["provenance"], "cpu": "Test CPU"}
    drawn = {"networks": [{"name": "plain#7/1x28x28", "recorded_ms": 1.0}]}
    old = profile_from_dict({**MEASURED, "anchors": drawn,
                             "provenance": {**here, "generator_version": GENERATOR_VERSION - 1}})
    reason = anchors.unchecked_reason(old)
    assert reason and f"version {GENERATOR_VERSION - 1}" in reason and "--force" in reason
    current = profile_from_dict({**MEASURED, "anchors": drawn, "provenance": {
        **here, "generator_version": GENERATOR_VERSION}})
    assert anchors.unchecked_reason(current) is None
    hand_built = profile_from_dict({**MEASURED, "provenance": here})  # version 1, ANCHORS
    assert anchors.unchecked_reason(hand_built) is None


def test_the_same_cpu_name_with_other_simd_flags_is_another_machine(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A VM names hosts with and without AVX-512 alike ("AMD EPYC"; on 2026-12-03 one without
    ran the shipped profile's anchors x1.6-x3.0, other kernels): a profile stands for the SIMD
    set it was measured with, and is neither checked nor rescaled on another."""
    from budgetsearch.profiling import anchors

    monkeypatch.setattr(anchors, "cpu_name", lambda: "AMD EPYC")
    monkeypatch.setattr(anchors, "cpu_flags", lambda: "avx avx2 fma")
    wide = "avx avx2 avx512bw avx512f avx512vl avx512_bf16 avx512cd fma"
    profile = profile_from_dict({**MEASURED, "provenance": {
        **MEASURED["provenance"], "cpu": "AMD EPYC (2 logical CPUs visible)", "cpu_flags": wide}})
    reason = anchors.not_this_machine(profile)
    assert reason == ("measured on another SIMD set of AMD EPYC (2 logical CPUs visible): it had "
                      "avx512_bf16, avx512bw, avx512f, avx512vl, which this machine lacks")
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "1")
    monkeypatch.setattr(anchors, "check_drift", lambda *a, **k: pytest.fail("checked"))
    assert anchors.checked(profile) is profile  # unchanged: that machine's prices
    narrow = profile_from_dict({**MEASURED, "provenance": {
        **MEASURED["provenance"], "cpu": "AMD EPYC", "cpu_flags": "avx avx2"}})
    assert anchors.not_this_machine(narrow).endswith("this machine adds fma")  # FMA kernels
    same = profile_from_dict({**MEASURED, "provenance": {
        **MEASURED["provenance"], "cpu": "AMD EPYC", "cpu_flags": "fma avx2 avx"}})
    assert anchors.not_this_machine(same) is None
    moved = profile_from_dict({**MEASURED, "provenance": {  # flags no kernel choice reads
        **MEASURED["provenance"], "cpu": "AMD EPYC", "cpu_flags": "avx avx2 fma sse4a"}})
    assert anchors.not_this_machine(moved) is None
    older = profile_from_dict({**MEASURED, "provenance": {  # recorded no flags: the name decides
        **MEASURED["provenance"], "cpu": "AMD EPYC"}})
    assert anchors.not_this_machine(older) is None


def test_a_profile_without_threads_or_cpu_is_described_not_crashed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from budgetsearch.commands.devices import _device_summary
    from budgetsearch.profiling import anchors

    monkeypatch.setattr(anchors, "cpu_name", lambda: "Test CPU")
    profile = profile_from_dict({**MEASURED, "provenance": {
        **MEASURED["provenance"], "threads": None, "cpu": None}})
    assert anchors.unchecked_reason(profile) == (
        "measured on an unrecorded CPU, not on this machine's Test CPU")
    assert _device_summary(profile, None)["unchecked_reason"].startswith("measured on an")
    bare = {k: v for k, v in MEASURED.items() if k != "anchors"}
    here = profile_from_dict({**bare, "provenance": {
        **MEASURED["provenance"], "threads": None, "cpu": "Test CPU"}})
    assert anchors.unchecked_reason(here) == "it records no anchors"


def test_a_large_drift_is_confirmed_by_a_second_snapshot(state: Path) -> None:
    """A burst that slows one snapshot by half is not taken for the machine's speed; a real
    drift, seen twice, is (the smaller of the two is kept)."""
    profile = profile_from_dict(MEASURED)
    recorded = _recorded(profile)
    snapshots = iter([1.5, 1.04])
    fixed = check_drift(profile, announce=pytest.fail, measure=lambda names: {
        n: ms * factor for factor in [next(snapshots)] for n, ms in recorded.items()})
    assert fixed.last_check["snapshot_scale"] == pytest.approx(1.04)  # half of it applies
    assert fixed.last_check["scale"] == pytest.approx(math.sqrt(1.04), abs=1e-4)
    assert fixed.last_check["first_scale"] == pytest.approx(1.5)
    lines: list[str] = []
    snapshots = iter([2.1, 1.9])
    slow = check_drift(profile, announce=lines.append, measure=lambda names: {
        n: ms * factor for factor in [next(snapshots)] for n, ms in recorded.items()})
    assert slow.last_check["scale"] == pytest.approx(1.9) and len(lines) == 1
    calls = []
    check_drift(profile, save=False, announce=pytest.fail, measure=lambda names: calls.append(1)
                or {n: ms * 1.05 for n, ms in recorded.items()})
    assert len(calls) == 1  # within the tolerance, no history: one snapshot
    # back at x1.05 after a history at x1.9: a new speed, confirmed by a second snapshot
    calls.clear()
    back = check_drift(profile, announce=lambda line: None, measure=lambda names: calls.append(1)
                       or {n: ms * 1.05 for n, ms in recorded.items()})
    assert len(calls) == 2 and back.last_check["snapshot_scale"] == pytest.approx(1.05)
    assert back.last_check["history"] == [pytest.approx({**back.last_check["history"][0],
                                                         "scale": 1.05})]


def test_a_check_rescales_by_the_quietest_of_recent_snapshots(state: Path) -> None:
    """A shared VM's one-second snapshots swing, and mostly upwards of what the networks need
    (a network's time is its quietest round over minutes; 2026-12-02: snapshots x0.98-x1.33 of
    the needed factor): a remembered check applies the quietest (lowest) of this machine's
    recent snapshots of the same profile; a snapshot beyond x1.5 of their median is a new speed
    and stands alone."""
    from budgetsearch.profiling.anchors import HISTORY_CHECKS

    profile = profile_from_dict(MEASURED)

    def snapshot(factor: float):  # noqa: ANN202
        return _check(profile, factor)

    assert snapshot(1.12)["scale"] == pytest.approx(1.12)
    slower = snapshot(1.3)  # a busier second: the quieter earlier snapshot still stands
    assert slower["scale"] == pytest.approx(1.12)
    assert slower["snapshot_scale"] == pytest.approx(1.3)
    swing = snapshot(0.95)  # inside the tolerance: half its own drift
    assert swing["scale"] == pytest.approx(math.sqrt(0.95), abs=1e-4) and swing["shrunk"]
    assert swing["snapshot_scale"] == pytest.approx(0.95)
    assert [h["scale"] for h in swing["history"]] == pytest.approx([1.12, 1.3, 0.95])
    # what later processes reuse
    assert last_check("toy")["scale"] == pytest.approx(math.sqrt(0.95), abs=1e-4)
    # the machine turns twice as slow: the snapshot stands alone and starts a new history
    step = _check(profile, 2.4)
    assert step["scale"] == pytest.approx(2.4) and len(step["history"]) == 1
    for _ in range(HISTORY_CHECKS + 2):
        last = snapshot(2.0)
    assert len(last["history"]) == HISTORY_CHECKS and last["scale"] == pytest.approx(2.0)
    # the quietest leaves with the snapshots it belongs to: six busier ones later, it is gone
    assert snapshot(1.8)["scale"] == pytest.approx(1.8)
    for _ in range(HISTORY_CHECKS - 1):
        later = snapshot(2.1)
    assert later["scale"] == pytest.approx(1.8)
    assert snapshot(2.1)["scale"] == pytest.approx(2.1)
    # an unsaved check (the benchmark's simulations, a test's fake) neither reads nor joins it
    alone = _check(profile, 1.6, save=False)
    assert alone["scale"] == pytest.approx(1.6) and "history" not in alone


def test_old_snapshots_and_another_profiles_are_forgotten(state: Path) -> None:
    import json

    from budgetsearch.profiling.anchors import smoothed

    profile = profile_from_dict(MEASURED)
    _check(profile, 1.3)
    path = state / "drift-toy.json"
    data = json.loads(path.read_text())
    data["history"][0]["date"] = "2020-01-01T00:00:00"
    path.write_text(json.dumps(data))
    fresh = _check(profile, 1.0)
    assert fresh["scale"] == pytest.approx(1.0) and len(fresh["history"]) == 1
    other = profile.scaled(1.2)  # other recorded times: another history
    assert _check(other, 1.3)["scale"] == pytest.approx(1.3)
    assert len(last_check("toy")["history"]) == 1
    # a hand-edited history entry that is not a set of positive factors is skipped
    result = {"scale": 1.1, "overhead_scale": 1.1, "work_scale": 1.1}
    out = smoothed(result, [{"scale": "x"}, {"scale": -1, "overhead_scale": 1, "work_scale": 1}])
    assert out["scale"] == pytest.approx(1.1) and len(out["history"]) == 1


@pytest.mark.parametrize(("key", "value"), [("rounds", 0), ("rounds", True), ("rounds", 2.5),
                                            ("inner", 10**6), ("warmup", -1), ("settle", -1),
                                            ("settle", "3")])
def test_how_the_anchors_were_timed_is_checked(key: str, value: object) -> None:
    data = {**MEASURED, "anchors": {**MEASURED["anchors"], key: value}}
    with pytest.raises(ValueError, match=rf"<profile>: key 'anchors.{key}' must be an integer"):
        profile_from_dict(data)


@pytest.mark.parametrize("value", [-0.5, "3", True, 1e6])
def test_the_anchors_settle_mb_is_checked(value: object) -> None:
    data = {**MEASURED, "anchors": {**MEASURED["anchors"], "settle_mb": value}}
    with pytest.raises(ValueError, match=r"<profile>: key 'anchors.settle_mb' must be a number"):
        profile_from_dict(data)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_anchors_alone_flag_is_checked(value: object) -> None:
    data = {**MEASURED, "anchors": {**MEASURED["anchors"], "alone": value}}
    with pytest.raises(ValueError, match=r"<profile>: key 'anchors.alone' must be true or false"):
        profile_from_dict(data)


def test_the_check_times_as_many_rounds_as_the_recorded_times_took(
        state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A minimum over more rounds reads faster: the check re-times with the profile's own."""
    from budgetsearch.profiling import anchors

    seen = {}

    def fake(names, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.update(kwargs)
        return dict(_recorded(profile))

    monkeypatch.setattr(anchors, "measure_anchors", fake)
    profile = profile_from_dict({**MEASURED, "anchors": {**MEASURED["anchors"], "rounds": 8,
                                                         "inner": 3, "settle": 2,
                                                         "settle_mb": 3.0}})
    check_drift(profile, announce=pytest.fail)
    assert seen["rounds"] == 8 and seen["inner"] == 3 and seen["settle"] == 2
    assert seen["settle_mb"] == 3.0
    check_drift(profile_from_dict(MEASURED), announce=pytest.fail)  # an older profile: as before
    assert seen["rounds"] == anchors.ANCHOR_ROUNDS and seen["inner"] == anchors.ANCHOR_INNER
    assert seen["settle"] == 0  # recorded before untimed calls settled each burst: none
    assert seen["settle_mb"] == 0.0


def test_a_profile_records_its_anchors_as_the_check_times_them() -> None:
    """Timed alone, anchors find their weights in cache where, among the fit set's 270, they did
    not (×0.85–0.93 against ×0.95–0.96 on 2026-12-02): the profile records them alone, by the
    check's rounds and bursts, the quietest of three snapshots (what a check applies)."""
    from budgetsearch.profiling.fit import recorded_as_checked

    profile = profile_from_dict({**MEASURED, "anchors": {**MEASURED["anchors"], "rounds": 8}})
    recorded = _recorded(profile)
    factors = iter([0.9, 0.7, 0.8])
    calls: list[list[str]] = []

    def measure(names: list[str]) -> dict[str, float]:
        calls.append(names)
        factor = next(factors)
        return {n: recorded[n] * factor for n in names}

    again = recorded_as_checked(profile, measure=measure)
    assert len(calls) == 3 and calls[0] == list(recorded)
    assert _recorded(again) == pytest.approx({n: ms * 0.7 for n, ms in recorded.items()})
    assert "quietest of 3 snapshots" in again.anchors["recorded"]
    assert profile_from_dict(again.as_yaml_dict()).anchors == again.anchors  # round trip
    data = again.as_yaml_dict()
    data["anchors"]["recorded"] = 3
    with pytest.raises(ValueError, match="anchors.recorded"):
        profile_from_dict(data)


def test_a_burst_neither_replaces_the_history_nor_is_taken_for_the_speed(state: Path) -> None:
    """Five checks read x1.3. A snapshot beyond the 10% tolerance is timed twice and the quieter
    of the two kept (a burst slows a snapshot; nothing makes one faster than the machine), unless
    the quieter alone is beyond x1.5 of the recent snapshots: a new speed starts anew only when
    both snapshots say so."""
    profile = profile_from_dict(MEASURED)

    def check(*factors: float):  # noqa: ANN202
        return _check(profile, *factors)

    for _ in range(5):
        check(1.3, 1.3)
    burst = check(1.7, 1.32)  # a burst, then the machine as it was
    assert burst["snapshot_scale"] == pytest.approx(1.32) and burst["scale"] == pytest.approx(1.3)
    assert burst["first_scale"] == pytest.approx(1.7) and len(burst["history"]) == 6
    quieter = check(1.12, 1.4)  # the first was the quieter second: kept
    assert quieter["snapshot_scale"] == pytest.approx(1.12)
    assert quieter["scale"] == pytest.approx(1.12)
    lone = check(0.6, 1.25)  # one snapshot off the history, the second on it
    assert lone["snapshot_scale"] == pytest.approx(1.25) and len(lone["history"]) == 6
    assert lone["scale"] == pytest.approx(1.12)
    new_speed = check(0.6, 0.62)  # both off: a new speed, at the quieter of the two
    assert new_speed["scale"] == pytest.approx(0.6) and len(new_speed["history"]) == 1


@pytest.mark.parametrize("content", ["3", "[1, 2]", '{"history": 5, "fingerprint": "x"}',
                                     "not json"])
def test_a_corrupt_state_file_is_read_past(state: Path, content: str) -> None:
    from budgetsearch.commands.devices import _device_summary

    profile = profile_from_dict(MEASURED)
    (state / "drift-toy.json").write_text(content)
    assert last_check("toy") is None or isinstance(last_check("toy"), dict)
    fixed = check_drift(profile, announce=lambda line: None, measure=lambda names: {
        n: ms * 1.2 for n, ms in _recorded(profile).items()})
    assert fixed.last_check["scale"] == pytest.approx(1.2)
    summary = _device_summary(profile, {"date": "x", "scale": 1.0, "history": 5})
    assert summary["last_check"]["checks_in_history"] == 1


def test_history_entries_that_are_not_positive_finite_factors_are_skipped(state: Path) -> None:
    import json

    profile = profile_from_dict(MEASURED)
    _check(profile, 1.1)
    path = state / "drift-toy.json"
    data = json.loads(path.read_text())
    date = data["history"][0]["date"]
    data["history"] += [{"scale": math.inf, "overhead_scale": 1, "work_scale": 1, "date": date},
                        {"scale": True, "overhead_scale": 1, "work_scale": 1, "date": date},
                        "junk", {"scale": 1.2, "overhead_scale": 1.2, "work_scale": 1.2}]
    path.write_text(json.dumps(data))
    again = _check(profile, 1.3)
    assert [h["scale"] for h in again["history"]] == pytest.approx([1.1, 1.3])  # undated: out


def test_a_refit_that_keeps_the_anchors_keeps_the_history(state: Path) -> None:
    """Snapshots are measured against the anchors' recorded times: new coefficients on the same
    anchors (a re-fit) keep this machine's history; new recorded times start another."""
    from dataclasses import replace

    from budgetsearch.cost import OpLatency

    profile = profile_from_dict(MEASURED)
    _check(profile, 1.2)
    refit = replace(profile, ops={**profile.ops, "conv": OpLatency(ms_per_gflop=20.0)})
    assert len(_check(refit, 1.25)["history"]) == 2
    remeasured = profile.scaled(1.1)  # its anchors' recorded times change too
    assert len(_check(remeasured, 1.0)["history"]) == 1


def test_a_worker_prices_by_the_check_its_parent_hands_it(state: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A search's parent checks once; a Ray worker adopts that check (rescaled as the parent's
    profile, and no anchor timed in the worker, even past the state file's age limit); a check
    of other coefficients is not adopted."""
    from dataclasses import replace

    from budgetsearch.cost.profiles import OpLatency
    from budgetsearch.profiling import anchors

    profile = profile_from_dict(MEASURED)
    parent = _check(profile, 1.6)
    monkeypatch.setattr(anchors, "_CHECKED", {})  # a new process
    monkeypatch.setattr(anchors, "check_drift", lambda *a, **k: pytest.fail("timed in a worker"))
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "1")
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_MAX_AGE_S", "0")  # the stored check counts as stale
    monkeypatch.setattr(anchors, "unchecked_reason", lambda p: None)
    adopted = anchors.adopt_check(profile, parent)
    assert adopted.last_check["scale"] == pytest.approx(1.6)
    assert adopted.op_latency("conv").ms_per_gflop == pytest.approx(10.0 * 1.6)
    assert checked(profile) is adopted  # what load_profile returns in the worker from now on
    other = replace(profile, ops={**profile.ops, "conv": OpLatency(ms_per_gflop=20.0)})
    monkeypatch.setattr(anchors, "check_drift", lambda p, **k: replace(p, last_check={"own": 1}))
    assert anchors.adopt_check(other, parent).last_check == {"own": 1}
    assert anchors.adopt_check(other, None).last_check == {"own": 1}


def test_a_ray_driver_hands_its_check_to_the_trials(state: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from budgetsearch.search import ray_driver
    from budgetsearch.search.settings import TrialSettings

    assert ray_driver.parent_check(TrialSettings(device_profile=None)) is None
    profile = profile_from_dict(MEASURED)
    checked_here = check_drift(profile, announce=lambda line: None, save=False,
                               measure=lambda names: {n: 1.0 for n in names})
    monkeypatch.setattr(ray_driver, "load_profile", lambda name, **k: checked_here)
    assert ray_driver.parent_check(TrialSettings(device_profile="toy")) == checked_here.last_check


def test_a_ray_trial_prices_by_the_check_its_driver_made(state: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainable a Ray worker runs: the driver's check crosses the process boundary as Ray
    sends it (pickled), and the trial's own ``load_profile`` of the run's profile then returns
    that check's rescaled profile without timing an anchor."""
    import pickle
    import sys
    import types

    from budgetsearch.cost import save_profile
    from budgetsearch.profiling import anchors
    from budgetsearch.search import ray_driver
    from budgetsearch.search.settings import TrialSettings

    path = save_profile(profile_from_dict(MEASURED), tmp_path / "toy.yaml")
    monkeypatch.setattr(anchors, "unchecked_reason", lambda p: None)
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "1")
    driver_check = _check(load_profile(path, check=False), 1.6, save=False)
    sent = pickle.loads(pickle.dumps(driver_check))  # what reaches the worker
    monkeypatch.setattr(anchors, "_CHECKED", {})  # the worker: a new process
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_MAX_AGE_S", "0")
    monkeypatch.setattr(anchors, "check_drift", lambda *a, **k: pytest.fail("timed in a worker"))
    reported: list[dict] = []
    tune = types.SimpleNamespace(
        get_context=lambda: types.SimpleNamespace(get_trial_name=lambda: "t0"),
        report=reported.append)
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(tune=tune))
    monkeypatch.setitem(sys.modules, "ray.tune", tune)
    priced: list = []

    def run_trial(config, settings, run_dir, **kwargs):  # noqa: ANN001, ANN003, ANN202
        priced.append(load_profile(settings.device_profile))  # as the trial's cost model does
        return {"val_accuracy": 0.5}

    monkeypatch.setattr(ray_driver, "run_trial", run_trial)
    monkeypatch.setattr(ray_driver, "_final_metrics", dict)
    trainable = ray_driver.make_trainable(None, TrialSettings(device_profile=str(path)),
                                          tmp_path, profile_check=sent)
    trainable({})
    assert priced[0].last_check == driver_check
    assert priced[0].op_latency("conv").ms_per_gflop == pytest.approx(10.0 * 1.6)
    assert reported == [{"val_accuracy": 0.5}]


def test_a_stored_check_is_reused_unless_made_under_the_old_rule(
        state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process within the hour reuses the state file's check without timing; a check
    stored under an earlier rule (no ``shrunk``: it rescaled by nothing or by a floor inside the
    tolerance) is made again."""
    import json

    from budgetsearch.profiling import anchors

    profile = profile_from_dict(MEASURED)
    monkeypatch.setattr(anchors, "unchecked_reason", lambda p: None)
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "1")
    stored = _check(profile, 1.3)
    assert stored["recalibrated"]
    monkeypatch.setattr(anchors, "_CHECKED", {})  # another process
    monkeypatch.setattr(anchors, "check_drift", lambda *a, **k: pytest.fail("timed again"))
    assert checked(profile).op_latency("conv").ms_per_gflop == pytest.approx(13.0)
    path = state / "drift-toy.json"
    old = json.loads(path.read_text())
    del old["shrunk"]
    path.write_text(json.dumps({**old, "scale": 0.95, "overhead_scale": 0.95,
                                "work_scale": 0.95}))
    monkeypatch.setattr(anchors, "_CHECKED", {})
    fresh = []
    monkeypatch.setattr(anchors, "check_drift", lambda p, **k: fresh.append(p) or p)
    assert checked(profile) is profile and fresh == [profile]


def test_loading_a_profile_from_the_cost_layer_alone_runs_the_installed_drift_check() -> None:
    """A library user who imports ``budgetsearch.cost`` only (not the API, the CLI or the search)
    gets a checked profile: the drift check is an installed entry point that ``load_profile``
    loads, and ``check=False`` loads nothing."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from budgetsearch.cost import load_profile, profiles\n"
        "load_profile('jetson', check=False)\n"
        "print('budgetsearch.profiling.anchors' in sys.modules)\n"
        "load_profile('jetson')\n"
        "print([f'{h.__module__}.{h.__name__}' for h in profiles._PROFILE_CHECKS])\n"
        "print('budgetsearch.api' in sys.modules, 'budgetsearch.search' in sys.modules)\n"
    )
    env = {**os.environ, "BUDGETSEARCH_DRIFT_CHECK": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout.splitlines()
    assert out == ["False", "['budgetsearch.profiling.anchors.checked']", "False False"]


def test_an_installed_check_that_fails_to_load_is_named_and_skipped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from budgetsearch.cost import profiles

    class Entry:
        def __init__(self, name: str, load) -> None:  # noqa: ANN001
            self.name, self.value, self.load = name, f"plugin:{name}", load

    def broken():  # noqa: ANN202
        raise ImportError("No module named 'plugin'")

    def tag(profile):  # noqa: ANN001, ANN202
        return profile.scaled(2.0)

    looked_up = []

    def entry_points(group: str) -> list[Entry]:
        looked_up.append(group)
        return [Entry("broken", broken), Entry("inert", lambda: 42), Entry("tag", lambda: tag)]

    monkeypatch.setattr(profiles, "entry_points", entry_points)
    monkeypatch.setattr(profiles, "_INSTALLED_CHECKS_LOADED", False)
    monkeypatch.setattr(profiles, "_PROFILE_CHECKS", [])
    plain = load_profile("jetson", check=False)
    assert looked_up == []
    with pytest.warns(UserWarning) as caught:
        doubled = load_profile("jetson")
    assert [str(w.message) for w in caught] == [
        "profile check 'broken' (plugin:broken) could not be loaded: "
        "ImportError: No module named 'plugin'",
        "profile check 'inert' (plugin:inert) is not callable"]
    assert doubled.op_latency("conv").overhead_ms == pytest.approx(
        2.0 * plain.op_latency("conv").overhead_ms)
    load_profile("jetson")
    assert looked_up == ["budgetsearch.profile_checks"]  # once per process


def test_installed_checks_that_cannot_be_listed_do_not_stop_pricing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from budgetsearch.cost import profiles

    def entry_points(group: str) -> list:
        raise ValueError("malformed entry_points.txt")

    monkeypatch.setattr(profiles, "entry_points", entry_points)
    monkeypatch.setattr(profiles, "_INSTALLED_CHECKS_LOADED", False)
    monkeypatch.setattr(profiles, "_PROFILE_CHECKS", [])
    with pytest.warns(UserWarning, match="could not be listed: ValueError: malformed"):
        assert load_profile("jetson").name == "jetson-orin-nano"


def test_a_profile_records_its_anchors_in_a_new_process() -> None:
    """A process's history moves the anchors (onnxruntime's read x1.11-1.21 of what the
    profiling process recorded, 2026-12-04): they are recorded as ``budgetsearch run`` checks
    them, in a process that has built nothing yet."""
    from budgetsearch.profiling.anchors import measure_anchors_fresh

    names = ["conv-stack-32", "mlp-1024"]
    times = measure_anchors_fresh(names, runtime="pytorch-eager", threads=1, rounds=1, inner=1,
                                  settle=0)
    assert list(times) == names and all(ms > 0 for ms in times.values())
    with pytest.raises(RuntimeError, match="in a new process failed: .*no-such-anchor"):
        measure_anchors_fresh(["no-such-anchor"], runtime="pytorch-eager", threads=1)


def test_prices_move_from_the_fit_run_to_a_process_of_their_own() -> None:
    """A process holding the fit set's 270 networks slows each of them (its anchors ran x0.80 of
    their fit-run times in a new process, 2026-12-04): a profile prices a network in a process
    of its own, scaled by the anchors' median ratio, and says so in its provenance."""
    from dataclasses import replace

    from budgetsearch.cost import layer_inventory
    from budgetsearch.profiling.anchors import build_anchor
    from budgetsearch.profiling.fit import priced_as_in_a_new_process

    fitted = profile_from_dict(MEASURED)
    run = _recorded(fitted)
    ratios = [0.7, 0.8, 0.9, 0.75, 1.2, 0.85, 0.95, 0.6, 1.0]
    alone = {n: ms * ratios[i % len(ratios)] for i, (n, ms) in enumerate(run.items())}
    checked = replace(fitted, anchors={**fitted.anchors, "networks": [
        {**a, "recorded_ms": alone[a["name"]]} for a in fitted.anchors["networks"]]})
    priced = priced_as_in_a_new_process(fitted, checked)
    factor = statistics.median(alone[n] / run[n] for n in run)
    assert priced.provenance["process_state"]["factor"] == pytest.approx(factor, abs=1e-4)
    assert _recorded(priced) == pytest.approx(alone)  # the anchors stay as recorded alone
    model, x = build_anchor("conv-stack-32")
    inventory = layer_inventory(model, x)
    assert inventory.predict_latency_ms(priced) == pytest.approx(
        inventory.predict_latency_ms(fitted) * factor)
    assert profile_from_dict(priced.as_yaml_dict()).provenance["process_state"]["factor"] == (
        pytest.approx(factor, abs=1e-4))
    data = priced.as_yaml_dict()
    data["provenance"]["process_state"] = {"factor": -1}
    with pytest.raises(ValueError, match="provenance.process_state"):
        profile_from_dict(data)
    assert priced_as_in_a_new_process(fitted, replace(checked, anchors=None)).provenance == (
        fitted.provenance)  # no anchors: nothing to move by
