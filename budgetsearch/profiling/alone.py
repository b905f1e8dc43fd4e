"""Each fit-set network timed in a process of its own, as a deployed network runs.

Why: a process that has run other networks runs each network slower, and keeps doing so after
they are freed. On 2026-12-05 (Intel Xeon, PyTorch eager, 1 thread, other processes idle;
``experiments/process_history.py``) the nine drift-check anchors of ``cpu-2core-x86-xeon`` ran
x1.01-1.07 of their fresh-process times once 12 fit-set networks had run in their process,
x1.06-1.11 after 24, x1.08-1.12 after 48 and x1.26-1.37 after all 270 of a profiling run (two
runs); with oneDNN's primitive cache off (``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0``) x1.03-1.05:
most of the state lives in that cache. A profile timed its 270
networks in one process, so its prices were a crowded process's: a single "process factor"
(anchors in a new process against the fit run, x0.79) corrected the level but not the spread
(networks under 8 ms x0.77-0.81, larger ones x0.95).

How: a server process (a new interpreter, started once per call) imports torch and
budgetsearch and never runs a network; for each network it forks a process that builds it from
its fit-set label and times it alone, one at a time (the machine stays as quiet as in an
interleaved run), by :func:`~budgetsearch.profiling.timing.time_rounds` with that one runner:
its warm-up, then its rounds of untimed calls and a burst, back to back (in ``passes`` passes
over the networks, each network in a new process each pass). A fork costs
~0.1 s, a new interpreter ~1.5 s: 9 anchors took 4.1 s forked against 16.1 s as new processes,
their times within 1% (median) of each other. (Not ``multiprocessing``: its forkserver and spawn
re-run the caller's main script, which a user's unguarded script cannot survive.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: Seconds a forked process may take to build and time one network before it is killed (the
#: largest fit-set network, 184 ms a call, takes ~15 s at 8 rounds).
CHILD_TIMEOUT_S = 300.0

# The server: reads one request per line on stdin, forks, and answers one line of JSON on its
# own copy of stdout (fd 1 itself goes to stderr, so that nothing a library prints can corrupt
# the answers). The working directory is not on its path (a budgetsearch/ folder there would
# shadow the package); the package's root is, first, as in the caller. A child is guarded whole
# (it never returns into the server's loop) and killed after CHILD_TIMEOUT_S.
_SERVER = r"""
import json, os, select, signal, sys
root, timeout = sys.argv[1], float(sys.argv[2])
sys.path[:] = [root] + [p for p in sys.path if p not in ("", ".", root)]
answers = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
import torch
import budgetsearch.profiling.networks, budgetsearch.profiling.timing
from budgetsearch.profiling.alone import _time_labelled
for line in sys.stdin:
    ask = json.loads(line)
    if ask["runtime"] == "onnxruntime":
        import onnxruntime  # loaded once, before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read)
            try:
                out = {"ms": _time_labelled(ask["label"], ask["runtime"], ask["threads"],
                                            ask["timing"], ask["onnx"])}
            except BaseException as error:
                out = {"error": type(error).__name__, "message": str(error)}
            with os.fdopen(write, "w") as pipe:
                pipe.write(json.dumps(out))
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    data = ""
    if select.select([read], [], [], timeout)[0]:
        with os.fdopen(read) as pipe:
            data = pipe.read()
    else:
        os.close(read)
        os.kill(pid, signal.SIGKILL)
        data = json.dumps({"error": "RuntimeError",
                           "message": f"killed after {timeout:g} s without an answer"})
    os.waitpid(pid, 0)
    answers.write((data or json.dumps({"error": "RuntimeError",
                                       "message": "the forked process died"})) + "\n")
    answers.flush()
"""


def supported() -> bool:
    """Whether this platform forks safely after torch is imported (Linux): elsewhere a profile
    times its networks in one process and corrects by a process factor, as before (Windows
    cannot fork; macOS forbids much of its runtime after a fork without exec)."""
    import os
    import sys

    return hasattr(os, "fork") and sys.platform.startswith("linux")


def _time_labelled(label: str, runtime: str, threads: int, timing: dict[str, Any],
                   onnx_path: str | None = None) -> list[float]:
    """In the forked process: build the network ``label`` names (onnxruntime: load its export
    from ``onnx_path`` when given) and time it alone."""
    from pathlib import Path

    import torch

    from budgetsearch.profiling.networks import build_labelled
    from budgetsearch.profiling.timing import make_runner, time_rounds

    torch.set_num_threads(threads)
    model, x = build_labelled(label)
    onnx = Path(onnx_path).read_bytes() if onnx_path else None
    run = make_runner(model, x, runtime=runtime, threads=threads, onnx_bytes=onnx)
    return [float(v) for v in time_rounds([run], threads=threads, **timing)[0]]


def time_each_alone(
    labels: Sequence[str], *, runtime: str, threads: int, rounds: int, inner: int,
    warmup: int = 3, settle: int | None = None, settle_mb: float | None = None,
    deadline_s: float | None = None, progress: Callable[[int], None] | None = None,
    passes: int = 1, onnx: Sequence[bytes] | None = None,
) -> np.ndarray:
    """Each fit-set network ``labels`` name, built and timed alone in a process of its own:
    its burst median per round, ms, shape (networks, rounds); NaN where a network ran fewer
    rounds. ``deadline_s`` bounds the whole call: each network gets what is left of it shared
    over the networks still to time (no round of a network starts after its share; its first
    always runs). ``progress`` is called with the rounds each network ran; ``onnx``: each
    network's export (onnxruntime; else each forked process exports its own).

    ``passes`` > 1 splits the rounds into that many passes over all networks, each in a new
    process, every other pass in reverse order (so that every network's passes lie as far
    apart in the run as any other's): a machine whose speed moves during the run meets every
    network in several of its states, as interleaved rounds did, and the first half of the
    rounds against the second says how far the run agreed with itself
    (:func:`~budgetsearch.profiling.timing.halves_agreement`).

    Raises:
        ValueError: a label that names no fit-set network (as the forked process raised it).
        RuntimeError: the server or a forked process failed otherwise (the server's last
            error line quoted), or a network took over :data:`CHILD_TIMEOUT_S`.
    """
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    from budgetsearch.profiling.timing import SETTLE, SETTLE_MB, check_runtime, package_root

    check_runtime(runtime)
    if passes < 1 or rounds < passes:
        raise ValueError(f"passes must be from 1 to rounds ({rounds}), got {passes}")
    if onnx is not None and len(onnx) != len(labels):
        raise ValueError(f"onnx must hold one export per label ({len(labels)}), got {len(onnx)}")
    if not labels:
        return np.empty((0, 0))
    timing: dict[str, Any] = {"inner": inner, "warmup": warmup,
                              "settle": SETTLE if settle is None else settle,
                              "settle_mb": SETTLE_MB if settle_mb is None else settle_mb}
    started, requests_left = time.perf_counter(), len(labels) * passes
    rows: list[list[float]] = [[] for _ in labels]
    with tempfile.TemporaryDirectory() as folder:
        paths: list[str | None] = [None] * len(labels)
        for i, data in enumerate(onnx or ()):
            path = Path(folder) / f"{i}.onnx"
            path.write_bytes(data)
            paths[i] = str(path)
        log = Path(folder) / "server.log"
        with log.open("w") as errors, subprocess.Popen(
                [sys.executable, "-c", _SERVER, package_root(), str(CHILD_TIMEOUT_S)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                text=True) as server:
            assert server.stdin is not None and server.stdout is not None
            try:
                for done in range(passes):
                    # the last pass takes the rounds left over
                    timing["rounds"] = rounds // passes + (rounds % passes
                                                           if done == passes - 1 else 0)
                    for i in range(len(labels))[::1 if done % 2 == 0 else -1]:
                        if deadline_s is not None:  # what is left, shared over what is left
                            left = deadline_s - (time.perf_counter() - started)
                            timing["deadline_s"] = max(0.0, left) / requests_left
                        requests_left -= 1
                        ms = _ask(server, log, {"label": labels[i], "runtime": runtime,
                                                "threads": threads, "timing": timing,
                                                "onnx": paths[i]})
                        # a network a deadline cut short keeps its columns: NaN for rounds not
                        # run
                        rows[i] += ms + [float("nan")] * (int(timing["rounds"]) - len(ms))
                        if progress is not None:
                            progress(len(ms))
            finally:
                server.stdin.close()
    per_round = np.array(rows, dtype=float).reshape(len(labels), -1)
    return per_round[:, ~np.isnan(per_round).all(axis=0)]  # rounds no network ran: dropped


def _ask(server: Any, log: Any, request: dict[str, Any]) -> list[float]:
    """One network timed by the server: its burst medians (a label naming no fit-set network
    raised as ValueError; anything else that failed as RuntimeError, quoting ``log``, the
    server's stderr)."""
    def failed(why: str) -> RuntimeError:
        lines = [t for t in log.read_text(errors="replace").splitlines() if t.strip()]
        last = f" (its last error line: {lines[-1].strip()})" if lines else ""
        return RuntimeError(f"timing {request['label']} alone: {why}{last}")

    try:
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        line = server.stdout.readline()
    except OSError as error:  # the server's end of the pipe is gone
        raise failed(f"the server process is gone ({error})") from None
    if not line:
        raise failed(f"the server process ended (exit status {server.wait()})")
    try:
        answer = json.loads(line)
    except ValueError:
        raise failed(f"the forked process's answer was cut short: {line[:80]!r}") from None
    if "error" in answer:
        if answer["error"] == "ValueError":
            raise ValueError(answer.get("message", answer["error"]))
        raise failed(f"{answer['error']}: {answer.get('message', '')}")
    return [float(v) for v in answer["ms"]]
