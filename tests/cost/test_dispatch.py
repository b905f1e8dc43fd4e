"""PyTorch eager's conv kernels: the rule against torch's own choice, and the prices it picks."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch
from torch import nn

from budgetsearch.cost import layer_inventory, load_profile, profile_from_dict
from budgetsearch.cost.dispatch import (
    ONEDNN_MIN_INPUT_ELEMENTS,
    counted_input_elements,
    onednn_always,
    onednn_by_size,
)
from budgetsearch.cost.profiles import OpLatency

select = getattr(torch._C, "_select_conv_backend", None)


# torch's own enum names oneDNN's forward conv; its transposed one (9) has no Python name
_ONEDNN = {int(torch._C._ConvBackend.Mkldnn), 9} if select is not None else set()


def _torch_picks_onednn(x: torch.Tensor, conv: nn.modules.conv._ConvNd) -> bool:
    backend = select(x, conv.weight, None, list(conv.stride), list(conv.padding),
                     list(conv.dilation), conv.transposed, list(conv.output_padding),
                     conv.groups, None)
    return int(backend) in _ONEDNN


def _rule(x: torch.Tensor, conv: nn.modules.conv._ConvNd, threads: int) -> bool:
    shape = {"kernel": conv.kernel_size, "stride": conv.stride, "dilation": conv.dilation,
             "batch": x.shape[0], "threads": threads, "transposed": conv.transposed,
             "output_padding": conv.output_padding}
    return onednn_always(groups=conv.groups, **shape) or (
        onednn_by_size(**shape)
        and counted_input_elements(x.shape) > ONEDNN_MIN_INPUT_ELEMENTS)


@pytest.mark.skipif(select is None, reason="this torch has no _select_conv_backend to ask")
@pytest.mark.parametrize("threads", [1, 2])
def test_the_rule_is_the_kernel_torch_picks(threads: int) -> None:
    # oracle: torch's own backend selection, on both sides of the 20,480-element line
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        checked = 0
        for k, stride, dilation, groups, (c, hw), batch in itertools.product(
                (1, 3, 4, 5, 7), (1, 2), (1, 2), (1, 2), ((16, 8), (64, 17), (64, 18), (80, 16)),
                (1, 2)):
            conv = nn.Conv2d(c, 32, k, stride=stride, dilation=dilation, groups=groups,
                             padding=k // 2, bias=False)
            x = torch.randn(batch, c, hw, hw)
            assert _rule(x, conv, threads) == _torch_picks_onednn(x, conv), (
                k, stride, dilation, groups, c, hw, batch)
            checked += 1
        assert checked == 5 * 2 * 2 * 2 * 4 * 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(select is None, reason="this torch has no _select_conv_backend to ask")
@pytest.mark.parametrize("threads", [1, 2])
def test_the_rule_holds_for_1d_3d_and_transposed_convs(threads: int) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    cases = []
    for k, stride, batch, length in itertools.product((1, 3, 5), (1, 2), (1, 2), (300, 400)):
        cases.append((nn.Conv1d(64, 8, k, stride=stride, padding=k // 2),
                      (batch, 64, length)))
    for k, shape in itertools.product((1, 3, 5), ((1, 4, 6, 6, 6), (1, 16, 40, 40, 3),
                                                  (1, 16, 3, 3, 1000), (2, 4, 6, 6, 6))):
        cases.append((nn.Conv3d(shape[1], 8, k, padding=k // 2), shape))
    for k, stride, out_pad, dilation in itertools.product((3, 5), (1, 2), (0, 1), (1, 2)):
        if out_pad >= max(stride, dilation):
            continue  # torch refuses an output padding not below stride or dilation
        cases.append((nn.ConvTranspose2d(8, 8, k, stride=stride, output_padding=out_pad,
                                         dilation=dilation), (1, 8, 20, 20)))
    try:
        for conv, shape in cases:
            x = torch.randn(shape)
            assert _rule(x, conv, threads) == _torch_picks_onednn(x, conv), (conv, shape)
    finally:
        torch.set_num_threads(before)


def _two_kernel_profile():  # noqa: ANN202
    from budgetsearch.cost.profiles import CONV_AREA_KINDS

    eager = load_profile("cpu-2core-x86", check=False)
    ops = {k: v for k, v in eager.ops.items() if k not in CONV_AREA_KINDS}  # one α per kernel
    ops["conv"] = OpLatency(ms_per_gflop=10.0, overhead_ms=0.01)
    ops["onednn_conv"] = OpLatency(ms_per_gflop=30.0, overhead_ms=0.2)
    return replace(eager, ops=ops, conv_dispatch="pytorch", provenance={"threads": 1},
                   channel_block=1)


def test_a_conv_is_priced_on_the_kernel_it_runs_and_pruning_can_move_it() -> None:
    # 64 × 18 × 18 = 20,736 input elements: oneDNN; pruned to 63 inputs (20,412): the GEMM path
    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 64, 1),
                          nn.Conv2d(64, 8, 7, padding=3))
    x = torch.randn(1, 64, 18, 18)
    inventory = layer_inventory(model, x)
    profile = _two_kernel_profile()
    conv, onednn = profile.ops["conv"], profile.ops["onednn_conv"]

    def priced(record_name: str, c: OpLatency, kin: int) -> float:
        r = inventory[record_name]
        return c.ms_per_gflop * 1e-9 * r.flops * kin / r.in_channels + c.overhead_ms

    full = inventory.layer_latency_ms(profile)
    # layer 0: 3×3 over the line -> oneDNN; layer 1: a 1×1 at stride 1 -> GEMM at any size;
    # layer 2: a 7×7 -> oneDNN at any size
    assert full["0"] == pytest.approx(priced("0", onednn, 64), rel=1e-3)
    assert full["1"] == pytest.approx(priced("1", conv, 64), rel=1e-3)
    assert full["2"] == pytest.approx(priced("2", onednn, 64), rel=1e-3)
    pruned = inventory.layer_latency_ms(profile, kept_channels={"0": (63, 64)})
    assert pruned["0"] == pytest.approx(priced("0", conv, 63), rel=1e-3)
    if select is not None:  # what the prices above assumed, asked of torch on one thread
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            assert [_torch_picks_onednn(x, model[i]) for i in (0, 1, 2)] == [True, False, True]
            assert not _torch_picks_onednn(x[:, :63], nn.Conv2d(63, 64, 3, padding=1))
        finally:
            torch.set_num_threads(before)
    # the differentiable cost switches kernels where price() does
    for kin in (64.0, 63.0):
        kept = {"0": (torch.tensor(kin, dtype=torch.float64, requires_grad=True), 64.0)}
        expected = inventory.expected_cost("latency", kept_channels=kept, profile=profile)
        assert float(expected) == pytest.approx(
            inventory.predict_latency_ms(profile, kept_channels={"0": (kin, 64)}), rel=1e-9)


def test_a_profile_without_the_rule_or_the_kind_prices_every_dense_conv_as_conv() -> None:
    model = nn.Sequential(nn.Conv2d(3, 16, 7, padding=3), nn.Conv2d(16, 16, 3, padding=1))
    inventory = layer_inventory(model, torch.randn(1, 3, 40, 40))
    profile = _two_kernel_profile()
    off = replace(profile, conv_dispatch="")
    assert inventory.layer_latency_ms(off)["0"] == pytest.approx(
        inventory.layer_latency_ms(replace(profile, ops={
            **profile.ops, "onednn_conv": profile.ops["conv"]}))["0"])
    no_kind = {k: v for k, v in profile.ops.items() if k != "onednn_conv"}
    assert replace(profile, ops=no_kind).op_latency("onednn_conv") == profile.ops["conv"]


def test_conv_dispatch_round_trips_and_is_checked() -> None:
    profile = _two_kernel_profile()
    assert profile_from_dict(profile.as_yaml_dict()).conv_dispatch == "pytorch"
    off = replace(profile, conv_dispatch="").as_yaml_dict()
    assert "conv_dispatch" not in off["latency_model"]  # the default is not written
    data = profile.as_yaml_dict()
    data["latency_model"]["conv_dispatch"] = "tensorflow"
    with pytest.raises(ValueError, match=r"'latency_model.conv_dispatch' must be one of "
                                         r"'pytorch', got 'tensorflow'"):
        profile_from_dict(data)
    with pytest.raises(ValueError, match="conv_dispatch must be one of pytorch"):
        replace(profile, conv_dispatch="onnx")


def test_a_3d_conv_is_priced_by_the_elements_torch_counts() -> None:
    # (1, 16, 40, 40, 3): torch counts 1·16·40·40 = 25,600 > 20,480 (oneDNN); (1, 16, 3, 3,
    # 1000) holds 144,000 elements but torch counts 144 (its own 3-D path)
    profile = _two_kernel_profile()
    prices = []
    for shape in ((1, 16, 40, 40, 3), (1, 16, 3, 3, 1000)):
        inventory = layer_inventory(nn.Sequential(nn.Conv3d(16, 8, 3, padding=1)),
                                    torch.randn(shape))
        record = inventory["0"]
        c = profile.ops["onednn_conv"] if shape[2] == 40 else profile.ops["conv"]
        prices.append((inventory.layer_latency_ms(profile)["0"],
                       c.ms_per_gflop * 1e-9 * record.flops + c.overhead_ms))
    for got, expected in prices:
        assert got == pytest.approx(expected, rel=1e-6)
