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
                   channel_block=1, small_gemm=None)  # nor the area's weight price


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


# -- oneDNN's depthwise kernel or per-channel GEMMs ------------------------------------------

_VERBOSE_SCRIPT = r"""
import json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
for case in json.loads(sys.argv[2]):
    conv = (torch.nn.Conv1d if len(case["kernel"]) == 1 else torch.nn.Conv2d)(
        case["channels"], case["channels"] * case["multiplier"], case["kernel"], case["stride"],
        case["padding"], case["dilation"], groups=case["channels"], bias=False).eval()
    x = torch.randn(1, case["channels"], *case["input"])
    print("CASE", flush=True)
    with torch.inference_mode(), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        conv(x)
    sys.stdout.flush()
"""


def _onednn_implementations(cases: list[dict], threads: int, isa: str | None = None
                            ) -> list[str]:
    """The implementation oneDNN's verbose log names for each case's conv ('' when none);
    ``isa`` caps oneDNN's instruction set (``ONEDNN_MAX_CPU_ISA``)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, **({"ONEDNN_MAX_CPU_ISA": isa} if isa else {})}
    out = subprocess.run([sys.executable, "-c", _VERBOSE_SCRIPT, str(threads), json.dumps(cases)],
                         capture_output=True, text=True, timeout=120, check=True,
                         env=env).stdout
    found: list[str] = []
    for line in out.splitlines():
        if line == "CASE":
            found.append("")
        elif ",exec,cpu,convolution," in line and found:
            found[-1] = line.split(",")[6]
    return found


def _depthwise_cases(count: int, seed: int) -> list[dict]:
    import random

    rng = random.Random(seed)
    cases: list[dict] = []
    while len(cases) < count:
        dims = rng.choice((1, 2, 2, 2))
        kernel = [rng.choice((1, 3, 5, 7, 9)) for _ in range(dims)]
        dilation = [rng.choice((1, 1, 1, 2)) for _ in range(dims)]
        padding = [rng.randint(0, (k - 1) * d // 2 + 1) for k, d in zip(kernel, dilation)]
        size = [rng.randint(1, 12) for _ in range(dims)]
        if any(s + 2 * p < (k - 1) * d + 1
               for s, p, k, d in zip(size, padding, kernel, dilation)) or max(kernel) == 1:
            continue
        cases.append({"input": size, "kernel": kernel, "padding": padding, "dilation": dilation,
                      "stride": [rng.choice((1, 2, 3)) for _ in range(dims)],
                      "channels": rng.choice((8, 16, 24, 33)),
                      "multiplier": 2 if rng.random() < 0.1 else 1})
    # the shapes that matter: EfficientNet's 5×5 and 7×7 at 1×1-4×4, same padding
    for size, k, s in itertools.product((1, 2, 3, 4, 8), (3, 5, 7), (1, 2)):
        cases.append({"input": [size, size], "kernel": [k, k], "padding": [k // 2] * 2,
                      "dilation": [1, 1], "stride": [s, s], "channels": 16, "multiplier": 1})
    return cases


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch without oneDNN")
@pytest.mark.parametrize("threads", [1, 2])
def test_the_depthwise_rule_is_the_kernel_onednn_runs(threads: int) -> None:
    from budgetsearch.profiling.fit import simd_channel_block

    lanes = simd_channel_block()  # this machine's: AVX-512 and AVX2 oneDNN draw other lines
    cases = _depthwise_cases(120, seed=threads)
    implementations = _onednn_implementations(cases, threads)
    assert len(implementations) == len(cases)
    if not any("jit_dw" in i for i in implementations):
        pytest.skip("this oneDNN names no jit_dw kernel (another ISA or build): the rule is "
                    "read from x86 oneDNN's")
    _assert_the_rule_names_the_kernels(cases, implementations, lanes)
    assert sum("gemm" in i for i in implementations) >= 20  # both sides of the rule were tried


def _assert_the_rule_names_the_kernels(cases: list[dict], implementations: list[str],
                                       lanes: int) -> None:
    """The rule says GEMM exactly where oneDNN's log names a GEMM implementation."""
    from budgetsearch.cost.dispatch import onednn_depthwise_on_gemm

    for case, implementation in zip(cases, implementations, strict=True):
        rule = onednn_depthwise_on_gemm(
            input_hw=case["input"], kernel=case["kernel"], stride=case["stride"],
            padding=case["padding"], dilation=case["dilation"], multiplier=case["multiplier"],
            lanes=lanes, channels=case["channels"])
        assert rule == ("gemm" in implementation), (case, implementation, lanes)


#: oneDNN instruction-set caps (``ONEDNN_MAX_CPU_ISA``) → the fp32 lanes of its kernels, and the
#: CPU flag without which the cap cannot be reached
_ISA_CAPS = {"AVX512_CORE": (16, "avx512f"), "AVX2": (8, "avx2"), "SSE41": (4, "sse4_1")}
_ISA_KERNELS = {"AVX512_CORE": "avx512", "AVX2": "avx2", "SSE41": "sse41"}  # in jit_dw:<isa>


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch without oneDNN")
@pytest.mark.parametrize("isa", list(_ISA_CAPS))
def test_the_depthwise_rule_holds_for_each_vector_width_onednn_can_be_capped_to(isa: str) -> None:
    """The rule at 4, 8 and 16 lanes, as far as this CPU goes: oneDNN capped to SSE4.1 runs its
    4-lane depthwise kernel on any x86 machine, so every CI machine checks the narrower rules."""
    from budgetsearch.cost.dispatch import onednn_depthwise_on_gemm
    from budgetsearch.profiling.anchors import cpu_flags

    lanes, flag = _ISA_CAPS[isa]
    if flag not in cpu_flags().split():
        pytest.skip(f"this CPU has no {flag}")
    cases = _depthwise_cases(60, seed=lanes)
    implementations = _onednn_implementations(cases, 1, isa=isa)
    if not any(f"jit_dw:{_ISA_KERNELS[isa]}" in i for i in implementations):
        pytest.skip(f"this oneDNN ran no jit_dw:{_ISA_KERNELS[isa]} kernel under the cap (a "
                    f"build that ignores ONEDNN_MAX_CPU_ISA, or a CPU that cannot reach it)")
    _assert_the_rule_names_the_kernels(cases, implementations, lanes)
    wide = [{"input": [8, 40], "kernel": [3, 9], "padding": [1, p], "dilation": [1, 1],
             "stride": [1, 1], "channels": 16, "multiplier": 1} for p in range(9)]
    on_gemm = ["gemm" in i for i in _onednn_implementations(wide, 1, isa=isa)]
    assert on_gemm == [onednn_depthwise_on_gemm(input_hw=[8, 40], kernel=[3, 9], stride=[1, 1],
                                                padding=[1, p], dilation=[1, 1], lanes=lanes)
                       for p in range(9)], isa


@pytest.mark.parametrize(("lanes", "widest"), [(16, 6), (8, 4), (4, 3)])
def test_the_depthwise_kernels_left_padding_limit_follows_the_vector_width(
        lanes: int, widest: int) -> None:
    """A 9-wide depthwise kernel on a 40-wide input: oneDNN's kernel up to 6 columns of left
    padding with AVX-512, 4 with AVX2, 3 with SSE4.1 (read from its verbose log on
    2026-12-03)."""
    from budgetsearch.cost.dispatch import onednn_depthwise_on_gemm

    on_gemm = [onednn_depthwise_on_gemm(input_hw=[8, 40], kernel=[3, 9], stride=[1, 1],
                                        padding=[1, p], dilation=[1, 1], lanes=lanes)
               for p in range(9)]
    assert on_gemm == [p > widest for p in range(9)]


def _gemm_dw_profile():  # noqa: ANN202
    profile = _two_kernel_profile()
    ops = {**profile.ops, "dwconv": OpLatency(ms_per_gflop=20.0, overhead_ms=0.03),
           "dwconv_gemm": OpLatency(ms_per_weight_mb=2.0, overhead_ms=0.05)}
    return replace(profile, ops=ops)


def test_a_depthwise_conv_on_per_channel_gemms_is_priced_as_dwconv_gemm_at_any_width() -> None:
    # EfficientNet-B0's last stage at a 32×32 input: 5×5 depthwise on a 1×1 map (GEMMs), and a
    # 3×3 one on the same map (the depthwise kernel)
    model = nn.Sequential(nn.Conv2d(64, 64, 5, padding=2, groups=64, bias=False),
                          nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False))
    inventory = layer_inventory(model, torch.randn(1, 64, 1, 1))
    profile = _gemm_dw_profile()
    gemm, dw = profile.ops["dwconv_gemm"], profile.ops["dwconv"]

    def on_gemm(channels: int) -> float:
        return gemm.ms_per_weight_mb * channels * 25 * 4e-6 + gemm.overhead_ms

    def on_kernel(channels: int) -> float:
        return dw.ms_per_gflop * 1e-9 * channels * 9 + dw.overhead_ms

    full = inventory.layer_latency_ms(profile)
    assert full["0"] == pytest.approx(on_gemm(64)) and full["1"] == pytest.approx(on_kernel(64))
    kept = {"0": (40, 40), "1": (40, 40)}
    pruned = inventory.layer_latency_ms(profile, kept_channels=kept)
    assert pruned["0"] == pytest.approx(on_gemm(40)) and pruned["1"] == pytest.approx(on_kernel(40))
    expected = inventory.expected_cost(
        "latency", profile=profile,
        kept_channels={n: (torch.tensor(40.0, dtype=torch.float64, requires_grad=True),
                           torch.tensor(40.0, dtype=torch.float64, requires_grad=True))
                       for n in kept})
    assert float(expected) == pytest.approx(
        inventory.predict_latency_ms(profile, kept_channels=kept), rel=1e-9)
    # without the rule, or without the kind, it is a depthwise conv like any other
    assert inventory.layer_latency_ms(replace(profile, conv_dispatch=""))["0"] == pytest.approx(
        dw.ms_per_gflop * 1e-9 * 64 * 25 + dw.overhead_ms)
    no_kind = replace(profile, ops={k: v for k, v in profile.ops.items() if k != "dwconv_gemm"})
    assert no_kind.op_latency("dwconv_gemm") == dw
    assert inventory.layer_latency_ms(no_kind)["0"] == pytest.approx(
        dw.ms_per_gflop * 1e-9 * 64 * 25 + dw.overhead_ms)


@pytest.mark.parametrize(("conv", "size", "on_gemm"), [
    (nn.Conv2d(16, 16, 5, padding="same", groups=16), 1, True),
    # an even kernel: PyTorch pads the odd one onto the input, oneDNN then runs jit_dw
    (nn.Conv2d(16, 16, 6, padding="same", groups=16), 2, False),
    (nn.Conv2d(16, 16, 4, padding="same", groups=16), 1, False),
    (nn.Conv1d(16, 16, 4, padding="same", groups=16), 1, False),
    (nn.Conv2d(16, 16, 5, padding="valid", groups=16), 5, False),
    # reflect: PyTorch pads the input itself and oneDNN convolves unpadded
    (nn.Conv2d(16, 16, 5, padding=2, padding_mode="reflect", groups=16), 3, False),
    (nn.Conv2d(16, 16, 5, padding="same", padding_mode="circular", groups=16), 2, False),
    (nn.Conv2d(16, 16, 5, padding=2, groups=16), 3, False),
    (nn.Conv2d(16, 16, 15, padding=7, groups=16), 30, True),  # 7 columns of left padding
    (nn.Conv2d(16, 16, 7, stride=2, padding=3, groups=16), 4, True),
    (nn.Conv1d(16, 16, 5, padding=2, groups=16), 1, True),
    (nn.Conv1d(16, 16, 5, padding=2, groups=16), 2, False),
    (nn.Conv2d(16, 32, 3, padding=1, groups=16), 8, True),  # two outputs per channel
    (nn.Conv2d(32, 32, 3, padding=1, groups=16), 8, False),  # grouped, not depthwise
])
def test_the_rule_reads_padding_as_torch_passes_it(conv: nn.Module, size: int,
                                                   on_gemm: bool) -> None:
    shape = (1, conv.in_channels, *([size] * (2 if isinstance(conv, nn.Conv2d) else 1)))
    inventory = layer_inventory(conv, torch.randn(shape))
    assert inventory._depthwise_on_gemm(_gemm_dw_profile()) == [on_gemm]
