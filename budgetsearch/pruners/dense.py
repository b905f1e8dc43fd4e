"""The protocol applied to a network that is not pruned: the dense candidates of a family search.

A family search (``budgetsearch run`` without ``--no-families``) compares pruned networks with
dense networks of other widths and depths. ``dense`` lets the search drive both through one
protocol: ``prepare`` prices the network and raises
:class:`~budgetsearch.pruners.BudgetInfeasible` (with the network's own cost as the minimum) when
the whole network does not already meet the target; there is one phase of plain training;
``finalize`` returns the network as it is. Its trials start from random weights
(``starts_from_reference = False``) and train for the reference's epochs as well.

Example:
    >>> import torch
    >>> from budgetsearch.cost import Target
    >>> from budgetsearch.models import build_model
    >>> pruner = DensePruner(target=Target.parse("params", "100k"))
    >>> model = pruner.prepare(build_model("wrn-10-1"), torch.zeros(1, 1, 28, 28))
    >>> pruner.report().cost["params"], pruner.report().overall_sparsity
    (77562.0, 0.0)
    >>> try:
    ...     DensePruner(target=Target.parse("params", "50k")).prepare(
    ...         build_model("wrn-10-1"), torch.zeros(1, 1, 28, 28))
    ... except BudgetInfeasible as error:
    ...     print(error.minimum)
    77562.0
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import nn

from budgetsearch.cost import DeviceProfile, LayerInventory, Target, layer_inventory
from budgetsearch.pruners.base import (
    BudgetInfeasible,
    LayerReport,
    PrunedConfiguration,
    Pruner,
    PrunerReport,
    register_pruner,
)


@register_pruner
class DensePruner(Pruner):
    """No pruning: the network meets the target as it is, or the candidate is infeasible.

    Args:
        target: the ceiling the whole network must already meet (None: any network).
        profile: device profile (latency targets and reporting).
        teacher: ignored (a dense trial trains from scratch, without distillation).
    """

    name: ClassVar[str] = "dense"
    granularity: ClassVar[Literal["channel"]] = "channel"
    search_rank: ClassVar[int | None] = None
    starts_from_reference: ClassVar[bool] = False

    def __init__(self, *, target: Target | None = None, profile: DeviceProfile | str | None = None,
                 teacher: nn.Module | None = None) -> None:
        super().__init__(target=target, profile=profile, teacher=teacher)
        self.model: nn.Module | None = None
        self.inventory: LayerInventory | None = None

    def prepare(self, model: nn.Module, example_input: torch.Tensor) -> nn.Module:
        """Price the network; raise :class:`BudgetInfeasible` when it exceeds the target."""
        if self.model is not None:
            raise ValueError("this dense pruner is already prepared; build a new one per model")
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.inventory = layer_inventory(model, example_input)
        model.train(was_training)
        full = self.inventory.price(profile=self.profile).as_dict()
        target = self.resolve_target(full)
        if target is not None:
            cost = float(full[target.metric])  # type: ignore[arg-type]
            if not target.is_met(cost):
                raise BudgetInfeasible(
                    f"dense keeps every channel: the network costs {target.describe(cost)} > "
                    f"{target.describe()}", metric=target.metric, target=target.limit(),
                    minimum=cost)
        self.model = model
        return model

    def finalize(self) -> nn.Module:
        """The network as trained."""
        return self._model()

    def report(self) -> PrunerReport:
        """Every layer kept whole; the whole network's cost."""
        self._model()
        assert self.inventory is not None
        layers = [LayerReport(name=r.name, total=r.out_channels, kept=r.out_channels,
                              counted=0.0, pruned=False, reason="dense: nothing is pruned")
                  for r in self.inventory if r.out_channels > 0]
        cost = self.inventory.price(profile=self.profile).as_dict()
        budget: dict[str, Any] = {"scope": "network", "fraction": 1.0}
        if self.target is not None:
            budget.update(metric=self.target.metric, value=self.target.value)
        return PrunerReport(self.name, self.granularity, layers,
                            {k: float(v) for k, v in cost.items() if v is not None},
                            budget=budget)

    def pruned_configuration(self) -> PrunedConfiguration:
        """Every layer's full channels."""
        self._model()
        assert self.inventory is not None
        return {"kept_channels": {r.name: [r.in_channels, r.out_channels]
                                  for r in self.inventory if r.out_channels > 0}}

    def _model(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError("call prepare(model, example_input) first")
        return self.model
