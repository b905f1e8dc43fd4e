"""The varied set of networks a latency profile is fitted on, in families.

A latency model fitted on one family of networks learns that family's op mix, not the price of
each op; it then fails on the next family (issue 16: 93 % within ±10 % inside the WRN/ResNet fit
family, 0 % on torchvision's). So the fit set is drawn from generated networks of many families,
each with random widths (multiples of 16 or 8, and odd "pruned" widths), depths, activations,
heads and input sizes:

=============  ==================================================================================
family         blocks
=============  ==================================================================================
plain          conv-BN-act stacks with max or average pooling (VGG-like)
residual       basic blocks: two 3×3 convs, add, projection shortcut on stride
bottleneck     1×1 → 3×3 → 1×1 with add
dwsep          depthwise 3×3 + pointwise 1×1 (MobileNet-v1-like)
inverted       expand 1×1 → depthwise k×k → project 1×1, add; optional squeeze-excitation
grouped        grouped 3×3 convs with add: few groups (ResNeXt-like) or narrow ones (RegNet-like)
concat         parallel 1×1 / 3×3 branches concatenated (Fire / Inception-like, half with a
               stride-1 3×3 pool branch), dense concat
shuffle        split → branch → concat → channel shuffle (view / transpose / contiguous)
wrn            the built-in WRN / pre-activation ResNets, thinner and BAR-pruned
=============  ==================================================================================

Three in ten stems end in a stride-2 pool, and every downsampling pool is drawn from the kinds
published networks use (2×2, 3×3 padded, 3×3 ceil-mode max; 2×2 and 3×3 average).

None of them is a torchvision architecture: the benchmark (``experiments/latency_accuracy.py``)
tests on torchvision's families, which the fit never sees.

Example:
    >>> spec = sample_specs(1, seed=0)[0]
    >>> net = build_spec(spec)
    >>> net.model(torch.zeros(spec.input_shape)).shape[0]
    1
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from budgetsearch.cost.inventory import LayerInventory, layer_inventory
from budgetsearch.cost.profiles import ANCHOR_LABEL_BOUNDS, anchor_label

FAMILIES = ("plain", "residual", "bottleneck", "dwsep", "inverted", "grouped", "concat",
            "shuffle", "wrn")
INPUT_SHAPES = ((1, 1, 28, 28), (1, 3, 32, 32), (1, 3, 64, 64))
ACTIVATIONS = ("relu", "relu6", "hardswish", "silu")


#: Bumped whenever a label builds another network than before (2: the weights are drawn from
#: the spec's seed; 3: tiny draws; 4: pools of every published kind; 5: 7×7 depthwise convs,
#: the depthwise families a stage deeper), so that ``budgetsearch profile --refit`` refuses
#: measurements of another version (profiles record it as
#: ``provenance.generator_version``; before it was recorded: 1) and the drift check will not
#: rebuild anchors it drew. Cached exports of drift-check anchors are keyed by the network itself.
GENERATOR_VERSION = 5


@dataclass(frozen=True)
class NetworkSpec:
    """One generated network: family, input shape and the seed its layout is drawn from."""

    family: str
    input_shape: tuple[int, int, int, int]
    seed: int

    @property
    def label(self) -> str:
        """Short readable name."""
        return f"{self.family}#{self.seed}/{'x'.join(map(str, self.input_shape[1:]))}"


@dataclass
class BuiltNetwork:
    """A network ready to time, with how the cost model prices it."""

    label: str
    family: str
    model: nn.Module
    example_input: torch.Tensor
    inventory: LayerInventory
    kept_channels: dict[str, tuple[int, int]]


def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU(inplace=True), "relu6": nn.ReLU6(inplace=True),
            "hardswish": nn.Hardswish(), "silu": nn.SiLU(inplace=True)}[name]


def _cba(cin: int, cout: int, k: int, stride: int, act: str | None, groups: int = 1) -> nn.Module:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)
    ]
    if act is not None:
        layers.append(_act(act))
    return nn.Sequential(*layers)


class _SE(nn.Module):
    def __init__(self, channels: int, squeeze: int, gate: str) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid() if gate == "hardsigmoid" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class _Residual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module | None, act: str | None) -> None:
        super().__init__()
        self.body, self.shortcut = body, shortcut
        self.act = _act(act) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x) + (x if self.shortcut is None else self.shortcut(x))
        return self.act(out) if self.act is not None else out


class _Concat(nn.Module):
    def __init__(self, branches: list[nn.Module], stem: nn.Module | None = None,
                 dense: bool = False) -> None:
        super().__init__()
        self.stem = stem
        self.branches = nn.ModuleList(branches)
        self.dense = dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x) if self.stem is not None else x
        parts = [b(y) for b in self.branches]
        return torch.cat([x, *parts] if self.dense else parts, 1)


class _Shuffle(nn.Module):
    def __init__(self, channels: int, stride: int, act: str) -> None:
        super().__init__()
        half = channels // 2
        self.stride = stride
        cin = channels if stride > 1 else half
        self.branch = nn.Sequential(
            _cba(cin, half, 1, 1, act), _cba(half, half, 3, stride, None, groups=half),
            _cba(half, half, 1, 1, act))
        self.side = (nn.Sequential(_cba(channels, channels, 3, stride, None, groups=channels),
                                   _cba(channels, half, 1, 1, act)) if stride > 1 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.side is None:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.branch(b)), 1)
        else:
            out = torch.cat((self.side(x), self.branch(x)), 1)
        n, c, h, w = out.size()
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class _Net(nn.Module):
    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: nn.Module,
                 functional_pool: bool) -> None:
        super().__init__()
        self.stem, self.blocks, self.head = stem, nn.Sequential(*blocks), head
        self.functional_pool = functional_pool
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = x.mean((2, 3)) if self.functional_pool else torch.flatten(self.pool(x), 1)
        return self.head(x)


def _downsampling_pool(rng: random.Random) -> nn.Module:
    """A stride-2 pool as published networks downsample: 2×2 (VGG), 3×3 padded (ResNet's
    stem), 3×3 with ceil mode (GoogLeNet, SqueezeNet), or average (DenseNet's transitions)."""
    return rng.choice((nn.MaxPool2d(2), nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(3, 2, ceil_mode=True),
                       nn.AvgPool2d(2), nn.AvgPool2d(3, 2, 1)))


def _pooled(pool: nn.Module, size: int) -> int:
    """The map size ``pool`` leaves of a ``size``×``size`` map; 0 when it cannot take one that
    small (a 2×2 pool of a 1×1 map): the caller leaves such a pool out."""
    try:
        return int(pool(torch.zeros(1, 1, size, size)).shape[-1])
    except RuntimeError:
        return 0


def _width(rng: random.Random, base: int, align: int) -> int:
    if align == 1:  # a pruned-looking width: any count, not a multiple of 8
        return max(2, round(base * rng.uniform(0.3, 1.0)))
    return max(align, align * round(base * rng.uniform(0.5, 1.25) / align))


def _blocks(family: str, rng: random.Random, cin: int, act: str, align: int,
            tiny: bool = False, size: int = 64) -> tuple[list[nn.Module], int]:
    # wide enough to reach torchvision's regime (512-channel stages, tens of MB of weights at
    # 1×1-2×2 spatial): a fit that never saw large weights over-prices resnet18 by 40 %
    # the depthwise families one stage deeper, to the 1×1–2×2 maps of MobileNet-v3, MnasNet and
    # EfficientNet at small inputs (where oneDNN runs 5×5 and 7×7 depthwise convs as GEMMs)
    deep = family in ("dwsep", "inverted")
    stages = rng.choice((1, 2) if tiny else (3, 4, 5, 6) if deep else (2, 3, 4, 5))
    base = rng.choice((8, 16) if tiny else (16, 24, 32, 48, 64, 96, 128))
    blocks: list[nn.Module] = []
    c = cin
    for stage in range(stages):
        width = _width(rng, min(base * 2 ** stage, 1024), align)
        per_stage = 1 if tiny else rng.choice((1, 2, 3, 4))
        for i in range(per_stage):
            stride = 2 if i == 0 and stage > 0 else 1
            if family == "plain":
                blocks.append(_cba(c, width, rng.choice((1, 3, 3, 5)), 1, act))
                if i == per_stage - 1 and stage < stages - 1:
                    pool = _downsampling_pool(rng)
                    if _pooled(pool, size) > 0:  # (a map already 1×1 is left as it is)
                        blocks.append(pool)
                        size = _pooled(pool, size)
                c = width
                continue
            if family == "residual":
                body = nn.Sequential(_cba(c, width, 3, stride, act), _cba(width, width, 3, 1, None))
            elif family == "bottleneck":
                mid = _width(rng, width // 2, align)
                body = nn.Sequential(_cba(c, mid, 1, 1, act), _cba(mid, mid, 3, stride, act),
                                     _cba(mid, width, 1, 1, None))
            elif family == "grouped":
                mid = _width(rng, width, align)
                if rng.random() < 0.5:  # few groups (ResNeXt-like)
                    groups = rng.choice((2, 4, 8))
                else:  # many narrow groups of 8–32 channels (RegNet-like)
                    groups = max(1, mid // rng.choice((8, 16, 32)))
                mid = max(groups, groups * round(mid / groups))
                body = nn.Sequential(_cba(c, mid, 1, 1, act),
                                     _cba(mid, mid, 3, stride, act, groups=groups),
                                     _cba(mid, width, 1, 1, None))
            elif family in ("dwsep", "inverted"):
                # 5×5 and 7×7 ones too, mostly in the last two stages as EfficientNet and
                # MnasNet place them: on maps of 4×4 and less oneDNN runs them as per-channel
                # GEMMs (budgetsearch.cost.dispatch), a kernel priced on its own
                k = rng.choice((3, 5, 5, 7) if stage >= stages - 2 else (3, 3, 5))
                expand = 1 if family == "dwsep" else rng.choice((2, 3, 4, 6))
                mid = _width(rng, c * expand, align) if expand > 1 else c
                layers: list[nn.Module] = []
                if expand > 1:
                    layers.append(_cba(c, mid, 1, 1, act))
                layers.append(_cba(mid, mid, k, stride, act, groups=mid))
                if family == "inverted" and rng.random() < 0.5:
                    gate = rng.choice(("hardsigmoid", "sigmoid"))
                    layers.append(_SE(mid, max(4, mid // 4), gate))
                layers.append(_cba(mid, width, 1, 1, act if family == "dwsep" else None))
                body = nn.Sequential(*layers)
                if family == "dwsep" or stride > 1 or c != width:
                    blocks.append(body)
                else:
                    blocks.append(_Residual(body, None, None))
                c = width
                continue
            elif family == "concat":
                squeeze = _width(rng, max(8, width // 4), align)
                # half the draws carry an Inception-style pool branch (a stride-1 3×3 pool,
                # then a 1×1 conv): GoogLeNet's pools read 9 inputs per output
                pooled = max(2, width // 4) if rng.random() < 0.5 else 0
                if width - max(2, (width - pooled) // 2) - pooled < 1:
                    pooled = 0  # too narrow for three branches
                half = max(2, (width - pooled) // 2)
                branches = [_cba(squeeze, half, 1, 1, act),
                            _cba(squeeze, width - half - pooled, 3, 1, act)]
                if pooled:
                    pool = nn.MaxPool2d(3, 1, 1) if rng.random() < 0.7 else nn.AvgPool2d(3, 1, 1)
                    branches.append(nn.Sequential(pool, _cba(squeeze, pooled, 1, 1, act)))
                if rng.random() < 0.3:
                    blocks.append(_Concat([_cba(c, _width(rng, 16, align), 3, 1, act)], dense=True))
                    c = c + blocks[-1].branches[0][0].out_channels
                if stride > 1:
                    pool = _downsampling_pool(rng)
                    if _pooled(pool, size) > 0:
                        blocks.append(pool)
                        size = _pooled(pool, size)
                blocks.append(_Concat(branches, stem=_cba(c, squeeze, 1, 1, act)))
                c = width
                continue
            elif family == "shuffle":
                width = 2 * max(4, width // 2)
                if stride == 1 and c != width:
                    blocks.append(_cba(c, width, 1, 1, act))
                    c = width
                blocks.append(_Shuffle(width if stride == 1 else c, stride, act))
                c = width if stride == 1 else c
                continue
            else:
                raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
            shortcut = None if stride == 1 and c == width else _cba(c, width, 1, stride, None)
            blocks.append(_Residual(body, shortcut, act))
            c = width
    return blocks, c


def _generated(spec: NetworkSpec) -> nn.Module:
    rng = random.Random(spec.seed)
    act = rng.choice(ACTIVATIONS)
    # channel alignment: pruned-looking widths (any count), multiples of 8, or of 16 (most
    # published networks: 16-channel SIMD kernels take another path, and a fit set of 1 % aligned
    # networks over-priced torchvision's by 40 % in onnxruntime)
    align = rng.choice((1, 1, 8, 16, 16))
    channels, height = spec.input_shape[1], spec.input_shape[2]
    stem_width = rng.choice((8, 16, 24, 32))
    stride = 2 if height >= 64 and rng.random() < 0.7 else 1
    stem: nn.Module = _cba(channels, stem_width, 3, stride, act)
    size = (height + 2 - 3) // stride + 1
    if rng.random() < 0.3:  # a pooled stem (ResNet, GoogLeNet, ShuffleNet, DenseNet)
        pool = _downsampling_pool(rng)
        stem, size = nn.Sequential(stem, pool), _pooled(pool, size)
    # one draw in six is tiny (a stage or two of 8-16 channels, a block each: tens of µs in
    # eager), as users' own small networks are: a fit set whose smallest network ran 0.7 ms
    # priced a 2-conv CNN at 0.19 ms that ran in 0.10 (its per-call prices were never pinned)
    tiny = rng.random() < 1 / 6
    blocks, c = _blocks(spec.family, rng, stem_width, act, align, tiny=tiny, size=size)
    classes = rng.choice((10, 100, 1000))
    if rng.random() < 0.3:
        hidden = rng.choice((256, 1024, 1280))
        head: nn.Module = nn.Sequential(nn.Linear(c, hidden), _act(act), nn.Dropout(0.2),
                                        nn.Linear(hidden, classes))
    else:
        head = nn.Linear(c, classes)
    net = _Net(stem, blocks, head, functional_pool=rng.random() < 0.5)
    # Some networks carry no BatchNorm (SqueezeNet, VGG): without them every conv is followed by
    # BN, and the fit cannot tell a BN's overhead from its conv's or activation's (it priced
    # SqueezeNet 80 % over)
    return _without_batchnorm(net) if rng.random() < 0.3 else net


def _without_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm2d removed and the conv before it given a bias."""
    for parent in list(model.modules()):
        if not isinstance(parent, nn.Sequential):
            continue
        kept: list[nn.Module] = []
        for child in parent:
            if isinstance(child, nn.BatchNorm2d) and kept and isinstance(kept[-1], nn.Conv2d):
                conv = kept[-1]
                kept[-1] = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                     conv.stride, conv.padding, groups=conv.groups, bias=True)
                continue
            kept.append(child)
        if len(kept) != len(parent):
            for name in list(parent._modules):
                del parent._modules[name]
            for index, child in enumerate(kept):
                parent.add_module(str(index), child)
    return model


def _wrn(spec: NetworkSpec) -> tuple[nn.Module, nn.Module, dict[str, tuple[int, int]]]:
    """A built-in WRN/ResNet (thinner), pruned in half of the draws: (model, full, kept)."""
    from budgetsearch.models import build_model
    from budgetsearch.profiling.variants import block_names, prune_block_channels

    rng = random.Random(spec.seed)
    name = rng.choice(("wrn-10-1", "wrn-16-1", "wrn-16-2", "wrn-16-4", "wrn-22-2", "resnet-20",
                       "resnet-32"))
    full = build_model(name, in_channels=spec.input_shape[1],
                       width_multiplier=round(rng.uniform(0.4, 1.0), 2))
    draw = rng.random()
    if draw < 0.5:
        return full, full, {}
    if draw < 0.8:
        # a compact mixed-connectivity network (what BAR and channel-magnitude deliver), priced
        # as itself: its gathers and scatters are ops the full network's inventory never sees
        compact = _mixed_compact(full, spec.input_shape, rng.uniform(0.15, 0.8))
        return compact, compact, {}
    kept: dict[str, int] = {}
    kept_channels: dict[str, tuple[int, int]] = {}
    modules = dict(full.named_modules())
    for block in block_names(full):
        conv1, conv2 = modules[f"{block}.conv1"], modules[f"{block}.conv2"]
        channels = max(1, round(rng.uniform(0.1, 1.0) * conv1.out_channels))
        kept[block] = channels
        kept_channels[f"{block}.conv1"] = (conv1.in_channels, channels)
        kept_channels[f"{block}.bn2"] = (channels, channels)
        kept_channels[f"{block}.conv2"] = (channels, conv2.out_channels)
    return prune_block_channels(full, kept), full, kept_channels


def _mixed_compact(full: nn.Module, input_shape: tuple[int, ...], fraction: float) -> nn.Module:
    """``full`` pruned by the library's channel-magnitude pruner to ``fraction`` of its
    parameters: the physically smaller, mixed-connectivity network it delivers."""
    from budgetsearch.cost import Target
    from budgetsearch.pruners import build_pruner

    params = sum(p.numel() for p in full.parameters())
    target = Target("params", fraction=fraction, text=f"{100 * fraction:.0f}%").resolve(params)
    pruner = build_pruner("channel-magnitude", target=target, scope="uniform")
    pruner.prepare(copy.deepcopy(full), torch.zeros(input_shape))
    return pruner.finalize()


def _build(spec: NetworkSpec
           ) -> tuple[nn.Module, torch.Tensor, nn.Module, dict[str, tuple[int, int]]]:
    """(network, input, full network, kept channels) of ``spec``, untraced."""
    x = torch.randn(spec.input_shape, generator=torch.Generator().manual_seed(spec.seed))
    kept: dict[str, tuple[int, int]] = {}
    # the weights from the spec's seed too: a compact WRN keeps the channels of largest norm, so
    # without it the same label would build another network in another process
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        if spec.family == "wrn":
            model, full, kept = _wrn(spec)
        else:
            model = full = _generated(spec)
    return model.eval(), x, full, kept


def build_spec(spec: NetworkSpec) -> BuiltNetwork:
    """Build the network of ``spec`` and trace its inventory (a pruned WRN is priced through the
    full network's inventory with ``kept_channels``, as the pruners price it)."""
    model, x, full, kept = _build(spec)
    inventory = layer_inventory(full, x)
    return BuiltNetwork(spec.label, spec.family, model, x, inventory, kept)


def build_labelled(label: str) -> tuple[nn.Module, torch.Tensor]:
    """The network and input a :attr:`NetworkSpec.label` names (``"wrn#123/3x32x32"``), built
    as the profiling run built it, untraced: a profile's drift-check anchor.

    Raises:
        ValueError: not a label of a family of :data:`FAMILIES` with an input the fit set uses
            (see :data:`~budgetsearch.cost.profiles.ANCHOR_LABEL`).
    """
    match = anchor_label(label)
    if match is None or match["family"] not in FAMILIES:
        raise ValueError(f"a fit-set network is named family#seed/CxHxW with a family of "
                         f"{', '.join(FAMILIES)}, {ANCHOR_LABEL_BOUNDS}, got {label!r}")
    c, h, w = (int(match[k]) for k in ("c", "h", "w"))
    model, x, _, _ = _build(NetworkSpec(match["family"], (1, c, h, w), int(match["seed"])))
    return model, x


def sample_specs(
    count: int, *, seed: int, families: tuple[str, ...] = FAMILIES,
    shapes: tuple[tuple[int, ...], ...] = INPUT_SHAPES,
) -> list[NetworkSpec]:
    """``count`` specs cycling through ``families``, each at one of ``shapes`` drawn uniformly
    (the default draw is the one every shipped profile was fitted on)."""
    rng = random.Random(seed)
    specs = []
    for index in range(count):
        family = families[index % len(families)]
        shape = shapes[rng.randrange(len(shapes))]
        specs.append(NetworkSpec(family, shape, rng.randrange(1_000_000)))
    return specs


def shapes_text(shapes: tuple[tuple[int, ...], ...]) -> str:
    """How a profile's provenance names its fit set's input shapes (``input_shapes``)."""
    return ", ".join("x".join(map(str, shape)) for shape in shapes) + " (uniform)"


def shapes_from_text(text: str | None) -> tuple[tuple[int, ...], ...]:
    """The input shapes a profile's ``input_shapes`` provenance names (:func:`shapes_text`);
    :data:`INPUT_SHAPES` when it names none (a profile written before the field)."""
    if not text:
        return INPUT_SHAPES
    try:
        shapes = tuple(tuple(int(n) for n in part.strip().split("x"))
                       for part in str(text).split("(")[0].split(",") if part.strip())
    except ValueError:
        raise ValueError(f"input_shapes must read like {shapes_text(INPUT_SHAPES)!r}, "
                         f"got {text!r}") from None
    if not shapes or any(len(shape) != 4 or min(shape) < 1 for shape in shapes):
        raise ValueError(f"input_shapes must read like {shapes_text(INPUT_SHAPES)!r}, "
                         f"got {text!r}")
    return shapes


def describe(built: BuiltNetwork) -> dict[str, Any]:
    """A plain summary row (label, family, FLOPs, parameters) of a built network."""
    cost = built.inventory.price(kept_channels=built.kept_channels)
    return {"network": built.label, "family": built.family, "flops": cost.flops,
            "params": cost.params}
