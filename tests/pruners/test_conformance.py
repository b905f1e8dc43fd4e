"""One conformance suite that every registered pruner passes (tiny model, synthetic data)."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch

from budgetsearch.data import DatasetSplits, make_synthetic
from budgetsearch.models import build_model
from budgetsearch.pruners import Pruner, PrunerReport, build_pruner, pruner_names
from budgetsearch.train import TrainConfig, TrainingHooks, train

# Options that make each pruner prune visibly within a few dozen steps of a tiny model.
# Every registered pruner must have an entry (checked below).
CONFORMANCE_OPTIONS: dict[str, dict[str, Any]] = {
    # BAR: halve the activation volume; gates learn fast enough for 24 steps.
    "bar": {"budget": 0.5, "gate_lr": 0.2, "distillation": True},
    # erf-loss: adaptive bounds against a 50 % parameter budget (eq. 10), bounds on Adam.
    "erf": {"method": "adaptive", "loss": "budget", "weighting": "wavg", "budget": 0.5,
            "lam": 5.0, "bound_optimizer": "adam", "bound_lr": 0.05},
}


@pytest.fixture(scope="module")
def tiny_data() -> DatasetSplits:
    train_set, test_set, classes = make_synthetic(num_train=256, num_test=128, image_size=16)
    return DatasetSplits("synthetic", train_set, None, test_set, classes, 1, 16)


def _fresh(name: str) -> Pruner:
    return build_pruner(name, **CONFORMANCE_OPTIONS[name])


def test_every_registered_pruner_has_conformance_options() -> None:
    assert set(pruner_names()) == set(CONFORMANCE_OPTIONS)


@pytest.mark.parametrize("name", pruner_names())
def test_pruner_lifecycle(name: str, tiny_data: DatasetSplits) -> None:
    torch.manual_seed(0)
    pruner = _fresh(name)
    assert pruner.granularity in ("unstructured", "channel")
    assert isinstance(pruner, TrainingHooks)

    model = build_model("wrn-10-1", num_classes=10, in_channels=1)
    example = tiny_data.train[0][0].unsqueeze(0)
    prepared = pruner.prepare(model, example)
    assert prepared(example).shape == (1, 10)

    result = train(
        prepared, tiny_data, TrainConfig(epochs=3, batch_size=32, progress=False), hooks=pruner
    )
    assert result.status == "ok", result.failure

    final = pruner.finalize().eval()
    inputs = torch.stack([tiny_data.test[i][0] for i in range(8)])
    with torch.no_grad():
        outputs = final(inputs)
    assert outputs.shape == (8, 10) and torch.isfinite(outputs).all()

    # The deployable model survives a save/load round trip and computes the same function.
    buffer = io.BytesIO()
    torch.save(final, buffer)
    buffer.seek(0)
    reloaded = torch.load(buffer, weights_only=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(inputs), outputs)

    report = pruner.report()
    assert isinstance(report, PrunerReport)
    assert report.pruner == name and report.granularity == pruner.granularity
    assert report.layers, "a pruner must report at least one pruned layer"
    for layer in report.layers:
        assert 0 <= layer.kept <= layer.total
        assert layer.counted == pytest.approx(1.0 - layer.kept / layer.total)
    assert report.overall_sparsity > 0.0, "the conformance options must make the pruner prune"
    for metric in ("params", "flops"):
        assert report.cost[metric] > 0
    dense_params = sum(p.numel() for p in build_model("wrn-10-1").parameters())
    assert report.cost["params"] < dense_params


@pytest.mark.parametrize("name", pruner_names())
def test_pruner_training_is_deterministic(name: str, tiny_data: DatasetSplits) -> None:
    reports = []
    for _ in range(2):
        torch.manual_seed(0)
        pruner = _fresh(name)
        model = build_model("wrn-10-1", num_classes=10, in_channels=1)
        pruner.prepare(model, tiny_data.train[0][0].unsqueeze(0))
        config = TrainConfig(epochs=1, batch_size=64, progress=False, seed=3)
        train(model, tiny_data, config, hooks=pruner)
        pruner.finalize()
        reports.append([(layer.name, layer.kept) for layer in pruner.report().layers])
    assert reports[0] == reports[1]
