"""Channel groups on any CNN: discovery, gating, pricing and compaction, checked against the gated
network's own output and fvcore's count of the compacted network."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
import torchvision
from fvcore.nn import FlopCountAnalysis, parameter_count
from torch import nn

from budgetsearch.cost.inventory import LayerInventory, layer_inventory
from budgetsearch.pruners.channel_gating import GroupGating, attach_group_gates, gates_holder
from budgetsearch.pruners.channel_group_cost import expected_kept_channels
from budgetsearch.pruners.channel_groups import (
    INPUT_REASON,
    OUTPUT_REASON,
    ChannelGroups,
    find_channel_groups,
)
from tests.conftest import SqueezeExcite


class TinyNet(nn.Module):
    """Residual add, a grouped conv, squeeze-excitation, a conv without BatchNorm, a
    concatenation, a depthwise conv and a functional pool before the classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.grouped = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=4, bias=False),
                                     nn.BatchNorm2d(32), nn.ReLU())
        self.se = SqueezeExcite(32, 8)
        self.project = nn.Sequential(nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.plain = nn.Conv2d(16, 12, 3, padding=1)  # no BatchNorm: gated at its output
        self.side = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                                  nn.BatchNorm2d(8))
        self.head = nn.Sequential(nn.Conv2d(20, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = F.relu(self.project(self.se(self.grouped(self.expand(x)))) + x)
        x = torch.cat([F.relu(self.plain(x)), self.side(x)], dim=1)
        x = self.head(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _torchvision(name: str) -> nn.Module:
    return getattr(torchvision.models, name)(weights=None, num_classes=10)


NETWORKS = {
    "tiny": TinyNet,
    "resnet18": lambda: _torchvision("resnet18"),
    "mobilenet_v2": lambda: _torchvision("mobilenet_v2"),
    "mobilenet_v3_small": lambda: _torchvision("mobilenet_v3_small"),
    "shufflenet_v2_x0_5": lambda: _torchvision("shufflenet_v2_x0_5"),
}
# building, tracing and compacting a torchvision network takes a few seconds on 2 shared cores
PARAMS = [
    pytest.param(name, marks=pytest.mark.slow) if name not in ("tiny", "resnet18") else name
    for name in NETWORKS
]


@dataclass
class Case:
    model: nn.Module
    x: torch.Tensor
    ungated_output: torch.Tensor
    gated_output: torch.Tensor
    inventory: LayerInventory
    groups: ChannelGroups
    gating: GroupGating
    compact: nn.Module


def _randomise_batchnorm(model: nn.Module) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)


def _random_gates(gating: GroupGating, generator: torch.Generator) -> None:
    """Some channels of each group off (log α very negative), ≥ 1 kept; the others at
    deterministic values in (0, 1], so that folding is tested too."""
    with torch.no_grad():
        for _, gate in gating.named_gates():
            log_alpha = torch.rand(gate.channels, generator=generator) * 5 - 1
            off = torch.rand(gate.channels, generator=generator) < 0.4
            off[torch.randint(gate.channels, (1,), generator=generator)] = False
            log_alpha[off] = -10.0
            gate.log_alpha.copy_(log_alpha)


@pytest.fixture(scope="module", params=PARAMS)
def case(request: pytest.FixtureRequest) -> Case:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = NETWORKS[request.param]().eval()
    _randomise_batchnorm(model)
    x = torch.randn(2, 3, 32, 32, generator=generator)
    inventory = layer_inventory(model, x[:1])
    with torch.no_grad():
        ungated = model(x)
    groups = find_channel_groups(model, x[:1])
    gating = attach_group_gates(model, groups)
    _random_gates(gating, generator)
    model.eval()
    with torch.no_grad():
        gated = model(x)
    return Case(model, x, ungated, gated, inventory, groups, gating, gating.compact().eval())


def test_compact_computes_what_the_gated_network_does(case: Case) -> None:
    with torch.no_grad():
        compact_output = case.compact(case.x)
    assert (compact_output - case.gated_output).abs().max() < 1e-4
    assert (case.gated_output - case.ungated_output).abs().max() > 1e-3  # gates did something


def test_price_of_kept_channels_equals_fvcore_of_compact(case: Case) -> None:
    price = case.inventory.price(kept_channels=case.gating.kept_channels(case.inventory))
    flops = FlopCountAnalysis(case.compact, case.x[:1])
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    assert price.params == parameter_count(case.compact)[""]
    assert price.flops == flops.total()
    assert price.params < case.inventory.total_params


def test_compact_is_smaller_and_plain(case: Case) -> None:
    kept = sum(p.numel() for p in case.compact.parameters())
    assert kept < sum(p.numel() for n, p in case.model.named_parameters() if "gates" not in n)
    assert not any(type(m).__module__.startswith("budgetsearch") for m in case.compact.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in case.compact.modules())
    buffer = io.BytesIO()
    torch.save(case.compact, buffer)
    assert b"budgetsearch" not in buffer.getvalue()


def test_every_conv_and_linear_is_in_a_group_or_says_why_not(case: Case) -> None:
    grouped = {m.layer for g in case.groups.prunable for m in g.members}
    grouped |= {layer for u in case.groups.unprunable for layer in u.layers}
    layers = [n for n, m in case.compact.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert set(layers) <= grouped
    assert all(u.reason for u in case.groups.unprunable)
    reasons = {u.reason for u in case.groups.unprunable}
    assert OUTPUT_REASON in reasons and INPUT_REASON in reasons


def test_expected_cost_at_probability_one_is_the_full_cost(case: Case) -> None:
    ones = {g.name: torch.ones(g.width, dtype=torch.float64) for g in case.groups.prunable}
    expected = expected_kept_channels(case.groups, ones, case.inventory)
    for metric, full in (("params", case.inventory.total_params),
                         ("flops", case.inventory.total_flops),
                         ("activation_volume", case.inventory.total_activation_volume)):
        cost = case.inventory.expected_cost(metric, kept_channels=expected)
        assert float(cost) == pytest.approx(full, rel=1e-12)


def test_gradients_of_the_expected_cost_reach_every_log_alpha(case: Case) -> None:
    for _, gate in case.gating.named_gates():
        gate.log_alpha.grad = None
    expected = case.gating.expected_kept_channels(case.inventory)
    case.inventory.expected_cost("flops", kept_channels=expected).backward()
    for name, gate in case.gating.named_gates():
        assert gate.log_alpha.grad is not None, name
        alive = gate.log_alpha > -4.6  # gradients pass only inside the clamp
        assert bool((gate.log_alpha.grad[alive] > 0).all()), name


def test_report_lists_kept_channels_and_reasons(case: Case) -> None:
    rows = case.gating.report()
    prunable = [r for r in rows if r.reason is None]
    assert [r.name for r in prunable] == [g.name for g in case.groups.prunable]
    for row in prunable:
        assert 1 <= row.kept <= row.total
        assert row.kept == int(case.gating.gate(row.name).kept_mask().sum())
    assert len(rows) == len(case.groups.prunable) + len(case.groups.unprunable)


# -- the small network's groups, one by one --------------------------------------------------


@pytest.fixture(scope="module")
def tiny_groups() -> ChannelGroups:
    return find_channel_groups(TinyNet().eval(), torch.zeros(1, 3, 16, 16))


def test_groups_follow_residual_concat_squeeze_excitation_and_plain_convs(
    tiny_groups: ChannelGroups,
) -> None:
    stem = tiny_groups["stem.0"]
    assert stem.gate_sites == ("stem.1", "project.1")  # the residual add couples both BNs
    assert {"plain", "side.0"} <= set(stem.layers)
    assert tiny_groups["plain"].gate_sites == ("plain",)  # no BatchNorm: gate the conv output
    squeeze = tiny_groups["se.fc1"]
    assert squeeze.gate_sites == ("se.fc1",)
    assert [(m.layer, m.dim) for m in squeeze.members] == [("se.fc1", "out"), ("se.fc2", "in")]
    side = tiny_groups["side.0"]
    assert ("side.3", "both", "depthwise") in [(m.layer, m.dim, m.op) for m in side.members]
    head_in = [m for m in tiny_groups["side.0"].members if m.layer == "head.0"]
    assert head_in[0].indices == tuple(range(12, 20))  # after the 12 channels of `plain`
    head = tiny_groups["head.0"]
    assert "<model>#adaptive_avg_pool2d" in head.layers  # the functional pool is priced


def test_grouped_conv_output_class_scores_and_input_are_not_pruned(
    tiny_groups: ChannelGroups,
) -> None:
    reasons = {u.layers[0]: u.reason for u in tiny_groups.unprunable}
    assert "grouped conv 'grouped.0' (groups=4)" in reasons["expand.0"]
    assert "grouped conv 'grouped.0'" in reasons["grouped.0"]
    assert reasons["fc"] == OUTPUT_REASON
    assert reasons["stem.0"] == INPUT_REASON
    assert "expand.0" not in [g.name for g in tiny_groups.prunable]


def test_compact_tiny_network_traces_and_exports() -> None:
    model = TinyNet().eval()
    x = torch.randn(1, 3, 16, 16)
    gating = attach_group_gates(model, find_channel_groups(model, x))
    _random_gates(gating, torch.Generator().manual_seed(1))
    compact = gating.compact().eval()
    with torch.no_grad():
        expected = compact(x)
        assert torch.allclose(torch.jit.trace(compact, x)(x), expected, atol=1e-5)
        assert torch.allclose(torch.export.export(compact, (x,)).module()(x), expected, atol=1e-5)


def test_training_mode_draws_one_gate_per_forward_for_all_sites() -> None:
    model = TinyNet().train()
    x = torch.randn(2, 3, 16, 16)
    groups = find_channel_groups(model, x)
    assert model.training  # restored after tracing
    gating = attach_group_gates(model, groups, init_log_alpha=0.0)
    seen = []
    model.stem[1].register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    model(x).sum().backward()
    z = gating.gate("stem.0").last_gate
    assert z is not None and not bool(((z == 0) | (z == 1)).all())  # sampled, not deterministic
    assert gating.gate("stem.0").log_alpha.grad is not None


def test_remove_restores_the_model() -> None:
    model = TinyNet().eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
    gating = attach_group_gates(model, find_channel_groups(model, x))
    _random_gates(gating, torch.Generator().manual_seed(2))
    gating.remove()
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert not gates_holder(model) is not None


def test_bad_input_is_refused() -> None:
    model = TinyNet().eval()
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(TypeError, match="example_input must be a torch.Tensor"):
        find_channel_groups(model, x.numpy())  # type: ignore[arg-type]
    groups = find_channel_groups(model, x)
    gating = attach_group_gates(model, groups)
    with pytest.raises(ValueError, match="already has 'channel_group_gates'"):
        attach_group_gates(model, groups)
    with pytest.raises(ValueError, match="which the model does not have"):
        attach_group_gates(nn.Sequential(nn.Conv2d(3, 4, 1)), groups)
    with torch.no_grad():
        gating.gate("plain").log_alpha.fill_(-10.0)
    with pytest.raises(ValueError, match="keep no channel"):
        gating.compact()
    with pytest.raises(ValueError, match="must have shape"):
        expected_kept_channels(groups, {g.name: torch.ones(1) for g in groups.prunable},
                               layer_inventory(TinyNet(), x))


def test_gates_on_a_sequential_model_stay_out_of_its_forward() -> None:
    # nn.Sequential calls every child in turn: gates registered on it were called as a layer
    # ("Module [ModuleDict] is missing the required forward function").
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    x = torch.randn(2, 1, 8, 8)
    gating = attach_group_gates(model, find_channel_groups(model, x))
    assert gates_holder(model) is not model
    assert model.eval()(x).shape == (2, 3)
    gating.remove()
    assert gates_holder(model) is None
