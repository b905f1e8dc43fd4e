"""Each fit-set network timed in a process of its own, as a deployed network runs.

Why: a process that has run other networks runs each network slower, and keeps doing so after
they are freed. On 2026-12-05 (00:00-00:20, Intel Xeon, PyTorch eager, 1 thread, other processes
idle) the nine drift-check anchors of ``cpu-2core-x86-xeon`` ran x1.07 of their fresh-process
times once 12 fit-set networks had run in their process, x1.11 after 24, x1.24 after 180 and
x1.37 after all 270 of a profiling run (``gc`` disabled or frozen: the same), while with
oneDNN's primitive cache off (``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0``) or oneDNN off the same
history cost 2-7%: the state lives in the process's oneDNN caches. A profile timed its 270
networks in one process, so its prices were a crowded process's: a single "process factor"
(anchors in a new process against the fit run, x0.79) corrected the level but not the spread
(networks under 8 ms x0.77-0.81, larger ones x0.95).

How: a ``multiprocessing`` forkserver imports torch and budgetsearch once and never runs a
network; each network is built from its fit-set label and timed in a process forked from it,
one at a time (the machine stays as quiet as in an interleaved run), by
:func:`~budgetsearch.profiling.timing.time_rounds` with that one runner: its warm-up, then
``rounds`` rounds of untimed calls and a burst, back to back. A fork costs ~0.1 s, a new
interpreter ~1.5 s: 9 anchors took 4.1 s forked against 16.1 s as new processes, their times
within 1% (median) of each other.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

#: What the forkserver imports once, so that each forked network starts with them loaded.
PRELOAD = ("torch", "budgetsearch.profiling.networks", "budgetsearch.profiling.timing")
#: What a profile's ``provenance.timing`` adds to the method text for networks timed so.
METHOD = "each network alone in a process of its own (forked from a server that runs none)"


def _time_labelled(label: str, runtime: str, threads: int, timing: dict[str, Any]
                   ) -> list[float]:
    """In the forked process: build the network ``label`` names and time it alone."""
    import torch

    from budgetsearch.profiling.networks import build_labelled
    from budgetsearch.profiling.timing import make_runner, time_rounds

    torch.set_num_threads(threads)
    model, x = build_labelled(label)
    run = make_runner(model, x, runtime=runtime, threads=threads)
    return [float(v) for v in time_rounds([run], threads=threads, **timing)[0]]


def time_each_alone(
    labels: Sequence[str], *, runtime: str, threads: int, rounds: int, inner: int,
    warmup: int = 3, settle: int | None = None, settle_mb: float | None = None,
    deadline_s: float | None = None, progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Each fit-set network ``labels`` name, built and timed alone in a process of its own:
    its burst median per round, ms, shape (networks, rounds); NaN where a network ran fewer
    rounds (``deadline_s``, shared evenly: no round of a network starts after its share).
    ``progress`` is called with the rounds each network ran.

    Raises:
        ValueError: a label that names no fit-set network (as the forked process raised it).
    """
    from budgetsearch.profiling.timing import SETTLE, SETTLE_MB, check_runtime

    check_runtime(runtime)
    timing = {"rounds": rounds, "inner": inner, "warmup": warmup,
              "settle": SETTLE if settle is None else settle,
              "settle_mb": SETTLE_MB if settle_mb is None else settle_mb,
              "deadline_s": None if deadline_s is None else deadline_s / max(1, len(labels))}
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*PRELOAD, *(("onnxruntime",) if runtime == "onnxruntime"
                                                else ())])
    rows: list[list[float]] = []
    # one worker, a fresh one per network: the networks run one at a time, each in a process
    # that has run nothing else
    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        for label in labels:
            rows.append(pool.submit(_time_labelled, label, runtime, threads, timing).result())
            if progress is not None:
                progress(len(rows[-1]))
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), np.nan)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out
