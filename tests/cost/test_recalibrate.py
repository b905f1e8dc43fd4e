"""The drift re-fit on networks timed now: factors recovered from faked times, the fallback when
the draw cannot tell overhead from the rest, and how the drift check uses it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from budgetsearch.cost import profile_from_dict
from budgetsearch.profiling.anchors import check_drift, last_check
from budgetsearch.profiling.recalibrate import (
    fit_factors,
    overhead_parts,
    recalibration_networks,
    refit_drift,
)
from tests.cost.test_anchors import MEASURED, _check, _recorded


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BUDGETSEARCH_STATE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def draw() -> list:
    return recalibration_networks(9)  # one network of each fit-set family


def test_the_draw_spans_the_fit_set_families_and_none_of_a_profiling_run() -> None:
    from budgetsearch.profiling.fit import fit_set_specs
    from budgetsearch.profiling.networks import FAMILIES, sample_specs
    from budgetsearch.profiling.recalibrate import NETWORKS, SEED

    specs = sample_specs(NETWORKS, seed=SEED)
    assert {s.family for s in specs} == set(FAMILIES)
    fit, holdout = fit_set_specs(216, 54, seed=0)  # the shipped profiles' draw
    assert not {s.label for s in specs} & {s.label for s in fit + holdout}


def test_the_parts_add_up_to_the_prediction_and_scale_as_the_profile_does(draw: list) -> None:
    profile = profile_from_dict(MEASURED)
    parts = overhead_parts(profile, draw)
    whole = np.array([n.inventory.predict_latency_ms(profile, kept_channels=n.kept_channels)
                      for n in draw])
    assert parts.sum(1) == pytest.approx(whole)
    assert (parts > 0).all()
    moved = profile.rescaled(overhead=3.0, work=0.5)
    again = np.array([n.inventory.predict_latency_ms(moved, kept_channels=n.kept_channels)
                      for n in draw])
    assert parts @ np.array([3.0, 0.5]) == pytest.approx(again)  # linear in the two factors


def test_the_two_factors_are_recovered_from_networks_timed_now(draw: list) -> None:
    """The 2026-12-03 drift: overhead x2.3, the rest x1.4 (a one-factor answer between)."""
    profile = profile_from_dict(MEASURED)
    today = overhead_parts(profile, draw) @ np.array([2.3, 1.4])
    out = refit_drift(profile, networks=draw, measure=lambda nets: today)
    assert out["overhead_scale"] == pytest.approx(2.3, rel=1e-3)
    assert out["work_scale"] == pytest.approx(1.4, rel=1e-3)
    assert 1.4 < out["scale"] < 2.3 and out["networks"] == 9 and out["residual_pct"] < 0.1


def test_a_draw_that_cannot_tell_the_two_apart_falls_back_to_the_median_ratio() -> None:
    parts = np.array([[1.0, 1.0], [2.0, 2.0], [0.5, 0.5]])  # every network half overhead
    today = parts.sum(1) * np.array([1.9, 2.0, 2.1])
    overhead, work = fit_factors(parts, today)
    assert overhead == work == pytest.approx(2.0)


def test_beyond_the_tolerance_the_check_takes_the_refit_factors(state: Path) -> None:
    profile = profile_from_dict(MEASURED)
    calls: list[str] = []

    def refit(p):  # noqa: ANN001, ANN202
        calls.append(p.name)
        return {"overhead_scale": 2.3, "work_scale": 1.4, "scale": 1.8, "networks": 36,
                "seconds": 9.0, "residual_pct": 6.0}

    lines: list[str] = []
    recorded = _recorded(profile)
    fixed = check_drift(profile, announce=lines.append, refit=refit,
                        measure=lambda names: {n: ms * 1.86 for n, ms in recorded.items()})
    check = fixed.last_check
    assert calls == ["toy"] and check["refit"]["networks"] == 36
    assert (check["overhead_scale"], check["work_scale"]) == pytest.approx((2.3, 1.4))
    assert fixed.op_latency("conv").overhead_ms == pytest.approx(0.01 * 2.3)
    assert fixed.op_latency("conv").ms_per_gflop == pytest.approx(10.0 * 1.4)
    assert len(lines) == 1 and "fitted on 36 networks timed now" in lines[0]
    assert last_check("toy")["refit"]["overhead_scale"] == 2.3  # what later processes reuse
    from budgetsearch.commands.devices import _device_summary

    shown = _device_summary(profile, last_check("toy"))["last_check"]
    assert shown["refit"]["networks"] == 36 and shown["work_scale"] == pytest.approx(1.4)
    # within the tolerance the anchors' one factor stands: no re-fit
    calls.clear()
    check_drift(profile, announce=pytest.fail, refit=refit, save=False,
                measure=lambda names: {n: ms * 1.05 for n, ms in recorded.items()})
    assert calls == []
    # within the tolerance but drifted apart (overhead-bound anchors x1.3, the rest x0.95):
    # an uneven drift, re-fitted
    names = list(recorded)
    uneven = {n: ms * (1.3 if i % 3 == 0 else 0.95) for i, (n, ms) in enumerate(recorded.items())}
    assert len(names) >= 3
    check_drift(profile, announce=lambda line: None, refit=refit, save=False,
                measure=lambda names: uneven)
    assert calls == ["toy"]


def test_a_refit_is_applied_over_a_quieter_earlier_snapshot(state: Path) -> None:
    """Networks timed now outweigh an older quiet second: the re-fit's factors apply, and join
    the history."""
    profile = profile_from_dict(MEASURED)
    assert _check(profile, 0.94)["snapshot_scale"] == pytest.approx(0.94)

    def refit(p):  # noqa: ANN001, ANN202
        return {"overhead_scale": 1.2, "work_scale": 1.09, "scale": 1.21, "networks": 36}

    recorded = _recorded(profile)
    fixed = check_drift(profile, announce=lambda line: None, refit=refit,
                        measure=lambda names: {n: ms * 1.11 for n, ms in recorded.items()})
    check = fixed.last_check
    assert (check["overhead_scale"], check["work_scale"]) == pytest.approx((1.2, 1.09))
    assert len(check["history"]) == 2
    # a later anchors-only check, its anchors within 5% of the re-fit's (x1.11), keeps the
    # re-fit's factors
    later = _check(profile, 1.08)
    assert (later["overhead_scale"], later["work_scale"]) == pytest.approx((1.2, 1.09))
    assert later["recalibrated"] and later["refit_in_force"]  # a measurement, not a snapshot
    lines: list[str] = []
    check_drift(profile, announce=lines.append,
                measure=lambda names: {n: ms * 1.09 for n, ms in recorded.items()})
    assert len(lines) == 1 and "an earlier re-fit on networks, still in force" in lines[0]
    assert "quietest" not in lines[0]
    assert [h.get("refit", False) for h in later["history"]] == [False, True, False]
    assert _check(profile, 2.4)["scale"] == pytest.approx(2.4)  # a new speed: history anew


def test_a_refit_lapses_once_the_anchors_no_longer_run_as_they_did_then(state: Path) -> None:
    """2026-12-03: a re-fit made at 09:25 (anchors x1.452) still applied at 10:12 to a quiet
    machine (anchors x0.981) put 0 % of the foreign networks within ±10 %. A snapshot beyond the
    tolerance of the re-fit's own anchors ends it; the quietest anchors-only snapshot applies."""
    profile = profile_from_dict(MEASURED)
    recorded = _recorded(profile)
    assert _check(profile, 1.03)["snapshot_scale"] == pytest.approx(1.03)
    fixed = check_drift(profile, announce=lambda line: None,
                        refit=lambda p: {"overhead_scale": 1.492, "work_scale": 1.123},
                        measure=lambda names: {n: ms * 1.452 for n, ms in recorded.items()})
    assert fixed.last_check["overhead_scale"] == pytest.approx(1.492)
    # anchors within 5% of the re-fit's x1.452: the machine is as it was, it stands
    assert _check(profile, 1.40)["overhead_scale"] == pytest.approx(1.492)
    quiet = _check(profile, 0.981)
    half = math.sqrt(0.981)  # anchors alone, inside the tolerance: half their drift
    assert (quiet["scale"], quiet["overhead_scale"], quiet["work_scale"]) == pytest.approx(
        (half, half, half), abs=1e-4)
    assert quiet["shrunk"] and not quiet["refit_in_force"]
    assert not any(h.get("refit") for h in quiet["history"])
    # the snapshots before the re-fit lapse with it: the machine has left that state too
    assert [h["scale"] for h in quiet["history"]] == pytest.approx([1.40, 0.981])
    # and a lapsed re-fit does not come back when the anchors later read as they did then
    again = _check(profile, 1.05)
    assert not again["refit_in_force"] and again["overhead_scale"] == pytest.approx(
        math.sqrt(1.05), abs=1e-4)


def test_a_refit_applies_whatever_its_factors(state: Path) -> None:
    """The anchors read x1.15, the networks timed now x1.03 / x0.98: the re-fit's factors apply
    (inside the tolerance, but measured on networks), and go on applying while it stands."""
    profile = profile_from_dict(MEASURED)
    recorded = _recorded(profile)
    fixed = check_drift(profile, announce=lambda line: None,
                        refit=lambda p: {"overhead_scale": 1.03, "work_scale": 0.98},
                        measure=lambda names: {n: ms * 1.15 for n, ms in recorded.items()})
    assert fixed.last_check["recalibrated"]
    assert fixed.op_latency("conv").overhead_ms == pytest.approx(0.01 * 1.03)
    assert fixed.op_latency("conv").ms_per_gflop == pytest.approx(10.0 * 0.98)
    assert _check(profile, 1.12)["recalibrated"]
    # unsaved (no history): this check's own re-fit inside the tolerance applies too
    alone = check_drift(profile, announce=lambda line: None, save=False,
                        refit=lambda p: {"overhead_scale": 1.03, "work_scale": 0.98},
                        measure=lambda names: {n: ms * 1.15 for n, ms in recorded.items()})
    assert alone.last_check["recalibrated"] and "refit_in_force" not in alone.last_check
    assert alone.op_latency("conv").ms_per_gflop == pytest.approx(10.0 * 0.98)


def test_a_refit_lapses_before_the_anchors_move_a_whole_tolerance(state: Path) -> None:
    """2026-12-03: a re-fit made at 14:26 (anchors x0.839) stood at 14:38 and 14:55, the anchors
    reading x0.902 and x0.915 (within 10% of it), while the networks needed x0.956 and x0.947:
    29% and 35% within ±10%, 77% and 69% as recorded. It lapses beyond 5%."""
    from budgetsearch.profiling.anchors import REFIT_LAPSE_PCT

    profile = profile_from_dict(MEASURED)
    recorded = _recorded(profile)
    check_drift(profile, announce=lambda line: None,
                refit=lambda p: {"overhead_scale": 0.828, "work_scale": 0.834},
                measure=lambda names: {n: ms * 0.839 for n, ms in recorded.items()})
    assert REFIT_LAPSE_PCT < 10.0
    assert _check(profile, 0.86)["refit_in_force"]  # 2.5% from it: the same state
    later = check_drift(profile, announce=pytest.fail, measure=lambda names: {
        n: ms * 0.902 for n, ms in recorded.items()})
    assert not later.last_check["refit_in_force"] and later.last_check["shrunk"]
    assert later.op_latency("conv").ms_per_gflop == pytest.approx(10.0 * math.sqrt(0.902),
                                                                  rel=1e-4)


def test_a_lapsed_refit_does_not_bring_back_an_older_quiet_floor() -> None:
    """A re-fit at x1.20 / x1.09 made after a quiet x0.939: a later snapshot at x1.35 (its own
    re-fit failed, or was turned off) must not fall back to x0.939, which would under-price a
    machine that slowed."""
    from budgetsearch.profiling.anchors import smoothed

    history = [{"scale": 0.939, "overhead_scale": 0.939, "work_scale": 0.939},
               {"scale": 1.21, "overhead_scale": 1.20, "work_scale": 1.09, "refit": True}]
    out = smoothed({"scale": 1.35, "overhead_scale": 1.35, "work_scale": 1.35}, history)
    assert (out["overhead_scale"], out["work_scale"]) == pytest.approx((1.35, 1.35))


@pytest.mark.parametrize("bad", [{"overhead_scale": 2.0}, {"overhead_scale": None,
                                                             "work_scale": 1.0},
                                 {"overhead_scale": 0.0, "work_scale": 1.0},
                                 {"overhead_scale": float("nan"), "work_scale": 1.0},
                                 {"overhead_scale": float("inf"), "work_scale": 1.0}])
def test_a_refit_without_usable_factors_leaves_the_anchors_factor(state: Path,
                                                                  bad: dict) -> None:
    profile = profile_from_dict(MEASURED)
    recorded = _recorded(profile)
    lines: list[str] = []
    fixed = check_drift(profile, announce=lines.append, refit=lambda p: bad,
                        measure=lambda names: {n: ms * 2.0 for n, ms in recorded.items()})
    assert fixed.last_check["work_scale"] == pytest.approx(2.0)
    assert "failed" in fixed.last_check["refit"] and "by the anchors alone" in lines[0]
    import json

    json.loads((state / "drift-toy.json").read_text())  # strict JSON: no NaN written


def test_one_refit_at_a_time_on_a_machine(state: Path) -> None:
    """A search's worker processes must not each time 36 networks against the others' load."""
    import time

    profile = profile_from_dict(MEASURED)
    recorded = _recorded(profile)
    (state / "refit-toy.lock").write_text("12345")  # another process, re-fitting now
    fixed = check_drift(profile, announce=lambda line: None, save=False,
                        refit=lambda p: pytest.fail("ran"),
                        measure=lambda names: {n: ms * 2.0 for n, ms in recorded.items()})
    assert "another process" in fixed.last_check["refit"]["failed"]
    old = time.time() - 600  # a lock its process left behind long ago is stale
    import os

    os.utime(state / "refit-toy.lock", (old, old))
    fixed = check_drift(profile, announce=lambda line: None, save=False,
                        refit=lambda p: {"overhead_scale": 2.2, "work_scale": 1.9},
                        measure=lambda names: {n: ms * 2.0 for n, ms in recorded.items()})
    assert fixed.last_check["work_scale"] == pytest.approx(1.9)
    assert not (state / "refit-toy.lock").exists()


def test_a_failed_refit_leaves_the_anchors_factor_and_says_why(state: Path) -> None:
    profile = profile_from_dict(MEASURED)
    recorded = _recorded(profile)

    def broken(p):  # noqa: ANN001, ANN202
        raise RuntimeError("onnx export failed\nmore")

    lines: list[str] = []
    fixed = check_drift(profile, announce=lines.append, refit=broken, save=False,
                        measure=lambda names: {n: ms * 2.0 for n, ms in recorded.items()})
    assert fixed.last_check["scale"] == pytest.approx(2.0)
    assert fixed.last_check["work_scale"] == pytest.approx(2.0)
    assert "re-fit on networks failed: onnx export failed" in lines[0]


def test_fake_anchor_times_do_not_start_a_real_refit(state: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A check on faked anchor times (tests, the benchmark's simulations) times no networks
    unless it is handed a re-fit; BUDGETSEARCH_DRIFT_REFIT=0 turns the real one off."""
    from budgetsearch.profiling import anchors, recalibrate

    monkeypatch.setattr(recalibrate, "refit_drift", lambda *a, **k: pytest.fail("timed"))
    assert _check(profile_from_dict(MEASURED), 2.0)["scale"] == pytest.approx(2.0)
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_REFIT", "0")
    assert not anchors.refit_enabled()
    # with the anchors timed here (measure_anchors faked below the check) and the switch off,
    # a drift of x2 rescales by the anchors alone
    monkeypatch.setattr(anchors, "measure_anchors", lambda names, **k: {
        n: ms * 2.0 for n, ms in _recorded(profile_from_dict(MEASURED)).items()})
    off = check_drift(profile_from_dict(MEASURED), announce=lambda line: None, save=False)
    assert off.last_check["scale"] == pytest.approx(2.0) and "refit" not in off.last_check
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_REFIT", "yes")
    assert anchors.refit_enabled()


def test_the_draw_is_timed_over_as_many_rounds_as_the_profile_was(
        draw: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """A network's time is its minimum over rounds: a re-fit over fewer rounds than the profile's
    reads slower (x1.00-x1.38 for 3 against 8, experiments/refit_rounds.py)."""
    from dataclasses import replace

    from budgetsearch.profiling import recalibrate, timing

    seen: list[int] = []

    def fake(runners, *, rounds, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.append(rounds)
        return np.ones((len(runners), rounds))

    monkeypatch.setattr(timing, "time_rounds", fake)
    profile = profile_from_dict(MEASURED)
    recalibrate.time_draw(replace(profile, anchors={**profile.anchors, "rounds": 6}), draw[:2])
    recalibrate.time_draw(replace(profile, anchors={"networks": []}), draw[:2])
    recalibrate.time_draw(replace(profile, anchors={**profile.anchors, "rounds": "x"}), draw[:2])
    assert seen == [6, recalibrate.ROUNDS, recalibrate.ROUNDS] and recalibrate.ROUNDS == 8
    assert recalibrate.refit_drift(profile, networks=draw)["rounds"] == recalibrate.ROUNDS


def test_a_draw_timed_in_one_process_is_brought_to_a_process_of_its_own(
        draw: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile prices a network in a process of its own; the draw runs its networks in one
    process, which slows each of them. The anchors, timed inside the draw's rounds, say by how
    much against their times alone, and the draw's times are divided by it (2026-12-04 22:01:
    without this the check read x0.898 and the re-fit moved the prices up x1.04 / x1.11)."""
    from dataclasses import replace
    from types import SimpleNamespace

    from budgetsearch.profiling import timing
    from budgetsearch.profiling.anchors import build_anchor

    profile = profile_from_dict(MEASURED)
    truth = overhead_parts(profile, draw) @ np.array([0.9, 0.9])  # a machine x0.9 today
    model, x = build_anchor("conv-stack-32")
    alone = [SimpleNamespace(label="conv-stack-32", model=model, example_input=x, alone_ms=2.0)]
    seen: list[int] = []

    def one_process(runners, *, rounds, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.append(len(runners))  # the draw's networks slowed x1.25, the anchor too
        times = [*(truth * 1.25), 2.0 * 1.25][:len(runners)]
        return np.tile(np.array(times)[:, None], (1, rounds))

    monkeypatch.setattr(timing, "time_rounds", one_process)
    own = replace(profile, provenance={**profile.provenance, "process_state": {"factor": 0.8}})
    out = refit_drift(own, networks=draw, alone=alone)
    assert seen[-1] == len(draw) + 1 and out["process_effect"] == pytest.approx(1.25)
    assert out["overhead_scale"] == pytest.approx(0.9, rel=1e-3)
    assert out["work_scale"] == pytest.approx(0.9, rel=1e-3)
    # a profile priced in its fit run's process: the draw is as it was timed
    out = refit_drift(profile, networks=draw, alone=alone)
    assert seen[-1] == len(draw) and "process_effect" not in out
    assert out["scale"] == pytest.approx(0.9 * 1.25, rel=1e-3)
