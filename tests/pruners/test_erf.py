"""The erf-loss pruner against its oracles: erfinv, kthvalue, the appendix (eqs. 16–19)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import optimize, special
from torch import nn

from budgetsearch.data import DatasetSplits, make_synthetic
from budgetsearch.models import build_model
from budgetsearch.pruners import build_pruner
from budgetsearch.pruners.erf import (
    BUDGET_LAM,
    ErfPruner,
    make_pruning_permanent,
    prunable_layers,
)
from budgetsearch.pruners.erf_functional import (
    ErfSparsityLoss,
    binary_search_bound,
    counted_sparsity,
    erf_sparsity_loss,
    gaussian_bound,
    relative_bound_for_sparsity,
    ste_prune,
    ste_prune_relative,
)
from budgetsearch.train import StepContext, TrainConfig, train

EXAMPLE = torch.zeros(1, 1, 16, 16)


@pytest.fixture(scope="module")
def tiny_data() -> DatasetSplits:
    train_set, test_set, classes = make_synthetic(num_train=128, num_test=64, image_size=16)
    return DatasetSplits("synthetic", train_set, None, test_set, classes, 1, 16)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("wrn-10-1", num_classes=10, in_channels=1)


# -- bound functions --------------------------------------------------------------------------


@pytest.mark.parametrize("s", [0.1, 0.5, 0.85, 0.99])
def test_gaussian_bound_is_eq3_against_scipy_erfinv(s: float) -> None:
    w = torch.randn(4096, dtype=torch.float64)
    expected = float(w.std()) * math.sqrt(2) * special.erfinv(s)
    assert float(gaussian_bound(w, s)) == pytest.approx(expected, rel=1e-6)
    assert relative_bound_for_sparsity(s) == pytest.approx(
        math.sqrt(2) * float(torch.erfinv(torch.tensor(s, dtype=torch.float64))), rel=1e-12)


@pytest.mark.parametrize("s", [0.3, 0.85, 0.97])
@pytest.mark.parametrize("start", [None, 0.5, 10.0])
def test_binary_search_matches_kthvalue_within_epsilon(s: float, start: float | None) -> None:
    torch.manual_seed(1)
    w = torch.randn(100_000) * 0.05 + 0.01 * torch.rand(100_000)  # not quite Gaussian
    eps = 5e-4
    result = binary_search_bound(w, s, epsilon=eps, start=start)
    assert abs(result.sparsity - s) < eps  # eq. (2)
    assert counted_sparsity(w, result.bound) == pytest.approx(result.sparsity)
    k = round(s * w.numel())
    oracle = float(torch.kthvalue(w.abs(), k).values)  # k-th smallest magnitude
    lo, hi = sorted((oracle, result.bound))
    between = torch.count_nonzero((w.abs() >= lo) & (w.abs() < hi))  # weights the two split
    assert int(between) / w.numel() <= eps + 1 / w.numel()


def test_binary_search_from_last_bound_takes_few_passes() -> None:
    torch.manual_seed(2)
    w = torch.randn(200_000)
    first = binary_search_bound(w, 0.85)
    w += 0.001 * torch.randn_like(w)  # one SGD step's worth of change
    again = binary_search_bound(w, 0.85, start=first.bound)
    assert again.passes <= 4 and abs(again.sparsity - 0.85) < 5e-4


def test_binary_search_on_a_small_layer_returns_the_nearest_attainable() -> None:
    w = torch.randn(1000)
    result = binary_search_bound(w, 0.8505, epsilon=1e-6)
    assert abs(result.sparsity - 0.8505) <= 0.5 / 1000 + 1e-9


def test_bound_functions_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="sparsity must be a fraction in \\[0, 1\\), got 1.5"):
        gaussian_bound(torch.randn(10), 1.5)
    with pytest.raises(ValueError, match="epsilon must be positive, got -1"):
        binary_search_bound(torch.randn(10), 0.5, epsilon=-1)


# -- STE (appendix eqs. 13–18) ------------------------------------------------------------------


def test_ste_forward_prunes_and_backward_is_identity_eq16() -> None:
    w = torch.tensor([0.1, -2.0, 0.5, -0.3], requires_grad=True)
    out = ste_prune(w, 0.4)
    assert out.tolist() == [0.0, -2.0, 0.5, 0.0]  # eq. (1)
    g = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out.backward(g)
    assert torch.equal(w.grad, g)  # eq. (16): every weight updated


def test_ste_relative_bound_gradient_is_eq18() -> None:
    torch.manual_seed(3)
    w = torch.randn(500, dtype=torch.float64, requires_grad=True)
    r = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    sigma = w.detach().std()
    out = ste_prune_relative(w, r, sigma)
    g = torch.randn(500, dtype=torch.float64)
    out.backward(g)
    w_tilde = out.detach()
    assert torch.equal(w_tilde, torch.where(w.detach().abs() < r.detach() * sigma, 0.0, w.detach()))
    expected = ((w_tilde - w.detach()) / r.detach() * g).sum()  # eq. (18)
    assert float(r.grad) == pytest.approx(float(expected), rel=1e-12)
    assert torch.equal(w.grad, g)  # eq. (16)


def test_ste_relative_at_zero_bound_has_zero_bound_gradient() -> None:
    w = torch.randn(10, requires_grad=True)
    r = torch.tensor(0.0, requires_grad=True)
    ste_prune_relative(w, r).sum().backward()
    assert float(r.grad) == 0.0 and torch.isfinite(r.grad)


# -- sparsity loss (eqs. 5–9, 19) ---------------------------------------------------------------


def test_sparsity_loss_gradient_is_eq19() -> None:
    b = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([0.3], dtype=torch.float64)
    loss = erf_sparsity_loss(b, sigma)
    loss.backward()
    s = float(sigma)
    expected = -2 * math.exp(-(0.7**2) / (2 * s**2)) / (s * math.sqrt(2 * math.pi))  # eq. (19)
    assert float(b.grad) == pytest.approx(expected, rel=1e-12)
    assert float(loss.detach()) == pytest.approx(1 - math.erf(0.7 / (s * math.sqrt(2))), rel=1e-12)


def test_weighted_sparsity_loss_is_the_cost_fraction_kept_eq8_eq9() -> None:
    sizes = torch.tensor([100.0, 900.0])
    c = len(sizes) * sizes / sizes.sum()
    b = torch.tensor([0.0, 50.0])  # first layer dense, second fully pruned
    assert float(erf_sparsity_loss(b, torch.ones(2), c)) == pytest.approx(0.1)
    assert float(ErfSparsityLoss(c)(b, torch.ones(2))) == pytest.approx(0.1)
    assert float(erf_sparsity_loss(b, torch.ones(2))) == pytest.approx(0.5)  # eq. (6)


# -- the pruner ---------------------------------------------------------------------------------


def test_registered_and_options_validated() -> None:
    assert isinstance(build_pruner("erf", method="ga", sparsity=0.5), ErfPruner)
    with pytest.raises(ValueError, match="method must be one of bs, ga, adaptive, got 'xx'"):
        ErfPruner(method="xx")
    with pytest.raises(ValueError, match="sparsity must be a fraction in \\[0, 1\\), got 1.2"):
        ErfPruner(method="bs", sparsity=1.2)
    with pytest.raises(ValueError, match="needs budget"):
        ErfPruner(method="adaptive", loss="budget")
    with pytest.raises(ValueError, match="takes no budget"):
        ErfPruner(method="adaptive", loss="unconstrained", budget=0.2)
    with pytest.raises(ValueError, match="lam must be a finite number ≥ 0, got -1"):
        ErfPruner(loss="unconstrained", lam=-1)
    with pytest.raises(ValueError, match="weighting must be one of"):
        ErfPruner(budget=0.5, weighting="bytes")
    with pytest.raises(TypeError, match="unknown erf option"):
        ErfPruner(method="ga", sparsity=0.5, sparsityy=0.3)


def test_latency_weighting_needs_a_sparse_speedup_and_points_to_bar() -> None:
    with pytest.raises(ValueError, match="needs profile"):
        ErfPruner(budget=0.5, weighting="latency")
    with pytest.raises(ValueError, match=r"channel pruner \(build_pruner\('bar'"):
        ErfPruner(budget=0.5, weighting="latency", profile="jetson-nano")


def test_default_layers_are_conv_linear_with_1000_weights() -> None:
    model = _model()
    names = prunable_layers(model)
    modules = dict(model.named_modules())
    assert "conv1" not in names  # the stem: 1·16·9 weights
    assert all(modules[n].weight.numel() >= 1000 for n in names)
    assert prunable_layers(model, layer_types=("linear",), min_weights=0) == ["fc"]
    with pytest.raises(ValueError, match="not prunable"):
        prunable_layers(model, include=["bn"])


@pytest.mark.parametrize("method", ["bs", "ga"])
def test_fixed_sparsity_per_layer_and_dict(method: str) -> None:
    model = _model()
    pruner = ErfPruner(method=method, sparsity={"layer2.0.conv1": 0.7, "layer3.0.conv2": 0.9})
    pruner.prepare(model, EXAMPLE)
    model(EXAMPLE)
    pruner.finalize()
    layers = pruner.report().layers
    report = {layer.name: layer for layer in layers if layer.pruned}
    assert set(report) == {"layer2.0.conv1", "layer3.0.conv2"}
    # Every other conv/linear layer is listed as left dense, with the reason.
    dense = [layer for layer in layers if not layer.pruned]
    convs = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert {layer.name for layer in dense} == convs - set(report)
    assert all(layer.kept == layer.total and layer.counted == 0.0 for layer in dense)
    assert all(layer.reason == "not named in include / the sparsity dict" for layer in dense)
    tol = 5e-4 + 0.5 / report["layer2.0.conv1"].total if method == "bs" else 0.05
    assert report["layer2.0.conv1"].counted == pytest.approx(0.7, abs=tol)
    assert report["layer3.0.conv2"].counted == pytest.approx(0.9, abs=tol)
    assert report["layer3.0.conv2"].target == 0.9
    assert report["layer3.0.conv2"].estimated == pytest.approx(0.9, abs=0.05)


def _train_steps(pruner: ErfPruner, data: DatasetSplits, epochs: float = 2) -> None:
    model = _model()
    pruner.prepare(model, EXAMPLE)
    result = train(model, data, TrainConfig(epochs=epochs, batch_size=32, progress=False),
                   hooks=pruner)
    assert result.status == "ok", result.failure


def _ratios(pruner: ErfPruner) -> list[float]:
    return [float(pruner._param(m).clamped_ratio()) for m in pruner.layers.values()]


def test_adaptive_without_sparsity_loss_lowers_the_bounds(tiny_data: DatasetSplits) -> None:
    # λ = 0: only the task gradient of eq. (18) acts, and it shrinks the bounds (appendix).
    pruner = ErfPruner(loss="unconstrained", lam=0.0, bound_optimizer="adam", bound_lr=0.05)
    _train_steps(pruner, tiny_data)
    start = relative_bound_for_sparsity(0.3)
    assert sum(_ratios(pruner)) / len(pruner.layers) < start


def test_adaptive_unconstrained_raises_sparsity(tiny_data: DatasetSplits) -> None:
    pruner = ErfPruner(loss="unconstrained", lam=5.0, bound_optimizer="adam", bound_lr=0.05)
    _train_steps(pruner, tiny_data)
    assert min(_ratios(pruner)) > relative_bound_for_sparsity(0.3)  # eq. (7)


@pytest.mark.parametrize(("loss", "budget", "initial"), [
    ("budget", 0.2, 0.3),      # too dense: sparsity must rise to 80 %
    ("budget", 0.9, 0.6),      # too sparse: must fall to 10 %
    ("budget-max", 0.4, 0.2),  # eq. (11) pushes only while over budget
])
def test_budget_variants_move_toward_the_budget(
    tiny_data: DatasetSplits, loss: str, budget: float, initial: float
) -> None:
    pruner = ErfPruner(loss=loss, budget=budget, weighting="wavg", lam=20.0,
                       initial_sparsity=initial, bound_optimizer="adam", bound_lr=0.05)
    _train_steps(pruner, tiny_data)
    density_start = 1 - initial
    density_end = pruner.last_loss["density"]
    assert abs(density_end - budget) < abs(density_start - budget)


@pytest.mark.parametrize("weighting", ["avg", "wavg", "flops"])
def test_bounds_start_at_the_budget_so_eq10_is_met_at_step_0(weighting: str) -> None:
    pruner = ErfPruner(loss="budget", budget=0.15, weighting=weighting)
    pruner.prepare(_model(), EXAMPLE)
    expected = math.sqrt(2) * special.erfinv(0.85)  # eq. (3) in σ units
    assert _ratios(pruner) == pytest.approx([expected] * len(pruner.layers), rel=1e-6)
    loss = float(pruner.sparsity_loss())
    assert pruner.last_loss["density"] == pytest.approx(0.15, abs=1e-6)  # the c_i average to 1
    assert loss == pytest.approx(0.0, abs=1e-9)
    assert pruner.config.effective_lam == BUDGET_LAM
    assert ErfPruner(loss="unconstrained").config.effective_lam == 1.0
    assert ErfPruner(loss="budget", budget=0.5, lam=3.0).config.effective_lam == 3.0


@pytest.mark.parametrize("lam", [5.0, 50.0])
def test_budget_penalty_settles_above_the_budget_by_a_gap_in_one_over_lambda(lam: float) -> None:
    # Eq. (10) is a soft constraint. Against a constant pull t on every bound (a stand-in for
    # the task gradient of eq. 18, which lowers the bounds) its minimum is where
    # 2λ·(L_s − B)·c_i·φ(r_i)/N = t, φ(r) = √(2/π)·e^{−r²/2} (eq. 19): a density gap ≈ t/λ.
    pull, budget = 0.01, 0.15
    pruner = ErfPruner(loss="budget", budget=budget, weighting="avg", lam=lam)
    pruner.prepare(_model(), EXAMPLE)
    ratios = [pruner._param(m).ratio for m in pruner.layers.values()]
    opt = torch.optim.SGD(ratios, lr=0.5)  # the Hessian is rank one: 2λφ²/N ≤ 1.7 here
    for _ in range(200):
        opt.zero_grad()
        (pruner.sparsity_loss() + pull * torch.stack(ratios).sum()).backward()
        opt.step()
    n = len(ratios)

    def stationarity(r: float) -> float:
        density = 1 - special.erf(r / math.sqrt(2))
        return 2 * lam * (density - budget) * math.sqrt(2 / math.pi) * math.exp(-r * r / 2) / n \
            - pull

    root = optimize.brentq(stationarity, 0.5, math.sqrt(2) * special.erfinv(1 - budget))
    assert _ratios(pruner) == pytest.approx([root] * n, abs=1e-4)
    gap = pruner.last_loss["density"] - budget
    assert gap > 0
    assert gap == pytest.approx(1 - special.erf(root / math.sqrt(2)) - budget, abs=1e-4)


def test_flops_budget_term_eq10(tiny_data: DatasetSplits) -> None:
    pruner = ErfPruner(loss="budget", budget=0.5, flops_budget=0.3, lam=10.0, flops_lam=10.0,
                       initial_sparsity=0.2, bound_optimizer="adam", bound_lr=0.05)
    model = _model()
    pruner.prepare(model, EXAMPLE)
    c_p, c_f = pruner.contributions, pruner._flops_contributions()
    assert c_p is not None and float(c_p.mean()) == pytest.approx(1.0)
    assert float(c_f.mean()) == pytest.approx(1.0) and not torch.allclose(c_p, c_f)
    loss = pruner.sparsity_loss()
    ratios = torch.stack([pruner._param(m).clamped_ratio() for m in pruner.layers.values()])
    s = torch.erf(ratios / math.sqrt(2))
    expected = 10 * (1 - (c_p * s).mean() - 0.5) ** 2 + 10 * (1 - (c_f * s).mean() - 0.3) ** 2
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_bound_param_group_has_its_own_lr_and_no_decay() -> None:
    pruner = ErfPruner(budget=0.5, bound_lr_scale=0.01)
    pruner.prepare(_model(), EXAMPLE)
    (group,) = pruner.param_groups(0.1)
    # A plain torch group: the bounds' absolute rate is bound_lr_scale × the weights' rate.
    assert set(group) == {"params", "lr", "weight_decay"}
    assert group["lr"] == pytest.approx(0.001) and group["weight_decay"] == 0.0
    assert len(group["params"]) == len(pruner.layers)
    assert {id(p) for p in group["params"]} == {
        id(pruner._param(m).ratio) for m in pruner.layers.values()}
    torch.optim.SGD([group], lr=0.1)  # a stock optimizer takes it as is
    absolute = ErfPruner(budget=0.5, bound_lr=0.02, bound_weight_decay=1e-4)
    absolute.prepare(_model(), EXAMPLE)
    (group,) = absolute.param_groups(0.1)
    assert group["lr"] == 0.02 and group["weight_decay"] == 1e-4  # bound_lr overrides the scale
    assert absolute.param_group_optimizer == "sgd"
    assert ErfPruner(budget=0.5, bound_optimizer="adam").param_group_optimizer == "adam"
    fixed = ErfPruner(method="ga", sparsity=0.5)
    fixed.prepare(_model(), EXAMPLE)
    assert fixed.param_groups(0.1) == []  # fixed bounds train nothing
    pruner.finalize()
    assert pruner.param_groups(0.1) == []  # nor do finalized ones


# -- with a target (the protocol) ---------------------------------------------------------------


def test_target_becomes_the_budget_of_the_pruned_layers_at_prepare() -> None:
    from budgetsearch.cost import Target, layer_inventory

    inventory = layer_inventory(_model(), EXAMPLE)
    full = inventory.price().as_dict()["params"]
    pruner = build_pruner("erf", target=Target.parse("params", "50%"))
    assert pruner.config.method == "adaptive" and pruner.config.loss == "budget"
    assert pruner.config.weighting == "params"
    pruner.prepare(_model(), EXAMPLE)
    assert pruner.target.is_resolved and pruner.target.value == pytest.approx(0.5 * full)
    # B = (T − U) / (C − U): U what stays with every pruned layer empty.
    floor = inventory.price(densities={n: 0.0 for n in pruner.layers}).as_dict()["params"]
    expected = (0.5 * full - floor) / (full - floor)
    assert pruner.config.budget == pytest.approx(expected, rel=1e-9)
    assert pruner.state_dict() == {"budget": pruner.config.budget, "finalized": False}
    pruner.finalize()
    assert pruner.target.is_met(pruner.report().cost["params"])  # enforced at finalize
    budget = pruner.report().budget
    assert budget["target_scope"] == "network" and budget["value"] == pytest.approx(0.5 * full)


def test_target_and_budget_together_are_refused() -> None:
    from budgetsearch.cost import Target

    with pytest.raises(ValueError, match="not both"):
        ErfPruner(target=Target.parse("params", "50%"), budget=0.5)
    with pytest.raises(ValueError, match="not both"):
        ErfPruner(target=Target.parse("params", "50%"), sparsity=0.5)


def test_latency_target_without_sparse_speedup_is_infeasible_at_prepare() -> None:
    from budgetsearch.cost import Target, layer_inventory, load_profile
    from budgetsearch.pruners import BudgetInfeasible

    nano = load_profile("jetson-nano")
    full = layer_inventory(_model(), EXAMPLE).price(profile=nano).as_dict()["latency_ms"]
    with pytest.raises(ValueError, match="device profile"):
        build_pruner("erf", target=Target.parse("latency", "10ms"))  # latency needs a profile
    tight = Target("latency_ms", 0.5 * full, text="half")
    pruner = build_pruner("erf", target=tight, profile="jetson-nano")
    with pytest.raises(BudgetInfeasible, match="no sparse speed-up") as refused:
        pruner.prepare(_model(), EXAMPLE)
    assert refused.value.metric == "latency_ms"
    assert refused.value.target == pytest.approx(0.5 * full)
    assert refused.value.minimum == pytest.approx(full)  # zeros buy no time there
    # Unless the unpruned network already meets it: nothing to prune for.
    loose = build_pruner("erf", target=Target("latency_ms", 2.0 * full), profile="jetson-nano")
    loose.prepare(_model(), EXAMPLE)
    assert loose.config.budget == 1.0


def test_params_target_below_the_dense_layers_is_infeasible() -> None:
    from budgetsearch.cost import Target, layer_inventory
    from budgetsearch.pruners import BudgetInfeasible

    inventory = layer_inventory(_model(), EXAMPLE)
    probe = ErfPruner(method="ga", sparsity=0.5)
    probe.prepare(_model(), EXAMPLE)
    floor = inventory.price(densities={n: 0.0 for n in probe.layers}).as_dict()["params"]
    with pytest.raises(BudgetInfeasible) as refused:
        build_pruner("erf", target=Target("params", 0.9 * floor)).prepare(_model(), EXAMPLE)
    assert refused.value.minimum == pytest.approx(floor)
    build_pruner("erf", target=Target("params", 1.1 * floor)).prepare(_model(), EXAMPLE)


def test_finalize_gives_real_zeros_that_training_does_not_refill(tiny_data: DatasetSplits) -> None:
    pruner = ErfPruner(method="ga", sparsity=0.8)
    _train_steps(pruner, tiny_data, epochs=1)
    model = pruner.finalize()
    zeros = {n: (m.weight == 0).clone() for n, m in pruner.layers.items()}
    assert all(z.float().mean() > 0.7 for z in zeros.values())
    report = pruner.report()
    train(model, tiny_data, TrainConfig(epochs=1, batch_size=32, progress=False))
    for name, module in pruner.layers.items():
        assert torch.all(module.weight[zeros[name]] == 0)
    assert [r.kept for r in pruner.report().layers] == [r.kept for r in report.layers]
    # Achieved cost through the cost model: dense × density for the pruned layers' weights.
    dense = report.extra["dense_cost"]
    assert report.cost["params"] < dense["params"] and report.cost["flops"] < dense["flops"]
    make_pruning_permanent(model)
    assert all(isinstance(m.weight, nn.Parameter) for m in pruner.layers.values())
    assert all(torch.equal(m.weight == 0, zeros[n]) for n, m in pruner.layers.items())


def test_works_on_torchvision_resnet18() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=10)
    pruner = ErfPruner(method="ga", sparsity=0.5)
    pruner.prepare(model, torch.zeros(1, 3, 32, 32))
    out = model(torch.zeros(2, 3, 32, 32))
    out.sum().backward()
    pruner.finalize()
    report = pruner.report()
    assert "fc" in [r.name for r in report.layers] and "conv1" in [r.name for r in report.layers]
    assert report.overall_sparsity == pytest.approx(0.5, abs=0.05)


def test_loss_terms_include_task_and_sparsity() -> None:
    pruner = ErfPruner(loss="unconstrained", lam=2.0)
    model = _model()
    pruner.prepare(model, EXAMPLE)
    logits = model(EXAMPLE)
    ctx = StepContext(EXAMPLE, torch.zeros(1, dtype=torch.long), logits,
                      logits.sum() * 0, 0, 1, 0)
    terms = pruner.loss_terms(ctx)
    assert set(terms) == {"task", "sparsity"}
    assert float(terms["sparsity"]) == pytest.approx(2.0 * (1 - 0.3), rel=1e-5)


def test_docstring_examples_run() -> None:
    import doctest

    from budgetsearch.pruners import erf, erf_functional

    for module in (erf, erf_functional):
        assert doctest.testmod(module).failed == 0
