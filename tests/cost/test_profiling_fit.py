"""Profiling helpers: the fit recovers known coefficients; variants price like fvcore counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from budgetsearch.cost.measure import (
    FEATURES,
    build_network,
    fit_coefficients,
    network_features,
    profile_from_coefficients,
    sample_networks,
    summarize_errors,
    time_networks,
)


def test_fit_recovers_coefficients_of_the_model_it_predicts() -> None:
    cache: dict = {}
    networks = [build_network(spec, cache) for spec in sample_networks(14, seed=3)
                if spec.model in ("wrn-10-1", "wrn-16-1", "resnet-20")]
    assert len(networks) >= 3
    true = np.array([20.0, 0.3, 0.01, 0.5, 0.04, 0.05])
    assert len(true) == len(FEATURES) + 1
    profile = profile_from_coefficients("t", true, provenance={}, description="")
    features = np.stack([network_features(n) for n in networks])
    times = np.array([n.inventory.predict_latency_ms(profile, kept_channels=n.kept_channels)
                      for n in networks])
    assert features @ true == pytest.approx(times)  # the features are the predictor, term by term
    fitted = fit_coefficients(features, times)
    assert features @ fitted == pytest.approx(times, rel=1e-6)


def test_pruned_variant_is_physically_smaller() -> None:
    spec = next(s for s in sample_networks(6, seed=1) if s.kept_fraction is not None)
    net = build_network(spec, {})
    assert net.kept_channels
    params = sum(p.numel() for p in net.model.parameters())
    assert net.inventory.price(kept_channels=net.kept_channels).params == params


def test_time_networks_returns_one_positive_median_per_network() -> None:
    model = torch.nn.Conv2d(1, 4, 3)
    times = time_networks([(model, torch.zeros(1, 1, 8, 8))] * 2, rounds=2, inner=2, warmup=1)
    assert times.shape == (2,) and (times > 0).all()


def test_summarize_errors() -> None:
    error = summarize_errors(np.array([1.0, -2.0, 12.0, 5.0]))
    assert error.networks == 4 and error.within_10pct == 0.75 and error.max_abs_pct == 12.0
