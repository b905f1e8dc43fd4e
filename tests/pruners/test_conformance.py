"""The shipped conformance suite (budgetsearch.testing) over every registered pruner."""

from __future__ import annotations

from typing import Any

import pytest

from budgetsearch.cost import Target
from budgetsearch.pruners import build_pruner, pruner_names
from budgetsearch.testing import ConformanceError, check_pruner

# Options that make each pruner prune visibly within a few dozen steps of a tiny model.
# Every registered pruner must have an entry (checked below).
CONFORMANCE_OPTIONS: dict[str, dict[str, Any]] = {
    "bar": {"gate_lr": 0.2, "distillation": True},
    "erf": {"lam": 5.0, "bound_optimizer": "adam", "bound_lr": 0.05},
    "magnitude": {},
    "channel-magnitude": {"scope": "global"},
    "dense": {},
}
# Pruners checked at their own targets (one they can meet), instead of the shared ones below.
CONFORMANCE_TARGETS: dict[str, list[str]] = {"dense": ["flops:100%", "params:100%"]}
# Pruners that remove nothing by design (their overall sparsity is 0).
PRUNES_NOTHING = {"dense"}
ALL_CHECKS = ["lifecycle", "budget met", "recount", "state", "determinism", "infeasible"]


def test_every_registered_pruner_has_conformance_options() -> None:
    assert set(pruner_names()) == set(CONFORMANCE_OPTIONS)


@pytest.mark.parametrize("name", pruner_names())
@pytest.mark.parametrize("target", ["flops:50%", pytest.param("params:30%",
                                                                marks=pytest.mark.slow)])
def test_pruner_conforms(name: str, target: str) -> None:
    own = CONFORMANCE_TARGETS.get(name)
    if own is not None:  # the shared targets map onto the pruner's own, in order
        target = own[0 if target.startswith("flops") else 1]
    metric, text = target.split(":")
    outcome = check_pruner(
        lambda t: build_pruner(name, target=t, **CONFORMANCE_OPTIONS[name]),
        target=Target.parse(metric, text))
    assert outcome.passed == ALL_CHECKS
    assert outcome.report is not None
    if name in PRUNES_NOTHING:
        assert outcome.report.overall_sparsity == 0
    else:
        assert outcome.report.overall_sparsity > 0


def test_the_suite_catches_a_pruner_that_misses_its_budget() -> None:
    from budgetsearch.pruners.magnitude import MagnitudePruner

    class Liar(MagnitudePruner):  # prunes half as much as its target asks
        name = "liar"

        def _meets(self, densities: dict[str, float]) -> bool:
            return sum(densities.values()) <= 0.9 * len(densities)

    with pytest.raises(ConformanceError, match="budget met"):
        check_pruner(lambda t: Liar(target=t), target=Target.parse("params", "20%"))


def test_the_suite_catches_groups_torch_would_ignore() -> None:
    from budgetsearch.pruners.magnitude import MagnitudePruner

    class Sloppy(MagnitudePruner):
        name = "sloppy"

        def param_groups(self, lr: float) -> list[dict[str, Any]]:
            return [{"params": [], "lr_scale": 0.01}]

    with pytest.raises(ConformanceError, match="lr_scale"):
        check_pruner(lambda t: Sloppy(target=t))
