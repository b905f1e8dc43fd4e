"""Global unstructured magnitude pruning: the plain baseline every sparse method must beat.

At ``prepare`` the weights of the pruned layers (every conv/linear with at least ``min_weights``
weights, as erf-loss chooses them) are ranked by ``|w|`` — across all layers (``scope="global"``)
or within each layer at one shared density (``scope="layer"``) — and the smallest are zeroed, as
few as needed for the whole network's counted cost to meet the target. Training then fine-tunes
the rest under a persistent mask (``torch.nn.utils.prune``), and :meth:`MagnitudePruner.finalize`
returns the same model with real zeros and plain ``weight`` parameters.

Example:
    >>> import torch
    >>> from budgetsearch.cost import Target
    >>> from budgetsearch.models import build_model
    >>> pruner = MagnitudePruner(target=Target.parse("params", "40%"))
    >>> model = pruner.prepare(build_model("wrn-10-1"), torch.zeros(1, 1, 28, 28))
    >>> pruner.report().cost["params"] <= pruner.target.value
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn.utils import prune

from budgetsearch.cost import DeviceProfile, LayerInventory, Target, layer_inventory
from budgetsearch.pruners.base import (
    BudgetInfeasible,
    LayerReport,
    PrunedConfiguration,
    Pruner,
    PrunerReport,
    register_pruner,
)
from budgetsearch.pruners.erf import ErfConfig, _skipped_layers, prunable_layers
from budgetsearch.pruners.weight_masks import densities_of, drop_smallest_until

Scope = Literal["global", "layer"]


@register_pruner
class MagnitudePruner(Pruner):
    """One-shot magnitude pruning to the target, then fine-tuning under the mask.

    Args:
        target: the ceiling (any metric zeros lower: ``params``, ``flops``; ``latency_ms`` only
            on a profile with a sparse speed-up).
        profile: device profile (latency targets and reporting).
        sparsity: without a target: the fraction of the pruned layers' weights to zero.
        scope: ``"global"`` (one threshold over every pruned layer) or ``"layer"`` (every pruned
            layer at the same density).
        min_weights: layers with fewer weights stay dense (listed in the report with why).
    """

    name: ClassVar[str] = "magnitude"
    granularity: ClassVar[Literal["unstructured"]] = "unstructured"

    def __init__(self, *, target: Target | None = None, profile: DeviceProfile | str | None = None,
                 teacher: nn.Module | None = None, sparsity: float | None = None,
                 scope: Scope = "global", min_weights: int = 1000) -> None:
        super().__init__(target=target, profile=profile, teacher=teacher)
        if target is not None and sparsity is not None:
            raise ValueError("give target or sparsity, not both (the target sets the sparsity)")
        if sparsity is not None and not (isinstance(sparsity, (int, float))
                                         and 0.0 <= sparsity < 1.0):
            raise ValueError(f"sparsity must be a fraction in [0, 1), got {sparsity!r}")
        if scope not in ("global", "layer"):
            raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
        if not isinstance(min_weights, int) or min_weights < 0:
            raise ValueError(f"min_weights must be an integer ≥ 0, got {min_weights!r}")
        self.sparsity = 0.5 if sparsity is None and target is None else sparsity
        self.scope = scope
        self.min_weights = min_weights
        self.model: nn.Module | None = None
        self.inventory: LayerInventory | None = None
        self.layers: dict[str, nn.Module] = {}
        self.skipped: dict[str, tuple[int, str]] = {}
        self.finalized = False

    def prepare(self, model: nn.Module, example_input: torch.Tensor) -> nn.Module:
        """Rank the weights, zero the smallest to meet the target, and mask them."""
        if self.model is not None:
            raise ValueError("this magnitude pruner is already prepared; build a new one per "
                             "model")
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.inventory = layer_inventory(model, example_input)
        model.train(was_training)
        self.resolve_target(self.inventory.price(profile=self.profile).as_dict())
        names = prunable_layers(model, min_weights=self.min_weights)
        rules = ErfConfig(method="ga", sparsity=0.5, min_weights=self.min_weights)
        self.skipped = _skipped_layers(model, names, rules, None)
        if not names:
            raise ValueError(f"no layer to prune: no conv/linear layer of this model has ≥ "
                             f"{self.min_weights} weights (lower min_weights)")
        modules = dict(model.named_modules())
        self.layers = {name: modules[name] for name in names}
        masks = {name: torch.ones_like(module.weight, dtype=torch.float32)
                 for name, module in self.layers.items()}
        scores = {name: self._scores(module.weight) for name, module in self.layers.items()}
        try:
            drop_smallest_until(masks, scores, self._meets)
        except ValueError:
            empty = {n: 0.0 for n in names}
            assert self.target is not None
            floor = self._price(empty)
            raise BudgetInfeasible(
                f"{self.name} cannot bring {self.target.metric} to {self.target.describe()}: "
                f"with every pruned layer empty the network still costs "
                f"{self.target.describe(floor)}", metric=self.target.metric,
                target=self.target.limit(), minimum=floor) from None
        for name, module in self.layers.items():
            prune.custom_from_mask(module, "weight", masks[name].to(module.weight.device))
        self.model = model
        return model

    def _scores(self, weight: torch.Tensor) -> torch.Tensor:
        magnitude = weight.detach().abs()
        if self.scope == "layer":
            # One density for every layer: rank within the layer, quantiles interleave layers.
            ranks = torch.argsort(torch.argsort(magnitude.flatten())).float()
            return (ranks / max(1, magnitude.numel() - 1)).reshape(magnitude.shape)
        return magnitude

    def _price(self, densities: Mapping[str, float]) -> float:
        assert self.inventory is not None and self.target is not None
        cost = self.inventory.price(densities=dict(densities), profile=self.profile)
        return float(cost.as_dict()[self.target.metric])  # type: ignore[arg-type]

    def _meets(self, densities: dict[str, float]) -> bool:
        if self.target is None:
            total = sum(self.layers[n].weight.numel() for n in densities)
            kept = sum(d * self.layers[n].weight.numel() for n, d in densities.items())
            return kept <= (1.0 - float(self.sparsity or 0.0)) * total
        return self.target.is_met(self._price(densities))

    def finalize(self) -> nn.Module:
        """Real zeros in plain ``weight`` parameters (the masks are folded in and removed)."""
        model = self._model()
        if not self.finalized:
            for module in self.layers.values():
                prune.remove(module, "weight")
            self.finalized = True
        return model

    def _masks(self) -> dict[str, torch.Tensor]:
        if self.finalized:
            return {name: (module.weight != 0).float() for name, module in self.layers.items()}
        return {name: module.weight_mask for name, module in self.layers.items()}

    def report(self) -> PrunerReport:
        """Counted density per layer (and the layers left dense, with why); whole-network cost."""
        self._model()
        assert self.inventory is not None
        densities = densities_of(self._masks())
        layers = [LayerReport(name=name, total=module.weight.numel(),
                              kept=round(densities[name] * module.weight.numel()),
                              counted=1.0 - densities[name])
                  for name, module in self.layers.items()]
        layers += [LayerReport(name=name, total=total, kept=total, counted=0.0, pruned=False,
                               reason=reason) for name, (total, reason) in self.skipped.items()]
        cost = self.inventory.price(densities=densities, profile=self.profile).as_dict()
        budget: dict[str, Any] = {"scope": "network", "selection": self.scope}
        if self.target is not None:
            budget.update(metric=self.target.metric, value=self.target.value)
        else:
            budget.update(sparsity=self.sparsity, scope="pruned layers")
        return PrunerReport(self.name, self.granularity, layers,
                            {k: float(v) for k, v in cost.items() if v is not None},
                            budget=budget, extra={"finalized": self.finalized})

    def pruned_configuration(self) -> PrunedConfiguration:
        """Weight density of every pruned layer (counted)."""
        return {"densities": densities_of(self._masks())}

    def _model(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError("call prepare(model, example_input) first")
        return self.model
