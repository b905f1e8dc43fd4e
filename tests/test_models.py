from __future__ import annotations

import math

import pytest
import torch

from budgetsearch.models import (
    build_model,
    describe_models,
    model_names,
    register_model,
    scale_channels,
    thinner_dense_width,
    wide_resnet,
)
from budgetsearch.train import count_parameters


def _wrn_params(depth: int, k: float, in_ch: int = 3, classes: int = 10) -> int:
    """Hand count of a pre-activation WRN's parameters (convs, BNs, shortcuts, head)."""
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    total = 9 * in_ch * 16  # stem
    c_in = 16
    for w in widths[1:]:
        for i in range(n):
            total += 2 * c_in + 9 * c_in * w + 2 * w + 9 * w * w  # bn1, conv1, bn2, conv2
            if i == 0 and c_in != w:
                total += c_in * w  # 1x1 shortcut
            c_in = w
    return total + 2 * c_in + c_in * classes + classes  # final bn + fc


@pytest.mark.parametrize("depth,k", [(10, 1), (16, 2), (16, 8)])
def test_wrn_parameter_count_matches_hand_count(depth: int, k: int) -> None:
    model = wide_resnet(depth, k, num_classes=10, in_channels=3)
    assert count_parameters(model) == _wrn_params(depth, k)


def test_wrn_16_8_is_the_papers_11m_network() -> None:
    # erf-loss paper Table 2: WRN-16-8 has 11.0M parameters on CIFAR-100.
    model = build_model("wrn-16-8", num_classes=100, in_channels=3)
    assert count_parameters(model) / 1e6 == pytest.approx(11.0, abs=0.05)


@pytest.mark.parametrize("name", ["wrn-10-1", "wrn-16-2", "resnet-20"])
@pytest.mark.parametrize("in_channels,size,classes", [(1, 28, 10), (3, 32, 100)])
def test_forward_shapes(name: str, in_channels: int, size: int, classes: int) -> None:
    model = build_model(name, num_classes=classes, in_channels=in_channels).eval()
    out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, classes)


def test_cifar_resnet_depths() -> None:
    convs = {
        name: sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
                  for m in build_model(name).modules())
        for name in ("resnet-20", "resnet-32", "resnet-56")
    }
    # depth = 3×3 convs + the linear head
    assert convs == {"resnet-20": 19, "resnet-32": 31, "resnet-56": 55}


def test_scale_channels_follows_eq_12() -> None:
    # C' = ⌊√r·C⌋, at least one channel.
    assert scale_channels(128, math.sqrt(0.15)) == 49
    assert scale_channels(32, 0.5) == 16
    assert scale_channels(3, 0.1) == 1


def test_thinner_twin_of_wrn_16_8_at_85_percent_sparsity() -> None:
    # eq. (12) per layer: C' = ⌊√0.15·C⌋, so the last group has ⌊0.387·512⌋ = 198 channels and the
    # twin keeps ≈15% of the parameters (the paper rounds to WRN-16-3, 1.672M, in Table 2).
    width = thinner_dense_width(0.15)
    full = build_model("wrn-16-8", num_classes=100, in_channels=3)
    thin = build_model("wrn-16-8", num_classes=100, in_channels=3, width_multiplier=width)
    assert [m.out_channels for m in thin.modules() if isinstance(m, torch.nn.Conv2d)][-1] == 198
    assert count_parameters(thin) / count_parameters(full) == pytest.approx(0.15, rel=0.05)


@pytest.mark.parametrize("ratio", [0.5, 0.25, 0.1])
def test_thinner_twin_parameters_scale_by_about_r(ratio: float) -> None:
    full = count_parameters(build_model("wrn-16-4"))
    thin = count_parameters(build_model("wrn-16-4", width_multiplier=thinner_dense_width(ratio)))
    assert thin / full == pytest.approx(ratio, rel=0.12)


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5])
def test_thinner_dense_width_rejects_bad_ratio(bad: float) -> None:
    with pytest.raises(ValueError, match="compression_ratio"):
        thinner_dense_width(bad)


def test_registry_lists_and_rejects() -> None:
    assert {"wrn-16-2", "wrn-16-8", "resnet-20", "resnet-56"} <= set(model_names())
    assert set(describe_models()) == set(model_names())
    with pytest.raises(ValueError, match=r"model must be a built-in name \(.*wrn-16-2.*got 'vgg'"):
        build_model("vgg")


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("wrn-16-2", "again")(lambda **kw: None)


@pytest.mark.parametrize("kwargs,match", [
    ({"num_classes": 0}, "num_classes"),
    ({"in_channels": 0}, "in_channels"),
    ({"width_multiplier": 0.0}, "width_multiplier"),
])
def test_build_model_validates_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model("wrn-10-1", **kwargs)


def test_bad_wrn_depth() -> None:
    with pytest.raises(ValueError, match="6n\\+4"):
        wide_resnet(15, 2)
