"""Issue 16: a latency-model change judged offline, on timings already taken (nothing re-timed).

One command (a few minutes: every network is rebuilt and traced once per variant)::

    PYTHONPATH=. python experiments/latency_variants.py RESULTS_CSV [...] [--runtime pytorch-eager]

Re-fits the shipped CPU profile of the runtime from its own measurements
(``hw_profiles/cpu-2core-x86.csv``, as ``budgetsearch profile --refit`` does) under each variant
of the latency model, and prices the benchmark's foreign networks against their times in
``RESULTS_CSV`` (a ``latency_accuracy.csv`` that ``experiments/latency_accuracy.py`` wrote on
these profiles). Per variant: held-out share within ±10%, leave-one-family-out mean, and on the
foreign networks the share within ±10% / ±20% as priced (no drift check: the benchmark's
measured times against the fit's own day) and after the one factor that centres them (the
model's scatter). Variants:

* ``shipped``: the model as committed;
* ``no-area``: the eager fit without the output-area terms of a dense conv (``conv_area*``);
* ``no-pools``: max and windowed average pool modules unpriced, as before 2026-12-02 (the
  inventory did not hold them: fvcore counts them no FLOPs and they own no parameters), and
  without the area terms;
* ``no-aligned-dw``: onnxruntime's depthwise convs priced alike whether their channels are a
  multiple of the profile's ``channel_alignment`` or not (before 2026-12-02 13:15);
* ``no-dw-gemm``: a depthwise conv oneDNN runs as per-channel GEMMs priced as any depthwise
  conv (``dwconv``), as before 2026-12-02 12:17 (on measurements of generator 5, whose fit set
  holds such convs);
* ``area-weights``: the eager fit with a weight term per output-area kind as well;
* ``no-small-gemm``: the eager fit without the small-GEMM table (every output-area term instead),
  as before 2026-12-02 14:40;
* ``small-gemm-all-areas``: the table with the output-area terms of every area (the shipped fit
  keeps those of areas over 16; ``no-area``, on a profile with a table, keeps none).

Output quoted in experiments/README.md ("Pools"): ``results/latency_variants_output.txt``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost import inventory as inventory_module  # noqa: E402
from budgetsearch.cost import load_profile  # noqa: E402
from budgetsearch.profiling import fit as fit_module  # noqa: E402
from budgetsearch.profiling.fit import refit_profile  # noqa: E402

WINDOWED = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)


@contextlib.contextmanager
def _replaced(module: Any, name: str, value: Any) -> Iterator[None]:
    """``module.name`` is ``value`` inside the block (the fit's unit profiles rebuilt)."""
    original = getattr(module, name)
    setattr(module, name, value)
    fit_module._units.cache_clear()
    try:
        yield
    finally:
        setattr(module, name, original)
        fit_module._units.cache_clear()


def no_pools() -> contextlib.AbstractContextManager[None]:
    """Max and windowed average pool modules leave the inventory, as before they were priced."""
    original = inventory_module._op_of
    return _replaced(inventory_module, "_op_of", lambda module: (
        "unpriced_pool" if isinstance(module, WINDOWED) else original(module)))


def no_area() -> contextlib.AbstractContextManager[None]:
    """The eager fit without the output-area terms of a dense conv (as before 2026-12-02 11:12)."""
    original = fit_module.features_for
    return _replaced(fit_module, "features_for", lambda runtime, **kw: tuple(
        f for f in original(runtime, **kw) if f not in fit_module.AREA_FEATURES))


@contextlib.contextmanager
def before_today() -> Iterator[None]:
    """Neither pools nor output-area terms: the model of this morning, on today's timings."""
    with no_area(), no_pools():
        yield


@contextlib.contextmanager
def no_dw_gemm() -> Iterator[None]:
    """No ``dwconv_gemm`` kind: every depthwise conv priced as ``dwconv``."""
    original = fit_module.features_for
    with _replaced(fit_module, "features_for", lambda runtime, **kw: tuple(
            f for f in original(runtime, **kw) if f[0] != "dwconv_gemm")), _replaced(
            inventory_module.LayerInventory, "_depthwise_on_gemm",
            lambda self, profile: [False] * len(self.layers)):
        yield


def no_aligned_dw() -> contextlib.AbstractContextManager[None]:
    """onnxruntime's fit without ``aligned_dwconv``: a depthwise conv priced alike at any width."""
    original = fit_module.features_for
    return _replaced(fit_module, "features_for", lambda runtime, **kw: tuple(
        f for f in original(runtime, **kw) if f[0] != "aligned_dwconv"))


def area_weights() -> contextlib.AbstractContextManager[None]:
    """The eager fit with a weight term per output-area kind of a dense conv (small GEMMs)."""
    original = fit_module.features_for
    extra = tuple((kind, "ms_per_weight_mb") for kind, _ in fit_module.AREA_FEATURES)
    return _replaced(fit_module, "features_for", lambda runtime, **kw: original(runtime, **kw) + (
        extra if runtime == "pytorch-eager" else ()))


@contextlib.contextmanager
def no_small_gemm() -> Iterator[None]:
    """The eager fit without the small-GEMM table, with every output-area term (before 14:40)."""
    from dataclasses import replace

    original = refit_profile
    with _replaced(sys.modules[__name__], "refit_profile", lambda old, measurements: original(
            replace(old, small_gemm=None), measurements)):
        yield


@contextlib.contextmanager
def small_gemm_all_areas() -> Iterator[None]:
    """The small-GEMM table and the output-area terms of every area (the small ones too)."""
    original = fit_module.features_for
    with _replaced(fit_module, "features_for", lambda runtime, **kw: original(runtime) + (
            (fit_module.SMALL_GEMM_FEATURE,) if kw.get("small_gemm") and
            runtime == "pytorch-eager" else ())):
        yield


VARIANTS = {"shipped": contextlib.nullcontext, "no-area": no_area, "no-pools": before_today,
            "no-dw-gemm": no_dw_gemm, "no-aligned-dw": no_aligned_dw,
            "area-weights": area_weights, "no-small-gemm": no_small_gemm,
            "small-gemm-all-areas": small_gemm_all_areas}


def shares(errors: np.ndarray) -> str:
    a = np.abs(errors)
    return f"{np.mean(a <= 10):4.0%} / {np.mean(a <= 20):4.0%} (median {np.median(errors):+5.1f}%)"


def centred(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    factor = np.exp(np.median(np.log(measured / predicted)))
    return (predicted * factor / measured - 1) * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+",
                        help="latency_accuracy.csv files of these profiles")
    parser.add_argument("--runtime", choices=("pytorch-eager", "onnxruntime", "both"),
                        default="both")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    tables = {path: pd.read_csv(path) for path in args.results}
    measurements = pd.read_csv(Path("hw_profiles/cpu-2core-x86.csv"))
    runtimes = ["pytorch-eager", "onnxruntime"] if args.runtime == "both" else [args.runtime]
    names = {"pytorch-eager": "cpu-2core-x86", "onnxruntime": "cpu-2core-x86-ort"}
    print(f"re-fitted from hw_profiles/cpu-2core-x86.csv; foreign times from "
          f"{', '.join(p.name for p in args.results)}")
    for variant in args.variants:
        with VARIANTS[variant]():
            networks = [n for n in bench.foreign_networks(quick=False)]
            for runtime in runtimes:
                old = load_profile(names[runtime], check=False)
                profile, _, lofo = refit_profile(old, measurements)
                held = profile.predictor_error
                mean_lofo = np.mean([v["within_10pct"] for v in lofo.values()])
                print(f"{variant:10s} {runtime:13s} held-out {held.within_10pct:4.0%}, "
                      f"LOFO mean {mean_lofo:4.0%}")
                for path, table in tables.items():
                    rows = table[(table["runtime"] == runtime)
                                 & (table["family"] != "compact-wrn")]
                    measured = dict(zip(rows["network"], rows["measured_ms"], strict=True))
                    kept = [n for n in networks if n["network"] in measured]
                    predicted = bench.predict(kept, profile)
                    times = np.array([measured[n["network"]] for n in kept])
                    errors = (predicted / times - 1) * 100
                    print(f"{'':24s} {path.name}: {len(kept)} foreign within ±10/±20%: as "
                          f"priced {shares(errors)}, centred {shares(centred(predicted, times))}")


if __name__ == "__main__":
    main()
