"""Issue 16: which ops does the eager profile over-price on small networks? An ablation.

One command (about a minute)::

    PYTHONPATH=. python experiments/op_ablation.py [PROFILE]

Times seven torchvision networks at 3×32×32 (the project's method, interleaved, one thread) whole,
with every activation module replaced by Identity, and with every BatchNorm2d replaced by
Identity, and prints what each removal saved against what the profile (default the shipped
``cpu-2core-x86-avx2``, no drift check) prices it at. Output quoted in experiments/README.md
("Where the eager profile's per-call prices sit"): ``results/op_ablation_output.txt``.
"""

from __future__ import annotations

import copy
import datetime
import sys

import torch
import torchvision
from torch import nn

from budgetsearch.cost import layer_inventory, load_profile
from budgetsearch.profiling.timing import time_networks

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid)
NETWORKS = ("squeezenet1_1", "shufflenet_v2_x0_5", "mnasnet0_5", "mobilenet_v3_small",
            "resnet18", "mobilenet_v2", "regnet_x_400mf")


def without(model: nn.Module, kinds: tuple[type, ...]) -> nn.Module:
    """A copy of ``model`` with every module of ``kinds`` replaced by Identity."""
    stripped = copy.deepcopy(model)
    for parent in list(stripped.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kinds):
                setattr(parent, name, nn.Identity())
    return stripped


def main(profile_name: str = "cpu-2core-x86-avx2") -> None:
    profile = load_profile(profile_name, check=False)
    x = torch.randn(1, 3, 32, 32)
    variants = ("whole", "no activations", "no BatchNorm")
    networks, labels = [], []
    for name in NETWORKS:
        model = getattr(torchvision.models, name)(weights=None).eval()
        for variant, built in zip(variants, (model, without(model, ACTIVATIONS),
                                             without(model, (nn.BatchNorm2d,))), strict=True):
            networks.append((built, x))
            labels.append((name, variant))
    measured = time_networks(networks, rounds=8, inner=5, warmup=2)
    priced = [layer_inventory(m, xx).predict_latency_ms(profile) for m, xx in networks]
    rows = {label: (t, p) for label, t, p in zip(labels, measured, priced, strict=True)}
    print(f"op ablation, {datetime.datetime.now():%Y-%m-%d %H:%M}, profile {profile.name} "
          f"as shipped (no drift check), 3x32x32, one thread")
    print(f"{'network':20s} {'ran ms':>7s} {'priced':>7s} {'err %':>6s} | removing them saved, "
          f"ran / priced ms: activations, BatchNorms")
    for name in NETWORKS:
        t0, p0 = rows[(name, "whole")]
        saved = [f"{t0 - rows[(name, v)][0]:6.3f} / {p0 - rows[(name, v)][1]:6.3f}"
                 for v in variants[1:]]
        print(f"{name:20s} {t0:7.3f} {p0:7.3f} {100 * (p0 / t0 - 1):+6.1f} | {'   '.join(saved)}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
