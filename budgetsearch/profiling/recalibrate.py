"""Re-fitting a drifted profile's two drift factors on networks timed today (≈ 15-25 s).

The drift check's anchors (nine networks, one second) say *that* a profile no longer holds; on
an uneven drift they cannot say by how much each kind of work moved. Per-call overhead and
arithmetic do drift apart on a shared VM (2026-12-02: dispatch-bound anchors ran 0.6-0.7× their
recorded time while compute-bound ones ran 0.95-1.0× within one minute). The widest such split
measured was a machine of the same name without AVX-512 (2026-12-03; now refused as another
machine, ``anchors.not_this_machine``): its anchors ran x1.58-x2.37, per-call overhead about
x2.3, FLOPs and bytes about x1.4 (``experiments/drift_groups.py``). One factor (x1.86) left
ResNets 25-38 % over-predicted and overhead-bound networks 10-16 % under; two factors fitted to
the nine anchors missed as far (their overhead shares are too alike); two fitted to 36 networks
timed now left 77-85 % of 48 foreign networks within ±10 %, against 62-67 %.

So beyond the check's tolerance, or with anchors far apart, it times a fixed draw of the fit-set
generator's networks (:data:`NETWORKS`, every family, every input size; none of them in any
profiling run's draw) and fits, by least squares on relative error, the two factors that bring
the profile's predictions to today's times: one for per-call overhead (each op's β and the
network overhead), one for the per-FLOP and per-byte terms. It is the issue's "re-profile in
~20-30 s" at the scale a drift needs: the profile's shape (which op costs what) is kept, its two
speeds are measured again.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from budgetsearch.cost.profiles import DeviceProfile

NETWORKS = 36  # four of each fit-set family, across the three input sizes
SEED = 7_000_003  # a draw no profiling run makes (those use seed and seed + 1000)
# As many rounds as the profile's own timing took (its anchors record them; 8 by default): a
# network's time is its minimum over rounds, and on a machine whose speed swings every few
# seconds a minimum over 3 rounds (6 s) read x1.00-x1.38 of the minimum over 8 (median x1.11 over
# six repeats, experiments/refit_rounds.py), so a re-fit over 3 rounds over-priced.
ROUNDS, INNER, WARMUP = 8, 5, 2
TIMING_DEADLINE_S = 20.0  # no further round starts after this (one always runs)


def recalibration_networks(count: int = NETWORKS, shapes: tuple[tuple[int, ...], ...] | None = None
                           ) -> list[Any]:
    """The fit-set generator's networks the re-fit times (built, with their inventories), at
    ``shapes`` (default: the generator's 28-64 px)."""
    from budgetsearch.profiling.networks import INPUT_SHAPES, build_spec, sample_specs

    specs = sample_specs(count, seed=SEED, shapes=shapes or INPUT_SHAPES)
    return [build_spec(spec) for spec in specs]


def draw_shapes(profile: DeviceProfile) -> tuple[tuple[int, ...], ...] | None:
    """The input shapes the re-fit of ``profile`` draws at: a GPU profile's own (at 28-64 px a
    GPU runs launch-bound: on the H200 pair compute was 0.3% of those networks' price, median,
    and a factor fitted on them took it to x0.687 where 224-px networks needed x0.879,
    2026-12-04); None (the default draw) for a CPU's, whose re-fit the default draw held."""
    from budgetsearch.profiling.networks import shapes_from_text
    from budgetsearch.profiling.timing import runs_on_cuda

    if not runs_on_cuda(profile.runtime):
        return None
    return shapes_from_text(profile.provenance.get("input_shapes"))


def overhead_parts(profile: DeviceProfile, networks: Sequence[Any]) -> np.ndarray:
    """Per network, (per-call overhead ms, the rest ms) of the profile's prediction: the
    prediction is linear in the coefficients, so the overhead part is what doubling it adds."""
    doubled = profile.rescaled(overhead=2.0, work=1.0)
    rows = []
    for n in networks:
        base = n.inventory.predict_latency_ms(profile, kept_channels=n.kept_channels)
        overhead = n.inventory.predict_latency_ms(doubled, kept_channels=n.kept_channels) - base
        rows.append((overhead, base - overhead))
    return np.array(rows)


def _usable(parts: np.ndarray, today_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The networks with a positive prediction and a finite positive time today."""
    keep = (parts.sum(1) > 0) & np.isfinite(today_ms) & (today_ms > 0)
    return parts[keep], today_ms[keep]


def fit_factors(parts: np.ndarray, today_ms: np.ndarray) -> tuple[float, float]:
    """(overhead, work) factors minimising Σ ((parts · factors) / today − 1)², both ≥ 0; the
    median ratio for both when either lands outside [ratio min / 2, ratio max × 2] (the draw
    cannot tell the two apart)."""
    from scipy.optimize import nnls

    parts, today_ms = _usable(parts, today_ms)
    if not len(today_ms):
        raise ValueError("no network with a positive predicted and measured time to fit on")
    ratios = today_ms / parts.sum(1)
    (overhead, work), _ = nnls(parts / today_ms[:, None], np.ones(len(today_ms)))
    low, high = float(ratios.min()) / 2.0, float(ratios.max()) * 2.0
    if not (low <= overhead <= high and low <= work <= high):
        median = float(np.median(ratios))
        return median, median
    return float(overhead), float(work)


def time_draw(profile: DeviceProfile, networks: Sequence[Any], *,
              onnx_export: Callable[[str, Any, Any], bytes] | None = None,
              alone: Sequence[Any] = ()) -> np.ndarray:
    """Milliseconds of each built network by the profile's timer, runtime and threads, as the
    re-fit times them (the rounds the profile's anchors record, else :data:`ROUNDS`; none
    started after :data:`TIMING_DEADLINE_S`), brought to a process of its own by ``alone`` as
    :func:`refit_drift` brings them."""
    return _draw_today(profile, networks, onnx_export=onnx_export, alone=alone)[0]


def _draw_today(profile: DeviceProfile, networks: Sequence[Any], *,
                onnx_export: Callable[[str, Any, Any], bytes] | None = None,
                alone: Sequence[Any] = ()) -> tuple[np.ndarray, int, float | None]:
    """(ms of each network, rounds run, the process effect divided out or None): see
    :func:`refit_drift`'s ``alone``."""
    from budgetsearch.profiling.timing import quietest_round

    reference = list(alone) if (profile.provenance or {}).get("process_state") else []
    per_round = _draw_rounds(profile, [*networks, *reference], onnx_export=onnx_export)
    timed = quietest_round(per_round)
    today = timed[:len(networks)]
    ratios = [t / float(r.alone_ms) for t, r in zip(timed[len(networks):], reference, strict=True)
              if float(r.alone_ms) > 0 and t > 0]
    effect = float(statistics.median(ratios)) if ratios else None
    return (today / effect if effect else today), int(per_round.shape[1]), effect


def _draw_rounds(profile: DeviceProfile, networks: Sequence[Any], *,
                 onnx_export: Callable[[str, Any, Any], bytes] | None = None) -> np.ndarray:
    """:func:`time_draw`'s burst medians, (networks, rounds run): a slow machine runs fewer
    rounds than asked before the deadline, and the re-fit records how many."""
    from budgetsearch.profiling.timing import make_runner, time_rounds

    try:
        rounds = max(1, int((profile.anchors or {}).get("rounds", ROUNDS)))
        # as the profile's networks were timed (none recorded: before untimed calls existed)
        settle = max(0, int((profile.anchors or {}).get("settle", 0)))
        settle_mb = max(0.0, float((profile.anchors or {}).get("settle_mb", 0.0)))
    except (TypeError, ValueError):
        rounds, settle, settle_mb = ROUNDS, 0, 0.0
    from budgetsearch.profiling.alone import supported as alone_supported

    if (profile.anchors or {}).get("alone") and alone_supported():  # as its fit set was timed
        from budgetsearch.profiling.alone import time_each_alone

        exports = ([onnx_export(n.label, n.model, n.example_input) for n in networks]
                   if onnx_export is not None and profile.runtime == "onnxruntime" else None)
        return time_each_alone([n.label for n in networks], runtime=profile.runtime,
                               threads=profile.threads, rounds=rounds, inner=INNER,
                               warmup=WARMUP, settle=settle, settle_mb=settle_mb,
                               deadline_s=TIMING_DEADLINE_S, onnx=exports)
    export = onnx_export if profile.runtime == "onnxruntime" else None
    runners = [make_runner(n.model, n.example_input, runtime=profile.runtime,
                           threads=profile.threads,
                           onnx_bytes=export(n.label, n.model, n.example_input) if export
                           else None)
               for n in networks]
    return time_rounds(runners, rounds=rounds, inner=INNER, warmup=WARMUP,
                       threads=profile.threads, deadline_s=TIMING_DEADLINE_S, settle=settle,
                       settle_mb=settle_mb)


def refit_drift(
    profile: DeviceProfile, *, count: int = NETWORKS,
    measure: Callable[[Sequence[Any]], np.ndarray] | None = None,
    networks: Sequence[Any] | None = None,
    onnx_export: Callable[[str, Any, Any], bytes] | None = None,
    alone: Sequence[Any] = (),
) -> dict[str, Any]:
    """Time :func:`recalibration_networks` by the profile's timer and fit its two drift factors.

    Returns ``overhead_scale``, ``work_scale``, ``scale`` (the median ratio today / predicted,
    one factor's answer), ``networks`` (how many), ``rounds`` (how many the deadline let run;
    None when ``measure`` timed them), ``seconds`` and ``residual_pct`` (the
    median |error| left on them). ``measure`` (built networks → ms today) replaces the timing
    (tests; the benchmark's simulations reuse one timing), ``networks`` the build;
    ``onnx_export`` (label, model, input → ONNX bytes) caches an onnxruntime profile's exports
    (the drift check passes its anchors' cache).

    ``alone``: networks (``label``, ``model``, ``example_input``, ``alone_ms``: their time today
    in a process of their own, the drift check's anchors) timed inside the draw's rounds. A
    profile whose prices are of a process of its own (``provenance.process_state``) has the
    draw's times divided by their median ratio in the draw to alone (``process_effect``): the
    draw runs 36 networks in one process, which slows each of them (2026-12-04, 22:01: the
    anchors read x0.898 and a draw without this re-fitted x1.04 / x1.11).
    """
    started = time.perf_counter()
    networks = (list(networks) if networks is not None
                else recalibration_networks(count, draw_shapes(profile)))
    rounds_run, effect = None, None
    if measure is None:
        today, rounds_run, effect = _draw_today(profile, networks, onnx_export=onnx_export,
                                                alone=alone)
    else:
        today = np.asarray(measure(networks), dtype=float)
    parts = overhead_parts(profile, networks)
    overhead, work = fit_factors(parts, today)
    parts, today = _usable(parts, today)
    fitted = parts @ np.array([overhead, work])
    return {"overhead_scale": round(overhead, 4), "work_scale": round(work, 4),
            "scale": round(float(statistics.median(today / parts.sum(1))), 4),
            "networks": len(networks), "rounds": rounds_run,
            **({"process_effect": round(effect, 4)} if effect is not None else {}),
            "seconds": round(time.perf_counter() - started, 2),
            "residual_pct": round(float(np.median(np.abs(fitted / today - 1.0))) * 100, 1)}
