"""BAR's paper mode (Adam coupling, the paper's λ and gate initialisation) prunes without collapse.

The oracle is the hard cost at the end of the pruning phase, before the projection: a collapse
(every gate crossing the threshold together) leaves a few channels, far below the budget; a
working barrier ends near the budget with the gates, not the projection, having pruned.
"""

from __future__ import annotations

import pytest
import torch

from budgetsearch.data import DatasetSplits, make_synthetic
from budgetsearch.models import build_model
from budgetsearch.pruners import build_pruner
from budgetsearch.pruners.bar import PAPER_LAM, BARConfig
from budgetsearch.train import TrainConfig, train_phases

EXAMPLE = torch.zeros(1, 1, 16, 16)


def _prune_phase_volume(**options: object) -> tuple[float, float, float]:
    """(V at the end of the pruning phase, budget B, V_F) on a tiny network, 80 Adam steps."""
    train_set, test_set, classes = make_synthetic(num_train=160, num_test=16, image_size=16)
    data = DatasetSplits("synthetic", train_set, None, test_set, classes, 1, 16)
    torch.manual_seed(0)
    pruner = build_pruner("bar", budget=0.4, distillation=False,
                          phase_fractions=(1.0, 0.0, 0.0), **options)
    model = pruner.prepare(build_model("wrn-10-1"), EXAMPLE)
    config = TrainConfig(epochs=8, batch_size=16, optimizer="adam", lr=2e-3, progress=False,
                         precision="fp32", memory_format="contiguous")
    result = train_phases(model, data, config, pruner)
    assert result.status == "ok"
    assert not pruner.hard_pruned  # the phase ended before any projection
    return pruner.hard_cost(), pruner.budget_value, pruner.full_cost["activation_volume"]


def test_paper_mode_is_the_papers_optimiser() -> None:
    config = BARConfig.paper()
    assert (config.pull, config.init_log_alpha, config.lam, config.mode) == (
        "adam", 0.0, PAPER_LAM, "paper")
    assert config.phase_fractions == pytest.approx((80 / 130, 40 / 130, 10 / 130))
    pruner = build_pruner("bar", mode="paper", gate_lr=0.1)
    assert pruner.config.pull == "adam" and pruner.config.gate_lr == 0.1
    with pytest.raises(ValueError, match="mode must be"):
        BARConfig(mode="fast")  # type: ignore[arg-type]


def test_paper_mode_prunes_to_the_budget_without_collapse() -> None:
    volume, budget, full = _prune_phase_volume(mode="paper")
    assert volume < 0.9 * full  # the gates pruned (not left to the projection) ...
    assert volume > 0.6 * budget  # ... and did not all cross the threshold together


def test_adam_coupling_at_the_library_lambda_collapses() -> None:
    # The failure paper mode fixes: λ per mean channel 1 (≈ 30,000 × the paper's) and log α
    # from 3 make the barrier's gradient swamp the task's; Adam then steps every gate by the
    # same gate_lr, they cross the threshold together and V ends far below the budget.
    volume, budget, _ = _prune_phase_volume(pull="adam", lam=1.0, init_log_alpha=3.0,
                                            gate_lr=0.3)
    assert volume < 0.3 * budget


def test_rewind_restores_the_start_weights_and_opens_the_kept_gates() -> None:
    # Oracle: the model as prepare() received it. After "training" (weights perturbed, some
    # gates shut), the hard prune with rewind=True puts every weight and BatchNorm statistic
    # back, keeps the shut channels shut and opens the kept gates to exactly 1.
    torch.manual_seed(0)
    model = build_model("wrn-10-1").eval()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        before = model(x)
    pruner = build_pruner("bar", budget=1.0, rewind=True, distillation=False)
    gated = pruner.prepare(model, EXAMPLE)
    gates = [g for _, g in pruner.layout.named_gates()]
    with torch.no_grad():
        for p in gated.parameters():
            if p is not gates[0].log_alpha:
                p.add_(0.1)
        for gate in gates:
            gate.log_alpha.sub_(torch.rand_like(gate.log_alpha) * 4)  # kept gates now below 1
        gates[-1].log_alpha[0] = -10.0  # one channel switched off
    pruner.hard_prune()
    state = gated.state_dict()
    for key, value in start.items():
        torch.testing.assert_close(state[key], value)
    assert not bool(gates[-1].kept_mask()[0])
    assert all(bool((g.deterministic()[g.kept_mask()] == 1).all()) for g in gates)
    with torch.no_grad():  # switch the channel back on: the start network's function exactly
        gates[-1].log_alpha[0] = 10.0
        torch.testing.assert_close(gated.eval()(x), before)


def test_prune_fraction_rescales_the_later_phases() -> None:
    # Oracle: the paper's 80 / 40 / 10 with the pruning phase cut to a quarter keeps the
    # frozen : fine-tune ratio 4 : 1 over the other three quarters.
    assert BARConfig.paper(prune_fraction=0.25).phase_fractions == pytest.approx(
        (0.25, 0.6, 0.15))
    assert BARConfig(prune_fraction=1.0).phase_fractions == pytest.approx((1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="prune_fraction must be in"):
        BARConfig(prune_fraction=0.0)


def test_the_search_space_holds_the_measured_recipe() -> None:
    from budgetsearch.search.space import load_space

    space = load_space("bar")
    pruner = build_pruner("bar", **space.fixed)
    config = pruner.config
    assert (config.mode, config.pull, config.init_log_alpha) == ("paper", "adam", 0.0)
    share = space.parameters["prune_fraction"]  # searched: the best share depends on length
    assert (share.low, share.high) == (0.25, 0.5)
    low, high = space.parameters["lam"].low, space.parameters["lam"].high
    assert low <= PAPER_LAM <= high


def test_gate_determinism_blends_the_sample_with_the_deterministic_gate() -> None:
    # Oracle: the same noise (same generator seed) gives (1 − w)·sample + w·det; w = 1 is the
    # evaluation gate exactly, w = 0 (the default) the paper's Hard-Concrete sample.
    from budgetsearch.pruners.hard_concrete import HardConcreteGate, hard_concrete_sample

    gate = HardConcreteGate(64).train()
    det = gate.deterministic().detach()
    torch.manual_seed(3)
    plain = hard_concrete_sample(gate.log_alpha.detach())
    for share in (0.0, 0.25, 1.0):
        gate.determinism = share
        torch.manual_seed(3)
        torch.testing.assert_close(gate.sample().detach(), (1 - share) * plain + share * det)
    gate.eval().determinism = 0.5
    torch.testing.assert_close(gate.sample().detach(), det)


def test_gate_anneal_ends_the_pruning_phase_on_the_deterministic_gates() -> None:
    # After step k of K the next step's share is (k + 1) / K: the last pruning step (k = K − 1)
    # trains on w = (K − 1) / K and the share reaches 1 when the phase ends; off by default.
    torch.manual_seed(0)
    pruner = build_pruner("bar", mode="paper", budget=0.5, distillation=False,
                          gate_anneal=True)
    pruner.prepare(build_model("wrn-10-1"), EXAMPLE)
    gates = [g for _, g in pruner.layout.named_gates()]
    assert all(g.determinism == 0.0 for g in gates)
    from budgetsearch.train import StepContext

    context = StepContext(EXAMPLE, torch.zeros(1, dtype=torch.long), torch.zeros(1, 10),
                          torch.zeros(()), step=4, total_steps=10, epoch=0)
    pruner.after_step(context)
    assert all(g.determinism == pytest.approx(0.5) for g in gates)
    volume, budget, full = _prune_phase_volume(mode="paper", gate_anneal=True)
    assert 0.6 * budget < volume < 0.9 * full  # annealing keeps the paper mode's pruning
    assert not BARConfig.paper().gate_anneal
    with pytest.raises(TypeError, match="gate_anneal must be"):
        BARConfig(gate_anneal="yes")  # type: ignore[arg-type]
