"""Jetson profiles against latencies other people published (issue 16, part 4).

Run: ``PYTHONPATH=. .venv/bin/python experiments/jetson_published.py`` (about a minute on 2 cores:
one fvcore trace per network and input size).

Reads ``hw_profiles/published/jetson_latency.csv`` (one row per published batch-1 latency, each
with its source), builds every network it can build faithfully (torchvision, ``weights=None``, or
the ones built here: MobileNetV1, ResNet-50-vd and two 6-class heads), prices it with the cost
model on the matching Jetson profile at the published input size, and writes predicted vs
published to ``experiments/results/jetson_published.csv``.

Where a profile has at least ``MIN_FIT_MEASUREMENTS`` published numbers of the runtime it stands
for, the roofline's free constants (compute efficiency, memory efficiency, per-layer overhead, and
the depthwise efficiency where the networks have depthwise convolutions) are fitted on half of
them and the error is reported on the other, held-out half. The halves are networks
(:func:`split_models`: sorted names, alternating) where there are enough architectures, else
input sizes (:func:`split_sizes`), and then :func:`transfer_check` also fits without each
architecture in turn and prints the error on it. The fit minimises the mean squared log ratio
predicted / published over a grid (no scipy needed).

The committed profiles in ``hw_profiles/`` carry the rounded fitted values; the datasheet values
they replace are in :data:`DATASHEET_ROOFLINE`, so the "before" column stays reproducible.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from budgetsearch.cost import layer_inventory, load_profile
from budgetsearch.cost.inventory import LayerInventory
from budgetsearch.cost.profiles import DeviceProfile, profile_from_dict

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_CSV = ROOT / "hw_profiles" / "published" / "jetson_latency.csv"
RESULTS_CSV = ROOT / "experiments" / "results" / "jetson_published.csv"
PROFILES = ("jetson-nano", "jetson-orin-nano", "jetson-xavier-nx")
MIN_FIT_MEASUREMENTS = 10  # fewer: no fit, the datasheet constants stay (3 free constants)
# Fewer architectures than this: hold out half of the input sizes instead of half of the networks.
MIN_ARCHITECTURES_TO_SPLIT = 4
FITTED = ("compute_efficiency", "memory_efficiency", "layer_overhead_ms")
DW_FITTED = "dwconv_compute_efficiency"  # fitted too where the fit set has depthwise convs
# The roofline values committed before this check (budgetsearch assumptions, see the YAML files).
DATASHEET_ROOFLINE: dict[str, dict[str, float]] = {
    "jetson-nano": {"compute_efficiency": 0.5, "memory_efficiency": 0.6,
                    "layer_overhead_ms": 0.03},
    "jetson-orin-nano": {"compute_efficiency": 0.25, "memory_efficiency": 0.6,
                         "layer_overhead_ms": 0.012, "dwconv_compute_efficiency": 0.03},
    "jetson-xavier-nx": {"compute_efficiency": 0.25, "memory_efficiency": 0.6,
                         "layer_overhead_ms": 0.015},
}


# ---------------------------------------------------------------------------------------------
# Networks that torchvision lacks


def _conv_bn_relu(cin: int, cout: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def mobilenet_v1(num_classes: int = 1000) -> nn.Module:
    """MobileNetV1 1.0 (Howard et al. 2017, Table 1): 3x3 stem, 13 depthwise-separable blocks."""
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
        (1024, 2), (1024, 1)]
    layers: list[nn.Module] = [_conv_bn_relu(3, 32, 2)]
    cin = 32
    for cout, stride in plan:
        layers += [
            _conv_bn_relu(cin, cin, stride, groups=cin),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        ]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(1024, num_classes))


def resnet50_vd(num_classes: int = 1000) -> nn.Module:
    """ResNet-50-vd (He et al. 2019, "Bag of Tricks", fig. 2c): torchvision's ResNet-50 with a
    3-conv stem (32, 32, 64) and 2x2 average pooling before the 1x1 projection of each strided
    shortcut."""
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    model.conv1 = nn.Sequential(
        _conv_bn_relu(3, 32, 2), _conv_bn_relu(32, 32, 1),
        nn.Conv2d(32, 64, 3, 1, 1, bias=False),
    )
    for stage in (model.layer2, model.layer3, model.layer4):
        proj, bn = stage[0].downsample[0], stage[0].downsample[1]
        stage[0].downsample = nn.Sequential(
            nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(proj.in_channels, proj.out_channels, 1, 1, bias=False), bn,
        )
    return model


def resnet50_c6() -> nn.Module:
    """torchvision's ResNet-50 with a 6-class head (the network timed in bs2026-resolution)."""
    return torchvision.models.resnet50(weights=None, num_classes=6)


def efficientnet_b0_c6() -> nn.Module:
    """EfficientNet-B0 (Tan & Le 2019) with a 6-class head, built by torchvision.

    The published times are of timm's ``efficientnet_b0``: the same B0 (stem 32, the paper's
    16 MBConv blocks with squeeze-excitation at a quarter of the block input, head 1280), so the
    same layer shapes, hence the same price.
    """
    return torchvision.models.efficientnet_b0(weights=None, num_classes=6)


LOCAL_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "mobilenet_v1": mobilenet_v1,
    "resnet50_vd": resnet50_vd,
    "resnet50_c6": resnet50_c6,
    "efficientnet_b0_c6": efficientnet_b0_c6,
}


def build_network(builder: str) -> nn.Module:
    """The network named ``builder``: a torchvision classifier (``weights=None``) or a local one.

    Raises:
        ValueError: no such builder.
    """
    if builder in LOCAL_BUILDERS:
        return LOCAL_BUILDERS[builder]()
    if builder in torchvision.models.list_models(module=torchvision.models):
        return torchvision.models.get_model(builder, weights=None)
    raise ValueError(f"builder must be a torchvision classifier or one of "
                     f"{sorted(LOCAL_BUILDERS)}, got {builder!r}")


# ---------------------------------------------------------------------------------------------
# Published rows


@dataclass(frozen=True)
class PublishedRow:
    """One published batch-1 latency (a row of ``jetson_latency.csv``)."""

    device: str
    model: str
    builder: str
    input_shape: tuple[int, int, int, int]
    runtime: str
    latency_ms: float
    source: str
    notes: str
    in_check: bool


def load_published(path: str | Path = PUBLISHED_CSV) -> list[PublishedRow]:
    """Parse the published-latency table.

    Raises:
        ValueError: a row without a source, a non-positive latency, a batch other than 1 or a
            malformed input shape (the message names the row).
    """
    rows = []
    with open(path, newline="") as handle:
        for number, raw in enumerate(csv.DictReader(handle), start=2):
            where = f"{path}:{number}"
            if not raw["source"].strip():
                raise ValueError(f"{where}: every row needs a source, got an empty one")
            shape = tuple(int(v) for v in raw["input_shape"].split("x"))
            if len(shape) != 4 or shape[0] != 1 or int(raw["batch"]) != 1:
                raise ValueError(f"{where}: input_shape must be 1xCxHxW at batch 1, got "
                                 f"{raw['input_shape']!r}, batch {raw['batch']!r}")
            latency = float(raw["latency_ms"])
            if not latency > 0:
                raise ValueError(f"{where}: latency_ms must be positive, got {latency}")
            if raw["in_check"] not in ("yes", "no"):
                raise ValueError(f"{where}: in_check must be 'yes' or 'no', got "
                                 f"{raw['in_check']!r}")
            rows.append(PublishedRow(
                device=raw["device"], model=raw["model"], builder=raw["builder"],
                input_shape=shape, runtime=raw["runtime"], latency_ms=latency,
                source=raw["source"], notes=raw["notes"], in_check=raw["in_check"] == "yes",
            ))
    return rows


def split_models(builders: Iterable[str]) -> dict[str, str]:
    """``"fit"`` or ``"heldout"`` per network: architectures sorted by name, alternating,
    starting with fit; a ``*_bn`` variant goes with its plain twin (TensorRT folds BatchNorm into
    the convolution, so ``vgg11_bn`` is all but ``vgg11`` and must not test a fit made on it).

    The split is by architecture, so all input sizes of one network fall on the same side and a
    held-out network is never seen at another size. Alternating over sorted names is
    deterministic and splits a group into halves (a CRC32 split, tried first, put 8 of 21 rows
    on the fit side).
    """
    keys = sorted({b.removesuffix("_bn") for b in builders})
    side = {k: ("fit" if i % 2 == 0 else "heldout") for i, k in enumerate(keys)}
    return {b: side[b.removesuffix("_bn")] for b in builders}


def check_rows(rows: Iterable[PublishedRow], device: str) -> list[PublishedRow]:
    """The rows a profile is checked (and, with enough of them, fitted) against."""
    return [r for r in rows if r.device == device and r.in_check and r.builder]


SplitKey = tuple[str, tuple[int, int, int, int]]  # (builder, input shape)


def split_sizes(keys: Iterable[SplitKey]) -> dict[SplitKey, str]:
    """``"fit"`` or ``"heldout"`` per (network, input shape): input sizes sorted, alternating,
    starting with fit; every network at one size on the same side.

    For a table of few architectures measured at many sizes, where halving the architectures
    would leave one network to fit on: the held-out error then says how well the fit carries
    to sizes it has not seen, not to networks it has not seen.
    """
    keys = list(keys)
    sizes = sorted({shape[2:] for _, shape in keys})
    side = {size: ("fit" if i % 2 == 0 else "heldout") for i, size in enumerate(sizes)}
    return {key: side[key[1][2:]] for key in keys}


def architectures(builders: Iterable[str]) -> set[str]:
    """Distinct architectures (a ``*_bn`` VGG is its plain twin's)."""
    return {b.removesuffix("_bn") for b in builders}


def splits_for(rows: Iterable[PublishedRow], device: str) -> dict[SplitKey, str]:
    """(network, input shape) → ``"fit"``/``"heldout"`` for a profile with enough rows to fit
    (by architecture, :func:`split_models`, or with too few architectures by input size,
    :func:`split_sizes`), else ``"all"``."""
    check = check_rows(rows, device)
    keys = [(r.builder, r.input_shape) for r in check]
    if len(check) < MIN_FIT_MEASUREMENTS:
        return {key: "all" for key in keys}
    if len(architectures(r.builder for r in check)) < MIN_ARCHITECTURES_TO_SPLIT:
        return split_sizes(keys)
    by_model = split_models([r.builder for r in check])
    return {key: by_model[key[0]] for key in keys}


# ---------------------------------------------------------------------------------------------
# Pricing


@dataclass(frozen=True)
class LayerTerms:
    """Per-layer FLOPs, moved elements and op kinds of one traced network (full width)."""

    flops: np.ndarray
    elements: np.ndarray
    kinds: tuple[str, ...]


def layer_terms(inventory: LayerInventory) -> LayerTerms:
    """What the roofline sees of each full-width layer: FLOPs (fvcore, 1 FLOP = 1 multiply-add)
    and elements moved (input + output activations + parameters), as ``LayerInventory.price``."""
    return LayerTerms(
        flops=np.array([r.flops for r in inventory.layers], dtype=float),
        elements=np.array([r.input_elements + r.output_elements + r.params
                           for r in inventory.layers], dtype=float),
        kinds=tuple(r.kind for r in inventory.layers),
    )


def roofline_latency_ms(terms: LayerTerms, profile: DeviceProfile) -> float:
    """``Σ max(α·F, γ·B) + β`` over the layers: the closed form of ``price(profile=...)``."""
    total = 0.0
    for kind in set(terms.kinds):
        mask = np.array([k == kind for k in terms.kinds])
        c = profile.op_latency(kind)
        compute = c.ms_per_gflop * 1e-9 * terms.flops[mask]
        moved = c.ms_per_mb * 1e-6 * profile.bytes_per_element * terms.elements[mask]
        total += float(np.maximum(compute, moved).sum()) + c.overhead_ms * int(mask.sum())
    return total + profile.network_overhead_ms


def with_roofline(profile: DeviceProfile, values: Mapping[str, float]) -> DeviceProfile:
    """``profile`` with some roofline ``value`` s replaced (re-derived through the YAML loader)."""
    data = profile.as_yaml_dict()
    for key, value in values.items():
        data["roofline"][key] = {**data["roofline"][key], "value": float(value)}
    return replace(profile_from_dict(data, where=f"{profile.name} (modified)"), path=profile.path)


def datasheet_profile(profile: DeviceProfile) -> DeviceProfile:
    """The profile with the datasheet constants it had before this check."""
    return with_roofline(profile, DATASHEET_ROOFLINE[profile.name])


# ---------------------------------------------------------------------------------------------
# Errors and fit


@dataclass(frozen=True)
class ErrorSummary:
    """Errors of predicted vs published latencies (percent of the published value)."""

    count: int
    median_abs_pct: float | None
    within_25pct: float | None
    within_50pct: float | None


def error_summary(predicted: Sequence[float], published: Sequence[float]) -> ErrorSummary:
    """Median |error| and the share within ±25 % and ±50 % (None for no points)."""
    if len(predicted) != len(published):
        raise ValueError(f"predicted and published must have the same length, got "
                         f"{len(predicted)} and {len(published)}")
    if not published:
        return ErrorSummary(0, None, None, None)
    errors = np.abs(np.asarray(predicted) / np.asarray(published) - 1.0) * 100.0
    return ErrorSummary(
        count=len(errors),
        median_abs_pct=round(float(np.median(errors)), 1),
        within_25pct=round(float(np.mean(errors <= 25.0)), 2),
        within_50pct=round(float(np.mean(errors <= 50.0)), 2),
    )


def _depthwise_bodies(
    terms: Sequence[LayerTerms], roof: Mapping[str, float], memory_grid: np.ndarray,
    dw_grid: np.ndarray,
) -> np.ndarray:
    """Depthwise layers' roofline time per network, ``[memory_eff, dw_eff, network]`` (ms)."""
    peak_gflops, bandwidth = roof["peak_tflops"] * 1e3, roof["memory_bandwidth_gbs"]
    dw = [np.array([k == "dwconv" for k in t.kinds], dtype=bool) for t in terms]
    flops = np.concatenate([t.flops[m] for t, m in zip(terms, dw)])
    elements = np.concatenate([t.elements[m] for t, m in zip(terms, dw)])
    which = np.concatenate([np.full(int(m.sum()), i) for i, m in enumerate(dw)])
    out = np.zeros((len(memory_grid), len(dw_grid), len(terms)))
    for j, memory_eff in enumerate(memory_grid):
        moved = elements * roof["bytes_per_element"] / (bandwidth * memory_eff) * 1e-6
        for k, dw_eff in enumerate(dw_grid):
            compute = flops * 2.0 / (peak_gflops * dw_eff) * 1e-6
            out[j, k] = np.bincount(which, weights=np.maximum(compute, moved),
                                    minlength=len(terms))
    return out


def fit_roofline(
    profile: DeviceProfile, terms: Sequence[LayerTerms], published: Sequence[float]
) -> dict[str, float]:
    """Compute efficiency, memory efficiency and per-layer overhead minimising the mean squared
    log ratio predicted / published, over a grid, rounded to 2 significant digits (efficiencies)
    and 1 µs (overhead). Where the networks have depthwise convolutions, their efficiency
    (``dwconv_compute_efficiency``) is fitted too; otherwise it is kept.
    """
    roof = {k: float(v["value"]) for k, v in profile.roofline.items()}
    peak_gflops, bandwidth = roof["peak_tflops"] * 1e3, roof["memory_bandwidth_gbs"]
    bpe = roof["bytes_per_element"]
    dw = np.concatenate([np.array([k == "dwconv" for k in t.kinds], dtype=bool) for t in terms])
    flops = np.concatenate([t.flops for t in terms])[~dw]
    elements = np.concatenate([t.elements for t in terms])[~dw]
    which = np.concatenate([np.full(len(t.flops), i) for i, t in enumerate(terms)])[~dw]
    counts = np.array([len(t.flops) for t in terms], dtype=float)
    target = np.log(np.asarray(published))
    overheads = np.linspace(0.0, 0.3, 301)  # ms per layer, 1 µs steps
    memory_grid = np.geomspace(0.05, 1.0, 60)
    dw_grid = np.geomspace(0.002, 0.5, 60) if dw.any() else np.array([math.nan])
    dw_bodies = (_depthwise_bodies(terms, roof, memory_grid, dw_grid) if dw.any()
                 else np.zeros((len(memory_grid), 1, len(terms))))
    best = (math.inf, {})
    for compute_eff in np.geomspace(0.02, 1.0, 80):
        # fvcore counts 1 FLOP per multiply-add, peak TFLOPS 2: hence the factor 2 (profiles.py)
        compute = flops * 2.0 / (peak_gflops * compute_eff) * 1e-6  # ms per layer
        for j, memory_eff in enumerate(memory_grid):
            moved = elements * bpe / (bandwidth * memory_eff) * 1e-6  # ms per layer
            body = np.bincount(which, weights=np.maximum(compute, moved), minlength=len(terms))
            bodies = body[None, :] + dw_bodies[j]  # [dw_eff, network]
            predicted = bodies[:, None, :] + overheads[None, :, None] * counts[None, None, :]
            losses = np.mean((np.log(predicted) - target) ** 2, axis=2)
            k, o = np.unravel_index(int(np.argmin(losses)), losses.shape)
            if losses[k, o] < best[0]:
                best = (float(losses[k, o]), {"compute_efficiency": compute_eff,
                                              "memory_efficiency": memory_eff,
                                              "layer_overhead_ms": overheads[o],
                                              DW_FITTED: dw_grid[k]})
    values = best[1]
    fitted = {
        "compute_efficiency": float(f"{values['compute_efficiency']:.2g}"),
        "memory_efficiency": float(f"{values['memory_efficiency']:.2g}"),
        "layer_overhead_ms": round(float(values["layer_overhead_ms"]), 3),
    }
    if dw.any():
        fitted[DW_FITTED] = float(f"{values[DW_FITTED]:.2g}")
    return fitted


# ---------------------------------------------------------------------------------------------
# The experiment


def priceable(rows: Iterable[PublishedRow]) -> list[PublishedRow]:
    """Rows on a device with a profile here and a network we can build."""
    return [r for r in rows if r.device in PROFILES and r.builder]


def trace_all(rows: Sequence[PublishedRow]) -> dict[tuple[str, tuple], LayerInventory]:
    """One fvcore trace per (network, input shape)."""
    inventories = {}
    for row in rows:
        key = (row.builder, row.input_shape)
        if key not in inventories:
            torch.manual_seed(0)
            inventories[key] = layer_inventory(build_network(row.builder),
                                               torch.zeros(row.input_shape))
    return inventories


def transfer_check(
    datasheet: DeviceProfile, check: Sequence[PublishedRow],
    terms: Mapping[tuple[str, tuple], LayerTerms],
) -> list[str]:
    """Leave one architecture out: fit on all sizes of the others, report the error on it.

    The split by input size (:func:`split_sizes`) never tests a network the fit has not seen;
    this does, for a profile fitted on few architectures (printed, not recorded in the YAML).
    """
    lines = []
    for held in sorted(architectures(r.builder for r in check)):
        fit = [r for r in check if r.builder.removesuffix("_bn") != held]
        test = [r for r in check if r.builder.removesuffix("_bn") == held]
        fitted = fit_roofline(datasheet, [terms[(r.builder, r.input_shape)] for r in fit],
                              [r.latency_ms for r in fit])
        profile = with_roofline(datasheet, fitted)
        predicted = [roofline_latency_ms(terms[(r.builder, r.input_shape)], profile)
                     for r in test]
        summary = error_summary(predicted, [r.latency_ms for r in test])
        lines.append(f"transfer: fitted without {held} ({fitted}); on its {summary.count} "
                     f"sizes median |err| {summary.median_abs_pct}%, within 25% "
                     f"{summary.within_25pct}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_CSV)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = priceable(load_published())
    inventories = trace_all(rows)
    terms = {key: layer_terms(inv) for key, inv in inventories.items()}
    profiles = {name: load_profile(name) for name in PROFILES}
    datasheet = {name: datasheet_profile(p) for name, p in profiles.items()}

    # The fit the committed profiles carry (re-run here, compared with the YAML).
    splits: dict[str, dict[SplitKey, str]] = {}
    for name, profile in profiles.items():
        check = check_rows(rows, name)
        splits[name] = splits_for(rows, name)
        fit_rows = [r for r in check if splits[name][(r.builder, r.input_shape)] == "fit"]
        if not fit_rows:
            print(f"{name}: {len(check)} published measurement(s) checked: too few to "
                  f"fit (need {MIN_FIT_MEASUREMENTS}); datasheet constants kept")
            continue
        fitted = fit_roofline(datasheet[name], [terms[(r.builder, r.input_shape)]
                                                for r in fit_rows],
                              [r.latency_ms for r in fit_rows])
        committed = {k: float(profile.roofline[k]["value"]) for k in fitted}
        print(f"{name}: fitted on {len(fit_rows)} of {len(check)}: {fitted}; "
              f"committed in the YAML: {committed}"
              + ("" if fitted == committed else "  <-- differs: update the YAML"))
        if len(architectures(r.builder for r in check)) < MIN_ARCHITECTURES_TO_SPLIT:
            for line in transfer_check(datasheet[name], check, terms):
                print(f"  {line}")

    out_rows = []
    for row in rows:
        key = (row.builder, row.input_shape)
        inventory = inventories[key]
        predicted = inventory.predict_latency_ms(profiles[row.device])
        closed = roofline_latency_ms(terms[key], profiles[row.device])
        if not math.isclose(predicted, closed, rel_tol=1e-9):  # the fit's formula is price()'s
            raise RuntimeError(f"closed form {closed} != price() {predicted} for {row.model}")
        before = inventory.predict_latency_ms(datasheet[row.device])
        out_rows.append({
            "device": row.device, "model": row.model, "builder": row.builder,
            "input_shape": "x".join(map(str, row.input_shape)), "runtime": row.runtime,
            "in_check": "yes" if row.in_check else "no",
            "split": (splits[row.device].get((row.builder, row.input_shape), "-")
                      if row.in_check else "-"),
            "gflops": round(inventory.total_flops / 1e9, 3), "layers": len(inventory),
            "published_ms": row.latency_ms,
            "datasheet_ms": round(before, 3),
            "datasheet_err_pct": round((before / row.latency_ms - 1) * 100, 1),
            "predicted_ms": round(predicted, 3),
            "predicted_err_pct": round((predicted / row.latency_ms - 1) * 100, 1),
            "source": row.source,
        })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(out_rows[0]))
        writer.writeheader()
        writer.writerows(out_rows)

    print(f"\n{'device':<17} {'runtime':<26} {'model':<16} {'input':<12} {'split':<8} "
          f"{'published':>9} {'datasheet':>10} {'profile':>9}")
    for r in out_rows:
        print(f"{r['device']:<17} {r['runtime']:<26} {r['builder']:<16} {r['input_shape']:<12} "
              f"{r['split']:<8} {r['published_ms']:>9.2f} "
              f"{r['datasheet_ms']:>10.2f} {r['predicted_ms']:>9.2f}")
    print()
    for name, summary in check_summaries(out_rows).items():
        print(f"{name}: {summary}")
    print(f"\nwrote {args.out}")


def check_summaries(results: Sequence[Mapping[str, str | float]]) -> dict[str, dict]:
    """Per profile, the numbers its ``published_check`` section records, from the results rows:
    held-out errors where the profile was fitted, else errors over all its check rows."""
    summaries = {}
    for name in PROFILES:
        check = [r for r in results if r["device"] == name and r["in_check"] == "yes"]
        fitted = any(r["split"] == "heldout" for r in check)
        scored = [r for r in check if r["split"] == "heldout"] if fitted else check
        after = error_summary([float(r["predicted_ms"]) for r in scored],
                              [float(r["published_ms"]) for r in scored])
        before = error_summary([float(r["datasheet_ms"]) for r in scored],
                               [float(r["published_ms"]) for r in scored])
        summaries[name] = {
            "measurements": len(check),
            "heldout": len(scored) if fitted else 0,
            "median_abs_pct": after.median_abs_pct,
            "within_25pct": after.within_25pct,
            "within_50pct": after.within_50pct,
            "datasheet_median_abs_pct": before.median_abs_pct,
        }
    return summaries


def read_results(path: str | Path = RESULTS_CSV) -> list[dict[str, str]]:
    """The rows :func:`main` wrote."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


if __name__ == "__main__":
    main()
