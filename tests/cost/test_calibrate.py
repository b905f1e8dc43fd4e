"""Calibration on the user's own network: the profile scaled to price it as it runs here."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

import budgetsearch
from budgetsearch.cost import layer_inventory, load_profile, profile_from_dict
from budgetsearch.profiling import anchors, timing
from budgetsearch.profiling.calibrate import (
    CALIBRATION_ROUNDS,
    calibrate_to_network,
    calibration_refusal,
)

X = torch.zeros(1, 3, 16, 16)


def _here() -> dict:
    """A measured eager profile of this machine (its CPU and flags), one thread."""
    return {
        "name": "toy-here", "source": "measured",
        "provenance": {"tool": "test", "threads": 1, "runtime": "pytorch-eager",
                       "cpu": anchors.cpu_name(), "cpu_flags": anchors.cpu_flags()},
        "latency_model": {
            "combine": "sum", "bytes_per_element": 4, "network_overhead_ms": 0.05,
            "ops": {"conv": {"ms_per_gflop": 12.0, "ms_per_mb": 0.4, "overhead_ms": 0.01,
                             "ms_per_weight_mb": 0.2},
                    "linear": {"ms_per_gflop": 8.0, "ms_per_mb": 0.1, "overhead_ms": 0.006},
                    "activation": {"ms_per_gflop": 0.0, "ms_per_mb": 0.3,
                                   "overhead_ms": 0.004}}},
        "sparse_speedup": 0.0, "predictor_error": None,
    }


def _net(width: int = 16) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)).eval()


def _fake_timer(monkeypatch: pytest.MonkeyPatch, ms: float) -> list[int]:
    """The profiles' timer made to read ``ms`` in every round of every network: the rounds of
    each call."""
    calls: list[int] = []

    def fake(runners, *, rounds: int = 5, **kwargs):  # noqa: ANN001, ANN003, ANN202
        calls.append(rounds)
        return np.full((len(runners), rounds), ms)

    monkeypatch.setattr(timing, "time_rounds", fake)
    return calls


def test_the_calibrated_profile_prices_the_network_as_measured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Oracle: (measured / priced) ** share scales every price alike: with the whole gap the
    network is priced at exactly its measured time, by default at the geometric mean of the
    two, and a pruned relative at the factor × its old price."""
    profile = profile_from_dict(_here())
    net, small = _net(16), _net(6)
    _fake_timer(monkeypatch, 0.5)
    before = layer_inventory(net, X).predict_latency_ms(profile)
    whole = calibrate_to_network(profile, net, X, share=1.0)
    assert layer_inventory(net, X).predict_latency_ms(whole.profile) == pytest.approx(0.5)
    assert "(the whole gap)" in whole.summary()
    calibration = calibrate_to_network(profile, net, X, name="my net")
    assert calibration.priced_ms == pytest.approx(before) and calibration.share == 0.5
    assert calibration.gap == pytest.approx(0.5 / before)
    assert calibration.factor == pytest.approx((0.5 / before) ** 0.5)
    after = calibration.profile
    assert layer_inventory(net, X).predict_latency_ms(after) == pytest.approx(
        (0.5 * before) ** 0.5)
    assert layer_inventory(small, X).predict_latency_ms(after) == pytest.approx(
        layer_inventory(small, X).predict_latency_ms(profile) * calibration.factor)
    record = after.provenance["calibrated_on"]
    assert record["network"] == "my net" and record["factor"] == pytest.approx(
        calibration.factor, rel=1e-3)
    assert after.name == profile.name and "calibrated_on" not in profile.provenance
    assert "my net" in calibration.summary() and f"x{calibration.factor:.3f} (half the gap" in (
        calibration.summary())


def test_a_slow_network_is_timed_over_fewer_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A network slower than the window gets one round (3 warm-up and 5 timed calls of 30 ms
    against a 0.1 s window), a fast one every round; the real timer, a sleeping runner."""
    monkeypatch.setattr(timing, "make_runner", lambda *a, **k: lambda: time.sleep(0.03))
    calibration = calibrate_to_network(profile_from_dict(_here()), _net(), X, seconds=0.1)
    assert calibration.rounds == 1 and calibration.measured_ms >= 30
    monkeypatch.setattr(timing, "make_runner", lambda *a, **k: lambda: None)
    calibration = calibrate_to_network(profile_from_dict(_here()), _net(), X)
    assert calibration.rounds == CALIBRATION_ROUNDS


def test_calibrating_times_the_network_for_real() -> None:
    """The profiles' own timer, on this machine: a positive time, priced exactly after."""
    calibration = calibrate_to_network(profile_from_dict(_here()), _net(), X, share=1.0)
    assert calibration.measured_ms > 0 and calibration.seconds < 30
    assert layer_inventory(_net(), X).predict_latency_ms(calibration.profile) == pytest.approx(
        calibration.measured_ms, rel=1e-6)


def test_profiles_of_another_device_are_refused() -> None:
    """A datasheet profile and another CPU's stand for a device this machine does not run:
    timing a network here says nothing of them."""
    assert "datasheet" in calibration_refusal(load_profile("jetson-nano"))
    other = profile_from_dict({**_here(), "provenance": {**_here()["provenance"],
                                                         "cpu": "Some Other CPU"}})
    assert "not on this machine" in calibration_refusal(other)
    with pytest.raises(ValueError, match="cannot calibrate on a network here: jetson-nano"):
        calibrate_to_network(load_profile("jetson-nano"), _net(), X)
    with pytest.raises(ValueError, match="rounds must be"):
        calibrate_to_network(profile_from_dict(_here()), _net(), X, rounds=0)
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="share must be a number in"):
            calibrate_to_network(profile_from_dict(_here()), _net(), X, share=bad)
    with pytest.raises(ValueError, match="rounds must be"):
        calibrate_to_network(profile_from_dict(_here()), _net(), X, rounds=True)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="seconds must be a positive number"):
            calibrate_to_network(profile_from_dict(_here()), _net(), X, seconds=bad)


def test_the_public_api_calibrates_and_restores_training_mode(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_timer(monkeypatch, 0.25)
    net = _net().train()
    profile = budgetsearch.calibrate(net, X, device=profile_from_dict(_here()), share=1.0)
    assert net.training
    assert budgetsearch.price(net, X, device=profile).latency_ms == pytest.approx(0.25)
    before = budgetsearch.price(net, X, device=profile_from_dict(_here())).latency_ms
    half = budgetsearch.calibrate(net, X, device=profile_from_dict(_here()))
    assert budgetsearch.price(net, X, device=half).latency_ms == pytest.approx(
        (0.25 * before) ** 0.5)
    with pytest.raises(ValueError, match="datasheet"):
        budgetsearch.calibrate(net, X, device="jetson-nano")
