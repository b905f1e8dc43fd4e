from __future__ import annotations

import math

import pytest
import torch

from budgetsearch.data import DatasetSplits, make_synthetic
from budgetsearch.models import build_model
from budgetsearch.train import (
    Phase,
    StepContext,
    TrainConfig,
    _build_optimizers,
    _lr_factor,
    evaluate,
    recalibrate_batchnorm,
    train,
    train_phases,
)


@pytest.fixture(scope="module")
def data() -> DatasetSplits:
    train_set, test_set, classes = make_synthetic(num_train=256, num_test=128, image_size=12)
    return DatasetSplits("synthetic", train_set, None, test_set, classes, 1, 12)


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("wrn-10-1", num_classes=10, in_channels=1)


def test_training_learns_the_synthetic_task(data: DatasetSplits) -> None:
    model = _tiny()
    before = evaluate(model, data.loaders(64)[1])
    result = train(model, data, TrainConfig(epochs=3, batch_size=32, optimizer="adam", lr=3e-3,
                                            progress=False))
    assert result.status == "ok"
    assert result.test_accuracy > max(0.6, before + 0.3)
    assert result.steps == 3 * 8 and result.epochs_run == pytest.approx(3.0)


def test_training_is_deterministic(data: DatasetSplits) -> None:
    config = TrainConfig(epochs=1, batch_size=32, progress=False, seed=7)
    a, b = _tiny(), _tiny()
    train(a, data, config)
    train(b, data, config)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_fractional_epochs_stop_early(data: DatasetSplits) -> None:
    result = train(_tiny(), data, TrainConfig(epochs=0.5, batch_size=32, progress=False))
    assert result.steps == 4


class _ExplodingHooks:
    def param_groups(self, lr: float):
        return []

    def loss_terms(self, context: StepContext):
        blow_up = torch.tensor(float("nan")) if context.step == 2 else torch.tensor(0.0)
        return {"task": context.task_loss, "penalty": blow_up}

    def after_step(self, context: StepContext) -> None:
        return None


def test_non_finite_loss_is_a_recorded_failure(data: DatasetSplits) -> None:
    result = train(_tiny(), data, TrainConfig(epochs=1, batch_size=32, progress=False),
                   hooks=_ExplodingHooks())
    assert result.status == "failed"
    assert "nan" in result.failure and "step 2" in result.failure and "penalty" in result.failure
    assert result.test_accuracy is None and result.steps == 2


class _RecordingHooks:
    """Gives the BN parameters their own Adam optimizer and reweights the task loss."""

    param_group_optimizer = "adam"

    def __init__(self, model: torch.nn.Module) -> None:
        self.bn = [p for n, p in model.named_parameters() if "bn" in n]
        self.progress: list[float] = []
        self.lrs: list[float] = []

    def param_groups(self, lr: float):
        self.lrs.append(lr)
        return [{"params": self.bn, "lr": 1e-2}]

    def loss_terms(self, context: StepContext):
        return {"task": 0.5 * context.task_loss}

    def after_step(self, context: StepContext) -> None:
        self.progress.append(context.progress)


def test_hooks_get_their_own_groups_and_progress(data: DatasetSplits) -> None:
    model = _tiny()
    hooks = _RecordingHooks(model)
    before = [p.detach().clone() for p in hooks.bn]
    result = train(model, data, TrainConfig(epochs=1, batch_size=64, progress=False), hooks=hooks)
    assert result.status == "ok"
    assert hooks.progress == [0.0, 0.25, 0.5, 0.75]
    assert hooks.lrs == [0.05]  # the weights' learning rate is handed to the hooks
    assert any(not torch.equal(a, b) for a, b in zip(before, hooks.bn))


def test_hook_groups_go_to_the_hooks_optimizer_with_their_own_rate() -> None:
    model = _tiny()
    hooks = _RecordingHooks(model)
    optimizers = _build_optimizers(model, TrainConfig(lr=0.05, weight_decay=1e-4), hooks)
    by_kind = {type(opt).__name__: opt for opt in optimizers}
    assert set(by_kind) == {"SGD", "Adam"}
    (adam_group,) = by_kind["Adam"].param_groups
    assert {id(p) for p in adam_group["params"]} == {id(p) for p in hooks.bn}
    assert adam_group["lr"] == 1e-2 and adam_group["weight_decay"] == 0.0
    sgd_ids = {id(p) for g in by_kind["SGD"].param_groups for p in g["params"]}
    assert sgd_ids.isdisjoint({id(p) for p in hooks.bn})
    assert sgd_ids | {id(p) for p in hooks.bn} == {id(p) for p in model.parameters()}


class _PlainHooks:
    """Declares no phases: the trainer runs one plain ``train``."""

    def param_groups(self, lr: float):
        return []

    def loss_terms(self, context: StepContext):
        return {"task": context.task_loss}

    def after_step(self, context: StepContext) -> None:
        return None


class _PhasedHooks:
    """Three phases; records what the trainer tells it and may stop after the first."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.begun: list[str] = []
        self.lrs: list[float] = []
        self.ended: list[tuple[int, str, int]] = []

    def phases(self):
        return (Phase("a", 0.5, 1.0), Phase("b", 0.25, 0.1), Phase("c", 0.25, 0.5))

    def begin_phase(self, phase: Phase) -> None:
        self.begun.append(phase.name)

    def param_groups(self, lr: float):
        self.lrs.append(lr)
        return []

    def loss_terms(self, context: StepContext):
        return {"task": context.task_loss}

    def after_step(self, context: StepContext) -> None:
        return None

    def on_phase_end(self, index: int, phase: Phase, result) -> bool:
        self.ended.append((index, phase.name, result.steps))
        return self.stop_after is not None and index >= self.stop_after


def test_train_phases_runs_each_phase_with_its_share_and_rate(data: DatasetSplits) -> None:
    hooks = _PhasedHooks()
    result = train_phases(_tiny(), data, TrainConfig(epochs=2, batch_size=32, progress=False),
                          hooks, on_phase_end=hooks.on_phase_end)
    assert result.status == "ok"
    assert hooks.begun == ["a", "b", "c"]
    assert hooks.lrs == pytest.approx([0.05, 0.005, 0.025])
    assert [(i, name) for i, name, _ in hooks.ended] == [(0, "a"), (1, "b"), (2, "c")]
    assert [steps for *_, steps in hooks.ended] == [8, 4, 4]  # 8 steps per epoch, 2 epochs
    assert result.steps == 16 and result.epochs_run == pytest.approx(2.0)
    assert result.test_accuracy is not None


def test_train_phases_stops_when_the_callback_says_so(data: DatasetSplits) -> None:
    hooks = _PhasedHooks(stop_after=0)
    result = train_phases(_tiny(), data, TrainConfig(epochs=2, batch_size=32, progress=False),
                          hooks, on_phase_end=hooks.on_phase_end)
    assert result.status == "stopped" and result.test_accuracy is None
    assert hooks.begun == ["a"] and result.steps == 8


def test_train_phases_without_phases_is_one_train_run(data: DatasetSplits) -> None:
    config = TrainConfig(epochs=1, batch_size=32, progress=False, seed=3)
    a, b = _tiny(), _tiny()
    plain = train(a, data, config)
    phased = train_phases(b, data, config, _PlainHooks())
    assert phased.status == plain.status == "ok" and phased.steps == plain.steps
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_cosine_schedule_and_warm_restarts() -> None:
    cosine = TrainConfig(epochs=4)
    assert _lr_factor(0, 400, 100, cosine) == 1.0
    assert _lr_factor(200, 400, 100, cosine) == pytest.approx(0.5)
    restarts = TrainConfig(epochs=4, schedule="cosine-restarts", restart_epochs=2)
    assert _lr_factor(100, 400, 100, restarts) == pytest.approx(0.5)
    assert _lr_factor(200, 400, 100, restarts) == 1.0  # the restart
    assert _lr_factor(300, 400, 100, restarts) == pytest.approx(0.5)
    assert _lr_factor(5, 400, 100, TrainConfig(schedule="constant")) == 1.0
    assert _lr_factor(0, 400, 100, TrainConfig(warmup_steps=4)) == pytest.approx(0.25)


@pytest.mark.parametrize("kwargs,match", [
    ({"epochs": 0}, "epochs"), ({"epochs": math.nan}, "epochs"),
    ({"batch_size": 0}, "batch_size"), ({"lr": -1.0}, "lr"),
    ({"optimizer": "rmsprop"}, "optimizer"), ({"schedule": "step"}, "schedule"),
])
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_batchnorm_recalibration_matches_the_data_statistics() -> None:
    torch.manual_seed(0)
    data = torch.randn(256, 3, 4, 4) * 2.0 + 5.0
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data, torch.zeros(256)), batch_size=64)
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3)).eval()
    recalibrate_batchnorm(model, loader, batches=4)
    bn = model[0]
    # Cumulative average of equal-sized batch means = the overall per-channel mean (oracle).
    torch.testing.assert_close(bn.running_mean, data.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    batch_vars = torch.stack([data[i:i + 64].var(dim=(0, 2, 3), unbiased=True)
                              for i in range(0, 256, 64)]).mean(0)
    torch.testing.assert_close(bn.running_var, batch_vars, rtol=1e-5, atol=1e-5)
    assert bn.momentum == 0.1 and not model.training  # restored


def test_hooks_see_fp32_logits_and_failures_record_the_acceleration(
    data: DatasetSplits,
) -> None:
    # Under bf16 autocast only the forward is low precision: the logits and loss terms that hooks
    # see are fp32, and a failed run still names the acceleration and returns a contiguous model.
    seen: list[torch.dtype] = []

    class _Recording(_ExplodingHooks):
        def loss_terms(self, context: StepContext):
            seen.extend([context.logits.dtype, context.task_loss.dtype])
            return super().loss_terms(context)

    model = _tiny()
    config = TrainConfig(epochs=1, batch_size=32, progress=False, precision="bf16",
                         memory_format="channels_last")
    result = train(model, data, config, hooks=_Recording())
    assert result.status == "failed" and result.acceleration == "bf16+channels_last"
    assert result.as_row()["acceleration"] == "bf16+channels_last"
    assert set(seen) == {torch.float32}
    assert model.conv1.weight.is_contiguous()
