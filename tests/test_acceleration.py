from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from budgetsearch import acceleration
from budgetsearch.acceleration import Acceleration, choose_acceleration
from budgetsearch.data import DatasetSplits, make_synthetic
from budgetsearch.models import build_model
from budgetsearch.train import TrainConfig, evaluate, seed_everything, train


@pytest.fixture(scope="module")
def data() -> DatasetSplits:
    train_set, test_set, classes = make_synthetic(num_train=128, num_test=128, image_size=12)
    return DatasetSplits("synthetic", train_set, None, test_set, classes, 1, 12)


@pytest.fixture
def native_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acceleration, "cpu_bf16_support", lambda: (True, "CPU has avx512_bf16"))


@pytest.fixture
def plain_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acceleration, "cpu_bf16_support",
                        lambda: (False, "CPU lacks avx512_bf16 and amx_bf16"))


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return build_model("wrn-10-1", num_classes=10, in_channels=1)


# -- the chooser ---------------------------------------------------------------------------------


def test_auto_uses_bf16_and_channels_last_on_a_cpu_with_native_bf16(native_cpu: None) -> None:
    accel = choose_acceleration("cpu", model=_tiny())
    assert accel.autocast_dtype == torch.bfloat16
    assert accel.memory_format == torch.channels_last
    assert accel.label == "bf16+channels_last"
    assert "avx512_bf16" in accel.reason


def test_auto_falls_back_to_fp32_on_a_cpu_without_bf16(plain_cpu: None) -> None:
    accel = choose_acceleration("cpu", model=_tiny())
    assert accel.autocast_dtype is None
    assert accel.reason.startswith("fp32: CPU lacks avx512_bf16")
    # channels_last still pays in fp32 on oneDNN (a conv net)
    assert accel.memory_format == torch.channels_last


def test_forced_bf16_on_a_cpu_without_bf16_is_honoured_and_says_so(plain_cpu: None) -> None:
    accel = choose_acceleration("cpu", precision="bf16")
    assert accel.autocast_dtype == torch.bfloat16
    assert "asked for" in accel.reason and "lacks" in accel.reason


def test_explicit_settings_win(native_cpu: None) -> None:
    accel = choose_acceleration("cpu", precision="fp32", memory_format="contiguous")
    assert accel == Acceleration(torch.contiguous_format, None,
                                 "fp32 (asked for); contiguous (asked for)", "cpu")
    assert accel.label == "fp32"
    assert choose_acceleration("cpu", "fp32", "channels_last").label == "fp32+channels_last"


def test_a_model_without_conv2d_stays_contiguous(native_cpu: None) -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    accel = choose_acceleration("cpu", model=mlp)
    assert accel.memory_format == torch.contiguous_format
    assert "no Conv2d" in accel.reason
    assert accel.autocast_dtype == torch.bfloat16  # linear layers still gain from bf16


def test_cuda_follows_the_device_bf16_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acceleration, "cuda_bf16_support", lambda device: (True, "GPU bf16"))
    assert choose_acceleration("cuda", model=_tiny()).label == "bf16+channels_last"
    monkeypatch.setattr(acceleration, "cuda_bf16_support", lambda device: (False, "old GPU"))
    accel = choose_acceleration("cuda", model=_tiny())
    assert accel.label == "fp32" and "old GPU" in accel.reason


def test_unknown_device_type_falls_back_and_refuses_forced_bf16() -> None:
    accel = choose_acceleration("meta")
    assert accel.label == "fp32"
    with pytest.raises(ValueError, match="'bf16' is not supported on device 'meta'"):
        choose_acceleration("meta", precision="bf16")


def test_cpu_detection_reads_flags_and_is_safe_where_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(acceleration, "_cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert acceleration.cpu_bf16_support() == (True, "CPU has amx_bf16")
    monkeypatch.setattr(acceleration, "_cpu_flags", lambda: frozenset({"avx2"}))
    assert acceleration.cpu_bf16_support()[0] is False
    monkeypatch.setattr(acceleration, "_cpu_flags", lambda: None)
    supported, why = acceleration.cpu_bf16_support()
    assert supported is False and "unknown" in why
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert acceleration.cpu_bf16_support() == (
        False, "this torch build has no oneDNN (mkldnn) for bf16 convolutions")


def test_cpu_flags_off_linux_are_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    acceleration._cpu_flags.cache_clear()
    monkeypatch.setattr(acceleration.sys, "platform", "darwin")
    try:
        assert acceleration._cpu_flags() is None
    finally:
        acceleration._cpu_flags.cache_clear()


@pytest.mark.parametrize(("option", "value"), [("precision", "fp16"),
                                               ("memory_format", "nhwc")])
def test_bad_values_raise_naming_the_value(option: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{option} must be one of .*got '{value}'"):
        choose_acceleration("cpu", **{option: value})
    with pytest.raises(ValueError, match=f"{option} must be one of .*got '{value}'"):
        TrainConfig(**{option: value})


# -- numerics --------------------------------------------------------------------------------------


def test_channels_last_computes_what_contiguous_computes() -> None:
    model = _tiny().eval()
    inputs = torch.randn(4, 1, 12, 12)
    accel = choose_acceleration("cpu", precision="fp32", memory_format="channels_last")
    twin = accel.prepare_model(copy.deepcopy(model))
    assert twin.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(twin(accel.prepare_inputs(inputs)), model(inputs),
                                   rtol=1e-4, atol=1e-5)
    accel.restore_model(twin)
    assert twin.conv1.weight.is_contiguous()


def test_bf16_training_gives_finite_loss_and_a_sane_accuracy(data: DatasetSplits) -> None:
    model = _tiny()
    config = TrainConfig(epochs=2, batch_size=32, optimizer="adam", lr=3e-3, progress=False,
                         precision="bf16", memory_format="channels_last")
    result = train(model, data, config)
    assert result.status == "ok" and result.acceleration == "bf16+channels_last"
    assert math.isfinite(result.train_loss)
    assert 0.3 < result.test_accuracy <= 1.0  # 10 classes: chance is 0.1
    # master weights stay fp32 and the model comes back contiguous
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.conv1.weight.is_contiguous()
    # train() reports the accuracy of the fp32 weights (evaluation without autocast) …
    assert result.test_accuracy == evaluate(model, data.loaders(32)[1])
    assert choose_acceleration("cpu", precision="bf16").without_autocast().autocast_dtype is None
    # … and evaluating under autocast agrees up to a couple of flipped argmaxes
    loader = data.loaders(32)[1]
    bf16 = evaluate(model, loader, acceleration=choose_acceleration("cpu", precision="bf16"))
    assert bf16 == pytest.approx(evaluate(model, loader), abs=2 / len(data.test))


def test_bf16_training_is_deterministic(data: DatasetSplits) -> None:
    config = TrainConfig(epochs=1, batch_size=32, progress=False, seed=5, precision="bf16")
    a, b = _tiny(), _tiny()
    train(a, data, config)
    train(b, data, config)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def _plain_fp32_steps(model: nn.Module, data: DatasetSplits, config: TrainConfig,
                      steps: int) -> None:
    """The loop train() ran before acceleration: fp32, NCHW, SGD with nesterov momentum and
    weight decay on the >1-D weights only, constant learning rate."""
    seed_everything(config.seed)
    weights = list(model.parameters())
    optimizer = torch.optim.SGD(
        [{"params": [p for p in weights if p.ndim > 1], "weight_decay": config.weight_decay},
         {"params": [p for p in weights if p.ndim <= 1], "weight_decay": 0.0}],
        lr=config.lr, momentum=config.momentum, nesterov=True)
    loader = data.loaders(config.batch_size, seed=config.seed)[0]
    model.train()
    for _, (inputs, targets) in zip(range(steps), loader):
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def test_fp32_contiguous_reproduces_the_plain_loop_exactly(data: DatasetSplits) -> None:
    config = TrainConfig(epochs=1, batch_size=32, schedule="constant", progress=False, seed=3,
                         precision="fp32", memory_format="contiguous")
    reference, ours = _tiny(), _tiny()
    _plain_fp32_steps(reference, data, config, steps=4)
    result = train(ours, data, config)
    assert result.steps == 4 and result.acceleration == "fp32"
    for p, q in zip(reference.parameters(), ours.parameters(), strict=True):
        assert torch.equal(p, q)
    # channels_last in fp32 changes only the rounding
    nhwc = _tiny()
    train(nhwc, data, TrainConfig(**{**config.__dict__, "memory_format": "channels_last"}))
    for p, q in zip(reference.parameters(), nhwc.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4)
