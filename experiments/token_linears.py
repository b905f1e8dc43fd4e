"""Issue 16: linear layers over many rows (transformer tokens, ConvNeXt's pixels), priced as a
classifier head or as the GEMM they run.

One command (a few minutes; the machine should be otherwise idle)::

    PYTHONPATH=. python experiments/token_linears.py [--runtime onnxruntime] [--rounds 6]

Every linear in the fit set is a head on one vector (a GEMV: it streams its weights once), so
the fits price a linear's FLOPs at the weights' streaming speed (the eager AVX2 fit: 238 ms per
GFLOP, 4 GMAC/s). A linear over M rows reuses its weights M times. The inventory prices the
first row at the head's price and every further row at the dense conv's GEMM price
(``budgetsearch.cost.inventory.rows_alpha``). This script times, interleaved, by the profiles'
method:

1. ``nn.Linear`` over M = 1, 4, 16, 64, 256 rows beside the same GEMM as a 1×1 conv over M
   positions, for four weight shapes;
2. networks made of token linears: torchvision ConvNeXt-T (3×32×32), Swin-T (3×64×64), ViT-B/16
   at 32×32 (5 tokens) and 64×64 (17 tokens), a two-layer transformer encoder (64 tokens) and a
   token MLP,

and prices each by this machine's profile of ``--runtime`` with its drift check, by the rule
above ("rows") and by the head's price for every row ("one row", the rule before 2026-12-04,
re-priced in the same run by switching ``rows_alpha`` off).
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import inventory as inventory_module  # noqa: E402
from budgetsearch.cost import layer_inventory  # noqa: E402


class _Conv1x1(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Encoder(nn.Module):
    """Patch embedding, two transformer encoder layers over 64 tokens, mean, head."""

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, width, 4, 4)
        layer = nn.TransformerEncoderLayer(width, 4, 4 * width, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.encoder(tokens).mean(1))


class _TokenMLP(nn.Module):
    """A token MLP (MLP-Mixer's channel half): four 256→1024→256 blocks over 64 tokens."""

    def __init__(self, width: int = 256) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, width, 4, 4)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(),
                          nn.Linear(4 * width, width)) for _ in range(4))
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        for block in self.blocks:
            t = t + block(t)
        return self.head(t.mean(1))


def cases() -> list[tuple[str, nn.Module, torch.Tensor]]:
    out = []
    for cin, cout in ((96, 384), (384, 96), (768, 768), (768, 3072)):
        for rows in (1, 4, 16, 64, 256):
            out.append((f"linear {cin}->{cout} x{rows} rows", nn.Linear(cin, cout),
                        torch.randn(1, rows, cin)))
            out.append((f"conv1x1 {cin}->{cout} x{rows} positions", _Conv1x1(cin, cout),
                        torch.randn(1, cin, rows, 1)))
    models = torchvision.models
    out += [
        ("convnext_tiny/3x32x32", models.convnext_tiny(num_classes=10), torch.randn(1, 3, 32, 32)),
        ("swin_t/3x64x64", models.swin_t(num_classes=10), torch.randn(1, 3, 64, 64)),
        ("vit_b_16/3x32x32", models.vit_b_16(image_size=32, num_classes=10),
         torch.randn(1, 3, 32, 32)),
        ("vit_b_16/3x64x64", models.vit_b_16(image_size=64, num_classes=10),
         torch.randn(1, 3, 64, 64)),
        ("encoder-2x128/3x32x32", _Encoder(), torch.randn(1, 3, 32, 32)),
        ("token-mlp-4x256/3x32x32", _TokenMLP(), torch.randn(1, 3, 32, 32)),
    ]
    return [(name, model.eval(), x) for name, model, x in out]


def main() -> None:
    args = bench.runtime_arguments(__doc__.splitlines()[0])
    load = bench.LoadMeter()
    print(f"token linears, {datetime.datetime.now():%Y-%m-%d %H:%M}, torch {torch.__version__}")
    bench.this_machines_profile(args.runtime, check=False)  # exits when there is none
    built = cases()
    networks = [{"network": n, "model": m, "x": x, "kept": {},
                 "inventory": layer_inventory(m, x)} for n, m, x in built]
    profile = bench.this_machines_profile(args.runtime)
    check = profile.last_check or {}
    print(f"profile {profile.name} ({profile.runtime}), drift check x{check.get('scale', 1):.3f}")
    rows_price = bench.predict(networks, profile)
    rows_alpha = inventory_module.rows_alpha
    try:  # the rule before: the head's price for every row
        inventory_module.rows_alpha = lambda profile, alpha, rows: alpha
        fresh = [{**n, "inventory": layer_inventory(n["model"], n["x"])} for n in networks]
        one_row_price = bench.predict(fresh, profile)
    finally:
        inventory_module.rows_alpha = rows_alpha
    runners = bench.build_runners(networks, profile)
    measured = bench.measure(runners, profile, args.rounds)
    print(f"{'':42s} {'meas ms':>9s} {'rows ms':>9s} {'err %':>7s} {'one row ms':>11s} "
          f"{'err %':>7s}")
    err_rows = 100 * (rows_price / measured - 1)
    err_one = 100 * (one_row_price / measured - 1)
    for k, n in enumerate(networks):
        print(f"{n['network']:42s} {measured[k]:9.4f} {rows_price[k]:9.4f} {err_rows[k]:+7.1f} "
              f"{one_row_price[k]:11.4f} {err_one[k]:+7.1f}")
    linears = [k for k, n in enumerate(networks) if n["network"].startswith("linear")
               and not n["network"].endswith(" x1 rows")]
    nets = [k for k, n in enumerate(networks) if "/" in n["network"]]
    for what, group in (("linears over 4-256 rows", linears), ("networks", nets)):
        for rule, err in (("rows", err_rows), ("one row", err_one)):
            e = err[group]
            print(f"{what}, {rule}: {np.mean(np.abs(e) <= 10):.0%} within ±10%, "
                  f"{np.mean(np.abs(e) <= 25):.0%} within ±25%, median {np.median(e):+.1f}%, "
                  f"worst {e[np.argmax(np.abs(e))]:+.1f}%")
    print(f"load: {load.others()}")


if __name__ == "__main__":
    main()
