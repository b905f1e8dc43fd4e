"""BAR: gates, barrier, schedule, compaction, cost agreement, clamp (tiny models, oracles)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from fvcore.nn import FlopCountAnalysis, parameter_count

from budgetsearch.models import build_model
from budgetsearch.models.mixed import CompactResNet, MixedBlock
from budgetsearch.pruners import BudgetInfeasible, build_pruner
from budgetsearch.pruners.bar import BARConfig, BARPruner
from budgetsearch.pruners.bar_layout import attach_gates, prune_plan
from budgetsearch.pruners.bar_schedule import BARRIER_CAP, barrier, budget_margins, transition
from budgetsearch.pruners.compaction import compact_model
from budgetsearch.pruners.hard_concrete import (
    BETA,
    GAMMA,
    LOG_ALPHA_ALIVE,
    LOG_ALPHA_LIMIT,
    ZETA,
    HardConcreteGate,
    deterministic_gate,
    hard_concrete_sample,
    prob_nonzero,
)

EXAMPLE = torch.zeros(1, 1, 16, 16)


# -- Hard-Concrete ----------------------------------------------------------------------------


@pytest.mark.parametrize("log_alpha", [-3.0, -1.0, 0.0, 2.0])
def test_prob_nonzero_matches_sampled_frequency(log_alpha: float) -> None:
    generator = torch.Generator().manual_seed(0)
    samples = hard_concrete_sample(torch.full((200_000,), log_alpha), generator=generator)
    expected = 1.0 / (1.0 + math.exp(-(log_alpha - BETA * math.log(-GAMMA / ZETA))))
    assert float(prob_nonzero(torch.tensor(log_alpha))) == pytest.approx(expected, rel=1e-6)
    assert float((samples > 0).float().mean()) == pytest.approx(expected, abs=0.005)
    assert samples.min() >= 0 and samples.max() <= 1


def test_log_alpha_zero_puts_equal_mass_at_zero_and_one() -> None:
    # supp. section 7.1: with log α = 0, P(z = 0) = P(z = 1) (γ, ζ symmetric about 1/2). The
    # paper's "≈ 0.23" does not hold for β = 2/3: the mass is 1 − P(z > 0) = sigmoid(β log(1/11))
    # ≈ 0.168, which is what eq. (5) gives and what sampling shows.
    samples = hard_concrete_sample(torch.zeros(200_000), generator=torch.Generator().manual_seed(1))
    at_zero = 1.0 - float(prob_nonzero(torch.tensor(0.0)))
    assert at_zero == pytest.approx(0.168, abs=0.001)
    assert float((samples == 0).float().mean()) == pytest.approx(at_zero, abs=0.005)
    assert float((samples == 1).float().mean()) == pytest.approx(at_zero, abs=0.005)


def test_gate_is_deterministic_in_eval_and_finite_at_extremes() -> None:
    gate = HardConcreteGate(4)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([-50.0, LOG_ALPHA_ALIVE - 0.01, 0.0, 50.0]))
    gate.eval()
    x = torch.ones(2, 4, 3, 3)
    first, second = gate(x), gate(x)
    torch.testing.assert_close(first, second)
    assert first[0, 0].abs().max() == 0 and first[0, 1].abs().max() == 0
    assert first[0, 3].min() == 1.0
    assert gate.kept_mask().tolist() == [False, False, True, True]
    gate.train()
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([-1e6, -1.0, 1.0, 1e6]))
    out = gate(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(gate.log_alpha.grad).all()
    assert float(deterministic_gate(torch.tensor(LOG_ALPHA_LIMIT))) <= 1.0


def test_clamp_keeps_at_least_one_channel() -> None:
    gate = HardConcreteGate(6, min_alive=1)
    with torch.no_grad():
        gate.log_alpha.fill_(-4.0)
        gate.log_alpha[2] = -3.0
    assert int(gate.kept_mask().sum()) == 0
    gate.clamp_alive()
    assert gate.kept_mask().tolist() == [False, False, True, False, False, False]


# -- barrier and schedule ---------------------------------------------------------------------


def test_barrier_matches_hand_computed_values() -> None:
    a, b = 10.0, 20.0
    assert barrier(5.0, a, b) == 0.0 and barrier(10.0, a, b) == 0.0  # V ≤ a
    assert barrier(15.0, a, b) == pytest.approx(25.0 / (5.0 * 10.0))  # (V−a)²/((b−V)(b−a))
    assert barrier(19.0, a, b) == pytest.approx(81.0 / (1.0 * 10.0))
    assert barrier(20.0, a, b) == BARRIER_CAP and barrier(1e9, a, b) == BARRIER_CAP
    assert barrier(19.999999999, a, b, cap=100.0) == 100.0
    with pytest.raises(ValueError, match="b > a"):
        barrier(1.0, 2.0, 2.0)


def test_transition_endpoints_and_formula() -> None:
    for kind in ("sigmoid", "linear", "exponential"):
        assert transition(0.0, 10.0, kind) == pytest.approx(0.0, abs=1e-12)  # type: ignore[arg-type]
        assert transition(1.0, 10.0, kind) == pytest.approx(1.0)  # type: ignore[arg-type]
    d, t = 10.0, 0.3
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    delta = sig(-0.5 * d)
    assert transition(t, d) == pytest.approx((sig(d * (t - 0.5)) - delta) / (1 - 2 * delta))
    assert transition(0.5, d) == pytest.approx(0.5)
    assert transition(t, 1e-3) == pytest.approx(t, abs=1e-3)  # d → 0: linear
    assert transition(0.1, 10.0, "exponential") > 0.5  # fast start


def test_budget_margins_follow_eq_7() -> None:
    full, budget = 1000.0, 250.0
    a0, b0 = budget_margins(0.0, full, budget)
    a1, b1 = budget_margins(1.0, full, budget)
    assert a0 == a1 == pytest.approx(budget - 1e-4 * full)
    assert b0 == pytest.approx(full) and b1 == pytest.approx(budget)
    _, bmid = budget_margins(0.3, full, budget)
    tt = transition(0.3)
    assert bmid == pytest.approx((1 - tt) * full + tt * budget)


def test_config_validation_names_the_option() -> None:
    with pytest.raises(ValueError, match="budget"):
        BARConfig(budget=1.5)
    with pytest.raises(ValueError, match="profile"):
        BARPruner(metric="latency")
    with pytest.raises(TypeError, match="unknown BAR option"):
        BARPruner(bugdet=0.5)
    with pytest.raises(ValueError, match="finetune_lr_factor"):
        BARConfig(finetune_lr_factor=2.0)
    with pytest.raises(ValueError, match="phase_fractions"):
        BARConfig(phase_fractions=(0.5, 0.5, 0.5))


# -- compaction -------------------------------------------------------------------------------


def _random_gates(model_name: str, seed: int, *, kill_branch: int | None = None):
    torch.manual_seed(seed)
    model = build_model(model_name)
    layout = attach_gates(model)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # give BatchNorm non-trivial running statistics
            model(torch.randn(8, 1, 16, 16))
        for _, gate in layout.named_gates():
            gate.log_alpha.normal_(0.0, 3.0)
        if kill_branch is not None:
            layout.blocks[kill_branch].mid.log_alpha.fill_(-5.0)
        for _, gate in layout.named_gates():
            gate.clamp_alive()
    return model.eval(), layout


@pytest.mark.parametrize(("model_name", "seed", "kill"), [
    ("wrn-10-1", 0, 0), ("wrn-16-2", 1, 1), ("wrn-16-2", 2, 2), ("resnet-20", 3, 4)])
def test_compact_model_computes_the_gated_function(model_name: str, seed: int, kill: int) -> None:
    model, layout = _random_gates(model_name, seed, kill_branch=kill)
    plan = prune_plan(layout)
    assert not plan.blocks[kill].branch_alive
    compact = compact_model(layout).eval()
    assert all(isinstance(b, MixedBlock) for b in compact.blocks)
    # mixed connectivity really happens: some block writes fewer channels than its stream holds
    assert any(b.conv2 is not None and b.conv2.out_channels < b.out_width for b in compact.blocks)
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        assert (model(x) - compact(x)).abs().max() <= 1e-4
    # saved and loaded as a plain module
    buffer = io.BytesIO()
    torch.save(compact, buffer)
    buffer.seek(0)
    reloaded = torch.load(buffer, weights_only=False).eval()
    assert isinstance(reloaded, CompactResNet)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), compact(x))


def test_fully_pruned_identity_block_is_removed() -> None:
    model, layout = _random_gates("wrn-16-2", 4, kill_branch=1)  # layer1.1: identity residual
    compact = compact_model(layout)
    assert len(compact.blocks) == len(layout.blocks) - 1


def test_fvcore_count_of_compact_model_equals_cost_model_price() -> None:
    model, layout = _random_gates("wrn-16-2", 5, kill_branch=3)
    # a pruner wrapping this layout prices it with the inventory of the dense model
    pruner = BARPruner(budget=1.0, distillation=False)
    dense = build_model("wrn-16-2")
    pruner.prepare(dense, EXAMPLE)
    with torch.no_grad():
        pairs = zip(pruner.layout.named_gates(), layout.named_gates(), strict=True)
        for (_, mine), (_, theirs) in pairs:
            mine.log_alpha.copy_(theirs.log_alpha)
    plan = prune_plan(pruner.layout)
    compact = compact_model(pruner.layout).eval()
    flops = FlopCountAnalysis(compact, EXAMPLE)
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    priced = pruner.inventory.price(kept_channels=pruner.kept_channels(plan, "mixed"))
    assert flops.total() == priced.flops
    assert parameter_count(compact)[""] == priced.params
    regular = pruner.inventory.price(kept_channels=pruner.kept_channels(plan, "regular"))
    assert priced.activation_volume <= regular.activation_volume
    assert priced.flops <= regular.flops


def test_expected_cost_is_differentiable_and_below_full() -> None:
    pruner = BARPruner(budget=0.5, distillation=False, metric="flops")
    pruner.prepare(build_model("wrn-10-1"), EXAMPLE)
    expected = pruner.expected_cost()
    expected.backward()
    grads = [g.log_alpha.grad for _, g in pruner.layout.named_gates()]
    assert all(g is not None and torch.isfinite(g).all() and (g > 0).all() for g in grads)
    assert 0 < float(expected.detach()) < pruner.full_cost["flops"]


def test_hard_prune_meets_the_budget_and_keeps_the_network_alive() -> None:
    pruner = build_pruner("bar", budget=0.1, distillation=False)
    model = pruner.prepare(build_model("wrn-10-1"), EXAMPLE)
    with torch.no_grad():
        for _, gate in pruner.layout.named_gates():
            gate.log_alpha.fill_(-4.0)  # everything would be pruned: the clamp keeps the stem/1×1
    plan = pruner.hard_prune()
    assert int(plan.stem.sum()) >= 1
    assert all(b.shortcut is None or int(b.shortcut.sum()) >= 1 for b in plan.blocks)
    compact = pruner.finalize().eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert (compact(x) - model.eval()(x)).abs().max() <= 1e-4
    report = pruner.report()
    assert report.cost["activation_volume"] <= pruner.budget_value
    assert report.extra["removed_blocks"]


def test_budget_projection_counts_removed_channels() -> None:
    pruner = build_pruner("bar", budget=0.3, distillation=False)
    pruner.prepare(build_model("wrn-10-1"), EXAMPLE)
    pruner.hard_prune()  # untrained gates are all on: the safety net has to act
    assert pruner.projected_channels > 0
    assert pruner.report().cost["activation_volume"] <= pruner.budget_value
    assert all(not g.log_alpha.requires_grad for _, g in pruner.layout.named_gates())
    assert pruner.param_groups(lr=0.1) == []


# latency at 0.7: the measured profile's per-op overheads put wrn-10-1's narrowest network
# near half of the full network's time on a 16x16 input
@pytest.mark.parametrize(("metric", "budget"), [("flops", 0.5), ("latency", 0.7)])
def test_other_metrics_price_through_the_cost_model(metric: str, budget: float) -> None:
    pruner = BARPruner(budget=budget, metric=metric, profile="cpu-2core-x86", distillation=False)
    pruner.prepare(build_model("wrn-10-1"), EXAMPLE)
    expected = pruner.expected_cost()
    expected.backward()
    key = pruner.config.metric
    assert torch.isfinite(expected) and 0 < float(expected.detach()) <= pruner.full_cost[key]
    plan = pruner.hard_prune()
    assert pruner.hard_cost(plan) <= pruner.budget_value
    assert pruner.report().cost["latency_ms"] > 0


def test_one_trainer_runs_the_three_phases_and_freezes_the_gates() -> None:
    from budgetsearch.data import DatasetSplits, make_synthetic
    from budgetsearch.train import TrainConfig, train_phases

    train_set, test_set, classes = make_synthetic(num_train=128, num_test=32, image_size=16)
    data = DatasetSplits("synthetic", train_set, None, test_set, classes, 1, 16)
    torch.manual_seed(0)
    pruner = BARPruner(budget=0.5, gate_lr=0.2, phase_fractions=(2 / 3, 1 / 6, 1 / 6))
    model = pruner.prepare(build_model("wrn-10-1"), EXAMPLE)
    seen = []
    result = train_phases(model, data, TrainConfig(epochs=3, batch_size=32, progress=False),
                          pruner, on_phase_end=lambda i, phase, r: seen.append(
                              (phase.name, r.steps, pruner.hard_pruned)) or False)
    assert result.status == "ok"
    # 3 epochs of 4 steps: 8 / 2 / 2 steps; hard prune between the first and second phase.
    assert seen == [("prune", 8, False), ("frozen", 2, True), ("finetune", 2, True)]
    assert pruner.hard_pruned and all(g.frozen for _, g in pruner.layout.named_gates())
    kept_before = [layer.kept for layer in pruner.report().layers]
    compact = pruner.finalize().eval()
    assert [layer.kept for layer in pruner.report().layers] == kept_before
    assert pruner.report().cost["activation_volume"] <= pruner.budget_value
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        assert (compact(x) - model.eval()(x)).abs().max() <= 1e-4


def test_budget_below_the_smallest_network_is_refused_at_prepare() -> None:
    # Oracle: the hard cost of the network with every gate at its fatal-pruning minimum (the
    # stem and shortcuts keep one channel, every other gate none), priced by the cost model.
    probe = BARPruner(budget=1.0, metric="params", distillation=False)
    probe.prepare(build_model("wrn-10-1", num_classes=10, in_channels=1), torch.zeros(1, 1, 28, 28))
    smallest = probe.minimum_cost()
    assert 0 < smallest < probe.full_cost["params"]
    assert all(g.kept_mask().all() for _, g in probe.layout.named_gates())  # gates restored
    too_small = 0.9 * smallest / probe.full_cost["params"]
    pruner = BARPruner(budget=too_small, metric="params", distillation=False)
    with pytest.raises(BudgetInfeasible, match="cannot be met") as refused:
        pruner.prepare(build_model("wrn-10-1", num_classes=10, in_channels=1),
                       torch.zeros(1, 1, 28, 28))
    assert refused.value.minimum == pytest.approx(smallest)
    enough = 1.1 * smallest / probe.full_cost["params"]
    BARPruner(budget=enough, metric="params", distillation=False).prepare(
        build_model("wrn-10-1", num_classes=10, in_channels=1), torch.zeros(1, 1, 28, 28))


@pytest.mark.parametrize("pull", ["cost", "separate"])
def test_budget_pull_step_matches_its_formula(pull: str) -> None:
    # Oracle (BARConfig.pull): log α moves by −gate_lr · s · w_i with s = λf / (1 + λf),
    # g = ∂L_S/∂log α from autograd, w = clamp(g / mean|g|, −1, 1) ("cost") or sign(g).
    from budgetsearch.train import StepContext

    torch.manual_seed(0)
    pruner = BARPruner(budget=0.3, gate_lr=0.1, lam=2.0, pull=pull, distillation=False)
    pruner.prepare(build_model("wrn-10-1"), EXAMPLE)
    gates = [g for _, g in pruner.layout.named_gates()]
    logits = torch.zeros(1, 10)
    context = StepContext(EXAMPLE, torch.zeros(1, dtype=torch.long), logits,
                          torch.zeros(()), step=50, total_steps=100, epoch=0)
    terms = pruner.loss_terms(context)
    f = pruner.last_barrier["f"]
    assert f > 0 and float(terms["bar"]) > 0
    grads = torch.autograd.grad(pruner.expected_cost(), [g.log_alpha for g in gates])
    mean = torch.cat(grads).abs().mean()
    before = [g.log_alpha.detach().clone() for g in gates]
    pruner.after_step(context)
    s = 2.0 * f / (1.0 + 2.0 * f)
    for gate, grad, old in zip(gates, grads, before, strict=True):
        w = (grad / mean).clamp(-1, 1) if pull == "cost" else torch.sign(grad)
        expected = old - 0.1 * s * w
        if gate.min_alive:  # the fatal-pruning clamp may lift the top gates afterwards
            expected = torch.maximum(expected, gate.log_alpha.detach())
        torch.testing.assert_close(gate.log_alpha.detach(), expected)
    steps = torch.cat([(old - g.log_alpha.detach()) for g, old in zip(gates, before, strict=True)])
    assert float(steps.max()) <= 0.1 * s + 1e-6  # never faster than gate_lr
    if pull == "cost":  # cheaper channels (smaller g) move less than the costliest
        assert float(steps.min()) < float(steps.max())


def test_gates_start_near_one_so_pruning_starts_from_the_trained_function() -> None:
    # init_log_alpha = 3: every deterministic gate is 1, so the gated network in evaluation
    # computes exactly what the network computed before prepare().
    torch.manual_seed(0)
    model = build_model("wrn-10-1").eval()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        before = model(x)
    pruner = BARPruner(budget=0.5, distillation=False)
    gated = pruner.prepare(model, EXAMPLE).eval()
    assert all(bool((g.deterministic() == 1).all()) for _, g in pruner.layout.named_gates())
    with torch.no_grad():
        torch.testing.assert_close(gated(x), before)


@pytest.mark.parametrize("scope", ["uniform", "global"])
def test_latency_budgets_count_the_gathers_of_the_delivered_network(scope: str) -> None:
    # A compact mixed-connectivity network runs index_select / index_add the full network at
    # its kept channels does not: the channel choice meets a latency target with them counted
    # (what a trial's row and pareto price), not only at the kept channels.
    from budgetsearch.cost import Target, index_op_elements, layer_inventory, load_profile

    profile = load_profile("cpu-2core-x86", check=False)
    x = torch.zeros(1, 1, 28, 28)
    full = build_model("wrn-16-1")
    latency = layer_inventory(full, x).predict_latency_ms(profile)
    # 80%: a quarter of the channels kept; at 60% the profile's fixed per-call costs leave
    # almost nothing to keep, and the target is at the edge of what any channel choice meets
    target = Target("latency_ms", fraction=0.8, text="80%").resolve(latency)
    pruner = build_pruner("channel-magnitude", target=target, profile=profile, scope=scope)
    pruner.prepare(full, x)
    compact = pruner.finalize()
    gathers = profile.extra_ops_ms("index", index_op_elements(compact, x))
    kept = pruner.report().cost["latency_ms"]
    assert gathers > 0 and pruner.delivered_cost() == pytest.approx(kept + gathers)
    assert kept + gathers <= target.value * 1.001


@pytest.mark.parametrize("scope", ["uniform", "global"])
def test_a_latency_budget_only_the_gathers_break_is_refused(scope: str) -> None:
    # the smallest network at its kept channels meets the budget, with its gathers it does not:
    # channel-magnitude says so instead of delivering a network over the budget
    from budgetsearch.cost import Target, layer_inventory, load_profile
    from budgetsearch.pruners import BudgetInfeasible

    profile = load_profile("cpu-2core-x86", check=False)
    x = torch.zeros(1, 1, 28, 28)
    latency = layer_inventory(build_model("wrn-16-1"), x).predict_latency_ms(profile)
    probe = build_pruner("channel-magnitude", target=Target("latency_ms", value=latency),
                         profile=profile, scope=scope)
    probe.prepare(build_model("wrn-16-1"), x)
    smallest = probe.minimum_cost()
    pruner = build_pruner("channel-magnitude", profile=profile, scope=scope,
                          target=Target("latency_ms", value=smallest * 1.0001))
    with pytest.raises(BudgetInfeasible, match="gathers and scatters counted") as refused:
        pruner.prepare(build_model("wrn-16-1"), x)
    assert refused.value.minimum > refused.value.target
