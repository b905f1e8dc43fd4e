"""The pruner conformance suite, shipped so that a user's own pruner can run it too.

:func:`check_pruner` drives a pruner through the protocol alone (:mod:`budgetsearch.pruners.
base`) on a tiny network and synthetic data, and checks, against independent oracles:

- **lifecycle**: ``prepare`` keeps the network's function shape, ``phases`` are well formed,
  ``param_groups`` are plain ``torch.optim`` groups a stock optimizer accepts, one trainer runs
  the phases, ``finalize`` returns a plain module that survives ``torch.save``/``torch.load``;
- **budget met**: the finalized network, re-priced by the cost model from
  ``pruned_configuration()``, meets the target, and the report says the same cost;
- **recount**: fvcore's own FLOP count and a parameter count of the finalized network (channel
  pruners), or its counted non-zero weights (unstructured), equal the report;
- **state**: ``state_dict``/``load_state_dict`` plus the model's own state rebuild a pruner
  whose finalized network computes the same function;
- **determinism**: the same seed gives the same report;
- **infeasible**: a target no network can meet raises ``BudgetInfeasible`` at ``prepare``,
  with a reachable minimum above it.

Example:
    >>> from budgetsearch.cost import Target
    >>> from budgetsearch.pruners import build_pruner
    >>> outcome = check_pruner(lambda target: build_pruner("magnitude", target=target))
    >>> outcome.passed
    ['lifecycle', 'budget met', 'recount', 'state', 'determinism', 'infeasible']
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from budgetsearch.cost import Target, layer_inventory
from budgetsearch.data import DatasetSplits, make_synthetic
from budgetsearch.models import build_model
from budgetsearch.pruners.base import BudgetInfeasible, Pruner, PrunerReport
from budgetsearch.train import TrainConfig, train_phases
from budgetsearch.train_hooks import TrainingHooks, phases_of

PrunerMaker = Callable[[Target | None], Pruner]
ModelFactory = Callable[[], nn.Module]
#: Keys a ``torch.optim`` parameter group may carry (anything else is silently ignored by torch).
TORCH_GROUP_KEYS = {"params", "lr", "weight_decay", "momentum", "dampening", "nesterov",
                    "betas", "eps", "amsgrad", "maximize", "foreach", "capturable",
                    "differentiable", "fused", "decoupled_weight_decay", "name"}


class ConformanceError(AssertionError):
    """A pruner broke the protocol (the message names the check and what was seen)."""


@dataclass
class ConformanceOutcome:
    """The checks that passed and the report of the first run."""

    passed: list[str] = field(default_factory=list)
    report: PrunerReport | None = None


def tiny_data(seed: int = 0) -> DatasetSplits:
    """128 training / 64 test synthetic 1×16×16 images of 10 classes."""
    train_set, test_set, classes = make_synthetic(num_train=128, num_test=64, image_size=16,
                                                  seed=seed)
    return DatasetSplits("synthetic", train_set, None, test_set, classes, 1, 16)


def _default_model() -> nn.Module:
    return build_model("wrn-10-1", num_classes=10, in_channels=1)


def _fail(check: str, message: str) -> ConformanceError:
    return ConformanceError(f"{check}: {message}")


def _run(make: PrunerMaker, target: Target | None, model_factory: ModelFactory,
         data: DatasetSplits, config: TrainConfig, seed: int
         ) -> tuple[Pruner, nn.Module, dict[str, Any], dict[str, Any], nn.Module]:
    torch.manual_seed(seed)
    pruner = make(target)
    model = model_factory()
    example = data.train[0][0].unsqueeze(0)
    prepared = pruner.prepare(model, example)
    result = train_phases(prepared, data, config, pruner)
    if result.status != "ok":
        raise _fail("lifecycle", f"training failed: {result.failure}")
    model_state = copy.deepcopy(prepared.state_dict())
    pruner_state = copy.deepcopy(pruner.state_dict())
    final = pruner.finalize().eval()
    return pruner, prepared, model_state, pruner_state, final


def _check_groups(pruner: Pruner) -> None:
    groups = pruner.param_groups(0.01)
    for group in groups:
        extra = set(group) - TORCH_GROUP_KEYS
        if extra:
            raise _fail("lifecycle", f"param_groups carry keys torch ignores: {sorted(extra)}")
        if "lr" in group and not (isinstance(group["lr"], float | int) and group["lr"] > 0):
            raise _fail("lifecycle", f"a group's lr must be an absolute rate, got {group['lr']!r}")
    if groups:  # a stock optimizer takes them as they are
        torch.optim.SGD([dict(g) for g in groups], lr=0.01)


def check_pruner(make: PrunerMaker, *, target: Target | None = None,
                 model_factory: ModelFactory | None = None, data: DatasetSplits | None = None,
                 epochs: float = 1.0, seed: int = 0) -> ConformanceOutcome:
    """Run every conformance check on the pruner ``make(target)`` builds.

    Args:
        make: builds a fresh pruner for a target (called several times).
        target: the target to prune to (default: half the unpruned network's FLOPs).
        model_factory: builds the unpruned network (default: WRN-10-1, 1 channel, 10 classes).
        data: training/test data (default: :func:`tiny_data`).
        epochs: training per run (every phase of the pruner gets its share).
        seed: the seed of every run.

    Raises:
        ConformanceError: the first check that failed, and why.
    """
    target = target or Target.parse("flops", "50%")
    model_factory = model_factory or _default_model
    data = data or tiny_data(seed)
    config = TrainConfig(epochs=epochs, batch_size=32, progress=False, seed=seed,
                         optimizer="adam", lr=2e-3)
    example = data.train[0][0].unsqueeze(0)
    outcome = ConformanceOutcome()

    # lifecycle ------------------------------------------------------------------------------
    probe = make(target)
    if probe.granularity not in ("unstructured", "channel"):
        raise _fail("lifecycle", f"granularity must be 'unstructured' or 'channel', got "
                                 f"{probe.granularity!r}")
    if not isinstance(probe, TrainingHooks):
        raise _fail("lifecycle", "a pruner must implement the training hooks")
    phases = phases_of(probe)
    if not phases or abs(sum(p.fraction for p in phases) - 1.0) > 1e-6:
        raise _fail("lifecycle", f"phase fractions must sum to 1, got {phases}")
    pruner, prepared, model_state, pruner_state, final = _run(
        make, target, model_factory, data, config, seed)
    fresh = make(target)
    fresh.prepare(model_factory(), example)
    _check_groups(fresh)
    inputs = torch.stack([data.test[i][0] for i in range(8)])
    with torch.no_grad():
        outputs = final(inputs)
    if outputs.shape[0] != 8 or not torch.isfinite(outputs).all():
        raise _fail("lifecycle", f"the finalized network gave {tuple(outputs.shape)} / non-finite")
    buffer = io.BytesIO()
    torch.save(final, buffer)
    buffer.seek(0)
    with torch.no_grad():
        reloaded = torch.load(buffer, weights_only=False).eval()(inputs)
    if not torch.allclose(reloaded, outputs, atol=1e-5):
        raise _fail("lifecycle", "the saved and reloaded network computes another function")
    report = pruner.report()
    outcome.report = report
    if report.pruner != pruner.name or report.granularity != pruner.granularity:
        raise _fail("lifecycle", "report() names another pruner or granularity")
    outcome.passed.append("lifecycle")

    # budget met -----------------------------------------------------------------------------
    inventory = layer_inventory(model_factory(), example)
    configuration = pruner.pruned_configuration()
    priced = inventory.price(kept_channels=configuration.get("kept_channels"),
                             densities=configuration.get("densities"), profile=pruner.profile)
    resolved = pruner.target
    if resolved is None or not resolved.is_resolved:
        raise _fail("budget met", "prepare() must resolve the target (pruner.target.value)")
    achieved = priced.as_dict()[resolved.metric]
    if not resolved.is_met(achieved):
        raise _fail("budget met", f"re-priced {resolved.metric} {achieved} > target "
                                  f"{resolved.value}")
    reported = report.cost.get(resolved.metric)
    if reported is None or abs(float(reported) - float(achieved)) > 1e-6 * max(1.0, achieved):
        raise _fail("budget met", f"report says {resolved.metric} = {reported}, the cost model "
                                  f"re-prices {achieved}")
    outcome.passed.append("budget met")

    # recount --------------------------------------------------------------------------------
    _recount(pruner, final, example, report)
    outcome.passed.append("recount")

    # state ----------------------------------------------------------------------------------
    torch.manual_seed(seed)
    twin = make(target)
    twin_model = twin.prepare(model_factory(), example)
    twin_model.load_state_dict(model_state)
    twin.load_state_dict(pruner_state)
    twin_final = twin.finalize().eval()
    with torch.no_grad():
        if not torch.allclose(twin_final(inputs), outputs, atol=1e-5):
            raise _fail("state", "a pruner rebuilt from state_dict() finalizes to another "
                                 "function")
    outcome.passed.append("state")

    # determinism ----------------------------------------------------------------------------
    again, *_ = _run(make, target, model_factory, data, config, seed)
    first = [(r.name, r.kept) for r in report.layers]
    second = [(r.name, r.kept) for r in again.report().layers]
    if first != second or again.report().cost != report.cost:
        raise _fail("determinism", "the same seed gave another report")
    outcome.passed.append("determinism")

    # infeasible -----------------------------------------------------------------------------
    impossible = Target("params", 1.0, text="1")
    try:
        make(impossible).prepare(model_factory(), example)
    except BudgetInfeasible as error:
        if not error.minimum > 1.0:
            raise _fail("infeasible", f"reachable minimum {error.minimum} must exceed the "
                                      "target") from None
    else:
        raise _fail("infeasible", "a 1-parameter target must raise BudgetInfeasible at prepare")
    outcome.passed.append("infeasible")
    return outcome


def _recount(pruner: Pruner, final: nn.Module, example: torch.Tensor,
             report: PrunerReport) -> None:
    """Count the finalized network independently of the cost model."""
    if pruner.granularity == "channel":
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(final.eval(), example)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = int(analysis.total())
        params = sum(p.numel() for p in final.parameters())
        if flops != round(report.cost["flops"]) or params != round(report.cost["params"]):
            raise _fail("recount", f"fvcore counts {flops:,} FLOPs / {params:,} parameters, the "
                                   f"report {report.cost['flops']:,.0f} / "
                                   f"{report.cost['params']:,.0f}")
        return
    nonzero = sum(int(torch.count_nonzero(p)) for p in final.parameters())
    total = sum(p.numel() for p in final.parameters())
    # Zeros the report does not count can only be weights that trained to exactly zero.
    if not nonzero <= round(report.cost["params"]) <= total:
        raise _fail("recount", f"{nonzero:,} non-zero parameters of {total:,}, the report says "
                               f"{report.cost['params']:,.0f}")
    pruned = {r.name: r for r in report.layers if r.pruned}
    modules = dict(final.named_modules())
    for name, layer in pruned.items():
        kept = int(torch.count_nonzero(modules[name].weight))
        if kept != layer.kept:
            raise _fail("recount", f"{name}: {kept} non-zero weights, the report says "
                                   f"{layer.kept}")
