"""Layer inventory and pricing, checked against fvcore's own counts."""

from __future__ import annotations

import pytest
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis, parameter_count
from torch import nn

from budgetsearch.cost import DeviceProfile, OpLatency, layer_inventory
from budgetsearch.models import build_model, model_names
from budgetsearch.profiling.variants import block_names, kept_channels_of, prune_block_channels

FMNIST = (1, 1, 28, 28)
CIFAR = (1, 3, 32, 32)
LARGE = {"wrn-28-10", "wrn-16-8", "resnet-56"}


def _fvcore(model: torch.nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    model.eval()
    analysis = FlopCountAnalysis(model, torch.zeros(shape))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return int(analysis.total()), int(parameter_count(model)[""])


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in model_names()],
)
def test_totals_equal_fvcore_on_builtin_models(name: str) -> None:
    model = build_model(name)
    inv = layer_inventory(model, torch.zeros(FMNIST))
    flops, params = _fvcore(model, FMNIST)
    assert inv.total_flops == flops
    assert inv.total_params == params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("factory", [torchvision.models.resnet18, torchvision.models.mobilenet_v2])
def test_totals_equal_fvcore_on_torchvision(factory) -> None:  # noqa: ANN001
    model = factory(num_classes=10)
    inv = layer_inventory(model, torch.zeros(CIFAR))
    flops, params = _fvcore(model, CIFAR)
    assert (inv.total_flops, inv.total_params) == (flops, params)
    # the price of the unpruned model is the model
    cost = inv.price()
    assert (cost.flops, cost.params) == (flops, params)


def test_records_hold_shapes_in_forward_order(wrn16_2) -> None:  # noqa: ANN001
    _, inv = wrn16_2
    assert inv.layers[0].name == "conv1" and inv.layers[-1].name == "fc"
    conv = inv["layer2.0.conv1"]
    assert (conv.op, conv.in_channels, conv.out_channels) == ("conv", 32, 64)
    assert conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.output_hw == (14, 14)
    assert conv.flops == 32 * 64 * 9 * 14 * 14  # fvcore: one multiply-add is one FLOP
    assert conv.activation_volume == 64 * 14 * 14  # BAR eq. (4)
    assert inv["fc"].output_hw == (1, 1) and inv["fc"].op == "linear"
    assert inv["bn"].op == "batchnorm" and inv["pool"].op == "pool"
    with pytest.raises(KeyError, match="nope"):
        inv["nope"]


def test_price_of_kept_channels_equals_fvcore_of_smaller_network(wrn16_2) -> None:  # noqa: ANN001
    model, inv = wrn16_2
    kept = {name: 3 + 5 * i for i, name in enumerate(block_names(model))}
    small = prune_block_channels(model, kept)
    small_inv = layer_inventory(small, torch.zeros(FMNIST))
    flops, params = _fvcore(small, FMNIST)
    cost = inv.price(kept_channels=kept_channels_of(small_inv, inv))
    assert cost.flops == pytest.approx(flops, rel=1e-12)
    assert cost.params == pytest.approx(params, rel=1e-12)
    assert cost.activation_volume == pytest.approx(small_inv.total_activation_volume, rel=1e-12)
    assert cost.memory_bytes == pytest.approx(small_inv.memory_bytes, rel=1e-12)


def test_price_of_thinner_twin_equals_fvcore(wrn16_2) -> None:  # noqa: ANN001
    model, inv = wrn16_2
    thin = build_model("wrn-16-2", width_multiplier=0.5)
    thin_inv = layer_inventory(thin, torch.zeros(FMNIST))
    flops, params = _fvcore(thin, FMNIST)
    cost = inv.price(kept_channels=kept_channels_of(thin_inv, inv))
    assert (cost.flops, cost.params) == (pytest.approx(flops), pytest.approx(params))


def test_densities_scale_weight_params_and_flops(wrn16_2) -> None:  # noqa: ANN001
    _, inv = wrn16_2
    conv = inv["layer3.0.conv2"]
    cost = inv.price(densities={"layer3.0.conv2": 0.25})
    assert inv.total_params - cost.params == pytest.approx(0.75 * conv.params)
    assert inv.total_flops - cost.flops == pytest.approx(0.75 * conv.flops)
    assert cost.activation_volume == inv.total_activation_volume


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kept_channels": {"nope": (1, 1)}}, "'nope'"),
        ({"kept_channels": {"layer1.0.conv1": (16, 99)}}, r"0\.\.32"),
        ({"kept_channels": {"layer1.0.conv1": (-1, 3)}}, "layer1.0.conv1"),
        ({"densities": {"fc": 1.5}}, r"\[0, 1\]"),
    ],
)
def test_price_rejects_bad_input(wrn16_2, kwargs, match) -> None:  # noqa: ANN001
    _, inv = wrn16_2
    with pytest.raises(ValueError, match=match):
        inv.price(**kwargs)


@pytest.mark.parametrize(("size", "kernel", "stride", "padding", "dilation"), [
    (1, 3, 1, 1, 1), (2, 3, 1, 1, 1), (7, 3, 2, 1, 1), (5, 5, 1, 2, 1), (9, 3, 1, 2, 2),
    (6, 1, 2, 0, 1), (4, 7, 2, 3, 1), (1, 5, 1, 2, 1),
])
def test_read_taps_match_unfold(size: int, kernel: int, stride: int, padding: int,
                                dilation: int) -> None:
    # oracle: unfold a ones image with zero padding; a tap (a row of the unfolded matrix) is
    # read when some output position (column) sees a one through it
    conv = nn.Conv2d(2, 3, kernel, stride=stride, padding=padding, dilation=dilation)
    x = torch.zeros(1, 2, size, size + 1)
    inv = layer_inventory(nn.Sequential(conv), x)
    columns = torch.nn.functional.unfold(torch.ones(1, 1, size, size + 1), kernel,
                                         dilation=dilation, padding=padding, stride=stride)
    read = float((columns.sum(dim=2) > 0).float().mean())
    assert inv["0"].read_taps == pytest.approx(read)
    # the parameter and FLOP metrics stay fvcore's
    assert inv.total_flops == int(FlopCountAnalysis(nn.Sequential(conv), x).total())
    assert inv.total_params == conv.weight.numel() + conv.bias.numel()


def test_latency_prices_the_weights_a_conv_reads() -> None:
    # on a runtime that prepacks weights, a 3x3 conv on a 1x1 map reads its centre tap's
    # weights only: 1/9 of them are priced
    x = torch.zeros(1, 64, 1, 1)
    inv = layer_inventory(nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False)), x)
    profile = DeviceProfile(name="t", description="", source="measured", prepacked_weights=True,
                            ops={"conv": OpLatency(ms_per_weight_mb=1.0)})
    assert inv.predict_latency_ms(profile) == pytest.approx(64 * 64 * 9 * 4e-6 / 9)
    expected = inv.expected_cost("latency_ms", profile=profile)
    assert float(expected) == pytest.approx(inv.predict_latency_ms(profile))
    # a runtime that re-reads (reorders) every weight each call pays for all of them
    eager = DeviceProfile(name="t", description="", source="measured",
                          ops={"conv": OpLatency(ms_per_weight_mb=1.0)})
    assert inv.predict_latency_ms(eager) == pytest.approx(64 * 64 * 9 * 4e-6)


@pytest.mark.parametrize("size", [1, 4])
def test_an_unblocked_depthwise_conv_pays_for_all_its_weights_at_any_map(size: int) -> None:
    # onnxruntime runs a depthwise conv it cannot block as one small GEMM per channel, every
    # tap's weights read even on a 1x1 map: priced whole, per kept channel (oracle: k*k*4 bytes
    # a channel), where a dense conv on a 1x1 map is priced by its centre tap
    x = torch.zeros(1, 77, size, size)
    inv = layer_inventory(nn.Sequential(nn.Conv2d(77, 77, 5, padding=2, groups=77, bias=False)),
                          x)
    assert inv["0"].read_taps == pytest.approx(1.0 if size == 4 else 1 / 25)
    profile = DeviceProfile(name="t", description="", source="measured", prepacked_weights=True,
                            channel_alignment=4,
                            ops={"dwconv": OpLatency(ms_per_weight_mb=1.0),
                                 "aligned_dwconv": OpLatency(ms_per_weight_mb=0.0)})
    assert inv.predict_latency_ms(profile) == pytest.approx(77 * 25 * 4e-6)
    kept = {"0": (33, 33)}
    assert inv.predict_latency_ms(profile, kept_channels=kept) == pytest.approx(33 * 25 * 4e-6)
    expected = inv.expected_cost("latency_ms", kept_channels={"0": (torch.tensor(33.0),
                                                                    torch.tensor(33.0))},
                                 profile=profile)
    assert float(expected) == pytest.approx(33 * 25 * 4e-6)
    # blocked (channels a multiple of the alignment), it runs another kernel, priced as such
    assert inv.predict_latency_ms(profile, kept_channels={"0": (32, 32)}) == 0.0
    # a channel multiplier (one input channel a group, two outputs each) is priced so too
    double = layer_inventory(nn.Sequential(nn.Conv2d(77, 154, 5, padding=2, groups=77,
                                                     bias=False)), x)
    assert double["0"].kind == "dwconv"
    assert double.predict_latency_ms(profile) == pytest.approx(154 * 25 * 4e-6)


def test_aligned_convs_take_their_own_price_as_channels_change() -> None:
    # a dense conv whose kept input and output channels are multiples of channel_alignment is
    # priced as aligned_conv; prune one channel and it is a conv again (and back at 8)
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                          nn.Conv2d(16, 16, 3, padding=1, bias=False))
    inv = layer_inventory(model, torch.zeros(1, 16, 4, 4))
    profile = DeviceProfile(name="t", description="", source="measured", channel_alignment=8,
                            ops={"conv": OpLatency(overhead_ms=3.0),
                                 "aligned_conv": OpLatency(overhead_ms=1.0)})
    assert inv.predict_latency_ms(profile) == pytest.approx(2.0)
    for kept, expected in ((15, 6.0), (8, 2.0)):
        channels = {"0": (16, kept), "1": (kept, kept), "2": (kept, 16)}
        assert inv.predict_latency_ms(profile, kept_channels=channels) == pytest.approx(expected)
        differentiable = inv.expected_cost("latency_ms", kept_channels={
            k: (torch.tensor(float(a)), torch.tensor(float(b))) for k, (a, b) in channels.items()},
            profile=profile)
        assert float(differentiable) == pytest.approx(expected)
    without = DeviceProfile(name="t", description="", source="measured",
                            ops={"conv": OpLatency(overhead_ms=3.0)}, channel_alignment=8)
    assert inv.predict_latency_ms(without) == pytest.approx(6.0)  # aligned_conv falls back


@pytest.mark.parametrize(("groups", "kind", "unaligned", "aligned"), [
    # 32 -> 32 channels in 2 groups: 16 per group, aligned at 8; pruned to 30 (15 per group): not
    (2, "gconv", 30, 16),
    # a depthwise conv's groups are its channels: onnxruntime blocks the channels, so 24 kept
    # channels are aligned at 8 and 20 are not (per group, every depthwise conv has 1)
    (24, "dwconv", 20, 16),
])
def test_grouped_and_depthwise_convs_align_as_onnxruntime_blocks_them(
        groups: int, kind: str, unaligned: int, aligned: int) -> None:
    channels = 32 if kind == "gconv" else 24
    model = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=groups, bias=False))
    inv = layer_inventory(model, torch.zeros(1, channels, 4, 4))
    profile = DeviceProfile(name="t", description="", source="measured", channel_alignment=8,
                            ops={kind: OpLatency(overhead_ms=3.0),
                                 f"aligned_{kind}": OpLatency(overhead_ms=1.0)})
    assert inv.predict_latency_ms(profile) == pytest.approx(1.0)
    for kept, expected in ((unaligned, 3.0), (aligned, 1.0)):
        assert inv.predict_latency_ms(profile, kept_channels={"0": (kept, kept)}) == (
            pytest.approx(expected))
        differentiable = inv.expected_cost("latency_ms", profile=profile, kept_channels={
            "0": (torch.tensor(float(kept)), torch.tensor(float(kept)))})
        assert float(differentiable) == pytest.approx(expected)
    without = DeviceProfile(name="t", description="", source="measured", channel_alignment=8,
                            ops={kind: OpLatency(overhead_ms=3.0)})
    assert inv.predict_latency_ms(without) == pytest.approx(3.0)  # aligned_* falls back


def test_a_dense_convs_flops_are_priced_again_by_its_output_area() -> None:
    """A profile's conv_area kinds add an α per output area (a GEMM's N, which channel pruning
    never changes), in price and in the differentiable expected cost alike; a profile without
    them (a datasheet roofline's default kind included) adds nothing."""
    model = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.Conv2d(16, 16, 1))
    inv = layer_inventory(model, torch.zeros(1, 8, 4, 4))  # two convs with 2×2 outputs
    base = {"conv": OpLatency(ms_per_gflop=10.0)}
    plain = DeviceProfile(name="t", description="", source="measured", ops=base)
    area = DeviceProfile(name="t", description="", source="measured",
                         ops={**base, "conv_area2_4": OpLatency(ms_per_gflop=30.0),
                              "conv_area257": OpLatency(ms_per_gflop=99.0)})
    kept = {"0": (8, 8), "1": (8, 16)}
    for channels in (None, kept):
        flops = inv.price(kept_channels=channels).flops
        assert inv.price(profile=plain, kept_channels=channels).latency_ms == pytest.approx(
            10e-9 * flops)
        assert inv.price(profile=area, kept_channels=channels).latency_ms == pytest.approx(
            40e-9 * flops)
    expected = inv.expected_cost("latency", profile=area, kept_channels={
        k: (torch.tensor(float(a)), torch.tensor(float(b))) for k, (a, b) in kept.items()})
    assert float(expected) == pytest.approx(inv.price(profile=area, kept_channels=kept).latency_ms)
    roofline = DeviceProfile(name="r", description="", source="datasheet",
                             ops={"default": OpLatency(ms_per_gflop=10.0)})
    assert inv.price(profile=roofline).latency_ms == pytest.approx(10e-9 * inv.total_flops)
