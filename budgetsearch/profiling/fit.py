"""Fit a measured latency profile of this machine (``budgetsearch profile``).

1. Build the varied fit set of :mod:`budgetsearch.profiling.networks` (plus a disjoint held-out
   draw of the same families) and the anchors of :mod:`budgetsearch.profiling.anchors`.
2. Time them all in one interleaved run per runtime (:mod:`budgetsearch.profiling.timing`: one
   timer, one method, written into the profile).
3. Fit, by non-negative least squares on *relative* error, the per-op-kind model of
   :mod:`budgetsearch.cost.profiles`: per kind ``t = α·FLOPs + γ·activation bytes + γ_w·weight
   bytes + β`` over conv, dwconv, gconv, linear, BatchNorm, pool and the ops fvcore does not count
   (activation, binary add/mul, concat/copy, reshape), plus one per-forward overhead. A network's
   design row is the inventory's own prediction under unit profiles, so the fit and the
   prediction are one formula.
4. Measure the error on the held-out draw, and leave-one-family-out (fit without a family, predict
   it): the error to expect on a family the fit never saw.

Example:
    >>> profiles, report = profile_this_machine("my-cpu", n_fit=36, n_holdout=9)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from budgetsearch import __version__
from budgetsearch.cost.profiles import (
    CONV_AREA_KINDS,
    DeviceProfile,
    OpLatency,
    PredictorError,
    SmallGemm,
)
from budgetsearch.profiling.alone import supported as alone_supported
from budgetsearch.profiling.alone import time_each_alone
from budgetsearch.profiling.anchors import build_anchor, cpu_flags, cpu_name, recorded_timing
from budgetsearch.profiling.networks import (
    FAMILIES,
    GENERATOR_VERSION,
    INPUT_SHAPES,
    BuiltNetwork,
    NetworkSpec,
    build_spec,
    sample_specs,
    shapes_from_text,
    shapes_text,
)
from budgetsearch.profiling.small_gemm import measure_small_gemm
from budgetsearch.profiling.timing import (
    ONNX_OPSET,
    RUNTIME_SUFFIX,
    RUNTIMES,
    SETTLE,
    SETTLE_MB,
    check_runtime,
    cuda_device_text,
    cuda_unavailable,
    export_onnx,
    halves_agreement,
    make_runner,
    method_text,
    quietest_round,
    runs_on_cuda,
    runtime_dtype,
    time_rounds,
)

# Passes over the fit set when each network is timed alone (budgetsearch.profiling.alone): the
# rounds split between them, the second in reverse order. One pass timed each network's rounds
# within a second, so a machine whose speed moved during the 10-minute run (7 minutes apart the
# same networks ran x0.93 of each other on 2026-12-04) left that move in the fit as noise, and
# the run's agreement with itself (98%) could not see it.
ALONE_PASSES = 2

# (kind, term) pairs fitted, in design-matrix order; then one per-forward intercept.
FEATURES: tuple[tuple[str, str], ...] = (
    ("conv", "ms_per_gflop"), ("conv", "ms_per_mb"), ("conv", "ms_per_weight_mb"),
    ("conv", "overhead_ms"),
    ("dwconv", "ms_per_gflop"), ("dwconv", "ms_per_mb"), ("dwconv", "overhead_ms"),
    ("gconv", "ms_per_gflop"), ("gconv", "ms_per_mb"), ("gconv", "overhead_ms"),
    ("linear", "ms_per_gflop"), ("linear", "ms_per_weight_mb"), ("linear", "overhead_ms"),
    ("batchnorm", "ms_per_mb"), ("batchnorm", "overhead_ms"),
    # a pool's FLOPs here are its input reads (output × window): a 3×3 stride-1 max pool reads
    # 9 per output where a 2×2 stride-2 one reads 4 per output, one per input (eager: 20 vs 3.7 ns
    # per input element on one 64×32×32 map, experiments/README.md, "Pools")
    ("pool", "ms_per_gflop"), ("pool", "ms_per_mb"), ("pool", "overhead_ms"),
    ("maxpool", "ms_per_gflop"), ("maxpool", "ms_per_mb"), ("maxpool", "overhead_ms"),
    ("activation", "ms_per_mb"), ("activation", "overhead_ms"),
    ("binary", "ms_per_mb"), ("binary", "overhead_ms"),
    ("concat", "ms_per_mb"), ("concat", "overhead_ms"),
    ("index", "ms_per_mb"), ("index", "overhead_ms"),
    ("reshape", "overhead_ms"),
)
# What a graph-compiling runtime (onnxruntime) does that PyTorch eager does not, each measured
# (experiments/README.md, "Latency: what onnxruntime compiles away, and gathers"): it folds a
# BatchNorm into the conv before it and fuses the activation and residual add after a conv into
# the conv's kernel, runs a conv whose channels (per group) are multiples of 8 in blocked
# kernels up to 2× faster per FLOP, and packs weights once (reading only those of the taps that
# meet the input). Eager runs every op as it comes, so its fit leaves these terms out (a fused
# op is priced as the unfused one) rather than giving noise free parameters.
COMPILED_FEATURES: tuple[tuple[str, str], ...] = (
    ("aligned_conv", "ms_per_gflop"), ("aligned_conv", "ms_per_mb"),
    ("aligned_conv", "ms_per_weight_mb"), ("aligned_conv", "overhead_ms"),
    ("aligned_gconv", "ms_per_gflop"), ("aligned_gconv", "ms_per_mb"),
    ("aligned_gconv", "overhead_ms"),
    ("aligned_dwconv", "ms_per_gflop"), ("aligned_dwconv", "ms_per_mb"),
    ("aligned_dwconv", "overhead_ms"),
    # a depthwise conv onnxruntime cannot block runs one small GEMM per channel: a cost per
    # channel, priced by its weights (777 channels of 3×3: 138 µs on a 1×1 map, 12 µs blocked)
    ("dwconv", "ms_per_weight_mb"),
    ("fused_batchnorm", "ms_per_mb"), ("fused_batchnorm", "overhead_ms"),
    ("fused_activation", "ms_per_mb"), ("fused_activation", "overhead_ms"),
    ("fused_binary", "ms_per_mb"), ("fused_binary", "overhead_ms"),
)
# PyTorch eager runs a dense conv on one of two kernels, oneDNN or its own im2col + GEMM, by a
# rule on its shape (budgetsearch.cost.dispatch); each is fitted apart. Measured: resnet18's
# 512-channel 3×3 convs on 1×1 maps (GEMM path) ran 0.62–0.65 ms where one price for both paths
# said 1.67 ms, and its 7×7 stem (oneDNN) 245 µs where it said 69 µs (experiments/README.md,
# "PyTorch eager's two conv kernels").
#
# A depthwise conv oneDNN runs as per-channel GEMMs (dispatch.onednn_depthwise_on_gemm) costs by
# its weights, one small GEMM per channel: 1152 channels of 5×5 on a 1×1 map ran 286 µs, 672 of
# 7×7 347 µs, against 45 µs for 1152 of 3×3 on the depthwise kernel.
EAGER_FEATURES: tuple[tuple[str, str], ...] = (
    ("onednn_conv", "ms_per_gflop"), ("onednn_conv", "ms_per_mb"),
    ("onednn_conv", "ms_per_weight_mb"), ("onednn_conv", "overhead_ms"),
    ("dwconv_gemm", "ms_per_gflop"), ("dwconv_gemm", "ms_per_weight_mb"),
    ("dwconv_gemm", "overhead_ms"),
)
# A dense conv's FLOPs priced again by its output area (budgetsearch.cost.profiles.
# CONV_AREA_KINDS): offline on the same timings, eager held-out 59% → 74% within ±10% and
# foreign networks 42% → 62% (experiments/latency_extra_terms.py).
AREA_FEATURES: tuple[tuple[str, str], ...] = tuple(
    (kind, "ms_per_gflop") for kind in CONV_AREA_KINDS)
# The eager small-GEMM table (budgetsearch.cost.profiles.SmallGemm), timed alone: one factor
# fitted for it (its "kind" is no op kind; the profile keeps the table and that factor).
SMALL_GEMM_FEATURE = ("small_gemm", "scale")
SMALL_GEMM_AREAS = 16  # output areas up to this one: the table's, not the area terms' FLOPs


def features_for(runtime: str, *, small_gemm: bool = False) -> tuple[tuple[str, str], ...]:
    """The (kind, term) pairs a profile of ``runtime`` fits, in design-matrix order
    (``small_gemm``: an eager fit with a small-GEMM table, whose factor comes last)."""
    if runtime == "onnxruntime":
        return FEATURES + COMPILED_FEATURES
    if runs_on_cuda(runtime):
        # cuDNN picks its own kernels; the CPU's two conv paths, SIMD blocks and small-GEMM
        # repacking do not exist there, so a GPU profile fits the per-kind terms alone
        return FEATURES
    if not small_gemm:
        return FEATURES + EAGER_FEATURES + AREA_FEATURES
    # the table prices the small areas (the weights' repacking swamps their FLOPs): offline on
    # six benchmark runs' times, 48 foreign networks centred 83-96% within ±10% against 77-90%
    # with every area term and no table (experiments/README.md, "Small GEMMs")
    larger = tuple(f for f in AREA_FEATURES if CONV_AREA_KINDS[f[0]][0] > SMALL_GEMM_AREAS)
    return FEATURES + EAGER_FEATURES + larger + (SMALL_GEMM_FEATURE,)


def runtime_settings(runtime: str, channel_block: int) -> dict[str, Any]:
    """The profile settings a runtime's kernels fix: the SIMD ``channel_block``; for
    onnxruntime a ``channel_alignment`` of half the block (8 on AVX-512, where 8- and 16-aligned
    convs both ran the fast kernels) and ``prepacked_weights``; for eager on the CPU PyTorch's
    ``conv_dispatch``; the bytes of an element (2 in float16)."""
    compiled = runtime == "onnxruntime"
    return {"channel_block": channel_block,
            "channel_alignment": max(4, channel_block // 2) if compiled else 0,
            "prepacked_weights": compiled,
            "conv_dispatch": "pytorch" if runtime == "pytorch-eager" else "",
            "bytes_per_element": 2 if runtime_dtype(runtime) == "float16" else 4}


def channel_block_of(runtime: str, provenance: Mapping[str, Any]) -> int:
    """The channel block a profile of ``runtime`` measured with ``provenance`` prices in: the
    CPU's SIMD lanes (:func:`simd_channel_block`), 1 on a GPU (no block is modelled there)."""
    if runs_on_cuda(runtime):
        return 1
    return simd_channel_block(str(provenance.get("cpu_flags", "")) or None)


def simd_channel_block(flags: str | None = None) -> int:
    """fp32 lanes of the widest vector unit in this CPU's ``flags`` (AVX-512: 16, AVX2: 8, else
    4): the output-channel block oneDNN and MLAS kernels compute in, so a pruned width of 37
    costs 48."""
    flags = cpu_flags() if flags is None else flags
    names = set(flags.split())
    if "avx512f" in names:
        return 16
    if "avx2" in names:
        return 8
    return 4


def _cpu_text(provenance: Mapping[str, Any]) -> str:
    """The CPU a profile was measured on, with its widest vector unit: a VM may give hosts with
    and without AVX-512 one name, and the two run other kernels."""
    cpu = str(provenance.get("cpu") or cpu_name()).split(" (")[0]
    lanes = simd_channel_block(str(provenance.get("cpu_flags", "")) or None)
    return f"{cpu}, {({16: 'AVX-512', 8: 'AVX2'}).get(lanes, 'no AVX2')}"


def _machine_text(provenance: Mapping[str, Any], runtime: str) -> str:
    """What a profile of ``runtime`` was measured on: the GPU (by name) or the CPU."""
    if runs_on_cuda(runtime):
        gpu = str(provenance.get("gpu") or "an unrecorded GPU").split(" (")[0]
        return f"{gpu} (host {_cpu_text(provenance)})"
    return _cpu_text(provenance)


def _unit_profile(kind: str, term: str, channel_block: int = 1,
                  runtime: str = "pytorch-eager", threads: int = 1,
                  table: tuple[float, ...] | None = None) -> DeviceProfile:
    coeffs = {"ms_per_gflop": 0.0, "ms_per_mb": 0.0, "overhead_ms": 0.0, "ms_per_weight_mb": 0.0}
    if (kind, term) != SMALL_GEMM_FEATURE:
        coeffs[term] = 1.0
    # every unit profile names all the runtime's kinds, so that all price the same set of ops
    kinds = dict.fromkeys(k for k, _ in features_for(runtime) if k != SMALL_GEMM_FEATURE[0])
    ops = {k: OpLatency(**coeffs) if k == kind else OpLatency(ms_per_weight_mb=0.0)
           for k in kinds}
    small_gemm = None if table is None else SmallGemm(
        table, scale=1.0 if (kind, term) == SMALL_GEMM_FEATURE else 0.0)
    return DeviceProfile(name=f"unit-{kind}-{term}", description="", source="measured", ops=ops,
                         combine="sum",
                         provenance={"threads": threads, "runtime": runtime},
                         small_gemm=small_gemm, **runtime_settings(runtime, channel_block))


@functools.lru_cache(maxsize=8)
def _units(channel_block: int, runtime: str, threads: int = 1,
           table: tuple[float, ...] | None = None) -> tuple[DeviceProfile, ...]:
    return tuple(_unit_profile(kind, term, channel_block, runtime, threads, table)
                 for kind, term in features_for(runtime, small_gemm=table is not None))


def network_features(network: BuiltNetwork, channel_block: int = 1,
                     runtime: str = "pytorch-eager", threads: int = 1,
                     small_gemm: SmallGemm | None = None) -> np.ndarray:
    """The fit's design row: the cost model's prediction under each unit profile of
    ``runtime``'s :func:`features_for` (on ``threads``, which picks eager's conv kernels; with
    ``small_gemm``'s table priced at scale 1 as the last but one), then 1."""
    table = _fitted_table(runtime, small_gemm)
    units = _units(channel_block, runtime, threads, table)
    values = [network.inventory.predict_latency_ms(unit, kept_channels=network.kept_channels)
              for unit in units]
    return np.array([*values, 1.0])


def _fitted_table(runtime: str, small_gemm: SmallGemm | None) -> tuple[float, ...] | None:
    """The small-GEMM table a fit of ``runtime`` uses (eager only; None without one)."""
    if small_gemm is None or runtime != "pytorch-eager":
        return None
    return tuple(small_gemm.measured_ms_per_mb)


def fit_coefficients(features: np.ndarray, measured_ms: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error: minimise Σ ((A·c − t)/t)², c ≥ 0."""
    from scipy.optimize import nnls

    weighted = features / measured_ms[:, None]
    scale = np.maximum(np.abs(weighted).max(axis=0), 1e-12)  # equal column scales for nnls
    solution, _ = nnls(weighted / scale, np.ones(len(measured_ms)), maxiter=20_000)
    return solution / scale


def overhead_share(anchor: str, profile: DeviceProfile) -> float:
    """The share of ``anchor``'s predicted time that ``profile`` attributes to per-call overhead
    (each op's β and the network overhead): what the drift check's overhead factor scales."""
    from budgetsearch.cost.inventory import layer_inventory

    model, x = build_anchor(anchor)
    inventory = layer_inventory(model, x)
    total = inventory.predict_latency_ms(profile)
    overhead_only = replace(profile, small_gemm=None, ops={  # the table is work, not overhead
        kind: OpLatency(overhead_ms=c.overhead_ms, ms_per_weight_mb=0.0)
        for kind, c in profile.ops.items()})
    return min(1.0, inventory.predict_latency_ms(overhead_only) / total) if total > 0 else 0.0


def profile_from_coefficients(
    name: str, coefficients: np.ndarray, *, provenance: dict[str, Any], description: str,
    channel_block: int = 1, runtime: str = "pytorch-eager", small_gemm: SmallGemm | None = None,
) -> DeviceProfile:
    """Turn fitted coefficients (in :func:`features_for` order, then the intercept) into a
    profile (an eager one keeps ``small_gemm``'s table at its fitted factor)."""
    table = _fitted_table(runtime, small_gemm)
    features = features_for(runtime, small_gemm=table is not None)
    terms: dict[str, dict[str, float]] = {
        kind: {"ms_per_gflop": 0.0, "ms_per_mb": 0.0, "overhead_ms": 0.0, "ms_per_weight_mb": 0.0}
        for kind in dict.fromkeys(k for k, _ in features if k != SMALL_GEMM_FEATURE[0])
    }
    fitted_gemm = None
    for (kind, term), value in zip(features, coefficients[:-1], strict=True):
        if (kind, term) == SMALL_GEMM_FEATURE:
            assert small_gemm is not None
            fitted_gemm = replace(small_gemm, scale=float(value))
        else:
            terms[kind][term] = float(value)
    # other (ops fvcore counts that are none of the above) borrows the activation's price
    terms["other"] = dict(terms["activation"])
    ops = {kind: OpLatency(**values) for kind, values in terms.items()}
    return DeviceProfile(
        name=name, description=description, source="measured", ops=ops, combine="sum",
        network_overhead_ms=float(coefficients[-1]), sparse_speedup=0.0,
        small_gemm=fitted_gemm, **runtime_settings(runtime, channel_block),
        provenance=provenance,
    )


def summarize_errors(errors_pct: np.ndarray, *, command: str = "", date: str = "",
                     networks_set: str = "") -> PredictorError:
    """Distribution of signed percentage errors as a :class:`PredictorError`."""
    absolute = np.abs(np.asarray(errors_pct, dtype=float))
    return PredictorError(
        networks=int(len(absolute)),
        within_10pct=round(float(np.mean(absolute <= 10.0)), 4),
        median_abs_pct=round(float(np.median(absolute)), 2),
        p90_abs_pct=round(float(np.percentile(absolute, 90)), 2),
        max_abs_pct=round(float(absolute.max()), 2),
        command=command, date=date, networks_set=networks_set,
    )


def leave_one_family_out(
    features: np.ndarray, measured_ms: np.ndarray, families: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Fit without each family, predict that family: its error distribution, per family."""
    families = np.asarray(families)
    table: dict[str, dict[str, float]] = {}
    for family in dict.fromkeys(families.tolist()):
        out = families == family
        coefficients = fit_coefficients(features[~out], measured_ms[~out])
        errors = 100.0 * (features[out] @ coefficients - measured_ms[out]) / measured_ms[out]
        e = summarize_errors(errors)
        table[family] = {"networks": e.networks, "within_10pct": e.within_10pct,
                         "within_20pct": round(float(np.mean(np.abs(errors) <= 20.0)), 4),
                         "median_abs_pct": e.median_abs_pct, "median_pct": round(
                             float(np.median(errors)), 2)}
    return table


@dataclass
class ProfileReport:
    """Per-network measurements and predictions (fit, held-out, anchors) of one profiling run."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    leave_one_family_out: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    seconds: float = 0.0

    def holdout_errors_pct(self, runtime: str) -> np.ndarray:
        """Signed percentage errors of the held-out networks timed in ``runtime``."""
        return np.array([r["error_pct"] for r in self.rows
                         if r["set"] == "holdout" and r["runtime"] == runtime])


def _load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "?"
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def fit_set_specs(n_fit: int, n_holdout: int, *, seed: int,
                  shapes: tuple[tuple[int, ...], ...] = INPUT_SHAPES,
                  ) -> tuple[list[NetworkSpec], list[NetworkSpec]]:
    """The (fit, held-out) specs a profiling run with ``seed`` draws: disjoint draws over all
    :data:`FAMILIES` and ``shapes`` (the held-out ones from ``seed + 1000``)."""
    return (sample_specs(n_fit, seed=seed, shapes=shapes),
            sample_specs(n_holdout, seed=seed + 1000, shapes=shapes))


def build_fit_set(n_fit: int, n_holdout: int, *, seed: int, progress: bool = False,
                  shapes: tuple[tuple[int, ...], ...] = INPUT_SHAPES,
                  ) -> tuple[list[BuiltNetwork], list[BuiltNetwork]]:
    """Build the (fit, held-out) networks of :func:`fit_set_specs`."""
    from tqdm.auto import tqdm

    fit_specs, holdout_specs = fit_set_specs(n_fit, n_holdout, seed=seed, shapes=shapes)
    specs = fit_specs + holdout_specs
    built = [build_spec(s) for s in tqdm(specs, desc="building", disable=not progress)]
    return built[:n_fit], built[n_fit:]


def timed_alone(runtime: str) -> bool:
    """Whether a profiling run times each network of ``runtime`` alone in a process of its own
    (:mod:`budgetsearch.profiling.alone`): on the CPU where the platform can fork."""
    return not runs_on_cuda(runtime) and alone_supported()


def time_fit_set(
    networks: Sequence[BuiltNetwork], *, runtime: str, threads: int, rounds: int, inner: int,
    warmup: int = 3, seed: int = 0, progress: bool = False, release_models: bool = False,
) -> np.ndarray:
    """Time ``networks``: each network's burst median per round, ms, shape (networks, rounds);
    the network's time is the minimum over its row. On the CPU each network is timed alone in
    a process of its own (:mod:`budgetsearch.profiling.alone`: a process that has run others
    runs it slower, as no deployed network does); on a GPU in one interleaved run.

    ``release_models`` (onnxruntime only) moves each model's weights to the meta device once
    its session is made: the last runtime of a profiling run needs them no more, and 270 eager
    models (4.5 GB) alive beside their sessions (9 GB) took a profiling run of both runtimes
    to 15.6 GB of RSS on 2026-12-03.
    """
    from tqdm.auto import tqdm

    check_runtime(runtime)
    if release_models and runtime != "onnxruntime":
        raise ValueError(f"release_models needs the onnxruntime runtime (eager runs the models "
                         f"themselves), got {runtime!r}")
    if timed_alone(runtime):
        exports = None
        if runtime == "onnxruntime":  # exported here, once: the passes' processes load them
            exports = [export_onnx(n.model, n.example_input)
                       for n in tqdm(networks, desc="exporting", disable=not progress)]
        with tqdm(total=rounds * len(networks), desc=f"timing {runtime}, each alone",
                  disable=not progress) as bar:
            per_round = time_each_alone([n.label for n in networks], runtime=runtime,
                                        threads=threads, rounds=rounds, inner=inner,
                                        warmup=warmup, progress=bar.update,
                                        passes=min(ALONE_PASSES, rounds), onnx=exports)
        if release_models:
            for network in networks:
                network.model.to("meta")  # timed elsewhere; the structure stays
        return per_round
    runners = []
    for network in tqdm(networks, desc=f"preparing {runtime}", disable=not progress):
        model, x = network.model, network.example_input
        data = export_onnx(model, x) if runtime == "onnxruntime" else None
        runners.append(make_runner(model, x, runtime=runtime, threads=threads, onnx_bytes=data))
        if release_models:
            model.to("meta")  # the session holds its own copy; the structure stays
    with tqdm(total=rounds * len(runners), desc=f"timing {runtime}", disable=not progress) as bar:
        return time_rounds(runners, rounds=rounds, inner=inner, warmup=warmup,
                           threads=threads, seed=seed, progress=bar.update)


def pick_anchors(holdout: Sequence[BuiltNetwork], holdout_ms: np.ndarray) -> dict[str, float]:
    """The drift check's anchors: of each family's held-out networks, the one of middling time
    (the lower of two middles), label → its time in the profiling run.

    Networks like those a user prices, timed in the run the fit was: re-timed, their median
    ratio matched the foreign networks' own drift within 0.5 % (eager) where six hand-built
    anchors missed it by 7–8 % (experiments/check_anchors.py); the middling one keeps the check
    within its 2 s.
    """
    by_family: dict[str, list[tuple[float, str]]] = {}
    for network, ms in zip(holdout, holdout_ms, strict=True):
        by_family.setdefault(network.family, []).append((float(ms), network.label))
    anchors = {}
    for family in sorted(by_family):
        timed = sorted(by_family[family])
        ms, label = timed[(len(timed) - 1) // 2]
        anchors[label] = ms
    return anchors


def fit_profile(
    name: str,
    fit: Sequence[BuiltNetwork],
    holdout: Sequence[BuiltNetwork],
    fit_ms: np.ndarray,
    holdout_ms: np.ndarray,
    *,
    runtime: str,
    provenance: dict[str, Any],
    command: str = "",
    small_gemm: SmallGemm | None = None,
    timing: dict[str, Any] | None = None,
) -> tuple[DeviceProfile, list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Fit one runtime's profile from timings: (profile, per-network rows, leave-one-family-out).
    Its drift-check anchors are held-out networks with their times in the fit set's run
    (:func:`pick_anchors`), re-timed by the check with ``timing``'s ``rounds``, ``inner``,
    ``settle`` and ``settle_mb`` (those the timings took). An eager fit given ``small_gemm`` (a
    table timed alone) fits the factor it prices at."""
    timing = dict(timing or {})
    block = channel_block_of(runtime, provenance)
    threads = int(provenance.get("threads", 1))
    fit_features = np.stack([network_features(n, block, runtime, threads, small_gemm)
                             for n in fit])
    holdout_features = np.stack([network_features(n, block, runtime, threads, small_gemm)
                                 for n in holdout])
    coefficients = fit_coefficients(fit_features, fit_ms)
    profile = profile_from_coefficients(
        name, coefficients, provenance=provenance,
        description=f"measured on {_machine_text(provenance, runtime)}, {runtime}, {threads} "
                    f"thread(s), {runtime_dtype(runtime)}, batch 1",
        channel_block=block, runtime=runtime, small_gemm=small_gemm,
    )
    rows = []
    for which, networks, times, feats in (("fit", fit, fit_ms, fit_features),
                                          ("holdout", holdout, holdout_ms, holdout_features)):
        for network, ms, row in zip(networks, times, feats, strict=True):
            predicted = float(row @ coefficients)
            flops = network.inventory.price(kept_channels=network.kept_channels).flops
            rows.append({"runtime": runtime, "set": which, "family": network.family,
                         "network": network.label,
                         "flops": flops,
                         "measured_ms": float(ms), "predicted_ms": predicted,
                         "error_pct": 100.0 * (predicted - ms) / ms})
    lofo = leave_one_family_out(
        np.concatenate([fit_features, holdout_features]), np.concatenate([fit_ms, holdout_ms]),
        [n.family for n in [*fit, *holdout]],
    )
    date = str(provenance.get("date", ""))
    holdout_errors = np.array([r["error_pct"] for r in rows if r["set"] == "holdout"])
    error = summarize_errors(holdout_errors, command=command, date=date,
                             networks_set="held-out draws of the fit families")
    anchors = {
        "method": "held-out networks, recorded in the fit set's run; re-timed by the same timer "
                  "and method (rounds, inner); "
                  "drift = median(today / recorded_ms), then the quietest of this machine's "
                  "recent checks (a snapshot beyond x1.5 of their median starts anew); "
                  "beyond the check's noise every coefficient is scaled by it (factors: 2 fits "
                  "one factor for per-call overhead and one for the rest, by overhead_share)",
        "tolerance_pct": 10.0, "budget_s": 2.0, "factors": 1, **timing,
        "networks": [
            {"name": a, "input_shape": "1x" + a.rsplit("/", 1)[1],
             "recorded_ms": round(ms, 5), "overhead_share": round(overhead_share(a, profile), 4)}
            for a, ms in pick_anchors(holdout, holdout_ms).items()
        ],
    }
    transfer = {"method": "fit without the family (fit + held-out networks of the others), "
                          "predict every network of the family", "date": date,
                "families": lofo}
    profile = replace(profile, predictor_error=error, anchors=anchors, transfer_error=transfer)
    return profile, rows, lofo


class ProfileValueError(ValueError):
    """A value of the profile being re-fitted (not of its measurements) is wrong."""


def refit_profile(
    old: DeviceProfile, measurements: Any, *, n_fit: int | None = None,
    n_holdout: int | None = None, seed: int | None = None, command: str = "",
) -> tuple[DeviceProfile, list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Fit ``old``'s runtime again from the measurements its profiling run wrote (the CSV's
    rows, a pandas DataFrame), timing nothing: the profile the current latency model makes of
    the same timings. The fit set is rebuilt from the counts of fit and held-out rows (or
    ``n_fit`` / ``n_holdout``, which must equal them) and the profiling run's seed (``seed``,
    else the profile's ``provenance.seed``, else 0); the anchors are picked again from the
    held-out times (:func:`pick_anchors`).

    Raises:
        ValueError: no rows of this runtime, a time that is not a positive number, counts other
            than ``n_fit`` / ``n_holdout``, or networks other than those the seed draws (all
            checked before anything is built); :class:`ProfileValueError` for the profile's
            own values (a generator version other than this one's, a seed not an integer).
    """
    import pandas as pd

    runtime = old.runtime
    check_runtime(runtime)
    rows = measurements[measurements["runtime"] == runtime]
    rows = rows[rows["set"].isin(("fit", "holdout"))]
    if rows.empty:
        raise ValueError(f"the measurements have no {runtime} rows (each profiling run writes "
                         f"the CSV of its own runtimes)")
    twice = rows[rows.duplicated(["network", "set"])]
    if len(twice):
        first = twice.iloc[0]
        raise ValueError(f"{first['set']} network {first['network']!r} appears twice in the "
                         f"{runtime} measurements")
    times = pd.to_numeric(rows["measured_ms"], errors="coerce")
    bad = rows[~(np.isfinite(times) & (times > 0))]
    if len(bad):
        first = bad.iloc[0]
        value = first["measured_ms"]
        shown = "an empty cell" if pd.isna(value) else str(value)
        raise ValueError(f"measured_ms of {first['set']} network {first['network']!r} must be a "
                         f"positive finite number, got {shown}")
    counts = {which: int((rows["set"] == which).sum()) for which in ("fit", "holdout")}
    for which, given in (("fit", n_fit), ("holdout", n_holdout)):
        if given is not None and given != counts[which]:
            raise ValueError(f"the measurements hold {counts[which]} {which} networks of "
                             f"{runtime}, --{which} says {given}")
    n_fit, n_holdout = counts["fit"], counts["holdout"]
    if n_fit < 2 * len(FAMILIES) or n_holdout < 1:
        raise ValueError(f"the measurements hold {n_fit} fit and {n_holdout} held-out networks "
                         f"of {runtime}; a fit needs ≥ {2 * len(FAMILIES)} and ≥ 1")
    version = old.provenance.get("generator_version", 1)
    if version != GENERATOR_VERSION:
        raise ProfileValueError(
            f"{old.path or old.name}: its measurements are of networks drawn by generator "
            f"version {version!r}, and this budgetsearch draws version {GENERATOR_VERSION}, "
            f"which builds some labels into other networks: re-profile instead of --refit")
    if seed is None:
        seed = old.provenance.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ProfileValueError(f"{old.path or old.name}: provenance.seed must be an "
                                    f"integer, got {seed!r}")
    measured = {(str(n), str(w)): float(t)
                for n, w, t in zip(rows["network"], rows["set"], times, strict=True)}
    # counts equal and no row twice, so the measured networks are the drawn ones iff none is
    # missing
    try:
        shapes = shapes_from_text(old.provenance.get("input_shapes"))
    except ValueError as error:
        raise ProfileValueError(f"{old.path or old.name}: provenance.{error}") from None
    fit_specs, holdout_specs = fit_set_specs(n_fit, n_holdout, seed=seed, shapes=shapes)
    missing = [(spec.label, which) for which, specs in (("fit", fit_specs),
                                                        ("holdout", holdout_specs))
               for spec in specs if (spec.label, which) not in measured]
    if missing:
        label, which = missing[0]
        raise ValueError(f"{which} network {label!r} is not one seed {seed} draws with these "
                         f"measurements (or not measured): refit with the --seed of the "
                         f"profiling run")
    fit, holdout = build_fit_set(n_fit, n_holdout, seed=seed, shapes=shapes)
    provenance = {**old.provenance, "seed": seed}
    provenance["notes"] = (f"re-fitted on {time.strftime('%Y-%m-%d %H:%M:%S')} by `{command}` "
                           f"from the measurements of {provenance.get('date', '?')}, timing "
                           f"nothing")
    profile, new_rows, lofo = fit_profile(
        old.name, fit, holdout, np.array([measured[(n.label, "fit")] for n in fit]),
        np.array([measured[(n.label, "holdout")] for n in holdout]), runtime=runtime,
        provenance=provenance,
        command=old.predictor_error.command if old.predictor_error else command,
        small_gemm=old.small_gemm,
        timing={**recorded_timing(old),
                **({"alone": True} if (old.anchors or {}).get("alone") else {})})
    old_networks = (old.anchors or {}).get("networks") or []
    if old.anchors and old.anchors.get("recorded") and (
            [a["name"] for a in old_networks]
            == [a["name"] for a in (profile.anchors or {}).get("networks", [])]):
        # the same anchors, recorded alone as the check times them: no run time replaces that
        recorded = {a["name"]: a["recorded_ms"] for a in old_networks}
        fitted = profile
        profile = replace(profile, anchors={
            **profile.anchors, "recorded": old.anchors["recorded"],
            "networks": [{**a, "recorded_ms": recorded[a["name"]]}
                         for a in profile.anchors["networks"]]})
        if NEW_PROCESS in str(old.anchors["recorded"]) and not profile.anchors.get("alone"):
            profile = priced_as_in_a_new_process(fitted, profile)
    return replace(profile, description=old.description, aliases=old.aliases), new_rows, lofo


ANCHOR_SNAPSHOTS = 3  # check-style snapshots whose quietest records each anchor's time
NEW_PROCESS = "each in a new process"  # how recorded_as_checked says where it timed them


def recorded_as_checked(profile: DeviceProfile, *, snapshots: int = ANCHOR_SNAPSHOTS,
                        measure: Any = None) -> DeviceProfile:
    """``profile`` with its anchors' recorded times taken as the drift check takes them: the
    anchors alone, by the check's rounds and bursts, in a new process as ``budgetsearch run``'s
    check is (``measure``: names → ms, default
    :func:`~budgetsearch.profiling.anchors.measure_anchors_fresh`), the quietest of
    ``snapshots`` (the one of lowest median ratio: the statistic a check applies,
    ``anchors.smoothed``).

    Why: timed alone, nine networks find their weights in cache where, interleaved with the fit
    set's 270, they did not; on 2026-12-02 (15:08) the same anchors ran ×0.85–0.93 of their
    fit-run times alone and ×0.95–0.96 interleaved with the benchmark's networks, which ran as
    the profile priced them. A check that compares like with like reads the machine, not the
    loop it was timed in."""
    from budgetsearch.profiling.anchors import measure_anchors_fresh

    if not profile.anchors or not profile.anchors.get("networks"):
        return profile
    names = [a["name"] for a in profile.anchors["networks"]]
    threads = profile.threads
    timing = recorded_timing(profile)
    if measure is None:
        def measure(anchors: list[str]) -> dict[str, float]:
            return measure_anchors_fresh(anchors, runtime=profile.runtime, threads=threads,
                                         **timing)
    taken = [measure(names) for _ in range(max(1, snapshots))]
    # the whole snapshot of lowest median ratio to the first: a check compares one snapshot's
    # median ratio with it (each anchor's own minimum would read lower than any snapshot)
    first = taken[0]
    quietest = min(taken, key=lambda t: float(np.median([t[n] / first[n] for n in names])))
    anchors = dict(profile.anchors)
    anchors["networks"] = [
        {**a, "recorded_ms": round(float(quietest[a["name"]]), 5)}
        for a in profile.anchors["networks"]]
    anchors["recorded"] = (f"alone, as the check times them: the quietest of {len(taken)} "
                           f"snapshots right after the fit set's run, {NEW_PROCESS}")
    return replace(profile, anchors=anchors)


def priced_as_in_a_new_process(fitted: DeviceProfile, checked: DeviceProfile) -> DeviceProfile:
    """``checked`` (``fitted`` with its anchors recorded by :func:`recorded_as_checked`) with
    every price scaled by the median ratio of each anchor's time in a new process to its time
    in the fit run (``fitted``'s recorded times): prices of a network run in a process of its
    own, as a deployed network is, and as the drift check (in ``budgetsearch run``'s new
    process) reads the anchors.

    Why: the fit run holds 270 networks in one process, and that alone slows each of them. On
    2026-12-04 (21:00, Intel Xeon, eager, one thread) the nine anchors ran x0.75-0.87 (median
    x0.80) of their fit-run times in a new process, and the torchvision networks of the
    benchmark ran x0.94 of a profile priced at fit-run times in its process of 52 networks
    (onnxruntime's anchors: x0.80-1.08, median x0.99). The factor is kept in
    ``provenance.process_state``."""
    def times(profile: DeviceProfile) -> dict[str, float]:
        return {a["name"]: float(a["recorded_ms"])
                for a in (profile.anchors or {}).get("networks", [])}

    run, alone = times(fitted), times(checked)
    ratios = [ms / run[n] for n, ms in alone.items() if run.get(n, 0) > 0 and ms > 0]
    if not ratios:
        return checked
    factor = float(np.median(ratios))
    if not np.isfinite(factor) or factor <= 0:
        return checked
    provenance = {**dict(checked.provenance), "process_state": {
        "factor": round(factor, 4), "anchors": len(ratios),
        "method": "prices x the median ratio of the anchors' times in a new process to their "
                  "times in the fit run (budgetsearch.profiling.fit.priced_as_in_a_new_process)"}}
    return replace(checked.scaled(factor), anchors=checked.anchors, provenance=provenance)


def profile_this_machine(
    name: str,
    *,
    runtimes: Sequence[str] = ("pytorch-eager",),
    n_fit: int = 216,
    n_holdout: int = 54,
    rounds: int = 8,
    inner: int = 5,
    threads: int = 1,
    seed: int = 0,
    progress: bool = True,
    command: str = "",
    input_shapes: tuple[tuple[int, ...], ...] = INPUT_SHAPES,
) -> tuple[dict[str, DeviceProfile], ProfileReport]:
    """Time the fit set on this machine in each runtime (the CPU's, or a CUDA GPU's), fit a
    profile per runtime, measure its error.

    Profiles are named ``name`` (PyTorch eager, on the CPU or in float32 on the GPU),
    ``name-ort`` (onnxruntime) and ``name-fp16`` (float16 on the GPU). The fit set's
    networks take one of ``input_shapes`` each (add the sizes you deploy at: a profile fitted
    on 28–64 px priced networks at 128 px 18% low, experiments/README.md).

    Raises:
        ValueError: fewer than 2 networks per family to fit, no held-out network, bad rounds,
            threads or runtime, or a CUDA runtime on a machine without a CUDA GPU.
    """
    if n_fit < 2 * len(FAMILIES) or n_holdout < 1:
        raise ValueError(f"n_fit must be ≥ {2 * len(FAMILIES)} (2 per family) and n_holdout ≥ 1, "
                         f"got {n_fit} and {n_holdout}")
    if rounds < 1 or inner < 1 or threads < 1:
        raise ValueError(f"rounds, inner and threads must be ≥ 1, got {rounds}, {inner}, {threads}")
    for runtime in runtimes:
        check_runtime(runtime)
        why = cuda_unavailable(runtime)
        if why:
            raise ValueError(why)
    started = time.perf_counter()
    fit, holdout = build_fit_set(n_fit, n_holdout, seed=seed, progress=progress,
                                 shapes=input_shapes)
    report = ProfileReport()
    profiles: dict[str, DeviceProfile] = {}
    for index, runtime in enumerate(runtimes):
        load_before = _load_average()
        last = index == len(runtimes) - 1 and runtime == "onnxruntime"  # no pass after it
        alone = timed_alone(runtime)  # as time_fit_set times them, and so recorded
        per_round = time_fit_set([*fit, *holdout], runtime=runtime, threads=threads,
                                 rounds=rounds, inner=inner, seed=seed, progress=progress,
                                 release_models=last)
        fit_ms_all = quietest_round(per_round)
        # eager's small-GEMM table, timed right after the networks it is fitted with
        small_gemm = (measure_small_gemm(threads=threads, seed=seed)
                      if runtime == "pytorch-eager" else None)
        runtime_version = str(torch.__version__)
        if runtime == "onnxruntime":
            import onnxruntime

            runtime_version = f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"
        gpu = {}
        if runs_on_cuda(runtime):
            runtime_version = f"torch {torch.__version__}, {cuda_device_text()}"
            gpu = {"gpu": torch.cuda.get_device_name(0)}
        provenance = {
            "tool": "budgetsearch profile",
            "tool_version": __version__,
            "runtime": runtime,
            "runtime_version": runtime_version,
            "torch_version": str(torch.__version__),
            "python_version": sys.version.split()[0],
            "dtype": runtime_dtype(runtime),
            "batch_size": 1,
            "threads": threads,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "host": platform.node(),
            "cpu": f"{cpu_name()} ({os.cpu_count()} logical CPUs visible)",
            "cpu_flags": cpu_flags(),
            "device": "cuda" if runs_on_cuda(runtime) else "cpu",
            **gpu,
            "load_average": f"before: {load_before} | after: {_load_average()}",
            "method": "whole-network forward passes; per-op-kind t = a*FLOPs + g*activation bytes"
                      " + gw*weight bytes + b (fvcore layers and the ops fvcore does not count), "
                      "fitted by NNLS on relative error (budgetsearch.profiling.fit)",
            "timing": method_text(rounds=rounds, inner=inner, warmup=3, threads=threads,
                                  runtime=runtime, settle=SETTLE, settle_mb=SETTLE_MB,
                                  alone_passes=min(ALONE_PASSES, rounds) if alone else 0),
            "fit_networks": n_fit,
            "seed": seed,
            "generator_version": GENERATOR_VERSION,
            "fit_families": list(FAMILIES),
            "input_shapes": shapes_text(input_shapes),
        }
        agreement = halves_agreement(per_round)
        if agreement is not None:
            # how far the run agreed with itself: a noisy machine caps the fit's accuracy (on
            # 2026-12-03 two runs of one machine held 83% and 65% of their held-out networks)
            provenance["repeatability"] = {
                "within_10pct": round(agreement, 3),
                "method": "per network, the minimum over the first half of the rounds against "
                          "the second half's; the share within ±10%"}
        if runtime == "onnxruntime":
            provenance["onnx_opset"] = ONNX_OPSET
        profile_name = name + RUNTIME_SUFFIX[runtime]
        profile, rows, lofo = fit_profile(
            profile_name, fit, holdout, fit_ms_all[:n_fit], fit_ms_all[n_fit:],
            runtime=runtime, provenance=provenance, command=command, small_gemm=small_gemm,
            timing={"rounds": rounds, "inner": inner, "settle": SETTLE,
                    "settle_mb": SETTLE_MB, **({"alone": True} if alone else {})},
        )
        recorded = recorded_as_checked(profile, snapshots=ANCHOR_SNAPSHOTS)
        # networks timed alone were priced as a deployed one runs: no process factor to apply
        profiles[runtime] = (recorded if alone
                             else priced_as_in_a_new_process(profile, recorded))
        report.rows += rows
        report.leave_one_family_out[runtime] = lofo
    report.seconds = time.perf_counter() - started
    return profiles, report


__all__ = [
    "EAGER_FEATURES",
    "COMPILED_FEATURES", "FEATURES", "RUNTIMES", "ProfileReport", "build_fit_set",
    "fit_set_specs", "pick_anchors",
    "fit_coefficients", "fit_profile", "overhead_share", "simd_channel_block",
    "features_for", "leave_one_family_out", "network_features", "profile_from_coefficients",
    "ProfileValueError", "profile_this_machine", "refit_profile", "summarize_errors",
    "time_fit_set",
]
