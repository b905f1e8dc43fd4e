"""Profiling helpers: the fit recovers known coefficients; the fit set is varied; the one timer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from budgetsearch.profiling.fit import (
    AREA_FEATURES,
    COMPILED_FEATURES,
    EAGER_FEATURES,
    FEATURES,
    features_for,
    fit_coefficients,
    leave_one_family_out,
    network_features,
    profile_from_coefficients,
    summarize_errors,
)
from budgetsearch.profiling.networks import FAMILIES, NetworkSpec, build_spec
from budgetsearch.profiling.timing import time_networks


@pytest.fixture(scope="module")
def small_networks() -> list:
    specs = [NetworkSpec(f, (1, 1, 28, 28), seed) for seed in (1, 2)
             for f in ("plain", "inverted", "shuffle", "wrn")]
    return [build_spec(s) for s in specs]


@pytest.mark.parametrize("runtime", ["pytorch-eager", "onnxruntime"])
def test_fit_recovers_coefficients_of_the_model_it_predicts(small_networks, runtime: str
                                                            ) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    true = rng.uniform(0.01, 1.0, len(features_for(runtime)) + 1)
    profile = profile_from_coefficients("t", true, provenance={}, description="",
                                        channel_block=16, runtime=runtime)
    features = np.stack([network_features(n, 16, runtime) for n in small_networks])
    times = np.array([n.inventory.predict_latency_ms(profile, kept_channels=n.kept_channels)
                      for n in small_networks])
    assert features @ true == pytest.approx(times)  # the features are the predictor, term by term
    fitted = fit_coefficients(features, times)
    assert features @ fitted == pytest.approx(times, rel=1e-4)


def test_only_onnxruntime_fits_what_a_compiler_fuses() -> None:
    # eager runs every op as it comes: its fit has no fused or aligned terms, and its profile
    # prices a fused activation as an activation; it has PyTorch's two dense-conv kernels and
    # the output-area terms of its GEMM instead
    assert features_for("pytorch-eager") == FEATURES + EAGER_FEATURES + AREA_FEATURES
    assert not set(AREA_FEATURES) & set(features_for("onnxruntime"))
    assert set(COMPILED_FEATURES) <= set(features_for("onnxruntime"))
    assert not set(EAGER_FEATURES) & set(features_for("onnxruntime"))
    eager = profile_from_coefficients("e", np.ones(len(features_for("pytorch-eager")) + 1),
                                      provenance={}, description="", channel_block=16)
    ort = profile_from_coefficients("o", np.ones(len(features_for("onnxruntime")) + 1),
                                    provenance={}, description="", channel_block=16,
                                    runtime="onnxruntime")
    assert "fused_activation" not in eager.ops and eager.channel_alignment == 0
    assert eager.extra_op_latency("fused_activation") == eager.ops["activation"]
    assert "aligned_conv" in ort.ops and ort.channel_alignment == 8
    assert eager.conv_dispatch == "pytorch" and "onednn_conv" in eager.ops
    assert ort.conv_dispatch == "" and "onednn_conv" not in ort.ops


def test_every_family_builds_and_prices_like_fvcore() -> None:
    from fvcore.nn import FlopCountAnalysis

    for family in FAMILIES:
        net = build_spec(NetworkSpec(family, (1, 3, 32, 32), 7))
        params = sum(p.numel() for p in net.model.parameters())
        cost = net.inventory.price(kept_channels=net.kept_channels)
        assert cost.params == params, family
        flops = FlopCountAnalysis(net.model, net.example_input)
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        assert cost.flops == flops.total(), family


def test_leave_one_family_out_reports_every_family() -> None:
    features = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    times = features @ np.array([2.0, 0.5])
    table = leave_one_family_out(features, times, ["a", "a", "b", "b"])
    assert set(table) == {"a", "b"}
    assert table["a"]["within_10pct"] == 1.0 and table["b"]["median_abs_pct"] < 1e-6


def test_time_networks_returns_one_positive_time_per_network() -> None:
    model = torch.nn.Conv2d(1, 4, 3)
    times = time_networks([(model, torch.zeros(1, 1, 8, 8))] * 2, rounds=2, inner=2, warmup=1)
    assert times.shape == (2,) and (times > 0).all()


def test_the_last_onnxruntime_pass_frees_the_eager_weights_and_keeps_the_prices() -> None:
    """A profiling run's last pass (onnxruntime) times sessions that hold their own weights: the
    models' are freed as each session is made, their structure and prices kept."""
    from budgetsearch.profiling.fit import time_fit_set

    networks = [build_spec(NetworkSpec(f, (1, 1, 28, 28), 3)) for f in ("plain", "wrn")]
    before = [n.inventory.predict_latency_ms(_unit(), kept_channels=n.kept_channels)
              for n in networks]
    with pytest.raises(ValueError, match="release_models needs the onnxruntime"):
        time_fit_set(networks, runtime="pytorch-eager", threads=1, rounds=1, inner=1,
                     release_models=True)
    eager = time_fit_set(networks, runtime="pytorch-eager", threads=1, rounds=2, inner=1)
    assert all(p.device.type == "cpu" for n in networks for p in n.model.parameters())
    ort = time_fit_set(networks, runtime="onnxruntime", threads=1, rounds=1, inner=1,
                       release_models=True)
    assert eager.shape == (2, 2) and ort.shape == (2, 1) and (ort > 0).all()
    assert all(p.device.type == "meta" for n in networks for p in n.model.parameters())
    assert [n.inventory.predict_latency_ms(_unit(), kept_channels=n.kept_channels)
            for n in networks] == before


def test_a_run_agrees_with_itself_as_its_two_halves_of_rounds_say() -> None:
    from budgetsearch.profiling.timing import halves_agreement, time_rounds

    steady = np.array([[1.0, 1.05, 1.0, 0.98], [2.0, 2.1, 2.05, 2.0]])
    assert halves_agreement(steady) == 1.0
    swung = np.array([[1.0, 1.0, 1.3, 1.3], [2.0, 2.0, 2.1, 2.1], [1.0, 1.0, 0.8, 0.8]])
    assert halves_agreement(swung) == pytest.approx(1 / 3)
    assert halves_agreement(np.ones((3, 1))) is None  # one round: nothing to compare
    model = torch.nn.Conv2d(1, 4, 3)
    per_round = time_rounds([lambda: model(torch.zeros(1, 1, 8, 8))] * 3, rounds=4, inner=2,
                            warmup=1)
    assert per_round.shape == (3, 4) and (per_round > 0).all()
    assert time_rounds([], rounds=2).shape == (0, 0)  # nothing to time: nothing timed
    from budgetsearch.profiling.timing import time_runners

    assert time_runners([], rounds=2).shape == (0,)


def _unit():  # noqa: ANN202
    from budgetsearch.cost import load_profile

    return load_profile("cpu-2core-x86", check=False)


def test_summarize_errors() -> None:
    error = summarize_errors(np.array([1.0, -2.0, 12.0, 5.0]))
    assert error.networks == 4 and error.within_10pct == 0.75 and error.max_abs_pct == 12.0


def test_the_fit_set_holds_compact_mixed_networks_priced_as_themselves() -> None:
    # a fifth or so of the WRN draws are what BAR and channel-magnitude deliver: their gathers
    # must be in the fit, so each is priced as itself (its own inventory, no kept channels)
    from budgetsearch.models.mixed import CompactResNet

    built = [build_spec(NetworkSpec("wrn", (1, 1, 28, 28), seed)) for seed in range(12)]
    compact = [b for b in built if isinstance(b.model, CompactResNet)]
    assert compact, "no compact network in 12 draws"
    for b in compact:
        assert not b.kept_channels
        assert any(op.kind == "index" for op in b.inventory.extra_ops)


def test_onnxruntime_profile_has_every_pass_and_each_nodes_kernel() -> None:
    """Oracle: the profiler's own events. A conv + ReLU (fused by onnxruntime into one node) and
    a flatten: one model_run per pass (warm-up included) and, per pass, one kernel event per node,
    the conv's carrying its weight shape."""
    from torch import nn

    from budgetsearch.profiling.timing import onnxruntime_profile

    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten())
    events = onnxruntime_profile(model, torch.zeros(1, 3, 6, 6), runs=4, warmup=2)
    passes = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    kernels = [e for e in events if e.get("cat") == "Node"
               and e["name"].endswith("_kernel_time")]
    assert len(passes) == 6
    by_node: dict[str, list[dict]] = {}
    for e in kernels:
        by_node.setdefault(e["name"], []).append(e)
    assert all(len(v) == 6 for v in by_node.values())
    convs = [v[0]["args"] for v in by_node.values()
             if v[0]["args"]["op_name"] in ("Conv", "FusedConv")]
    assert len(convs) == 1
    # (16 outputs: a whole channel block, which onnxruntime does not pad)
    assert next(iter(convs[0]["input_type_shape"][1].values())) == [16, 3, 3, 3]


def test_the_fit_set_draws_every_kind_of_pool_published_networks_run() -> None:
    """Stride-1 3×3 pools (GoogLeNet's branches), ceil-mode and padded 3×3 max pools (ResNet,
    SqueezeNet), average pools: each a distinct read pattern the fit must see to price them."""
    from torch import nn

    from budgetsearch.profiling.networks import _generated

    seen: set[tuple] = set()
    for seed in range(40):
        for family in ("plain", "concat", "residual"):
            model = _generated(NetworkSpec(family, (1, 3, 64, 64), seed))
            for m in model.modules():
                if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
                    seen.add((type(m).__name__, m.kernel_size, m.stride, m.ceil_mode))
    assert {("MaxPool2d", 3, 1, False), ("MaxPool2d", 3, 2, True), ("MaxPool2d", 3, 2, False),
            ("MaxPool2d", 2, 2, False), ("AvgPool2d", 2, 2, False)} <= seen
    assert {("maxpool", "ms_per_gflop"), ("pool", "ms_per_gflop")} <= set(FEATURES)


@pytest.mark.parametrize("label", ["concat#981924/1x28x28", "plain#763564/1x28x28"])
def test_a_pool_that_would_empty_a_small_map_is_left_out(label: str) -> None:
    """A pooled stem plus a pool per stage reached a 1×1 map at 28×28, and the next 2×2 pool
    emptied it: `budgetsearch profile --seed 3` crashed on these draws."""
    from budgetsearch.profiling.networks import build_labelled

    model, x = build_labelled(label)
    assert model.eval()(x).shape[0] == 1


def test_each_burst_times_the_steady_state_after_its_untimed_calls() -> None:
    """A network's first calls after another one ran are slow: each visit makes ``settle``
    untimed calls first, and only the burst after them is timed."""
    import time

    from budgetsearch.profiling.timing import SETTLE, time_rounds

    cold_ms, warm_ms = 20.0, 1.0
    calls: list[int] = []

    def runner() -> None:  # cold on the first SETTLE calls of each visit, then warm
        calls.append(1)
        time.sleep((cold_ms if len(calls) % (SETTLE + 3) <= SETTLE and
                    len(calls) % (SETTLE + 3) else warm_ms) * 1e-3)

    per_round = time_rounds([runner], rounds=2, inner=3, warmup=0)
    assert len(calls) == 2 * (SETTLE + 3)  # settle + inner calls per visit, nothing else
    assert per_round.max() < cold_ms / 2  # the burst never met a cold call
    calls.clear()
    unsettled = time_rounds([runner], rounds=2, inner=3, warmup=0, settle=0)
    assert unsettled.max() > cold_ms / 2  # settle=0 (profiles recorded before it): cold calls
    with pytest.raises(ValueError, match="settle"):
        time_rounds([runner], rounds=1, settle=-1)


def test_a_network_with_many_mb_of_weights_settles_until_they_are_cached() -> None:
    """Weights become cached over several passes (``SETTLE_MB``): a runner naming its
    ``weight_bytes`` gets one untimed call per ``settle_mb`` MB (at least ``settle``), bounded
    by ``SETTLE_MAX_S``; ``settle_mb=0`` (profiles recorded before it) keeps ``settle``."""
    import time

    from budgetsearch.profiling import timing
    from budgetsearch.profiling.timing import make_runner, settle_calls, time_rounds, weight_bytes

    calls: list[int] = []

    def runner() -> None:
        calls.append(1)

    runner.weight_bytes = 30_000_000  # type: ignore[attr-defined]
    assert settle_calls(runner, 3, 3.0) == 10 and settle_calls(runner, 12, 3.0) == 12
    assert settle_calls(runner, 3, 0.0) == 3 and settle_calls(lambda: None, 3, 3.0) == 3
    time_rounds([runner], rounds=2, inner=5, warmup=0, settle=3, settle_mb=3.0)
    assert len(calls) == 2 * (10 + 5)
    calls.clear()
    time_rounds([runner], rounds=2, inner=5, warmup=0, settle=3, settle_mb=0.0)
    assert len(calls) == 2 * (3 + 5)

    def slow() -> None:  # its settling would take 1 s: the bound stops it after ~SETTLE_MAX_S
        calls.append(1)
        time.sleep(0.05)

    slow.weight_bytes = 60_000_000  # type: ignore[attr-defined]
    calls.clear()
    time_rounds([slow], rounds=1, inner=1, warmup=0, settle=3, settle_mb=3.0)
    assert 3 + 1 <= len(calls) <= math.ceil(timing.SETTLE_MAX_S / 0.05) + 2
    with pytest.raises(ValueError, match="settle_mb"):
        time_rounds([runner], rounds=1, settle_mb=-1.0)
    # make_runner names the bytes of the model's parameters and buffers (fp32: 4 per element)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4))
    expected = 4 * (4 * 2 * 9 + 4 + 4 + 4 + 4 + 4) + 8  # conv w, b; bn w, b, mean, var; int64
    assert weight_bytes(net) == expected
    run = make_runner(net, torch.zeros(1, 2, 6, 6), runtime="pytorch-eager", threads=1)
    assert run.weight_bytes == expected  # type: ignore[attr-defined]


def test_a_profile_records_how_its_anchors_were_timed_and_old_ones_had_no_settle() -> None:
    from dataclasses import replace

    from budgetsearch.profiling.anchors import recorded_timing

    profile = _unit()
    legacy = replace(profile, anchors={k: v for k, v in profile.anchors.items() if k != "settle"})
    assert recorded_timing(legacy)["settle"] == 0 and recorded_timing(legacy)["settle_mb"] == 0
    assert recorded_timing(replace(profile, anchors={**profile.anchors, "settle": 3,
                                                     "settle_mb": 3.0})) == {
        "rounds": int(profile.anchors.get("rounds", 40)), "inner": int(profile.anchors["inner"]),
        "settle": 3, "settle_mb": 3.0}


def test_each_fit_network_is_timed_alone_in_a_process_of_its_own() -> None:
    """On the CPU the fit set is timed one network per forked process (a process that has run
    others runs each network slower): a row per label, a column per round, NaN for the rounds a
    deadline cut; a label naming no fit-set network fails as the forked process raised it."""

    from budgetsearch.profiling.alone import time_each_alone

    labels = [NetworkSpec(f, (1, 1, 28, 28), 3).label for f in ("plain", "wrn")]
    per_round = time_each_alone(labels, runtime="pytorch-eager", threads=1, rounds=3, inner=2,
                                warmup=1)
    assert per_round.shape == (2, 3) and (per_round > 0).all()
    cut = time_each_alone(labels[:1], runtime="pytorch-eager", threads=1, rounds=50, inner=2,
                          warmup=1, deadline_s=1e-6)
    assert cut.shape == (1, 1)  # the first round always runs; none started after the deadline
    with pytest.raises(ValueError, match="fit-set network"):
        time_each_alone(["nonsense"], runtime="pytorch-eager", threads=1, rounds=1, inner=1)
    # passes split the rounds (the last takes the rest); onnxruntime loads the given exports
    from budgetsearch.profiling.networks import build_labelled
    from budgetsearch.profiling.timing import export_onnx

    exports = [export_onnx(*build_labelled(label)) for label in labels]
    passes = time_each_alone(labels, runtime="onnxruntime", threads=1, rounds=3, inner=1,
                             warmup=0, passes=2, onnx=exports)
    assert passes.shape == (2, 3) and (passes > 0).all()
    with pytest.raises(ValueError, match="passes must be from 1 to rounds"):
        time_each_alone(labels, runtime="onnxruntime", threads=1, rounds=1, inner=1, passes=2)
    with pytest.raises(ValueError, match="one export per label"):
        time_each_alone(labels, runtime="onnxruntime", threads=1, rounds=2, inner=1,
                        onnx=exports[:1])
    assert time_each_alone([], runtime="pytorch-eager", threads=1, rounds=2, inner=1).size == 0
    # an export that is no ONNX: the forked process fails, the server says why and lives on
    with pytest.raises(RuntimeError, match=r"timing .* alone: .*"):
        time_each_alone(labels[:1], runtime="onnxruntime", threads=1, rounds=1, inner=1,
                        onnx=[b"not onnx"])


def test_a_forked_process_that_hangs_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A network that never answers is killed after CHILD_TIMEOUT_S and reported; the server
    goes on to the next one."""
    from budgetsearch.profiling import alone

    monkeypatch.setattr(alone, "CHILD_TIMEOUT_S", 2.0)
    label = NetworkSpec("plain", (1, 1, 28, 28), 3).label
    with pytest.raises(RuntimeError, match="killed after 2 s"):
        # so many rounds of so many calls that it cannot finish in 2 s
        alone.time_each_alone([label], runtime="pytorch-eager", threads=1, rounds=1000,
                              inner=1000, warmup=0)


def test_where_the_platform_cannot_fork_the_fit_set_is_timed_in_one_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from budgetsearch.profiling import fit

    networks = [build_spec(NetworkSpec("plain", (1, 1, 28, 28), 3))]
    assert fit.timed_alone("pytorch-eager") and fit.timed_alone("onnxruntime")
    assert not fit.timed_alone("pytorch-cuda")
    monkeypatch.setattr(fit, "alone_supported", lambda: False)
    monkeypatch.setattr(fit, "time_each_alone", lambda *a, **k: pytest.fail("forked"))
    assert not fit.timed_alone("pytorch-eager")
    per_round = fit.time_fit_set(networks, runtime="pytorch-eager", threads=1, rounds=2,
                                 inner=1)
    assert per_round.shape == (1, 2) and (per_round > 0).all()
