"""BAR and channel magnitude pruning on any CNN (coupled channel groups), checked against the gated
network's own output, fvcore's count of the compact network and the target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
import torchvision
from fvcore.nn import FlopCountAnalysis, parameter_count
from torch import nn

from budgetsearch.cost import Target, layer_inventory
from budgetsearch.data import DatasetSplits, make_synthetic
from budgetsearch.models import build_model
from budgetsearch.pruners import build_pruner
from budgetsearch.pruners.bar import BARPruner
from budgetsearch.pruners.base import BudgetInfeasible, Pruner
from budgetsearch.pruners.channel_gating import gates_holder
from budgetsearch.pruners.channel_group_cost import kept_channels
from budgetsearch.pruners.channel_groups import INPUT_REASON, OUTPUT_REASON
from budgetsearch.pruners.channel_magnitude import ChannelMagnitudePruner
from budgetsearch.pruners.channel_structure import GroupStructure, PreActStructure
from budgetsearch.pruners.hard_concrete import LOG_ALPHA_LIMIT
from budgetsearch.testing import check_pruner
from budgetsearch.train import TrainConfig, train_phases
from tests.conftest import SqueezeExcite

EXAMPLE = torch.zeros(1, 3, 32, 32)


class SEGroupedNet(nn.Module):
    """A residual block with a grouped conv and squeeze-excitation, a depthwise-separable branch
    concatenated with a plain one, and a linear head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.grouped = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False),
                                     nn.BatchNorm2d(16), nn.ReLU())
        self.se = SqueezeExcite(16, 4)
        self.project = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.separable = nn.Sequential(
            nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False), nn.BatchNorm2d(16),
            nn.ReLU(), nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.plain = nn.Sequential(nn.Conv2d(16, 8, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = F.relu(self.project(self.se(self.grouped(self.expand(x)))) + x)
        x = torch.cat([self.separable(x), self.plain(x)], dim=1)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _torchvision(name: str) -> Callable[[], nn.Module]:
    return lambda: getattr(torchvision.models, name)(weights=None, num_classes=10)


NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "se-grouped": SEGroupedNet,
    "resnet18": _torchvision("resnet18"),
    "mobilenet_v2": _torchvision("mobilenet_v2"),
    "mobilenet_v3_small": _torchvision("mobilenet_v3_small"),
    "shufflenet_v2_x0_5": _torchvision("shufflenet_v2_x0_5"),
}
# tracing, training and compacting a torchvision network takes seconds on 2 shared cores
PARAMS = [name if name in ("se-grouped", "resnet18") else pytest.param(name, marks=pytest.mark.slow)
          for name in NETWORKS]


def _data() -> DatasetSplits:
    train_set, test_set, classes = make_synthetic(num_train=32, num_test=16, image_size=32,
                                                  in_channels=3)
    return DatasetSplits("synthetic", train_set, None, test_set, classes, 3, 32)


def _fvcore(model: nn.Module) -> tuple[int, int]:
    flops = FlopCountAnalysis(model.eval(), EXAMPLE)
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(flops.total()), int(parameter_count(model)[""])


@dataclass
class Run:
    name: str
    pruner: Pruner
    gated: nn.Module
    compact: nn.Module
    full_flops: int


def _prune(pruner: Pruner, name: str) -> Run:
    torch.manual_seed(0)
    model = pruner.prepare(NETWORKS[name](), EXAMPLE)
    result = train_phases(model, _data(), TrainConfig(epochs=1, batch_size=16, progress=False),
                          pruner)
    assert result.status == "ok"
    compact = pruner.finalize().eval()
    return Run(name, pruner, model.eval(), compact, _fvcore(NETWORKS[name]())[0])


@pytest.fixture(scope="module", params=PARAMS)
def bar_run(request: pytest.FixtureRequest) -> Run:
    return _prune(BARPruner(target=Target.parse("flops", "50%"), gate_lr=0.2,
                            distillation=False), request.param)


def test_bar_compact_network_computes_what_the_gated_one_does(bar_run: Run) -> None:
    assert isinstance(bar_run.pruner.structure, GroupStructure)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (bar_run.compact(x) - bar_run.gated(x)).abs().max() <= 1e-4
    assert not any(type(m).__module__.startswith("budgetsearch") for m in bar_run.compact.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in bar_run.compact.modules())


def test_bar_price_equals_fvcore_of_the_compact_network_and_meets_the_target(bar_run: Run) -> None:
    pruner = bar_run.pruner
    inventory = layer_inventory(NETWORKS[bar_run.name](), EXAMPLE)
    configuration = pruner.pruned_configuration()["kept_channels"]
    price = inventory.price(kept_channels=configuration)
    assert (price.flops, price.params) == _fvcore(bar_run.compact)
    assert pruner.target is not None and pruner.target.is_met(price.flops)
    assert price.flops < bar_run.full_flops  # something was pruned
    assert pruner.report().cost["flops"] == price.flops


def test_bar_report_lists_every_group_and_why_the_others_are_not_pruned(bar_run: Run) -> None:
    pruner = bar_run.pruner
    groups = pruner.layout.groups
    layers = pruner.report().layers
    pruned = [row for row in layers if row.pruned]
    assert [row.name for row in pruned] == [g.name for g in groups.prunable]
    for row in pruned:
        assert 1 <= row.kept <= row.total and row.reason is None
    unpruned = [row for row in layers if not row.pruned]
    assert [row.extra["layers"] for row in unpruned] == [u.layers for u in groups.unprunable]
    assert all(row.reason and row.kept == row.total for row in unpruned)
    reasons = {row.reason for row in unpruned}
    assert OUTPUT_REASON in reasons and INPUT_REASON in reasons
    if bar_run.name == "se-grouped":
        assert any("grouped conv 'grouped.0' (groups=4)" in r for r in reasons)
    if bar_run.name == "shufflenet_v2_x0_5":
        assert any("channel shuffle" in r for r in reasons)


def test_bar_structure_is_mixed_connectivity_only_for_preact_resnets() -> None:
    pruner = BARPruner(budget=0.5, distillation=False)
    pruner.prepare(build_model("wrn-10-1"), torch.zeros(1, 1, 16, 16))
    assert isinstance(pruner.structure, PreActStructure)
    unpruned = {row.name: row.reason for row in pruner.report().layers if not row.pruned}
    assert unpruned == {"conv1": INPUT_REASON, "fc": OUTPUT_REASON}
    pruner = BARPruner(budget=0.5, distillation=False)
    pruner.prepare(SEGroupedNet(), EXAMPLE)
    assert isinstance(pruner.structure, GroupStructure)


def test_budget_below_one_channel_per_group_is_refused_at_prepare() -> None:
    # Oracle: the network one channel wide in every group, priced from the groups' masks.
    probe = BARPruner(budget=1.0, metric="params", distillation=False)
    model = probe.prepare(SEGroupedNet(), EXAMPLE)
    groups = probe.layout.groups
    one = {g.name: torch.arange(g.width) == 0 for g in groups.prunable}
    smallest = probe.inventory.price(
        kept_channels=kept_channels(groups, one, probe.inventory)).params
    assert probe.minimum_cost() == smallest < probe.full_cost["params"]
    assert all(bool(g.kept_mask().all()) for _, g in probe.layout.named_gates())  # restored
    with pytest.raises(BudgetInfeasible, match="cannot be met") as refused:
        BARPruner(target=Target("params", 0.9 * smallest, text="x"), distillation=False).prepare(
            SEGroupedNet(), EXAMPLE)
    assert refused.value.minimum == smallest
    assert gates_holder(model) is not None
    refused_model = SEGroupedNet()
    with pytest.raises(BudgetInfeasible):
        BARPruner(budget=0.5 * smallest / probe.full_cost["params"], metric="params",
                  distillation=False).prepare(refused_model, EXAMPLE)
    assert not gates_holder(refused_model) is not None  # gates taken off again
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in refused_model.modules())


def test_budget_projection_switches_off_what_one_by_one_would() -> None:
    # Oracle: the one-channel-at-a-time loop (ascending log α, never below min_alive).
    def prepared() -> BARPruner:
        torch.manual_seed(1)
        pruner = BARPruner(budget=0.4, metric="flops", distillation=False)
        pruner.prepare(SEGroupedNet(), EXAMPLE)
        with torch.no_grad():
            for _, gate in pruner.layout.named_gates():
                gate.log_alpha.uniform_(-1.0, 3.0)
        return pruner

    pruner = prepared()
    pruner.hard_prune()
    oracle = prepared()
    gates = [gate for _, gate in oracle.layout.named_gates()]
    order = sorted(((float(g.log_alpha[c]), c, g) for g in gates
                    for c in torch.nonzero(g.kept_mask()).flatten().tolist()),
                   key=lambda item: item[0])
    switched = 0
    with torch.no_grad():
        for _, channel, gate in order:
            if oracle.hard_cost() <= oracle.budget_value:
                break
            if int(gate.kept_mask().sum()) > gate.min_alive:
                gate.log_alpha[channel] = -LOG_ALPHA_LIMIT
                switched += 1
    assert pruner.projected_channels == switched > 0
    for (_, mine), theirs in zip(pruner.layout.named_gates(), gates, strict=True):
        assert torch.equal(mine.kept_mask(), theirs.kept_mask())
    assert pruner.hard_cost() <= pruner.budget_value


def test_channel_magnitude_scores_a_group_by_every_filter_that_writes_it() -> None:
    # Oracle: the residual add couples the stem's output with `project`'s, so a stream channel's
    # norm is the sum of both filters' |w|.
    model = SEGroupedNet()
    pruner = ChannelMagnitudePruner(budget=0.6, scope="global")
    pruner.prepare(model, EXAMPLE)
    norms = pruner._norms()
    stem = model.stem[0].weight.abs().sum(dim=(1, 2, 3))
    project = model.project[0].weight.abs().sum(dim=(1, 2, 3))
    torch.testing.assert_close(norms["stem.0"], (stem + project).double())
    squeeze = model.se.fc1.weight.abs().sum(dim=1)
    torch.testing.assert_close(norms["se.fc1"], squeeze.double())
    assert set(norms) == {g.name for g in pruner.layout.groups.prunable}


@pytest.mark.parametrize("scope", ["uniform", "global"])
def test_channel_magnitude_on_a_torchvision_resnet(scope: str) -> None:
    pruner = ChannelMagnitudePruner(target=Target.parse("flops", "50%"), scope=scope)
    run = _prune(pruner, "resnet18")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (run.compact(x) - run.gated(x)).abs().max() <= 1e-4
    inventory = layer_inventory(NETWORKS["resnet18"](), EXAMPLE)
    price = inventory.price(kept_channels=pruner.pruned_configuration()["kept_channels"])
    assert (price.flops, price.params) == _fvcore(run.compact)
    assert pruner.target is not None and pruner.target.is_met(price.flops)
    assert price.flops >= 0.45 * run.full_flops  # as few channels removed as meet the target


CONFORMANCE = {
    "bar": {"gate_lr": 0.2, "distillation": True},
    "channel-magnitude": {"scope": "global"},
}


@pytest.mark.parametrize("name", list(CONFORMANCE))
def test_conformance_on_the_custom_network(name: str) -> None:
    outcome = check_pruner(lambda t: build_pruner(name, target=t, **CONFORMANCE[name]),
                           model_factory=SEGroupedNet, data=_data())
    assert outcome.passed == ["lifecycle", "budget met", "recount", "state", "determinism",
                              "infeasible"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFORMANCE))
def test_conformance_on_torchvision_resnet18(name: str) -> None:
    outcome = check_pruner(lambda t: build_pruner(name, target=t, **CONFORMANCE[name]),
                           model_factory=NETWORKS["resnet18"], data=_data())
    assert outcome.passed == ["lifecycle", "budget met", "recount", "state", "determinism",
                              "infeasible"]
    assert outcome.report is not None and outcome.report.overall_sparsity > 0


def test_docstring_example_runs() -> None:
    import doctest

    from budgetsearch.pruners import channel_structure

    assert doctest.testmod(channel_structure).failed == 0


@pytest.mark.parametrize("scope", ["uniform", "global"])
def test_channel_magnitude_keeps_multiples_of_the_profiles_channel_alignment(scope: str) -> None:
    from dataclasses import replace as replaced

    from budgetsearch.cost import load_profile

    ort = load_profile("cpu-2core-x86-ort", check=False)
    assert ort.channel_alignment == 8
    full = layer_inventory(SEGroupedNet(), EXAMPLE)
    counts = {}
    for profile in (ort, replaced(ort, channel_alignment=0), None):
        torch.manual_seed(0)
        pruner = ChannelMagnitudePruner(target=Target.parse("flops", "70%"), scope=scope,
                                        profile=profile)
        pruner.prepare(SEGroupedNet(), EXAMPLE)
        kept = pruner.pruned_configuration()["kept_channels"]
        assert pruner.target is not None and pruner.target.is_met(
            full.price(kept_channels=kept).flops)
        counts[None if profile is None else profile.channel_alignment] = {
            name: int(out) for name, (_, out) in kept.items()
            if full[name].op == "conv" and out < full[name].out_channels}
    aligned, unaligned = counts[8], counts[0]
    assert aligned and all(out % 8 == 0 for out in aligned.values()), aligned
    assert any(out % 8 for out in unaligned.values()), unaligned  # the rounding is the profile's
    assert counts[None] == unaligned
    # a budget aligned widths cannot meet is met with widths as they come
    pruner = ChannelMagnitudePruner(target=Target.parse("flops", "45%"), scope=scope,
                                    profile=ort)
    pruner.prepare(SEGroupedNet(), EXAMPLE)
    kept = pruner.pruned_configuration()["kept_channels"]
    assert pruner.target is not None and pruner.target.is_met(full.price(kept_channels=kept).flops)


@pytest.mark.parametrize("fraction", ["70%", "45%"])
def test_bar_rounds_its_widths_to_the_alignment_within_the_budget(fraction: str) -> None:
    from dataclasses import replace as replaced

    from budgetsearch.cost import load_profile

    ort = load_profile("cpu-2core-x86-ort", check=False)
    full = layer_inventory(SEGroupedNet(), EXAMPLE)

    def widths(profile: object) -> list[tuple[int, int]]:
        pruner = BARPruner(target=Target.parse("flops", fraction), profile=profile, gate_lr=0.2)
        run = _prune(pruner, "se-grouped")
        kept = pruner.pruned_configuration()["kept_channels"]
        price = full.price(kept_channels=kept)
        assert pruner.target is not None and pruner.target.is_met(price.flops)
        assert _fvcore(run.compact) == (price.flops, price.params)
        assert pruner.report().extra["aligned_widths"] == profile.channel_alignment
        return [(int(g.kept_mask().sum()), g.channels) for _, g in pruner.layout.named_gates()]

    def aligned(kept: int, channels: int) -> bool:  # a multiple, the whole group, or < one
        return kept % 8 == 0 or kept == channels or kept < 8

    assert all(aligned(*w) for w in widths(ort))
    if fraction == "70%":  # where BAR's own widths are not aligned (9 of 16 kept)
        assert not all(aligned(*w) for w in widths(replaced(ort, channel_alignment=0)))


@pytest.mark.parametrize("name", ["bar", "channel-magnitude"])
def test_an_aligned_minimum_cheaper_than_one_channel_a_group_is_reachable(name: str) -> None:
    # onnxruntime's profile prices 8 channels a group below 1 (aligned kernels): a latency
    # budget between the two is met, not refused as below the minimum
    from dataclasses import replace as replaced

    from budgetsearch.cost import load_profile

    ort = load_profile("cpu-2core-x86-ort", check=False)
    options = {"distillation": False} if name == "bar" else {}

    def minimum(profile: object) -> tuple[float, float]:  # (smallest network, full network)
        probe = BARPruner(target=Target.parse("latency_ms", "100%"), profile=profile,
                          distillation=False)
        probe.prepare(SEGroupedNet(), EXAMPLE)
        return probe.minimum_cost(), probe.budget_value

    aligned, full = minimum(ort)
    one_channel, _ = minimum(replaced(ort, channel_alignment=0))
    assert aligned < one_channel  # the premise: the profile's aligned kernels
    between = (aligned + one_channel) / 2 / full
    pruner = build_pruner(name, target=Target("latency_ms", fraction=between,
                                              text=f"{between:.2%}"),
                          profile=ort, **options)
    pruner.prepare(SEGroupedNet(), EXAMPLE)
    assert isinstance(pruner, BARPruner)
    assert pruner.minimum_cost() <= pruner.budget_value
    if name == "channel-magnitude":
        assert pruner.delivered_cost() <= pruner.budget_value


def test_bars_alignment_survives_its_state() -> None:
    from budgetsearch.cost import load_profile

    pruner = BARPruner(target=Target.parse("flops", "70%"),
                       profile=load_profile("cpu-2core-x86-ort", check=False), gate_lr=0.2)
    _prune(pruner, "se-grouped")
    state = pruner.state_dict()
    assert state["aligned_widths"] == 8
    again = BARPruner(target=Target.parse("flops", "70%"),
                      profile=load_profile("cpu-2core-x86-ort", check=False), gate_lr=0.2)
    again.prepare(SEGroupedNet(), EXAMPLE)
    again.load_state_dict(state)
    assert again.aligned_widths == 8
