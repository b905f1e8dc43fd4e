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
from budgetsearch.profiling.small_gemm import measure_small_gemm

TABLE = (0.02, 0.3, 0.25, 0.2)  # ms per MB at output areas 1..4


def _profile(small_gemm: SmallGemm | None = SmallGemm(TABLE, 1.5)):  # noqa: ANN202, B008
    """A two-kernel eager profile with plain conv prices, with or without ``small_gemm``."""
    eager = load_profile("cpu-2core-x86", check=False)
    ops = {"conv": OpLatency(ms_per_gflop=10.0, overhead_ms=0.01, ms_per_weight_mb=0.0),
           "onednn_conv": OpLatency(ms_per_gflop=30.0, overhead_ms=0.2, ms_per_weight_mb=0.0)}
    return replace(eager, ops=ops, conv_dispatch="pytorch", provenance={"threads": 1},
                   channel_block=1, small_gemm=small_gemm)


def test_the_table_prices_what_it_holds_beyond_the_gemms_flops() -> None:
    """Oracle: numpy's least-squares line through the table's upper half (the GEMM's FLOP
    rate): an entry less the line's slope × area, and past the table the line's intercept."""
    values = (0.05, 0.4, 0.4, 0.4, 0.3, 0.32, 0.34, 0.36)
    table = SmallGemm(values, scale=2.0)
    slope, intercept = np.polyfit([5, 6, 7, 8], values[4:], 1)
    for area in range(1, 9):
        assert table.ms_per_mb(area) == pytest.approx(
            2.0 * max(0.0, values[area - 1] - slope * area))
    assert table.ms_per_mb(9) == table.ms_per_mb(4096) == pytest.approx(2.0 * intercept)
    assert table.ms_per_mb(0) == 0.0
    assert SmallGemm(values, scale=0.0).ms_per_mb(2) == 0.0
    # no growth over the upper half: entries as they are, and their mean beyond
    flat = SmallGemm(TABLE, scale=2.0)
    assert [flat.ms_per_mb(a) for a in (1, 2, 3, 4)] == pytest.approx([0.04, 0.6, 0.5, 0.4])
    assert flat.ms_per_mb(8) == pytest.approx(2.0 * (0.25 + 0.2) / 2)


@pytest.mark.parametrize("bad", [(), (0.1, -0.2), (0.1, math.nan), (True, 0.1), (0.1, "x"),
                                 (0.1, 1e9), (0.1,) * 5000, "0.1"])
def test_a_table_that_is_not_numbers_in_range_is_refused(bad: tuple) -> None:
    with pytest.raises(ValueError, match="measured_ms_per_mb must hold 1 to 4096 numbers") as e:
        SmallGemm(bad)
    assert len(str(e.value)) < 200  # one line, however long the table


@pytest.mark.parametrize("scale", [-1.0, math.inf, 1e308, True])
def test_a_bad_scale_is_refused(scale: float) -> None:
    with pytest.raises(ValueError, match="small_gemm.scale must be a number from 0 to 1000"):
        SmallGemm(TABLE, scale)


@pytest.mark.parametrize(("area", "batch", "expected"), [
    (1, 1, 0.02), (2, 1, 0.3), (4, 1, 0.2), (8, 1, 0.225), (2, 3, 0.9)])
def test_a_gemm_path_conv_pays_the_table_for_its_weights(area: int, batch: int,
                                                         expected: float) -> None:
    """Oracle: the price with the table minus without it is table[area] × scale × weight MB,
    once per image (PyTorch's slow_conv2d runs one GEMM per image of a batch under 16)."""
    conv = nn.Sequential(nn.Conv2d(64, 32, 1, bias=False))  # 1×1, one thread: the GEMM path
    x = torch.randn(batch, 64, 1, area)
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
    """Oracle: times that a known profile predicts (a conv α, a conv β and the table at a known
    factor) for 1×1 convs of several widths on 1×N maps; the fit's design columns are that
    predictor term by term, and a fit on those three columns recovers the three values."""
    from types import SimpleNamespace

    table = SmallGemm((0.02, 0.3, 0.35, 0.25, 0.3, 0.28, 0.31, 0.29), 1.0, "test")
    features = features_for("pytorch-eager", small_gemm=True)
    assert features[-1] == SMALL_GEMM_FEATURE
    # the table takes the small areas' place; the larger areas keep their FLOP terms
    assert ("conv_area2_4", "ms_per_gflop") not in features
    assert ("conv_area257", "ms_per_gflop") in features and len(AREA_FEATURES) == 6
    assert features_for("onnxruntime", small_gemm=True) == features_for("onnxruntime")
    true = np.zeros(len(features) + 1)
    columns = [features.index(("conv", "ms_per_gflop")), features.index(("conv", "overhead_ms")),
               len(features) - 1]
    true[columns] = [12.0, 0.004, 0.7]
    truth = profile_from_coefficients("t", true, provenance={}, description="", channel_block=16,
                                      small_gemm=table)
    assert truth.small_gemm.scale == pytest.approx(0.7)
    networks = []
    for width in (64, 128, 256):
        for area in (1, 2, 3, 5, 8, 12):
            conv = nn.Sequential(nn.Conv2d(width, width, 1, bias=False))
            networks.append(SimpleNamespace(inventory=layer_inventory(
                conv, torch.randn(1, width, 1, area)), kept_channels={}))
    design = np.stack([network_features(n, 16, "pytorch-eager", 1, table) for n in networks])
    times = np.array([n.inventory.predict_latency_ms(truth) for n in networks])
    assert design @ true == pytest.approx(times)  # the columns are the predictor
    fitted = fit_coefficients(design[:, columns], times)
    assert fitted == pytest.approx([12.0, 0.004, 0.7], rel=1e-3)


def test_measuring_the_table_gives_one_non_negative_price_per_area(tmp_path: Path) -> None:
    table = measure_small_gemm(areas=3, rounds=1, inner=1)
    assert len(table.measured_ms_per_mb) == 3 and table.scale == 1.0
    # on two threads too (oneDNN kept out, so every entry is PyTorch's GEMM path)
    assert len(measure_small_gemm(areas=2, rounds=1, inner=1, threads=2).measured_ms_per_mb) == 2
    assert all(v >= 0 for v in table.measured_ms_per_mb) and "N = 1..3" in table.method
    with pytest.raises(ValueError, match="areas, rounds, inner and threads must be ≥ 1"):
        measure_small_gemm(areas=0)
    profile = replace(_profile(), small_gemm=table)
    save_profile(profile, tmp_path / "p.yaml")
    assert load_profile(tmp_path / "p.yaml", check=False).small_gemm == table


def test_the_table_is_work_to_the_drift_check_and_part_of_what_it_checks() -> None:
    """An anchor's overhead share counts only per-call overheads, not the table (which the
    check's work factor rescales); a profile whose table changes is another profile."""
    from budgetsearch.profiling.anchors import fingerprint
    from budgetsearch.profiling.fit import overhead_share

    anchor = "plain#1/3x32x32"
    with_table = _profile()
    without = _profile(None)
    assert overhead_share(anchor, with_table) < overhead_share(anchor, without)
    model_ms = {p: layer_inventory(*_built(anchor)).predict_latency_ms(p)
                for p in (with_table, without)}
    # the overhead part is the same time; only the total grows by the table's share
    assert overhead_share(anchor, with_table) * model_ms[with_table] == pytest.approx(
        overhead_share(anchor, without) * model_ms[without])
    assert fingerprint(with_table) != fingerprint(replace(with_table, small_gemm=SmallGemm(
        TABLE, 1.6)))


def _built(label: str):  # noqa: ANN202
    from budgetsearch.profiling.networks import build_labelled

    return build_labelled(label)
