"""Issue 16: ops outside the fit set's networks (resampling, sub-pixel shuffles, attention,
transposed and 1-D convs, GroupNorm and GELU, recurrent layers, embeddings), priced against
their time.

One command (about a minute; the machine should be otherwise idle)::

    PYTHONPATH=. python experiments/unusual_ops.py [--runtime onnxruntime] [--rounds 6]

Sixteen small networks, each built around one such op (a segmentation decoder's upsampling, a
super-resolution head's pixel shuffle, attention over 256 tokens, ...), plus the plain
conv-BN-ReLU stack they are variations of, timed interleaved by the profiles' method and priced
by this machine's profile of ``--runtime`` with its drift check: as the trace now sees them, and
as it saw them before 2026-12-04 ("before": resampling, pixel shuffles,
``scaled_dot_product_attention``, ``einsum`` and ``nn.MultiheadAttention``'s one call traced as
reshapes, priced at nothing, and a registered ``nn.Upsample`` priced twice, as fvcore's record
and as its call; re-priced in the same run by emptying those op sets).
"""

from __future__ import annotations

import collections
import datetime
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import LayerInventory, layer_inventory  # noqa: E402
from budgetsearch.cost import ops as ops_module  # noqa: E402


class _Decoder(nn.Module):
    """Four rounds of upsample ×2, 3×3 conv, average pool /2 (a U-Net decoder's pattern)."""

    def __init__(self, mode: str | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(64, 64, 3, padding=1)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(4):
            if self.mode:
                x = F.interpolate(x, scale_factor=2, mode=self.mode)
            x = F.avg_pool2d(self.conv(x), 2) if self.mode else self.conv(x)
        return x


class _Attention(nn.Module):
    """A qkv projection, then eight rounds of 4-head attention over the tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(64, 192)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(1, -1, 3, 4, 16).permute(2, 0, 3, 1, 4)
        for _ in range(8):
            q = self.attend(q, k, v)
        return q


class _EinsumAttention(_Attention):
    """_Attention written with einsum (as many research codebases write it)."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        weights = torch.einsum("bhqd,bhkd->bhqk", q, k).mul(0.25).softmax(-1)
        return torch.einsum("bhqk,bhkd->bhqd", weights, v)


class _CrossAttention(nn.Module):
    """nn.MultiheadAttention from 64 queries over a 256-token memory (a decoder's)."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(128, 4, batch_first=True)
        self.register_buffer("memory", torch.randn(1, 256, 128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, self.memory, self.memory, need_weights=False)[0]


class _UpsampleDecoder(nn.Module):
    """_Decoder("bilinear") with its upsampling a registered nn.Upsample."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(64, 64, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(4):
            x = F.avg_pool2d(self.conv(self.up(x)), 2)
        return x


class _Recurrent(nn.Module):
    def __init__(self, cell: type[nn.RNNBase]) -> None:
        super().__init__()
        self.rnn = cell(64, 128, num_layers=2, batch_first=True)
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


class _Embedding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(30_000, 256)
        self.head = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x).mean(1))


def _stack(conv: type[nn.Module], norm: type[nn.Module], act: type[nn.Module],
           *args: int) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(4):
        layers += [conv(64, 64, 3, padding=1) if conv is nn.Conv2d else conv(64, 64, 5, padding=2),
                   norm(*args) if args else norm(64), act()]
    return nn.Sequential(*layers)


def cases() -> list[tuple[str, nn.Module, torch.Tensor]]:
    out = [
        ("upsample nearest (decoder)", _Decoder("nearest"), torch.randn(1, 64, 16, 16)),
        ("upsample bilinear (decoder)", _Decoder("bilinear"), torch.randn(1, 64, 16, 16)),
        ("no upsample (4 convs at 16x16)", _Decoder(None), torch.randn(1, 64, 16, 16)),
        ("transposed convs", nn.Sequential(*[nn.ConvTranspose2d(32, 32, 4, 2, 1)
                                             for _ in range(3)]), torch.randn(1, 32, 8, 8)),
        ("pixel shuffle (super-resolution)",
         nn.Sequential(nn.Conv2d(32, 128, 3, padding=1), nn.PixelShuffle(2),
                       nn.Conv2d(32, 128, 3, padding=1), nn.PixelShuffle(2)),
         torch.randn(1, 32, 16, 16)),
        ("upsample module bilinear (decoder)", _UpsampleDecoder(), torch.randn(1, 64, 16, 16)),
        ("attention, 256 tokens", _Attention(), torch.randn(1, 256, 64)),
        ("einsum attention, 256 tokens", _EinsumAttention(), torch.randn(1, 256, 64)),
        ("transformer encoder x2, 64 tokens",
         nn.TransformerEncoder(nn.TransformerEncoderLayer(128, 4, 256, batch_first=True), 2,
                               enable_nested_tensor=False), torch.randn(1, 64, 128)),
        ("cross-attention, 64 over 256", _CrossAttention(), torch.randn(1, 64, 128)),
        ("LSTM, 2 layers, 64 steps", _Recurrent(nn.LSTM), torch.randn(1, 64, 64)),
        ("GRU, 2 layers, 64 steps", _Recurrent(nn.GRU), torch.randn(1, 64, 64)),
        ("embedding, 128 tokens", _Embedding(), torch.randint(0, 30_000, (1, 128))),
        ("conv1d-BN-ReLU x4", _stack(nn.Conv1d, nn.BatchNorm1d, nn.ReLU),
         torch.randn(1, 64, 1000)),
        ("conv-GroupNorm-GELU x4", _stack(nn.Conv2d, nn.GroupNorm, nn.GELU, 8, 64),
         torch.randn(1, 64, 32, 32)),
        ("conv-BN-ReLU x4 (fit-set kind)", _stack(nn.Conv2d, nn.BatchNorm2d, nn.ReLU),
         torch.randn(1, 64, 32, 32)),
    ]
    return [(name, model.eval(), x) for name, model, x in out]


def _untraced(inventory: LayerInventory) -> LayerInventory:
    """The inventory as priced before 2026-12-04: a parameter-free leaf's record (nn.Upsample)
    priced beside the calls the trace records in it."""
    return LayerInventory([replace(r, traced=False) for r in inventory],
                          extra_ops=inventory.extra_ops)


def main() -> None:
    args = bench.runtime_arguments(__doc__.splitlines()[0])
    load = bench.LoadMeter()
    print(f"unusual ops, {datetime.datetime.now():%Y-%m-%d %H:%M}, torch {torch.__version__}")
    profile = bench.this_machines_profile(args.runtime)
    check = profile.last_check or {}
    print(f"profile {profile.name} ({profile.runtime}), drift check x{check.get('scale', 1):.3f}")
    networks, kinds = [], {}
    for name, model, x in cases():
        try:
            networks.append({"network": name, "model": model, "x": x, "kept": {},
                             "inventory": layer_inventory(model, x)})
        except Exception as error:  # noqa: BLE001 (report, go on)
            print(f"{name}: not priced ({type(error).__name__}: {str(error)[:100]})")
            continue
        kinds[name] = collections.Counter(op.kind for op in networks[-1]["inventory"].extra_ops
                                          if op.kind != "reshape")
    now = bench.predict(networks, profile)
    saved = {k: getattr(ops_module, k) for k in ("_ATTENTION", "_RESAMPLES", "_SHUFFLES",
                                                    "_ATTENTION_MODULES", "_EINSUMS")}
    try:  # the trace before: these calls were reshapes, a registered upsample priced twice
        for key in saved:
            setattr(ops_module, key, set())
        before = bench.predict([{**n, "inventory": _untraced(layer_inventory(n["model"], n["x"]))}
                                for n in networks], profile)
    finally:
        for key, value in saved.items():
            setattr(ops_module, key, value)
    measured = bench.measure_each(networks, profile, args.rounds)
    print(f"{'':34s} {'meas ms':>8s} {'now ms':>8s} {'err %':>7s} {'before ms':>9s} {'err %':>7s}"
          f"  extra ops traced")
    for k, n in enumerate(networks):
        print(f"{n['network']:34s} {measured[k]:8.3f} {now[k]:8.3f} "
              f"{100 * (now[k] / measured[k] - 1):+7.1f} {before[k]:9.3f} "
              f"{100 * (before[k] / measured[k] - 1):+7.1f}  {dict(kinds[n['network']])}")
    print(f"load: {load.others()}")


if __name__ == "__main__":
    main()
