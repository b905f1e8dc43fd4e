"""Measure the machine this runs on and fit a ``measured`` latency profile of it.

What ``budgetsearch profile`` does:

1. Draws networks from the built-in models: thinner dense twins (width multipliers) and pruned
   channel configurations (random inner channels per residual block, BAR-style), on Fashion-MNIST
   (1×28×28) and CIFAR (3×32×32) inputs, batch 1. One set fits the model, a disjoint set (other
   random draws) is held out to measure the predictor's error.
2. Times every network the way the cost model predicts it, a whole forward pass: fixed thread
   count, ``torch.inference_mode``, warm-up calls, then ``rounds`` interleaved rounds (every
   network once per round, in a shuffled order, so that load from other processes spreads over all
   networks); a round times a burst of ``inner`` calls and keeps their median; a network's time is
   the median over rounds.
3. Fits, by non-negative least squares on *relative* error, the per-op-kind coefficients of the
   ``sum`` model of :mod:`budgetsearch.cost.profiles` (``t = α·FLOPs + γ·bytes + β`` per layer,
   plus a per-forward overhead). The features of a network are computed by the inventory's own
   ``price`` with unit profiles, so the fit and the prediction are one formula. Element-wise ops
   fvcore does not count (ReLU, the residual add) are not in the inventory: their time is absorbed
   by the BatchNorm and conv coefficients (each BatchNorm is followed by a ReLU in these networks).
4. Predicts the held-out networks and records the error distribution in the profile.

Whole networks, not isolated ops, are fitted: timing one op alone misses the dispatch, ReLU/add
and cache effects of the real forward pass, and that bias is what breaks a ±10 % target.

Example:
    >>> profile, report = profile_this_machine("my-cpu", n_fit=40, n_holdout=30)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from budgetsearch import __version__
from budgetsearch.cost.inventory import LayerInventory, layer_inventory
from budgetsearch.cost.profiles import DeviceProfile, OpLatency, PredictorError
from budgetsearch.cost.variants import block_names, prune_block_channels

FMNIST_SHAPE = (1, 1, 28, 28)
CIFAR_SHAPE = (1, 3, 32, 32)
# (model, largest width multiplier drawn): large models only thin, to keep the profile short.
BASE_MODELS: tuple[tuple[str, float], ...] = (
    ("wrn-10-1", 1.0), ("wrn-16-1", 1.0), ("wrn-16-2", 1.0), ("wrn-16-4", 1.0),
    ("wrn-22-2", 1.0), ("resnet-20", 1.0), ("resnet-32", 1.0), ("resnet-56", 1.0),
    ("wrn-16-8", 0.75),
)
# (kind, term) pairs fitted; the rest are tied to the ones listed in _TIED.
FEATURES: tuple[tuple[str, str], ...] = (
    ("conv", "ms_per_gflop"), ("conv", "ms_per_mb"), ("conv", "overhead_ms"),
    ("batchnorm", "ms_per_mb"), ("batchnorm", "overhead_ms"),
)
# Kinds with one layer per network (pool, the linear head) are collinear with the per-forward
# overhead, and depthwise/other kinds do not occur in the built-in models: they share the
# coefficients of the nearest fitted kind rather than get a free (and meaningless) one.
_TIED = {"dwconv": "conv", "linear": "conv", "pool": "batchnorm", "other": "batchnorm"}


@dataclass(frozen=True)
class NetworkSpec:
    """One network to time: a built-in model, a width, optional kept inner channels per block."""

    model: str
    width: float
    input_shape: tuple[int, ...]
    kept_fraction: tuple[float, ...] | None = None

    @property
    def label(self) -> str:
        """Short readable name."""
        kind = "dense" if self.kept_fraction is None else "pruned"
        shape = "x".join(map(str, self.input_shape[1:]))
        return f"{self.model}@{self.width:.2f}/{kind}/{shape}"


@dataclass
class BuiltNetwork:
    """A network ready to time, with how the cost model prices it."""

    spec: NetworkSpec
    model: nn.Module
    inventory: LayerInventory
    kept_channels: dict[str, tuple[int, int]]


@dataclass
class ProfileReport:
    """Per-network measurements and predictions (fit and held-out)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def holdout_errors_pct(self) -> np.ndarray:
        """Signed percentage errors ``100·(predicted − measured)/measured`` of held-out networks."""
        return np.array([r["error_pct"] for r in self.rows if r["set"] == "holdout"])


def sample_networks(count: int, *, seed: int) -> list[NetworkSpec]:
    """``count`` networks, alternately thinner dense twins and pruned channel configurations."""
    rng = random.Random(seed)
    specs = []
    for index in range(count):
        model, max_width = BASE_MODELS[rng.randrange(len(BASE_MODELS))]
        shape = FMNIST_SHAPE if rng.random() < 0.75 else CIFAR_SHAPE
        width = round(rng.uniform(0.25, max_width), 2)
        if index % 2 == 0:
            specs.append(NetworkSpec(model, width, shape))
        else:
            blocks = 3 * _blocks_per_group(model)
            kept = tuple(round(rng.uniform(0.1, 1.0), 2) for _ in range(blocks))
            specs.append(NetworkSpec(model, width, shape, kept))
    return specs


def _blocks_per_group(model: str) -> int:
    depth = int(model.split("-")[1])
    return (depth - 4) // 6 if model.startswith("wrn") else (depth - 2) // 6


def build_network(
    spec: NetworkSpec, cache: dict[Any, tuple[nn.Module, LayerInventory]]
) -> BuiltNetwork:
    """Build the physically smaller network of ``spec`` and its ``kept_channels`` for pricing."""
    from budgetsearch.models import build_model

    key = (spec.model, spec.width, spec.input_shape)
    if key not in cache:
        base = build_model(spec.model, in_channels=spec.input_shape[1], width_multiplier=spec.width)
        cache[key] = (base, layer_inventory(base, torch.zeros(spec.input_shape)))
    base, inventory = cache[key]
    if spec.kept_fraction is None:
        return BuiltNetwork(spec, base, inventory, {})
    names = block_names(base)
    kept: dict[str, int] = {}
    kept_channels: dict[str, tuple[int, int]] = {}
    for name, fraction in zip(names, spec.kept_fraction, strict=True):
        conv1, conv2 = inventory[f"{name}.conv1"], inventory[f"{name}.conv2"]
        channels = max(1, round(fraction * conv1.out_channels))
        kept[name] = channels
        kept_channels[f"{name}.conv1"] = (conv1.in_channels, channels)
        kept_channels[f"{name}.bn2"] = (channels, channels)
        kept_channels[f"{name}.conv2"] = (channels, conv2.out_channels)
    return BuiltNetwork(spec, prune_block_channels(base, kept), inventory, kept_channels)


def time_networks(
    networks: Sequence[tuple[nn.Module, torch.Tensor]],
    *,
    rounds: int = 7,
    inner: int = 5,
    warmup: int = 3,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Median milliseconds per forward pass of each ``(model, input)``, interleaved over rounds."""
    rng = random.Random(seed)
    samples: list[list[float]] = [[] for _ in networks]
    with torch.inference_mode():
        for model, x in networks:
            model.eval()
            for _ in range(warmup):
                model(x)
        for _ in range(rounds):
            order = list(range(len(networks)))
            rng.shuffle(order)
            for i in order:
                model, x = networks[i]
                burst = []
                for _ in range(inner):
                    start = time.perf_counter()
                    model(x)
                    burst.append(time.perf_counter() - start)
                samples[i].append(statistics.median(burst) * 1e3)
                if progress is not None:
                    progress(1)
    return np.array([statistics.median(s) for s in samples])


def _unit_profile(kind: str, term: str) -> DeviceProfile:
    kinds = [kind] + [k for k, source in _TIED.items() if source == kind]
    return DeviceProfile(
        name=f"unit-{kind}-{term}", description="", source="measured",
        ops={k: OpLatency(**{term: 1.0}) for k in kinds}, combine="sum", bytes_per_element=4,
    )


_UNITS = [_unit_profile(kind, term) for kind, term in FEATURES]


def network_features(network: BuiltNetwork) -> np.ndarray:
    """The fit's design row: the cost model's prediction under each unit profile, then 1."""
    values = [
        network.inventory.predict_latency_ms(unit, kept_channels=network.kept_channels)
        for unit in _UNITS
    ]
    return np.array([*values, 1.0])


def fit_coefficients(features: np.ndarray, measured_ms: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error: minimise Σ ((A·c − t)/t)², c ≥ 0."""
    from scipy.optimize import nnls

    weighted = features / measured_ms[:, None]
    scale = np.maximum(np.abs(weighted).max(axis=0), 1e-12)  # equal column scales for nnls
    solution, _ = nnls(weighted / scale, np.ones(len(measured_ms)), maxiter=10_000)
    return solution / scale


def profile_from_coefficients(
    name: str, coefficients: np.ndarray, *, provenance: dict[str, Any], description: str
) -> DeviceProfile:
    """Turn fitted coefficients (in :data:`FEATURES` order, then the intercept) into a profile."""
    terms: dict[str, dict[str, float]] = {}
    for (kind, term), value in zip(FEATURES, coefficients[:-1], strict=True):
        terms.setdefault(kind, {})[term] = float(value)
    for tied, source in _TIED.items():
        terms[tied] = dict(terms[source])
    ops = {kind: OpLatency(**values) for kind, values in terms.items()}
    return DeviceProfile(
        name=name, description=description, source="measured", ops=ops, combine="sum",
        bytes_per_element=4, network_overhead_ms=float(coefficients[-1]), sparse_speedup=0.0,
        provenance=provenance,
    )


def summarize_errors(errors_pct: np.ndarray, *, command: str = "") -> PredictorError:
    """Distribution of signed percentage errors as the profile's ``predictor_error``."""
    absolute = np.abs(errors_pct)
    return PredictorError(
        networks=int(len(errors_pct)),
        within_10pct=round(float(np.mean(absolute <= 10.0)), 4),
        median_abs_pct=round(float(np.median(absolute)), 2),
        p90_abs_pct=round(float(np.percentile(absolute, 90)), 2),
        max_abs_pct=round(float(absolute.max()), 2),
        command=command,
    )


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo").read().splitlines():  # noqa: SIM115
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> str:
    try:
        done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
        return done.stdout.strip()
    except OSError:
        one, five, fifteen = os.getloadavg()
        return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


def profile_this_machine(
    name: str,
    *,
    n_fit: int = 60,
    n_holdout: int = 40,
    rounds: int = 7,
    inner: int = 5,
    threads: int = 1,
    seed: int = 0,
    progress: bool = True,
    command: str = "",
) -> tuple[DeviceProfile, ProfileReport]:
    """Time networks on this CPU, fit the latency model, measure its error on held-out networks.

    Raises:
        ValueError: fewer than 10 fit or 1 held-out network, or bad rounds/threads.
    """
    if n_fit < 10 or n_holdout < 1:
        raise ValueError(f"n_fit must be ≥ 10 and n_holdout ≥ 1, got {n_fit} and {n_holdout}")
    if rounds < 1 or inner < 1 or threads < 1:
        raise ValueError(f"rounds, inner and threads must be ≥ 1, got {rounds}, {inner}, {threads}")
    from tqdm.auto import tqdm

    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    load_before = _load_average()
    try:
        cache: dict[Any, tuple[nn.Module, LayerInventory]] = {}
        specs = sample_networks(n_fit, seed=seed) + sample_networks(n_holdout, seed=seed + 1000)
        traced = tqdm(specs, desc="tracing", disable=not progress)
        built = [build_network(spec, cache) for spec in traced]
        inputs = {shape: torch.randn(shape) for shape in (FMNIST_SHAPE, CIFAR_SHAPE)}
        pairs = [(b.model, inputs[b.spec.input_shape]) for b in built]
        with tqdm(total=rounds * len(pairs), desc="timing", disable=not progress) as bar:
            measured = time_networks(
                pairs, rounds=rounds, inner=inner, seed=seed, progress=bar.update
            )
    finally:
        torch.set_num_threads(previous_threads)
    load_after = _load_average()

    features = np.stack([network_features(b) for b in built])
    coefficients = fit_coefficients(features[:n_fit], measured[:n_fit])
    provenance = {
        "tool": "budgetsearch profile",
        "tool_version": __version__,
        "torch_version": str(torch.__version__),
        "python_version": sys.version.split()[0],
        "dtype": "float32",
        "batch_size": 1,
        "threads": threads,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "cpu": f"{_cpu_name()} ({os.cpu_count()} logical CPUs visible)",
        "device": "cpu",
        "load_average": f"before: {load_before} | after: {load_after}",
        "method": (
            "whole-network forward passes, torch.inference_mode, eval mode; per-op-kind "
            "t = a*FLOPs + g*bytes + b fitted by NNLS on relative error (budgetsearch.cost.measure)"
        ),
        "timing": f"{rounds} interleaved rounds x median of {inner} calls, 3 warm-up calls, median",
        "fit_networks": n_fit,
        "input_shapes": "1x1x28x28 (75%), 1x3x32x32 (25%)",
    }
    profile = profile_from_coefficients(
        name, coefficients, provenance=provenance,
        description=(
            f"measured on this machine ({_cpu_name()}), {threads} thread(s), float32, batch 1"
        ),
    )
    report = ProfileReport()
    for index, (network, ms) in enumerate(zip(built, measured, strict=True)):
        predicted = network.inventory.predict_latency_ms(
            profile, kept_channels=network.kept_channels
        )
        report.rows.append({
            "set": "fit" if index < n_fit else "holdout",
            "network": network.spec.label,
            "flops": network.inventory.price(kept_channels=network.kept_channels).flops,
            "measured_ms": float(ms),
            "predicted_ms": predicted,
            "error_pct": 100.0 * (predicted - ms) / ms,
        })
    profile = profile.with_error(summarize_errors(report.holdout_errors_pct(), command=command))
    report.seconds = time.perf_counter() - started
    return profile, report
