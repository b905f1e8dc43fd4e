"""Issue 16: networks no benchmark of ours holds (segmentation heads, MaxViT, Swin-v2,
EfficientNet-v2, a 3-D video ResNet, ViT-B/32, ConvNeXt, Inception-v3), priced against their time.

One command (about two minutes; the machine should be otherwise idle)::

    PYTHONPATH=. python experiments/zoo_latency.py [--rounds 4] [--timm NAME ...]

``--timm`` adds timm models at 3×128×128 (timm is not a dependency: ``pip install --no-deps
timm`` into a folder on ``PYTHONPATH`` is enough; their own layers, StdConv2d, BatchNormAct2d,
LayerScale, are what the cost model must meet in users' networks).

The benchmark (``latency_accuracy.py``) holds the torchvision classification CNNs the issue
names; this script asks the same question of the other architectures torchvision ships, at
small inputs, each built fresh (random weights, eval mode, batch 1): does the inventory trace
and price them without failing, and how far is the price of this machine's profiles (with
their drift check, as a user gets them) from the time, timed interleaved by the profiles'
method (one thread)? Nothing here is fitted on them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision import models

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import layer_inventory, load_profile  # noqa: E402

ZOO: list[tuple[str, Callable[[], nn.Module], tuple[int, ...]]] = [
    ("lraspp_mobilenet_v3_large", lambda: models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None), (1, 3, 64, 64)),
    ("deeplabv3_mobilenet_v3_large", lambda: models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, aux_loss=False), (1, 3, 64, 64)),
    ("maxvit_t", lambda: models.maxvit_t(), (1, 3, 224, 224)),
    ("swin_v2_t", lambda: models.swin_v2_t(), (1, 3, 64, 64)),
    ("efficientnet_v2_s", lambda: models.efficientnet_v2_s(), (1, 3, 64, 64)),
    ("r3d_18 (3-D convs)", lambda: models.video.r3d_18(), (1, 3, 4, 32, 32)),
    ("vit_b_32", lambda: models.vit_b_32(image_size=64), (1, 3, 64, 64)),
    ("convnext_tiny", lambda: models.convnext_tiny(), (1, 3, 32, 32)),
    ("inception_v3", lambda: models.inception_v3(weights=None, aux_logits=False,
                                                  init_weights=False), (1, 3, 96, 96)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--timm", nargs="*", default=[], metavar="NAME",
                        help="timm models to add (3x128x128)")
    parser.add_argument("--profiles", nargs="+", default=None, metavar="NAME_OR_YAML",
                        help="default: this machine kind's shipped pair")
    args = parser.parse_args()
    os.environ["BUDGETSEARCH_DRIFT_MAX_AGE_S"] = "0"  # a fresh automatic check, not a stored one
    zoo = list(ZOO)
    if args.timm:
        try:
            import timm
        except ImportError:
            raise SystemExit("--timm needs timm: pip install --no-deps timm") from None
        zoo += [(f"timm {name}", lambda n=name: timm.create_model(n, pretrained=False),
                 (1, 3, 128, 128)) for name in args.timm]
    bench.one_thread_quietly()
    load = bench.LoadMeter()
    print(f"zoo latency, {datetime.datetime.now():%Y-%m-%d %H:%M}, torch {torch.__version__}")
    networks = []
    for name, make, shape in zoo:
        model, x = make().eval(), torch.randn(shape)
        try:
            networks.append({"network": name, "model": model, "x": x, "kept": {},
                             "inventory": layer_inventory(model, x)})
        except Exception as error:  # noqa: BLE001 (report, go on: that is the finding)
            print(f"{name}: not priced ({type(error).__name__}: {str(error)[:100]})")
    for profile_name in args.profiles or bench.shipped_profiles_of_this_machine():
        profile = load_profile(profile_name)  # with its drift check, as a user gets it
        check = profile.last_check or {}
        predicted = bench.predict(networks, profile)
        measured = bench.measure_each(networks, profile, args.rounds)
        errors = 100 * (predicted / measured - 1)
        print(f"\n== {profile.name} ({profile.runtime}), drift check "
              f"x{check.get('scale', 1):.3f}")
        print(f"{'network':30s} {'meas ms':>9s} {'pred ms':>9s} {'err %':>7s}")
        for k, n in enumerate(networks):
            print(f"{n['network']:30s} {measured[k]:9.2f} {predicted[k]:9.2f} {errors[k]:+7.1f}")
        done = errors[~np.isnan(errors)]
        print(f"within ±10%: {np.mean(np.abs(done) <= 10):.0%}, within ±25%: "
              f"{np.mean(np.abs(done) <= 25):.0%}, median {np.median(done):+.1f}% "
              f"over {len(done)} networks")
    print(f"load: {load.others()}")


if __name__ == "__main__":
    main()
