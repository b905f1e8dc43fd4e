"""Device profiles: what one layer costs in time on one device, and how sure we are of it.

A profile is a YAML file (read with ``yaml.safe_load`` only), validated on load: an unknown key, a
wrong type or a negative number raises ``ValueError`` naming the file and key. A profile is named by
its file stem (or an alias) and looked up in two folders, in this order:

1. the shipped profiles, :data:`PROFILE_DIR`: ``hw_profiles/`` at the top of a source checkout,
   installed as the package data ``budgetsearch/hw_profiles/`` by a wheel;
2. the user's profiles, :func:`user_profile_dir`: ``$BUDGETSEARCH_PROFILE_DIR`` when set, else
   ``$XDG_CONFIG_HOME/budgetsearch/hw_profiles`` (``~/.config/budgetsearch/hw_profiles``).

``budgetsearch profile`` writes to the first when it is a writable source checkout, else to the
second (:func:`default_profile_path`). A path to a ``.yaml`` file works anywhere a name does.

The latency model is per op kind (``conv``, ``dwconv``, ``linear``, ``batchnorm``, ``pool``,
``other``; ``default`` fills the kinds not given). For a layer with ``F`` FLOPs (fvcore: 1 FLOP =
1 fused multiply-add) moving ``B`` bytes (input + output activations + weights)::

    combine: sum  (a fit of measured times)   t = α·F + γ·B + β
    combine: max  (a roofline from a datasheet)   t = max(α·F, γ·B) + β

with ``α`` = ``ms_per_gflop``·1e-9, ``γ`` = ``ms_per_mb``·1e-6 and ``β`` = ``overhead_ms``, paid
while the layer is alive (it has at least one output channel). ``network_overhead_ms`` is paid once
per forward pass. Unstructured sparsity (weight density ``d``) scales the compute term by
``1 − sparse_speedup·(1 − d)``: ``sparse_speedup: 0`` (the default, and the only honest value for a
dense kernel) means zeros cost as much as weights.

Datasheet profiles carry a ``roofline`` section (peak throughput, memory bandwidth, efficiency
factors, per-layer overhead, each with its source) from which the ``max`` model is derived on load.

Example:
    >>> profile = load_profile("jetson")        # alias of jetson-orin-nano
    >>> profile.name, profile.source
    ('jetson-orin-nano', 'datasheet')
    >>> profile.supports_sparse_speedup
    False
"""

from __future__ import annotations

import math
import os
import re
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

import yaml

from budgetsearch.cost.dispatch import CONV_DISPATCH_RULES
from budgetsearch.files import shipped_folder, write_text_atomic, yaml_problem

#: A dense conv's FLOPs priced again by its output area (positions per channel), on top of its
#: kind's α: a GEMM's efficiency depends on its N, the output positions, which pruning channels
#: never changes. Measured on PyTorch eager's GEMM path: resnet18's 3×3 convs ran 0.72× their
#: price on 1×1–8×8 maps and 1.40× on 2×2–16×16 ones (experiments/README.md, "Pools, and a
#: machine of another CPU", part 7). Kind → (smallest area, largest area); a profile names them
#: only with ``ms_per_gflop``, and one that does not name them adds nothing.
CONV_AREA_KINDS: dict[str, tuple[int, int]] = {
    "conv_area1": (1, 1), "conv_area2_4": (2, 4), "conv_area5_16": (5, 16),
    "conv_area17_64": (17, 64), "conv_area65_256": (65, 256), "conv_area257": (257, 2**62),
}

# Layer kinds (fvcore-counted) then the extra-op kinds of :mod:`budgetsearch.cost.ops`.
OP_KINDS = (
    "conv", "dwconv", "gconv", "linear", "batchnorm", "pool", "maxpool", "other",
    "activation", "binary", "concat", "index", "reshape",
    "fused_batchnorm", "fused_activation", "fused_binary", "aligned_conv", "aligned_gconv",
    "aligned_dwconv",
    "onednn_conv", "dwconv_gemm", *CONV_AREA_KINDS,
)
#: kinds priced as another when a profile does not name them (see ``op_latency``)
_FALLBACK_KINDS = {"gconv": "conv", "aligned_conv": "conv", "aligned_gconv": "gconv",
                   "aligned_dwconv": "dwconv",
                   "onednn_conv": "conv", "dwconv_gemm": "dwconv", "maxpool": "pool",
                   "fused_batchnorm": "batchnorm",
                   "index": "concat", "fused_activation": "activation", "fused_binary": "binary"}
#: Environment variable naming the folder of the user's own profiles (see :func:`user_profile_dir`).
PROFILE_DIR_ENV = "BUDGETSEARCH_PROFILE_DIR"


#: Folder of the profiles shipped with budgetsearch.
PROFILE_DIR = shipped_folder("hw_profiles")

ProfileSource = Literal["measured", "datasheet"]


@dataclass(frozen=True)
class OpLatency:
    """Coefficients of one op kind: ``t = α·FLOPs ⊕ (γ·activation bytes + γ_w·weight bytes) + β``.

    ``ms_per_weight_mb`` (γ_w) prices weight bytes apart from activation bytes; None (a datasheet
    roofline) means weights stream at the activations' rate ``ms_per_mb``.
    """

    ms_per_gflop: float = 0.0
    ms_per_mb: float = 0.0
    overhead_ms: float = 0.0
    ms_per_weight_mb: float | None = None

    @property
    def weight_ms_per_mb(self) -> float:
        """γ_w: ms per MB of weights (``ms_per_mb`` when not given separately)."""
        return self.ms_per_mb if self.ms_per_weight_mb is None else self.ms_per_weight_mb

    def scaled(self, factor: float) -> OpLatency:
        """Every coefficient times ``factor`` (a recalibration to a faster or slower day)."""
        return self.rescaled(overhead=factor, work=factor)

    def rescaled(self, *, overhead: float, work: float) -> OpLatency:
        """The per-call overhead β times ``overhead``; the per-FLOP and per-byte terms times
        ``work`` (a day on which dispatch and arithmetic drifted apart)."""
        return OpLatency(
            ms_per_gflop=self.ms_per_gflop * work, ms_per_mb=self.ms_per_mb * work,
            overhead_ms=self.overhead_ms * overhead,
            ms_per_weight_mb=None if self.ms_per_weight_mb is None
            else self.ms_per_weight_mb * work,
        )

    def as_dict(self) -> dict[str, float]:
        """Plain mapping, as written in the YAML file."""
        data = {
            "ms_per_gflop": self.ms_per_gflop,
            "ms_per_mb": self.ms_per_mb,
            "overhead_ms": self.overhead_ms,
        }
        if self.ms_per_weight_mb is not None:
            data["ms_per_weight_mb"] = self.ms_per_weight_mb
        return data


#: Most output positions a small-GEMM table may hold (a table of 64 covers an 8×8 map), the
#: largest ms per MB an entry may say, and the largest factor a fit may scale it by.
SMALL_GEMM_MAX_AREA = 4096
SMALL_GEMM_MAX_MS_PER_MB = 1e4
SMALL_GEMM_MAX_SCALE = 1e3


@dataclass(frozen=True)
class SmallGemm:
    """What a dense conv on PyTorch eager's own im2col + GEMM path pays per MB of its weights,
    by its output area (the GEMM's N), measured by ``budgetsearch profile`` on 1×1 convs.

    MKL's single-precision GEMM repacks the weight matrix on every call once N > 1: on the
    profiling machine a 512→512 1×1 conv ran 28 µs per MB of weights on 1 output position (a
    GEMV), 240–500 on 2–15, 132 on 16, and only past ~32 positions did its FLOPs take over
    (experiments/README.md, "Small GEMMs"). No per-FLOP or per-byte line follows that, so the
    profile carries the table. It prices what the table holds beyond the GEMM's FLOPs (which the
    conv's own α prices): each entry less a FLOP rate fitted to the table's upper half, and past
    the table that fit's intercept, the packing a large GEMM amortises (:meth:`ms_per_mb`). The
    fit scales it (``scale``: in a network a layer finds its weights out of cache).

    Attributes:
        measured_ms_per_mb: ms per MB of weights at output areas 1, 2, ..., as timed alone.
        scale: the fitted factor the price applies (0 = the table is unused).
        method: how the table was timed.
    """

    measured_ms_per_mb: tuple[float, ...]
    scale: float = 1.0
    method: str = ""

    def __post_init__(self) -> None:
        values = self.measured_ms_per_mb
        if not isinstance(values, (tuple, list)) or not 1 <= len(values) <= SMALL_GEMM_MAX_AREA \
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) and 0 <= v <= SMALL_GEMM_MAX_MS_PER_MB
                           for v in values):
            shown = repr(values) if len(repr(values)) <= 80 else repr(values)[:77] + "..."
            raise ValueError(f"small_gemm.measured_ms_per_mb must hold 1 to "
                             f"{SMALL_GEMM_MAX_AREA} numbers from 0 to "
                             f"{SMALL_GEMM_MAX_MS_PER_MB:g} (ms per MB), got {shown}")
        if not (isinstance(self.scale, (int, float)) and not isinstance(self.scale, bool)
                and math.isfinite(self.scale) and 0 <= self.scale <= SMALL_GEMM_MAX_SCALE):
            raise ValueError(f"small_gemm.scale must be a number from 0 to "
                             f"{SMALL_GEMM_MAX_SCALE:g}, got {self.scale!r}")

    def _flop_line(self) -> tuple[float, float]:
        """(intercept, ms per MB per output position) of a least-squares line through the
        table's upper half, where the GEMM's FLOPs dominate (both ≥ 0)."""
        table = self.measured_ms_per_mb
        first = len(table) // 2 + 1
        areas = [float(a) for a in range(first, len(table) + 1)]
        values = [float(v) for v in table[first - 1:]]
        if len(areas) < 2:
            return 0.0, values[-1] / areas[-1]
        mean_a, mean_v = sum(areas) / len(areas), sum(values) / len(values)
        slope = (sum((a - mean_a) * (v - mean_v) for a, v in zip(areas, values, strict=True))
                 / sum((a - mean_a) ** 2 for a in areas))
        if slope <= 0:  # no FLOP growth measured: the upper half's mean is all packing
            return mean_v, 0.0
        return max(0.0, mean_v - slope * mean_a), slope

    def ms_per_mb(self, area: int) -> float:
        """The priced ms per MB of weights at ``area`` output positions, beyond the GEMM's
        FLOPs: the table's entry less the FLOP line's share (at least 0), and past the table
        the line's intercept (a large GEMM's packing, amortised); times ``scale``."""
        if area < 1:
            return 0.0
        intercept, per_area = self._flop_line()
        table = self.measured_ms_per_mb
        value = (max(0.0, table[area - 1] - per_area * area) if area <= len(table)
                 else intercept)
        return value * self.scale

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping, as written in the YAML file."""
        return {"measured_ms_per_mb": [float(v) for v in self.measured_ms_per_mb],
                "scale": float(self.scale), "method": self.method}


@dataclass(frozen=True)
class PredictorError:
    """How far the profile's predictions were from measured whole-network latencies."""

    networks: int
    within_10pct: float
    median_abs_pct: float
    p90_abs_pct: float
    max_abs_pct: float
    command: str = ""
    date: str = ""
    networks_set: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping, as written in the YAML file."""
        data: dict[str, Any] = {
            "networks": self.networks,
            "within_10pct": self.within_10pct,
            "median_abs_pct": self.median_abs_pct,
            "p90_abs_pct": self.p90_abs_pct,
            "max_abs_pct": self.max_abs_pct,
            "command": self.command,
        }
        if self.date:
            data["date"] = self.date
        if self.networks_set:
            data["networks_set"] = self.networks_set
        return data


@dataclass(frozen=True)
class PublishedCheck:
    """How far the profile's predictions were from latencies other people published.

    ``stands_for`` names the runtime the profile models (e.g. ``"TensorRT FP16"``); ``runtime``
    names the runtime of the published numbers it was compared with (the same one where such
    numbers exist) and ``measurements`` counts them (0: none found). With ``heldout > 0`` the
    roofline's free constants were fitted on the other measurements and the errors are the
    held-out ones'; otherwise they are over all ``measurements``.
    ``datasheet_median_abs_pct`` is the datasheet constants' error on the same points.
    """

    stands_for: str
    runtime: str
    measurements: int
    table: str
    date: str
    heldout: int = 0
    median_abs_pct: float | None = None
    within_25pct: float | None = None
    within_50pct: float | None = None
    datasheet_median_abs_pct: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping, as written in the YAML file."""
        return {f: getattr(self, f) for f in _PUBLISHED_KEYS}

    def summary(self) -> str:
        """One line for ``budgetsearch devices``."""
        head = f"error vs {self.measurements} published measurements"
        if self.measurements == 0 or self.median_abs_pct is None:
            return f"{head}: none found, {self.stands_for}"
        within = "" if self.within_25pct is None else f", {self.within_25pct:.0%} within ±25%"
        if self.heldout:
            return (f"{head} ({self.runtime}): median |err| {self.median_abs_pct:.1f}% on "
                    f"{self.heldout} held out{within}; datasheet constants "
                    f"{self.datasheet_median_abs_pct:.1f}%")
        return (f"{head} ({self.runtime}): median |err| {self.median_abs_pct:.1f}%{within}; "
                f"not fitted (too few)")


@dataclass(frozen=True, eq=False)
class DeviceProfile:
    """Latency model of one device, with where its numbers come from.

    Attributes:
        name: the profile's name (file stem in ``hw_profiles/``).
        source: ``"measured"`` (timed by ``budgetsearch profile``) or ``"datasheet"`` (roofline).
        combine: ``"sum"`` (α·F + γ·B + β) or ``"max"`` (max(α·F, γ·B) + β, a roofline).
        ops: coefficients per op kind; :meth:`op_latency` falls back to ``ops["default"]``.
        sparse_speedup: fraction of the FLOPs removed by unstructured sparsity the device saves.
        channel_block: the SIMD channel block the device's kernels compute in: a conv or linear
            layer's FLOPs are priced with its output channels rounded up to a multiple of it (a
            pruned width of 37 costs 48 on 16-channel AVX-512 kernels; 1 = no rounding).
        channel_alignment: a dense (grouped) conv whose input and output channels (per group)
            are multiples of it is priced with ``ops["aligned_conv"]`` (``aligned_gconv``):
            onnxruntime runs such convs in its
            blocked NCHWc kernels, up to 2× faster per FLOP than 63 or 65 channels: 0 = never).
        prepacked_weights: the runtime packs weights once and reads, per call, only those of
            the kernel taps it runs (onnxruntime: a 512-channel 3×3 conv on a 1×1 map ran in
            35 µs against 447 µs on 2×2); False: every weight is read each call (PyTorch eager
            reorders them per call: 489 µs against 914 µs).
        conv_dispatch: ``"pytorch"``: a dense conv PyTorch eager sends to oneDNN
            (:mod:`budgetsearch.cost.dispatch`, with the profile's ``provenance.threads``) is
            priced with ``ops["onednn_conv"]``, the others (its im2col + GEMM path) with
            ``ops["conv"]``, and a depthwise conv oneDNN runs as per-channel GEMMs with
            ``ops["dwconv_gemm"]``; ``""``: one price for every dense conv, and for every
            depthwise one.
        small_gemm: per-MB weight prices of a dense conv on PyTorch eager's GEMM path by its
            output area (:class:`SmallGemm`), or None; priced only with ``conv_dispatch:
            pytorch`` (which tells that path apart).
        predictor_error: measured error of the predictor on held-out networks (None if never
            measured, as for every datasheet profile).
        published_check: error against latencies published by others (None if never checked).
    """

    name: str
    description: str
    source: ProfileSource
    ops: Mapping[str, OpLatency]
    combine: Literal["sum", "max"] = "sum"
    bytes_per_element: int = 4
    network_overhead_ms: float = 0.0
    sparse_speedup: float = 0.0
    channel_block: int = 1
    channel_alignment: int = 0
    prepacked_weights: bool = False
    conv_dispatch: str = ""
    small_gemm: SmallGemm | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    predictor_error: PredictorError | None = None
    aliases: tuple[str, ...] = ()
    roofline: Mapping[str, Any] | None = None
    path: str | None = None
    published_check: PublishedCheck | None = None
    anchors: Mapping[str, Any] | None = None
    transfer_error: Mapping[str, Any] | None = None
    last_check: Mapping[str, Any] | None = None  # the drift check of this process (not saved)

    @property
    def prices_extra_ops(self) -> bool:
        """True when the profile prices the ops fvcore does not count (activations, adds, ...)."""
        return bool(set(self.ops) & {"activation", "binary", "concat", "index", "reshape"})

    @property
    def folds_constants(self) -> bool:
        """True when the profile's runtime compiles the graph and folds what is computed from
        weights alone (a standardised weight, a position table) once, at load: every runtime
        but PyTorch's own, which runs each op on every call."""
        return not self.runtime.startswith("pytorch")

    def extra_op_latency(self, kind: str) -> OpLatency | None:
        """Coefficients for an extra op of ``kind`` (see :mod:`budgetsearch.cost.ops`), or None
        when the profile does not price it (a datasheet roofline: its compiler fuses them).

        A kind the profile does not name is priced as the kind it refines (a profile fitted
        before the kind existed): a gather/scatter (``index``) as the copy it is (``concat``),
        a fused activation or add as an unfused one.
        """
        if kind in self.ops:
            return self.ops[kind]
        if kind in _FALLBACK_KINDS:
            return self.extra_op_latency(_FALLBACK_KINDS[kind])
        return None

    def __post_init__(self) -> None:
        if self.source not in ("measured", "datasheet"):
            raise ValueError(f"source must be 'measured' or 'datasheet', got {self.source!r}")
        if self.combine not in ("sum", "max"):
            raise ValueError(f"combine must be 'sum' or 'max', got {self.combine!r}")
        if not _is_channel_block(self.channel_block):
            raise ValueError(
                f"channel_block must be a positive integer, got {self.channel_block!r}")
        if not (_is_channel_block(self.channel_alignment) or self.channel_alignment == 0):
            raise ValueError(f"channel_alignment must be a non-negative integer, got "
                             f"{self.channel_alignment!r}")
        if not 0.0 <= self.sparse_speedup <= 1.0:
            raise ValueError(f"sparse_speedup must be in [0, 1], got {self.sparse_speedup}")
        if self.conv_dispatch not in ("", *CONV_DISPATCH_RULES):
            raise ValueError(f"conv_dispatch must be one of {', '.join(CONV_DISPATCH_RULES)} "
                             f"(or empty), got {self.conv_dispatch!r}")
        unknown = set(self.ops) - set(OP_KINDS) - {"default"}
        if unknown:
            raise ValueError(
                f"ops has unknown kind(s) {sorted(unknown)}; expected some of "
                f"{', '.join((*OP_KINDS, 'default'))}"
            )

    def extra_ops_ms(self, kind: str, elements: Sequence[int]) -> float:
        """Predicted ms of extra ops of ``kind``, one per entry of ``elements`` (the elements
        each reads and writes): what a delivered network runs beyond the full network's
        inventory (the gathers of a compact mixed-connectivity ResNet)."""
        c = self.extra_op_latency(kind)
        if c is None or not elements:
            return 0.0
        per_element = c.ms_per_mb * 1e-6 * self.bytes_per_element
        return float(sum(per_element * e + c.overhead_ms for e in elements))

    @property
    def supports_sparse_speedup(self) -> bool:
        """True when unstructured sparsity lowers this device's predicted latency."""
        return self.sparse_speedup > 0.0

    def op_latency(self, kind: str) -> OpLatency:
        """Coefficients for op ``kind`` (``ops["default"]`` when the kind has none).

        A kind the profile does not name is priced as the kind it refines (and so on): a grouped
        conv (``gconv``) as a ``conv``, an aligned one as a ``gconv``, a folded BatchNorm
        (``fused_batchnorm``) as a ``batchnorm``. The kind ``"none"`` always costs nothing.
        """
        if kind == "none":
            return OpLatency()
        if kind in self.ops:
            return self.ops[kind]
        if kind in _FALLBACK_KINDS:
            return self.op_latency(_FALLBACK_KINDS[kind])
        if "default" in self.ops:
            return self.ops["default"]
        return OpLatency()

    def predict_ms(self, kind: str, *, flops: float, bytes_moved: float, density: float = 1.0,
                   alive: bool = True) -> float:
        """Predicted time of one ``kind`` layer doing ``flops`` (dense), moving ``bytes_moved``.

        ``density`` is the kept fraction of the weights; it lowers the compute term only by the
        declared :attr:`sparse_speedup`.
        """
        if not alive:
            return 0.0
        c = self.op_latency(kind)
        compute = c.ms_per_gflop * 1e-9 * flops * (1.0 - self.sparse_speedup * (1.0 - density))
        memory = c.ms_per_mb * 1e-6 * bytes_moved  # activation bytes
        body = max(compute, memory) if self.combine == "max" else compute + memory
        return body + c.overhead_ms

    def with_error(self, error: PredictorError) -> DeviceProfile:
        """A copy carrying a new measured predictor error."""
        return replace(self, predictor_error=error)

    @property
    def threads(self) -> int:
        """The thread count the profile was timed with (1 when it records none, or none that
        is a count)."""
        try:
            return max(1, int(self.provenance.get("threads") or 1))
        except (TypeError, ValueError):
            return 1

    @property
    def run_repeatability(self) -> float | None:
        """How far the profiling run agreed with itself: the share of its networks whose two
        halves of rounds agree within ±10 % (None for a profile made before it was recorded)."""
        return (self.provenance.get("repeatability") or {}).get("within_10pct")

    @property
    def runtime(self) -> str:
        """What runs the network: ``pytorch-eager``, ``onnxruntime``, ``pytorch-cuda[-fp16]``
        or the datasheet's stack."""
        return str(self.provenance.get("runtime", "pytorch-eager" if self.source == "measured"
                                       else "datasheet"))

    def scaled(self, factor: float) -> DeviceProfile:
        """A copy whose every time (coefficients, network overhead, anchors) is ``factor`` ×.

        Used by the drift check to recalibrate to a faster or slower day, and by the benchmark to
        simulate one (a profile recorded on a machine ``factor`` × slower than this one).
        """
        return self.rescaled(overhead=factor, work=factor)

    def rescaled(self, *, overhead: float, work: float) -> DeviceProfile:
        """A copy whose per-call overheads (each op's β and the network overhead) are
        ``overhead`` × and whose per-FLOP and per-byte terms are ``work`` ×.

        The drift check's recalibration: on a shared CPU, Python dispatch and arithmetic drift
        apart (on the profiling machine, dispatch-bound anchors ran 0.6–0.7× their recorded
        time while compute-bound ones ran 0.95–1.0× within the same minute). An anchor's recorded
        time is split by its ``overhead_share`` (1 − share scales with ``work``).
        """
        for label, factor in (("overhead", overhead), ("work", work)):
            if not math.isfinite(factor) or factor <= 0:
                raise ValueError(f"{label} factor must be a positive number, got {factor}")
        anchors = self.anchors
        if anchors is not None:
            anchors = dict(anchors)
            anchors["networks"] = [
                {**a, "recorded_ms": float(a["recorded_ms"]) * blended_factor(
                    a.get("overhead_share"), overhead, work)}
                for a in anchors.get("networks", [])
            ]
        small_gemm = self.small_gemm
        if small_gemm is not None:
            small_gemm = replace(small_gemm, scale=small_gemm.scale * work)
        return replace(
            self, ops={k: c.rescaled(overhead=overhead, work=work) for k, c in self.ops.items()},
            network_overhead_ms=self.network_overhead_ms * overhead, anchors=anchors,
            small_gemm=small_gemm,
        )

    def as_yaml_dict(self) -> dict[str, Any]:
        """The mapping :func:`save_profile` writes (a datasheet profile keeps its roofline)."""
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "source": self.source,
        }
        if self.aliases:
            data["aliases"] = list(self.aliases)
        data["provenance"] = _plain(self.provenance)
        if self.roofline is not None:
            data["roofline"] = _plain(self.roofline)
        else:
            data["latency_model"] = {
                "combine": self.combine,
                "bytes_per_element": self.bytes_per_element,
                "network_overhead_ms": self.network_overhead_ms,
                "ops": {kind: c.as_dict() for kind, c in self.ops.items()},
            }
            if self.channel_block != 1:
                data["latency_model"]["channel_block"] = self.channel_block
            if self.channel_alignment:
                data["latency_model"]["channel_alignment"] = self.channel_alignment
            if self.prepacked_weights:
                data["latency_model"]["prepacked_weights"] = True
            if self.conv_dispatch:
                data["latency_model"]["conv_dispatch"] = self.conv_dispatch
            if self.small_gemm is not None:
                data["latency_model"]["small_gemm"] = self.small_gemm.as_dict()
        data["sparse_speedup"] = self.sparse_speedup
        data["predictor_error"] = (
            None if self.predictor_error is None else self.predictor_error.as_dict()
        )
        if self.published_check is not None:
            data["published_check"] = self.published_check.as_dict()
        if self.transfer_error is not None:
            data["transfer_error"] = _plain(self.transfer_error)
        if self.anchors is not None:
            data["anchors"] = _plain(self.anchors)
        return data


def _is_channel_block(value: Any) -> bool:
    """A channel block is a positive integer (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def blended_factor(overhead_share: float | None, overhead: float, work: float) -> float:
    """The factor of a time whose ``overhead_share`` scales by ``overhead``, the rest by ``work``
    (an unknown share: their mean, exact when both factors are equal)."""
    if overhead_share is None:
        return (overhead + work) / 2.0
    return overhead_share * overhead + (1.0 - overhead_share) * work


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):  # str subclasses (torch's TorchVersion) are not safe_dump-able
        return str(value)
    return value


# ---------------------------------------------------------------------------------------------
# Loading and validation

_TOP_KEYS = {
    "name": str,
    "description": str,
    "source": str,
    "aliases": list,
    "provenance": dict,
    "latency_model": dict,
    "roofline": dict,
    "sparse_speedup": (int, float),
    "predictor_error": (dict, type(None)),
    "published_check": dict,
    "transfer_error": dict,
    "anchors": dict,
}
_REQUIRED_TOP = ("name", "source", "provenance", "sparse_speedup")
_PROVENANCE_KEYS = {
    "tool", "tool_version", "torch_version", "python_version", "dtype", "batch_size", "threads",
    "date", "host", "cpu", "device", "power_mode", "clocks", "load_average", "method", "notes",
    "input_shapes", "timing", "fit_networks", "sources", "runtime", "runtime_version",
    "cpu_flags", "onnx_opset", "fit_families", "seconds", "seed", "generator_version",
    "repeatability", "gpu", "process_state",
}
_LATENCY_KEYS = {
    "combine": str,
    "bytes_per_element": int,
    "network_overhead_ms": (int, float),
    "ops": dict,
}
_OP_KEYS = {"ms_per_gflop", "ms_per_mb", "overhead_ms", "ms_per_weight_mb"}
_ERROR_KEYS = {
    "networks": int,
    "within_10pct": (int, float),
    "median_abs_pct": (int, float),
    "p90_abs_pct": (int, float),
    "max_abs_pct": (int, float),
    "command": str,
    "date": str,
    "networks_set": str,
}
# A roofline quantity is {value: number, unit: str, source: str}; the ones the model needs:
_ROOFLINE_KEYS = {
    "peak_tflops",
    "memory_bandwidth_gbs",
    "compute_efficiency",
    "memory_efficiency",
    "layer_overhead_ms",
    "bytes_per_element",
    "dwconv_compute_efficiency",
}
_ROOFLINE_REQUIRED = (
    "peak_tflops", "memory_bandwidth_gbs", "compute_efficiency", "memory_efficiency",
    "layer_overhead_ms", "bytes_per_element",
)
_QUANTITY_KEYS = {"value": (int, float), "unit": str, "source": str, "fitted_from": str}
_OPTIONAL_NUMBER = (int, float, type(None))
_PUBLISHED_KEYS = {
    "stands_for": str,
    "runtime": str,
    "measurements": int,
    "table": str,
    "date": str,
    "heldout": int,
    "median_abs_pct": _OPTIONAL_NUMBER,
    "within_25pct": _OPTIONAL_NUMBER,
    "within_50pct": _OPTIONAL_NUMBER,
    "datasheet_median_abs_pct": _OPTIONAL_NUMBER,
    "note": str,
}
_PUBLISHED_REQUIRED = ("stands_for", "runtime", "measurements", "table", "date")


def _type_name(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    names = {int: "integer", float: "number", str: "string", list: "list", dict: "mapping",
             type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_type(where: str, key: str, value: Any, expected: type | tuple[type, ...]) -> None:
    # bool is an int subclass; a `true` where a number belongs is a mistake worth naming.
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) or not isinstance(value, types):
        raise ValueError(
            f"{where}: key {key!r} must be of type {_type_name(expected)}, got "
            f"{type(value).__name__} {value!r}"
        )
    if isinstance(value, (int, float)) and (not math.isfinite(value) or value < 0):
        raise ValueError(f"{where}: key {key!r} must be a finite non-negative number, got {value}")


def _check_keys(where: str, section: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(repr(f'{section}{k}') for k in unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def profile_from_dict(data: Any, *, where: str = "<profile>") -> DeviceProfile:
    """Validate a parsed profile mapping and build the :class:`DeviceProfile`.

    Raises:
        ValueError: unknown key, wrong type, negative number or missing key; the message names
            ``where`` (the file) and the key.
    """
    if not isinstance(data, dict):
        raise ValueError(
            f"{where}: a profile must be a mapping of key: value, got {type(data).__name__}"
        )
    _check_keys(where, "", data, set(_TOP_KEYS))
    for key in _REQUIRED_TOP:
        if key not in data:
            raise ValueError(f"{where}: missing required key {key!r}")
    for key, expected in _TOP_KEYS.items():
        if key in data:
            _check_type(where, key, data[key], expected)
    source = data["source"]
    if source not in ("measured", "datasheet"):
        raise ValueError(f"{where}: key 'source' must be 'measured' or 'datasheet', got {source!r}")
    if not 0.0 <= data["sparse_speedup"] <= 1.0:
        raise ValueError(
            f"{where}: key 'sparse_speedup' must be in [0, 1], got {data['sparse_speedup']}"
        )
    aliases = tuple(data.get("aliases", []))
    for alias in aliases:
        _check_type(where, "aliases[]", alias, str)
    provenance = data["provenance"]
    _check_keys(where, "provenance.", provenance, _PROVENANCE_KEYS)
    for key, value in provenance.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_type(where, f"provenance.{key}", value, (int, float))
    if "repeatability" in provenance:  # how far the profiling run agreed with itself
        agreement = provenance["repeatability"]
        share = agreement.get("within_10pct") if isinstance(agreement, dict) else None
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise ValueError(f"{where}: key 'provenance.repeatability' must be a mapping whose "
                             f"'within_10pct' is a share in [0, 1], got {agreement!r}")
    if "process_state" in provenance:  # prices moved from the fit run's process to a new one
        state = provenance["process_state"]
        factor = state.get("factor") if isinstance(state, dict) else None
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not (
                0 < factor < 100):
            raise ValueError(f"{where}: key 'provenance.process_state' must be a mapping whose "
                             f"'factor' is a positive number, got {state!r}")

    has_model, has_roofline = "latency_model" in data, "roofline" in data
    if source == "datasheet" and (not has_roofline or has_model):
        raise ValueError(
            f"{where}: a datasheet profile needs a 'roofline' section (and no 'latency_model': "
            f"it is derived from the roofline)"
        )
    if source == "measured" and (not has_model or has_roofline):
        raise ValueError(
            f"{where}: a measured profile needs a 'latency_model' section, no 'roofline'"
        )

    roofline = None
    if has_roofline:
        roofline = data["roofline"]
        combine, bytes_per_element, overhead, ops = _ops_from_roofline(where, roofline)
        channel_block, channel_alignment, prepacked, dispatch = 1, 0, False, ""
        small_gemm = None
    else:
        model = data["latency_model"]
        _check_keys(where, "latency_model.", model,
                    {*_LATENCY_KEYS, "channel_block", "channel_alignment", "prepacked_weights",
                     "conv_dispatch", "small_gemm"})
        small_gemm = _small_gemm(where, model.get("small_gemm"), dispatch=model.get(
            "conv_dispatch", ""))
        channel_block = model.get("channel_block", 1)
        if not _is_channel_block(channel_block):
            raise ValueError(f"{where}: key 'latency_model.channel_block' must be a positive "
                             f"integer, got {channel_block!r}")
        channel_alignment = model.get("channel_alignment", 0)
        if not (_is_channel_block(channel_alignment) or channel_alignment == 0):
            raise ValueError(f"{where}: key 'latency_model.channel_alignment' must be a "
                             f"non-negative integer, got {channel_alignment!r}")
        prepacked = model.get("prepacked_weights", False)
        if not isinstance(prepacked, bool):
            raise ValueError(f"{where}: key 'latency_model.prepacked_weights' must be true or "
                             f"false, got {prepacked!r}")
        dispatch = model.get("conv_dispatch", "")
        if not isinstance(dispatch, str) or dispatch not in ("", *CONV_DISPATCH_RULES):
            raise ValueError(f"{where}: key 'latency_model.conv_dispatch' must be one of "
                             f"{', '.join(repr(r) for r in CONV_DISPATCH_RULES)}, got {dispatch!r}")
        for key, expected in _LATENCY_KEYS.items():
            if key not in model:
                raise ValueError(f"{where}: missing required key 'latency_model.{key}'")
            _check_type(where, f"latency_model.{key}", model[key], expected)
        combine = model["combine"]
        if combine not in ("sum", "max"):
            raise ValueError(
                f"{where}: key 'latency_model.combine' must be 'sum' or 'max', got {combine!r}"
            )
        bytes_per_element = model["bytes_per_element"]
        overhead = float(model["network_overhead_ms"])
        _check_keys(where, "latency_model.ops.", model["ops"], {*OP_KINDS, "default"})
        ops = {}
        for kind, coeffs in model["ops"].items():
            key = f"latency_model.ops.{kind}"
            _check_type(where, key, coeffs, dict)
            _check_keys(where, f"{key}.", coeffs, _OP_KEYS)
            for name, value in coeffs.items():
                _check_type(where, f"{key}.{name}", value, (int, float))
            ops[kind] = OpLatency(**{k: float(v) for k, v in coeffs.items()})
    anchors = data.get("anchors")
    if anchors is not None:
        _check_anchors(where, anchors)

    error = None
    if data.get("predictor_error") is not None:
        raw = data["predictor_error"]
        _check_keys(where, "predictor_error.", raw, set(_ERROR_KEYS))
        for key, expected in _ERROR_KEYS.items():
            if key in raw:
                _check_type(where, f"predictor_error.{key}", raw[key], expected)
            elif key not in ("command", "date", "networks_set"):
                raise ValueError(f"{where}: missing required key 'predictor_error.{key}'")
        error = PredictorError(**raw)

    published = None
    if "published_check" in data:
        raw = data["published_check"]
        _check_keys(where, "published_check.", raw, set(_PUBLISHED_KEYS))
        for key in _PUBLISHED_REQUIRED:
            if key not in raw:
                raise ValueError(f"{where}: missing required key 'published_check.{key}'")
        for key, value in raw.items():
            if value is not None:
                _check_type(where, f"published_check.{key}", value, _PUBLISHED_KEYS[key])
        published = PublishedCheck(**raw)

    return DeviceProfile(
        name=data["name"],
        description=data.get("description", ""),
        source=source,
        ops=ops,
        combine=combine,
        bytes_per_element=int(bytes_per_element),
        network_overhead_ms=overhead,
        sparse_speedup=float(data["sparse_speedup"]),
        channel_block=channel_block,
        channel_alignment=channel_alignment,
        prepacked_weights=prepacked,
        conv_dispatch=dispatch,
        small_gemm=small_gemm,
        provenance=provenance,
        predictor_error=error,
        aliases=aliases,
        roofline=roofline,
        path=None,
        published_check=published,
        anchors=anchors,
        transfer_error=data.get("transfer_error"),
    )


def _small_gemm(where: str, raw: Any, *, dispatch: Any) -> SmallGemm | None:
    """The ``latency_model.small_gemm`` section, checked (None when absent)."""
    if raw is None:
        return None
    key = "latency_model.small_gemm"
    _check_type(where, key, raw, dict)
    _check_keys(where, f"{key}.", raw, {"measured_ms_per_mb", "scale", "method"})
    if "measured_ms_per_mb" not in raw:
        raise ValueError(f"{where}: missing required key '{key}.measured_ms_per_mb'")
    table = raw["measured_ms_per_mb"]
    _check_type(where, f"{key}.measured_ms_per_mb", table, list)
    _check_type(where, f"{key}.scale", raw.get("scale", 1.0), (int, float))
    _check_type(where, f"{key}.method", raw.get("method", ""), str)
    if dispatch != "pytorch":
        raise ValueError(f"{where}: key '{key}' prices PyTorch eager's GEMM path: it needs "
                         f"'latency_model.conv_dispatch: pytorch'")
    try:
        return SmallGemm(tuple(table), float(raw.get("scale", 1.0)), str(raw.get("method", "")))
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


#: A fit-set network's label as a profile names its anchors: family#seed/CxHxW, ASCII digits,
#: within the sizes the fit set draws (1-16 channels, 8-512 pixels a side)
ANCHOR_LABEL = re.compile(
    r"(?P<family>[a-z]+)#(?P<seed>[0-9]{1,9})/(?P<c>[0-9]{1,2})x(?P<h>[0-9]{1,3})x(?P<w>[0-9]{1,3})",
    re.ASCII)
ANCHOR_LABEL_BOUNDS = "1 to 16 channels and 8 to 512 pixels a side"


def anchor_label(name: str) -> re.Match[str] | None:
    """``name`` parsed as a fit-set label (groups family, seed, c, h, w), or None when it is not
    one within :data:`ANCHOR_LABEL`'s bounds."""
    match = ANCHOR_LABEL.fullmatch(name)
    if match is None or not 1 <= int(match["c"]) <= 16 or not all(
            8 <= int(match[k]) <= 512 for k in ("h", "w")):
        return None
    return match


_ANCHOR_KEYS = {"networks", "rounds", "inner", "settle", "settle_mb", "warmup", "tolerance_pct",
                "budget_s", "method", "recorded", "factors", "alone"}
_ANCHOR_NETWORK_KEYS = {"name", "input_shape", "recorded_ms", "predicted_ms", "overhead_share"}


def _check_anchors(where: str, anchors: Mapping[str, Any]) -> None:
    """The anchor section: a few networks and their recorded times (the drift check's oracle)."""
    _check_keys(where, "anchors.", anchors, _ANCHOR_KEYS)
    networks = anchors.get("networks")
    if not isinstance(networks, list) or not networks:
        raise ValueError(f"{where}: key 'anchors.networks' must be a non-empty list")
    for i, network in enumerate(networks):
        key = f"anchors.networks[{i}]"
        _check_type(where, key, network, dict)
        _check_keys(where, f"{key}.", network, _ANCHOR_NETWORK_KEYS)
        for part in ("name", "recorded_ms"):
            if part not in network:
                raise ValueError(f"{where}: missing required key '{key}.{part}'")
        name = network["name"]
        _check_type(where, f"{key}.name", name, str)
        if "#" in name and anchor_label(name) is None:
            raise ValueError(f"{where}: key '{key}.name' must be a fit-set network "
                             f"family#seed/CxHxW with {ANCHOR_LABEL_BOUNDS}, got {name!r}")
        _check_type(where, f"{key}.recorded_ms", network["recorded_ms"], (int, float))
        if "overhead_share" in network:
            share = network["overhead_share"]
            _check_type(where, f"{key}.overhead_share", share, (int, float))
            if not 0.0 <= share <= 1.0:
                raise ValueError(
                    f"{where}: key '{key}.overhead_share' must be in [0, 1], got {share}")
        if network["recorded_ms"] <= 0:
            raise ValueError(
                f"{where}: key '{key}.recorded_ms' must be positive, got {network['recorded_ms']}"
            )
    for part in ("tolerance_pct", "budget_s"):
        if part in anchors:
            _check_type(where, f"anchors.{part}", anchors[part], (int, float))
    for part in ("method", "recorded"):
        if part in anchors:
            _check_type(where, f"anchors.{part}", anchors[part], str)
    for part, low in (("rounds", 1), ("inner", 1), ("settle", 0), ("warmup", 0)):
        value = anchors.get(part, low)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 1000:
            raise ValueError(f"{where}: key 'anchors.{part}' must be an integer from {low} to "
                             f"1000 (how the anchors were timed), got {value!r}")
    settle_mb = anchors.get("settle_mb", 0.0)
    if isinstance(settle_mb, bool) or not isinstance(settle_mb, (int, float)) or not (
            0.0 <= settle_mb <= 1000.0):
        raise ValueError(f"{where}: key 'anchors.settle_mb' must be a number from 0 to 1000 "
                         f"(MB of weights per extra untimed call), got {settle_mb!r}")
    if not isinstance(anchors.get("alone", False), bool):
        raise ValueError(f"{where}: key 'anchors.alone' must be true or false (the fit set timed "
                         f"each network in a process of its own), got {anchors['alone']!r}")
    factors = anchors.get("factors", 1)
    if isinstance(factors, bool) or factors not in (1, 2):
        raise ValueError(f"{where}: key 'anchors.factors' must be 1 (one drift factor) or 2 "
                         f"(per-call overhead and the rest apart), got {factors!r}")


def _ops_from_roofline(
    where: str, roofline: Mapping[str, Any]
) -> tuple[Literal["max"], int, float, dict[str, OpLatency]]:
    """Derive the ``max`` model from peak throughput and bandwidth (each a sourced quantity)."""
    _check_keys(where, "roofline.", roofline, _ROOFLINE_KEYS)
    values: dict[str, float] = {}
    for key in _ROOFLINE_REQUIRED:
        if key not in roofline:
            raise ValueError(f"{where}: missing required key 'roofline.{key}'")
    for key, quantity in roofline.items():
        name = f"roofline.{key}"
        _check_type(where, name, quantity, dict)
        _check_keys(where, f"{name}.", quantity, set(_QUANTITY_KEYS))
        for part in ("value", "source"):
            if part not in quantity:
                raise ValueError(f"{where}: missing required key '{name}.{part}' (cite the source)")
        for part, expected in _QUANTITY_KEYS.items():
            if part in quantity:
                _check_type(where, f"{name}.{part}", quantity[part], expected)
        values[key] = float(quantity["value"])
    for key in ("peak_tflops", "memory_bandwidth_gbs", "compute_efficiency", "memory_efficiency"):
        if values[key] <= 0:
            raise ValueError(
                f"{where}: key 'roofline.{key}.value' must be positive, got {values[key]}"
            )
    # Peak TFLOPS count 2 FLOPs per fused multiply-add; fvcore counts 1, hence the factor 2.
    ms_per_gflop = 2.0 / (values["peak_tflops"] * 1e3 * values["compute_efficiency"]) * 1e3
    # 1 MB at B GB/s takes 1e6 / (B·1e9) s = 1 / B ms.
    ms_per_mb = 1.0 / (values["memory_bandwidth_gbs"] * values["memory_efficiency"])
    overhead = values["layer_overhead_ms"]
    ops = {
        "default": OpLatency(ms_per_gflop=ms_per_gflop, ms_per_mb=ms_per_mb, overhead_ms=overhead)
    }
    if "dwconv_compute_efficiency" in values:
        dw = 2.0 / (values["peak_tflops"] * 1e3 * values["dwconv_compute_efficiency"]) * 1e3
        ops["dwconv"] = OpLatency(ms_per_gflop=dw, ms_per_mb=ms_per_mb, overhead_ms=overhead)
    return "max", int(values["bytes_per_element"]), 0.0, ops


def user_profile_dir() -> Path:
    """Folder of the user's own profiles (it need not exist).

    ``$BUDGETSEARCH_PROFILE_DIR`` when set, else ``$XDG_CONFIG_HOME/budgetsearch/hw_profiles``,
    with ``XDG_CONFIG_HOME`` defaulting to ``~/.config``.

    Example:
        >>> user_profile_dir()  # doctest: +SKIP
        PosixPath('/home/me/.config/budgetsearch/hw_profiles')
    """
    chosen = os.environ.get(PROFILE_DIR_ENV)
    if chosen:
        return Path(chosen).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config).expanduser() / "budgetsearch" / "hw_profiles"


def _in_source_checkout(folder: Path) -> bool:
    # An installed wheel has the profiles inside the package; a checkout has them beside it.
    return folder.resolve().parent != Path(__file__).resolve().parents[1]


def default_profile_path(name: str) -> Path:
    """Where ``budgetsearch profile --name NAME`` writes when no ``--out`` is given.

    ``$BUDGETSEARCH_PROFILE_DIR/NAME.yaml`` when that variable is set; else
    ``hw_profiles/NAME.yaml`` of a source checkout that is writable (the profile can be committed);
    else ``NAME.yaml`` in :func:`user_profile_dir` (an installed package is not the place to
    write). Profiles in either folder load by name.

    Raises:
        ValueError: ``name`` is a shipped profile but would be written to the user folder, where
            the shipped one would hide it.
    """
    shipped = PROFILE_DIR
    if (not os.environ.get(PROFILE_DIR_ENV) and _in_source_checkout(shipped)
            and os.access(shipped, os.W_OK)):
        return shipped / f"{name}.yaml"
    if (shipped / f"{name}.yaml").is_file():
        raise ValueError(
            f"name {name!r} is a profile shipped in {shipped}; a user profile of that name would "
            f"be hidden by it, so choose another name or give an explicit path"
        )
    return user_profile_dir() / f"{name}.yaml"


def _profile_dirs(directory: str | Path | None) -> list[Path]:
    if directory is not None:
        return [Path(directory)]
    user = user_profile_dir()
    if user.resolve() == PROFILE_DIR.resolve():
        return [PROFILE_DIR]
    return [PROFILE_DIR, user]


def _profile_files(directory: str | Path | None) -> dict[str, Path]:
    """``{stem: path}``, the first folder winning a name found in more than one."""
    found: dict[str, Path] = {}
    for folder in _profile_dirs(directory):
        for path in sorted(folder.glob("*.yaml"), key=lambda p: p.stem):
            found.setdefault(path.stem, path)
    return found


def profile_names(directory: str | Path | None = None) -> list[str]:
    """Names (file stems) of the profiles: shipped ones sorted, then the user's own sorted.

    With ``directory``, only the profiles in that folder. A user profile named like a shipped one
    is not listed (the shipped one wins; see :func:`default_profile_path`).
    """
    return list(_profile_files(directory))


def _aliases(paths: list[Path]) -> dict[str, str]:
    table: dict[str, str] = {}
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and isinstance(data.get("aliases"), list):
            for alias in data["aliases"]:
                table.setdefault(str(alias), path.stem)
    return table


def _find_profile(name: str, directory: str | Path | None = None) -> Path:
    table = _profile_files(directory)
    if name in table:
        return table[name]
    aliases = _aliases(list(table.values()))
    if name in aliases:
        return table[aliases[name]]
    raise ValueError(
        f"device must be a profile name ({', '.join(table)}), an alias "
        f"({', '.join(sorted(aliases)) or 'none'}) or a path to a .yaml file, got {name!r}"
    )


def resolve_profile_name(name: str, directory: str | Path | None = None) -> str:
    """The profile file stem ``name`` refers to (``"jetson"`` → ``"jetson-orin-nano"``).

    Looks in the shipped and then the user's profiles (:func:`profile_names`), or in
    ``directory`` only.

    Raises:
        ValueError: no profile or alias of that name (the message lists the valid ones).
    """
    return _find_profile(name, directory).stem


def load_profile(name_or_path: str | Path, *, check: bool = True) -> DeviceProfile:
    """Load and validate a profile by name (file stem or alias) or by path.

    A name is looked up among the shipped profiles, then in :func:`user_profile_dir`.

    The alias ``"jetson"`` resolves to ``"jetson-orin-nano"``; the CLI tells the user so.

    A measured profile of this machine (same CPU model and SIMD flags, runtime available) with
    anchors is checked for drift once per process (≤ 2 s, :mod:`budgetsearch.profiling.anchors`;
    when the anchors drift beyond 10 % or apart, a ≈ 15-40 s re-fit on networks timed now,
    whose factors apply whatever their size while the anchors run as then); without a re-fit,
    rescaled by the anchors when they, and the quietest of this machine's recent snapshots,
    run more than 10 % faster or slower than on the day it was measured, and by half a
    reading's drift inside 10 %;
    ``check=False`` or ``BUDGETSEARCH_DRIFT_CHECK=0`` skips that.

    Raises:
        ValueError: unknown name, or an invalid file (the message names the file and the key).
        FileNotFoundError: a path that does not exist.
    """
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"profile file {path} does not exist")
    else:
        path = _find_profile(text)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {yaml_problem(error)}") from None
    profile = replace(profile_from_dict(data, where=str(path)), path=str(path))
    if check:
        _load_installed_checks()
        for hook in _PROFILE_CHECKS:
            profile = hook(profile)
    return profile


ProfileCheck = Callable[[DeviceProfile], DeviceProfile]
#: Checks run on every profile :func:`load_profile` returns (``check=True``).
_PROFILE_CHECKS: list[ProfileCheck] = []
#: Entry-point group of installed checks. budgetsearch's own drift check of measured profiles
#: (:mod:`budgetsearch.profiling.anchors`, which times networks and so lives above this layer)
#: is declared there in ``pyproject.toml``, so that a library user who calls this module alone,
#: without the API or the CLI, prices by a checked profile too; another package can add its own
#: (one that changes coefficients runs wherever a profile is loaded with ``check=True``: a Ray
#: search's trials load theirs unchecked and adopt the driver's drift check instead).
PROFILE_CHECK_GROUP = "budgetsearch.profile_checks"
_INSTALLED_CHECKS_LOADED = False
_INSTALLED_CHECKS_LOCK = threading.Lock()


def register_profile_check(hook: ProfileCheck) -> ProfileCheck:
    """Run ``hook(profile) -> profile`` on every profile loaded from now on (once per hook)."""
    if hook not in _PROFILE_CHECKS:
        _PROFILE_CHECKS.append(hook)
    return hook


def _load_installed_checks() -> None:
    """Register the checks installed under :data:`PROFILE_CHECK_GROUP` (once per process).

    One that cannot be loaded is named in a warning and skipped: pricing does not fail for it.
    (The drift check also registers itself when imported, so a source tree used without being
    installed still checks profiles wherever the API, the CLI or the search is imported.)
    """
    global _INSTALLED_CHECKS_LOADED
    with _INSTALLED_CHECKS_LOCK:  # a second thread waits for the first's checks, not skips them
        if _INSTALLED_CHECKS_LOADED:
            return
        try:
            entries = list(entry_points(group=PROFILE_CHECK_GROUP))
        except Exception as error:  # noqa: BLE001 - another package's broken metadata
            warnings.warn(f"installed profile checks could not be listed: "
                          f"{type(error).__name__}: {error}", stacklevel=3)
            entries = []
        for entry in entries:
            try:
                hook = entry.load()
            except Exception as error:  # noqa: BLE001 - a plug-in's failure is reported, not raised
                warnings.warn(f"profile check {entry.name!r} ({entry.value}) could not be loaded:"
                              f" {type(error).__name__}: {error}", stacklevel=3)
                continue
            if not callable(hook):
                warnings.warn(f"profile check {entry.name!r} ({entry.value}) is not callable",
                              stacklevel=3)
                continue
            register_profile_check(hook)
        _INSTALLED_CHECKS_LOADED = True


def profile_text(profile: DeviceProfile, *, header: str = "", where: str = "<profile>") -> str:
    """``profile`` as the YAML :func:`save_profile` writes, validated by reading it back
    (``where`` names it in the error): render several, then write them, and a bad one stops
    the lot before any file changes."""
    text = yaml.safe_dump(profile.as_yaml_dict(), sort_keys=False, allow_unicode=True, width=100)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    profile_from_dict(yaml.safe_load(text), where=where)
    return text


def save_profile(profile: DeviceProfile, path: str | Path, *, header: str = "") -> Path:
    """Write ``profile`` as YAML (validated by reading it back)."""
    out = Path(path)
    text = profile_text(profile, header=header, where=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, text)
    return out
