"""The small-GEMM table: what a dense conv on PyTorch eager's GEMM path pays per MB of weights
by its output area (MKL repacks the weights each call once the output has 2 positions)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from budgetsearch.cost import (
    OpLatency,
    SmallGemm,
    layer_inventory,
    load_profile,
    profile_from_dict,
    save_profile,
)
from budgetsearch.profiling.fit import (
    AREA_FEATURES,
    SMALL_GEMM_FEATURE,
    features_for,
    fit_coefficients,
    network_features,
    profile_from_coefficients,
)
from budgetsearch.profiling.networks import NetworkSpec, build_spec
from budgetsearch.profiling.small_gemm import measure_small_gemm

TABLE = (0.02, 0.3, 0.25, 0.2)  # ms per MB at output areas 1..4


def _profile(small_gemm: SmallGemm | None = SmallGemm(TABLE, 1.5)):  # noqa: ANN202, B008
    """A two-kernel eager profile with plain conv prices, with or without ``small_gemm``."""
    eager = load_profile("cpu-2core-x86", check=False)
    ops = {"conv": OpLatency(ms_per_gflop=10.0, overhead_ms=0.01, ms_per_weight_mb=0.0),
           "onednn_conv": OpLatency(ms_per_gflop=30.0, overhead_ms=0.2, ms_per_weight_mb=0.0)}
    return replace(eager, ops=ops, conv_dispatch="pytorch", provenance={"threads": 1},
                   channel_block=1, small_gemm=small_gemm)


def test_the_table_is_looked_up_by_area_and_grows_with_it_beyond() -> None:
    table = SmallGemm(TABLE, scale=2.0)
    assert [table.ms_per_mb(a) for a in (1, 2, 3, 4)] == pytest.approx([0.04, 0.6, 0.5, 0.4])
    assert table.ms_per_mb(8) == pytest.approx(0.2 * 2 * 2.0)  # the last entry × 8/4, scaled
    assert table.ms_per_mb(0) == 0.0
    assert SmallGemm(TABLE, scale=0.0).ms_per_mb(2) == 0.0


@pytest.mark.parametrize("bad", [(), (0.1, -0.2), (0.1, math.nan), (True, 0.1), (0.1, "x")])
def test_a_table_that_is_not_non_negative_numbers_is_refused(bad: tuple) -> None:
    with pytest.raises(ValueError, match="measured_ms_per_mb must hold 1 to 4096 non-negative"):
        SmallGemm(bad)


@pytest.mark.parametrize("scale", [-1.0, math.inf])
def test_a_bad_scale_is_refused(scale: float) -> None:
    with pytest.raises(ValueError, match="small_gemm.scale must be a non-negative number"):
        SmallGemm(TABLE, scale)


@pytest.mark.parametrize(("area", "expected"), [(1, 0.02), (2, 0.3), (4, 0.2), (8, 0.4)])
def test_a_gemm_path_conv_pays_the_table_for_its_weights(area: int, expected: float) -> None:
    """Oracle: the price with the table minus without it is table[area] × scale × weight MB."""
    conv = nn.Sequential(nn.Conv2d(64, 32, 1, bias=False))  # 1×1, one thread: the GEMM path
    x = torch.randn(1, 64, 1, area)
    inventory = layer_inventory(conv, x)
    with_table = inventory.predict_latency_ms(_profile())
    without = inventory.predict_latency_ms(_profile(None))
    megabytes = 64 * 32 * 4 / 1e6
    assert with_table - without == pytest.approx(expected * 1.5 * megabytes)
    # pruning the conv to half its inputs halves the weights that pay it
    pruned = {"0": (32, 32)}
    gain = (inventory.predict_latency_ms(_profile(), kept_channels=pruned)
            - inventory.predict_latency_ms(_profile(None), kept_channels=pruned))
    assert gain == pytest.approx(expected * 1.5 * megabytes / 2)


@pytest.mark.parametrize("conv", [
    nn.Conv2d(8, 8, 7, padding=3, bias=False),  # a 7×7 runs on oneDNN at any width
    nn.ConvTranspose2d(8, 8, 1, bias=False),  # another GEMM, not timed for the table
    nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # depthwise: oneDNN's own kernel
])
def test_convs_off_the_gemm_path_do_not_pay_the_table(conv: nn.Module) -> None:
    inventory = layer_inventory(conv, torch.randn(1, 8, 1, 3))
    assert inventory.predict_latency_ms(_profile()) == pytest.approx(
        inventory.predict_latency_ms(_profile(None)))


def test_expected_cost_prices_the_table_as_price_does() -> None:
    """The differentiable cost BAR trains against equals ``price`` at the same kept channels,
    and its gradient sees the table's weight price."""
    model = nn.Sequential(nn.Conv2d(16, 64, 1), nn.ReLU(), nn.Conv2d(64, 64, 1))
    inventory = layer_inventory(model, torch.randn(1, 16, 2, 2))
    profile = _profile()
    kept = torch.tensor(40.0, dtype=torch.float64, requires_grad=True)
    cost = inventory.expected_cost("latency", profile=profile,
                                   kept_channels={"0": (16.0, kept), "2": (kept, 64.0)})
    assert cost.item() == pytest.approx(inventory.predict_latency_ms(
        profile, kept_channels={"0": (16, 40), "2": (40, 64)}))
    cost.backward()
    base = layer_inventory(model, torch.randn(1, 16, 2, 2)).expected_cost(
        "latency", profile=_profile(None),
        kept_channels={"0": (16.0, torch.tensor(40.0, dtype=torch.float64)), "2": (40.0, 64.0)})
    assert kept.grad is not None and float(kept.grad) > 0 and cost.item() > base.item()


def test_the_table_round_trips_is_checked_and_drifts_with_the_work() -> None:
    profile = _profile()
    again = profile_from_dict(profile.as_yaml_dict())
    assert again.small_gemm == profile.small_gemm
    assert profile.rescaled(overhead=3.0, work=0.5).small_gemm.scale == pytest.approx(0.75)
    data = profile.as_yaml_dict()
    data["latency_model"]["small_gemm"]["measured_ms_per_mb"] = [0.1, -1]
    with pytest.raises(ValueError, match="<profile>: small_gemm.measured_ms_per_mb must hold"):
        profile_from_dict(data)
    data = profile.as_yaml_dict()
    data["latency_model"]["small_gemm"]["extra"] = 1
    with pytest.raises(ValueError, match="latency_model.small_gemm.extra"):
        profile_from_dict(data)
    data = profile.as_yaml_dict()
    del data["latency_model"]["conv_dispatch"]
    with pytest.raises(ValueError, match="it needs 'latency_model.conv_dispatch: pytorch'"):
        profile_from_dict(data)
    # in code, a profile that does not tell PyTorch's two kernels apart leaves the table out
    inventory = layer_inventory(nn.Sequential(nn.Conv2d(8, 8, 1)), torch.randn(1, 8, 1, 3))
    assert inventory.predict_latency_ms(replace(profile, conv_dispatch="")) == pytest.approx(
        inventory.predict_latency_ms(replace(profile, conv_dispatch="", small_gemm=None)))


def test_the_eager_fit_scales_the_table_and_recovers_it() -> None:
    """Oracle: times that are a known profile's predictions, table included; the fit's design
    columns are the predictor term by term and the fit recovers the table's factor's effect."""
    table = SmallGemm(tuple(np.linspace(0.05, 0.4, 16)), 1.0, "test")
    features = features_for("pytorch-eager", small_gemm=True)
    assert features[-1] == SMALL_GEMM_FEATURE
    # the table takes the small areas' place; the larger areas keep their FLOP terms
    assert ("conv_area2_4", "ms_per_gflop") not in features
    assert ("conv_area257", "ms_per_gflop") in features and len(AREA_FEATURES) == 6
    rng = np.random.default_rng(1)
    true = rng.uniform(0.01, 1.0, len(features) + 1)
    truth = profile_from_coefficients("t", true, provenance={}, description="", channel_block=16,
                                      small_gemm=table)
    assert truth.small_gemm.scale == pytest.approx(true[-2])
    networks = [build_spec(NetworkSpec(f, (1, 3, 32, 32), s)) for s in (1, 2)
                for f in ("plain", "residual", "bottleneck", "wrn")]
    design = np.stack([network_features(n, 16, "pytorch-eager", 1, table) for n in networks])
    times = np.array([n.inventory.predict_latency_ms(truth, kept_channels=n.kept_channels)
                      for n in networks])
    assert design @ true == pytest.approx(times)
    assert design[:, -2].max() > 0  # the fit set's small maps pay the table
    fitted = fit_coefficients(design, times)
    assert design @ fitted == pytest.approx(times, rel=1e-4)
    # onnxruntime has no such table: its fit ignores one
    assert features_for("onnxruntime", small_gemm=True) == features_for("onnxruntime")


def test_measuring_the_table_gives_one_non_negative_price_per_area(tmp_path: Path) -> None:
    table = measure_small_gemm(areas=3, rounds=1, inner=1)
    assert len(table.measured_ms_per_mb) == 3 and table.scale == 1.0
    assert all(v >= 0 for v in table.measured_ms_per_mb) and "N = 1..3" in table.method
    with pytest.raises(ValueError, match="areas, rounds, inner and threads must be ≥ 1"):
        measure_small_gemm(areas=0)
    profile = replace(_profile(), small_gemm=table)
    save_profile(profile, tmp_path / "p.yaml")
    assert load_profile(tmp_path / "p.yaml", check=False).small_gemm == table
