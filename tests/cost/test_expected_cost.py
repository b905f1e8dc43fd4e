"""Differentiable expected cost: equals price() at hard counts; gradients match finite diffs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from budgetsearch.cost import load_profile

BLOCK = ("layer2.0.conv1", "layer2.0.bn2", "layer2.0.conv2")


def _block_channels(k: torch.Tensor | float) -> dict:
    return {BLOCK[0]: (32.0, k), BLOCK[1]: (k, k), BLOCK[2]: (k, 64.0)}


@pytest.mark.parametrize("metric", ["params", "flops", "activation_volume", "latency"])
def test_expected_cost_at_hard_counts_equals_price(wrn16_2, metric: str) -> None:  # noqa: ANN001
    _, inv = wrn16_2
    profile = load_profile("jetson-orin-nano")
    kept = {**_block_channels(20.0), "fc": (64.0, 10.0)}
    densities = {"layer3.1.conv1": 0.3}
    cost = inv.price(kept_channels=kept, densities=densities, profile=profile).as_dict()
    value = inv.expected_cost(metric, kept_channels=kept, densities=densities, profile=profile)
    key = "latency_ms" if metric == "latency" else metric
    assert float(value) == pytest.approx(cost[key], rel=1e-9)


@pytest.mark.parametrize("metric", ["params", "flops", "activation_volume", "latency"])
def test_gradients_match_finite_differences(wrn16_2, metric: str) -> None:  # noqa: ANN001
    _, inv = wrn16_2
    profile = replace(load_profile("jetson-orin-nano"), sparse_speedup=0.5)

    def cost(k_in: torch.Tensor, k_mid: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
        kept = {**_block_channels(k_mid), "layer1.0.conv1": (k_in, 32.0)}
        return inv.expected_cost(metric, kept_channels=kept,
                                 densities={"layer3.0.conv1": density}, profile=profile)

    args = (torch.tensor(9.3, dtype=torch.float64, requires_grad=True),
            torch.tensor(17.6, dtype=torch.float64, requires_grad=True),
            torch.tensor(0.4, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(cost, args, eps=1e-4, atol=1e-6, rtol=1e-5)


def test_product_rule_for_independent_gates(wrn16_2) -> None:  # noqa: ANN001
    _, inv = wrn16_2
    k_in = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    k_out = torch.tensor(20.0, dtype=torch.float64, requires_grad=True)
    flops = inv.expected_cost("flops", kept_channels={"layer2.0.conv2": (k_in, k_out)},
                              layers=["layer2.0.conv2"])
    flops.backward()
    per_pair = inv["layer2.0.conv2"].flops / (64 * 64)
    assert float(flops.detach()) == pytest.approx(per_pair * 200)
    assert float(k_in.grad) == pytest.approx(per_pair * 20)
    assert float(k_out.grad) == pytest.approx(per_pair * 10)


def test_keep_probability_vectors_are_summed(wrn16_2) -> None:  # noqa: ANN001
    _, inv = wrn16_2
    probs = torch.full((64,), 0.5, requires_grad=True)
    volume = inv.expected_cost("activation_volume", kept_channels={"layer2.0.conv1": (32.0, probs)},
                               layers=["layer2.0.conv1"])
    assert float(volume) == pytest.approx(32 * 14 * 14)
    volume.backward()
    assert torch.allclose(probs.grad, torch.full((64,), 14.0 * 14.0))


def test_unstructured_sparsity_lowers_latency_only_with_declared_speedup(wrn16_2) -> None:  # noqa: ANN001
    _, inv = wrn16_2
    dense_only = load_profile("jetson-orin-nano")
    assert not dense_only.supports_sparse_speedup
    sparse_capable = replace(dense_only, sparse_speedup=0.6)
    assert sparse_capable.supports_sparse_speedup
    densities = {name: 0.1 for name in inv.names("conv")}
    for profile, lowers in ((dense_only, False), (sparse_capable, True)):
        dense = inv.price(profile=profile).latency_ms
        sparse = inv.price(densities=densities, profile=profile).latency_ms
        assert (sparse < dense) is lowers
        assert sparse <= dense
    # FLOPs still count dense FLOPs × density (erf-loss paper, section 3.1)
    assert inv.price(densities=densities).flops < inv.total_flops


def test_expected_cost_rejects_bad_input(wrn16_2) -> None:  # noqa: ANN001
    _, inv = wrn16_2
    with pytest.raises(ValueError, match="metric must be one of"):
        inv.expected_cost("watts")
    with pytest.raises(ValueError, match="needs a device profile"):
        inv.expected_cost("latency")
    with pytest.raises(ValueError, match="'nope'"):
        inv.expected_cost("flops", layers=["nope"])


def test_latency_fit_is_secant_through_full_layer(wrn16_2) -> None:  # noqa: ANN001
    _, inv = wrn16_2
    profile = load_profile("jetson-nano")
    times = inv.layer_latency_ms(profile)
    for name, (alpha, beta) in inv.latency_fit(profile).items():
        assert alpha >= 0 and beta >= 0
        assert alpha * inv[name].flops + beta == pytest.approx(times[name])


def test_layer_latency_at_kept_channels_adds_up_to_the_price(wrn16_2) -> None:  # noqa: ANN001
    """Oracle: price()'s latency of a pruned configuration on a profile that prices layers only
    (a datasheet roofline): its per-layer times at the kept channels plus the network overhead
    are that latency; the pruned layer takes less time than in full."""
    _, inv = wrn16_2
    profile = load_profile("jetson-nano")
    name = inv.names("conv")[3]
    r = inv[name]
    kept = {name: (r.in_channels, r.out_channels // 2)}
    layers = inv.layer_latency_ms(profile, kept_channels=kept)
    assert sum(layers.values()) + profile.network_overhead_ms == pytest.approx(
        inv.predict_latency_ms(profile, kept_channels=kept))
    assert layers[name] < inv.layer_latency_ms(profile)[name]
    with pytest.raises(ValueError, match="not in the inventory"):
        inv.layer_latency_ms(profile, kept_channels={"nope": (1, 1)})


def test_channel_blocks_price_a_pruned_width_as_its_whole_blocks(wrn16_2) -> None:  # noqa: ANN001
    """Oracle: with 16-channel blocks, a conv keeping 20 output channels computes as if it kept 32
    (the next conv reads 20 input channels: inputs are not rounded); expected_cost agrees with
    price() there and still has the unrounded slope."""
    _, inv = wrn16_2
    # one dense-conv price (the kernel switch of conv_dispatch and the output-area terms have
    # their own tests)
    from budgetsearch.cost.profiles import CONV_AREA_KINDS

    shipped = load_profile("cpu-2core-x86", check=False)
    plain = replace(shipped, channel_block=1, conv_dispatch="",
                    ops={k: v for k, v in shipped.ops.items() if k not in CONV_AREA_KINDS})
    blocked = replace(plain, channel_block=16)

    def compute_ms(profile, k: float) -> float:  # noqa: ANN001 - only the block's FLOP term
        only_flops = replace(profile, ops={kind: replace(c, ms_per_mb=0.0, overhead_ms=0.0,
                                                         ms_per_weight_mb=0.0)
                                           for kind, c in profile.ops.items()},
                             network_overhead_ms=0.0)
        return inv.price(kept_channels=_block_channels(k), profile=only_flops).latency_ms

    alpha = 1e-9 * plain.op_latency("conv").ms_per_gflop
    conv1, conv2 = inv[BLOCK[0]], inv[BLOCK[2]]
    per_out, per_in = conv1.flops / conv1.out_channels, conv2.flops / conv2.in_channels
    # unrounded: 12 fewer channels save conv1's outputs and conv2's inputs
    assert compute_ms(plain, 32.0) - compute_ms(plain, 20.0) == pytest.approx(
        12 * alpha * (per_out + per_in), rel=1e-9)
    # blocked: conv1 still computes 32 outputs; only conv2's 12 inputs are saved
    assert compute_ms(blocked, 32.0) - compute_ms(blocked, 20.0) == pytest.approx(
        12 * alpha * per_in, rel=1e-9)
    assert compute_ms(blocked, 17.0) > compute_ms(plain, 17.0)
    k = torch.tensor(20.0, dtype=torch.float64, requires_grad=True)
    value = inv.expected_cost("latency", kept_channels=_block_channels(k), profile=blocked)
    assert float(value) == pytest.approx(
        inv.price(kept_channels=_block_channels(20.0), profile=blocked).latency_ms, rel=1e-9)
    value.backward()
    assert k.grad is not None and float(k.grad) > 0


def test_channel_block_must_be_a_positive_integer() -> None:
    from budgetsearch.cost import profile_from_dict

    data = load_profile("cpu-2core-x86", check=False).as_yaml_dict()
    data["latency_model"]["channel_block"] = 0
    with pytest.raises(ValueError, match="'latency_model.channel_block' must be a positive "
                                         "integer, got 0"):
        profile_from_dict(data)


def test_compiled_runtime_settings_round_trip_and_are_checked() -> None:
    from budgetsearch.cost import profile_from_dict

    profile = replace(load_profile("cpu-2core-x86", check=False), channel_alignment=8,
                      prepacked_weights=True)
    again = profile_from_dict(profile.as_yaml_dict())
    assert (again.channel_alignment, again.prepacked_weights) == (8, True)
    plain = load_profile("cpu-2core-x86", check=False).as_yaml_dict()
    assert "channel_alignment" not in plain["latency_model"]  # defaults are not written
    for key, value, expected in (("channel_alignment", -8, "a non-negative integer, got -8"),
                                 ("prepacked_weights", "yes", "true or false, got 'yes'")):
        data = load_profile("cpu-2core-x86", check=False).as_yaml_dict()
        data["latency_model"][key] = value
        with pytest.raises(ValueError, match=f"'latency_model.{key}' must be {expected}"):
            profile_from_dict(data)
