"""The one timer and the one method every measured latency in budgetsearch uses.

Method (written into each profile's ``provenance.timing``): batch 1, float32 (float16 in
``pytorch-cuda-fp16``), eval mode, a fixed thread count; ``warmup`` calls per network first; then
``rounds`` interleaved rounds, each visiting every network once in a shuffled order (so that load
from other processes spreads over all networks); a visit makes ``settle`` untimed calls (more for
a network with many MB of weights, until they are cached: :data:`SETTLE_MB`), then times a burst
of ``inner`` calls with ``time.perf_counter_ns`` and keeps the burst's median (the network's
steady state, as a deployed network that runs call after call meets it: see :data:`SETTLE`); a
network's time is the **minimum over rounds of the burst medians** (the round in which the
machine was quietest: on a shared machine this is the statistic that repeats from day to
day; the median inside a burst removes single preemptions).

Runtimes: ``pytorch-eager`` (``torch.inference_mode``, ``torch.set_num_threads``) and
``onnxruntime`` (``torch.onnx.export`` with the TorchScript exporter, opset 17, then an
``InferenceSession`` on the CPU execution provider with ``intra_op_num_threads`` = threads) on
the CPU; ``pytorch-cuda`` and ``pytorch-cuda-fp16`` (PyTorch eager on the first CUDA device, a copy
of the model in float32 or float16, PyTorch's default cuDNN settings) on a GPU. A CUDA call ends
with ``torch.cuda.synchronize()``, so the same host timer reads the time a caller waits for the
result (kernel launches included: at batch 1 they are most of it).

Example:
    >>> import torch
    >>> net = torch.nn.Conv2d(1, 4, 3)
    >>> ms = time_networks([(net, torch.zeros(1, 1, 8, 8))], rounds=2, inner=2, warmup=1)
    >>> ms.shape
    (1,)
"""

from __future__ import annotations

import copy
import io
import itertools
import math
import random
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

RUNTIMES = ("pytorch-eager", "onnxruntime", "pytorch-cuda", "pytorch-cuda-fp16")
#: What ``budgetsearch profile --name NAME`` appends to NAME for each runtime's profile.
RUNTIME_SUFFIX = {"pytorch-eager": "", "onnxruntime": "-ort", "pytorch-cuda": "",
                  "pytorch-cuda-fp16": "-fp16"}
#: Seconds of calls before a GPU is timed: an idle GPU runs at a fraction of its clock (an H200
#: read 345 MHz idle, 1980 MHz under load, 2026-10-28) and raises it only under work, so a few
#: warm-up calls of a small network (the drift check's, in a fresh process) would time it slow.
GPU_WARMUP_S = 0.3
#: The runtimes that run on a CUDA GPU, and the dtype each runs the network in.
CUDA_DTYPES = {"pytorch-cuda": torch.float32, "pytorch-cuda-fp16": torch.float16}
#: Untimed calls before each timed burst. The first calls of a network after another one ran are
#: slow (cold caches and allocator): on 2026-12-04 (Intel Xeon, eager, 22 torchvision networks)
#: calls 1-4 of a burst ran x1.31, x1.26, x1.15, x1.07 of the burst's steady state, so a median of
#: the first 5 read x1.13-1.15 of it, and the same networks timed alone (as deployed) ran x0.84-0.94
#: of their interleaved time. After 3 untimed calls the burst's median is within ~2% of it.
#: Profiles recorded before this (no ``settle`` in their anchors) were timed with none.
SETTLE = 3
#: One more untimed call per this many MB of a network's weights (a runner's ``weight_bytes``),
#: up to :data:`SETTLE_MAX_S` of settling. A network's weights become resident in the host's
#: shared cache only over several passes: on 2026-12-05 (Intel Xeon, eager, 1 thread), after
#: 300 MB had been written, the calls of a network ran >5% above its steady state for 4
#: (MobileNet-v2, 14 MB), 6-7 (EfficientNet-B0, RegNet-X 400MF, 21-22 MB), 10 (ResNet-18,
#: 47 MB) and 16 (GoogLeNet, 52 MB) calls; a 45 MB tensor summed after 0.2 s idle took 7 passes
#: to reach its cached speed (x2.7 first), 8 MB two; beyond ~90 MB nothing became resident
#: (resnet34, resnet50: within 5% from the first call). A profile's interleaved rounds with 3
#: untimed calls had timed such a network half-cached (ResNet-18 x1.33 of its steady state),
#: while a deployed one runs call after call with its weights cached.
SETTLE_MB = 3.0
#: The most seconds of untimed calls before a burst that :data:`SETTLE_MB` asks for.
SETTLE_MAX_S = 0.15
ONNX_OPSET = 17
TIMER = "time.perf_counter_ns"


def method_text(*, rounds: int, inner: int, warmup: int, threads: int, runtime: str,
                settle: int = SETTLE, settle_mb: float = SETTLE_MB, alone_passes: int = 0) -> str:
    """The method as one line, for the profile's ``provenance.timing`` (``alone_passes``: each
    network alone in a process of its own, in that many passes over the set:
    :mod:`budgetsearch.profiling.alone`)."""
    synchronised = ", torch.cuda.synchronize() ending each call" if runs_on_cuda(runtime) else ""
    warm = f" (then calls for {GPU_WARMUP_S:g} s: the GPU's clock)" if runs_on_cuda(runtime) else ""
    more = (f" or more, one per {settle_mb:g} MB of weights up to {SETTLE_MAX_S:g} s (the "
            f"weights cached)" if settle_mb > 0 and not runs_on_cuda(runtime) else "")
    visit = f"({settle} untimed calls{more}, then a burst of {inner} calls)"
    how = (f"{rounds} interleaved shuffled rounds x {visit}" if alone_passes < 1 else
           f"{rounds} rounds of {visit}, each network alone in a process of its own (forked "
           f"from a server that runs none), in {alone_passes} pass(es) over the set, every "
           f"other one reversed")
    return (f"{TIMER}; {runtime}, {threads} thread(s), batch 1, {runtime_dtype(runtime)}"
            f"{synchronised}; {warmup} warm-up calls{warm}, {how}; burst median, then minimum "
            f"over rounds (budgetsearch.profiling.timing)")


def in_new_process(code: str, args: Sequence[str] = (), *, stdin: str | None = None,
                   what: str = "the code", timeout_s: float = 600.0) -> str:
    """The last line ``code`` prints when run by this Python in a new process (with ``args`` and
    ``stdin``; this budgetsearch importable there): a network timed in a process of its own, as a
    deployed one runs, not beside whatever the asking process holds.

    Raises:
        RuntimeError: the process failed or printed nothing (its last error line, naming
            ``what`` was run).
    """
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root(), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", code, *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=timeout_s)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{what} in a new process failed: {last}")
    return lines[-1]


def package_root() -> str:
    """The folder this budgetsearch is imported from (a checkout's root, or site-packages): what
    a new Python process puts on its path to import the same one."""
    from pathlib import Path

    return str(Path(__file__).resolve().parents[2])


def check_runtime(runtime: str) -> None:
    """Raise ``ValueError`` for an unknown runtime name."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")


def runs_on_cuda(runtime: str) -> bool:
    """True for the runtimes that run on a CUDA GPU."""
    return runtime in CUDA_DTYPES


def runtime_dtype(runtime: str) -> str:
    """The dtype ``runtime`` runs networks in, by name (``float32``, ``float16``)."""
    return str(CUDA_DTYPES.get(runtime, torch.float32)).removeprefix("torch.")


def cuda_unavailable(runtime: str) -> str | None:
    """Why ``runtime`` cannot run here (None when it can, or is no CUDA runtime)."""
    if not runs_on_cuda(runtime):
        return None
    if not torch.cuda.is_available():
        return f"{runtime} needs a CUDA GPU and this machine has none (torch.cuda.is_available())"
    return None


def cuda_device_text() -> str:
    """This machine's first CUDA device by name, with the CUDA and cuDNN versions torch runs."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return (f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, cuDNN {cudnn}, "
            f"TF32 convs {'on' if torch.backends.cudnn.allow_tf32 else 'off'}, TF32 matmuls "
            f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'})")


def export_onnx(model: nn.Module, example_input: torch.Tensor) -> bytes:
    """The ONNX bytes of ``model`` (eval mode, TorchScript exporter: works offline)."""
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example_input,), buffer, dynamo=False, input_names=["x"],
                          output_names=["y"], opset_version=ONNX_OPSET)
    return buffer.getvalue()


def _session_options(threads: int) -> Any:
    """onnxruntime's session options as every timing here uses them (``threads`` intra-op, one
    inter-op, warnings only); raises ImportError naming the install command without it."""
    try:
        import onnxruntime as ort
    except ImportError as error:  # an optional runtime: name the install command
        raise ImportError(
            "the onnxruntime runtime needs onnxruntime: pip install onnx onnxruntime"
        ) from error
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def onnx_runner(
    onnx_bytes: bytes, example_input: torch.Tensor, *, threads: int
) -> Callable[[], Any]:
    """A zero-argument call that runs one forward pass in onnxruntime (CPU execution provider)."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, _session_options(threads),
                                   providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: example_input.numpy()}
    return lambda: session.run(None, feed)


def onnxruntime_profile(
    model: nn.Module, example_input: torch.Tensor, *, runs: int, threads: int = 1,
    warmup: int = 3,
) -> list[dict[str, Any]]:
    """onnxruntime's own profiler events (``SessionOptions.enable_profiling``) of ``warmup``
    then ``runs`` forward passes, the warm-up ones first: per pass a ``Session`` / ``model_run``
    event, and per node a ``Node`` / ``<name>_kernel_time`` event whose ``args`` hold ``op_name``
    and the input and output shapes; ``dur`` in µs. Used by the experiments that price kernels
    (``experiments/ort_*.py``); the profiler adds time per node, so these are not the timer's
    forward times."""
    import json
    import os
    import tempfile
    from pathlib import Path

    options = _session_options(threads)
    import onnxruntime as ort

    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(export_onnx(model, example_input), options,
                                       providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: example_input.numpy()}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events: list[dict[str, Any]] = json.loads(Path(session.end_profiling()).read_text())
    return events


def make_runner(
    model: nn.Module, example_input: torch.Tensor, *, runtime: str, threads: int,
    onnx_bytes: bytes | None = None,
) -> Callable[[], Any]:
    """One forward pass of ``model`` in ``runtime`` as a zero-argument call (a CUDA runtime runs
    a copy of the model on the GPU: ``model`` itself stays where it is)."""
    check_runtime(runtime)
    if runs_on_cuda(runtime):
        return _cuda_runner(model, example_input, runtime)
    if runtime == "onnxruntime":
        data = onnx_bytes if onnx_bytes is not None else export_onnx(model, example_input)
        forward = onnx_runner(data, example_input, threads=threads)
    else:
        model.eval()

        def forward() -> Any:
            with torch.inference_mode():
                return model(example_input)

    # how long its weights take to become cached: time_rounds settles it longer (SETTLE_MB)
    forward.weight_bytes = weight_bytes(model)  # type: ignore[attr-defined]
    return forward


def weight_bytes(model: nn.Module) -> int:
    """Bytes of ``model``'s parameters and buffers (each tensor once)."""
    seen = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return sum(t.numel() * t.element_size() for t in seen.values())


def settle_calls(run: Callable[[], Any], settle: int, settle_mb: float) -> int:
    """How many untimed calls :func:`time_rounds` makes of ``run`` before a burst, at most
    (see :data:`SETTLE_MB`): ``settle``, or one per ``settle_mb`` MB of its ``weight_bytes`` if
    more (``settle_mb`` 0: ``settle``; a runner that names no weight bytes: ``settle``)."""
    if settle_mb <= 0:
        return settle
    return max(settle, math.ceil(float(getattr(run, "weight_bytes", 0)) / 1e6 / settle_mb))


def _cuda_runner(model: nn.Module, example_input: torch.Tensor,
                 runtime: str) -> Callable[[], Any]:
    """One forward pass of ``model`` in ``runtime``'s dtype on the first CUDA device, waited for:
    the model itself where it is already there in that dtype, else a copy (the caller's model
    stays where it is). Its ``warmup_s`` asks :func:`time_rounds` for :data:`GPU_WARMUP_S`.

    Raises:
        RuntimeError: no CUDA device; a model that cannot be copied; one whose forward fails in
            that dtype (float32 tensors it makes itself beside float16 weights).
    """
    why = cuda_unavailable(runtime)
    if why:
        raise RuntimeError(why)
    device, dtype = torch.device("cuda", 0), CUDA_DTYPES[runtime]
    held = list(itertools.chain(model.parameters(), model.buffers()))
    if held and all(t.device == device and (t.dtype == dtype or not t.is_floating_point())
                    for t in held):
        gpu_model = model.eval()
    else:
        try:
            gpu_model = copy.deepcopy(model)
        except Exception as error:  # noqa: BLE001 (pickle's errors have no common type)
            raise RuntimeError(f"{runtime}: the model cannot be copied to the GPU "
                               f"({type(error).__name__}: {error}); move it there in "
                               f"{runtime_dtype(runtime)} yourself") from None
        gpu_model = gpu_model.eval().to(device=device, dtype=dtype)
    # integer inputs (token ids) keep their dtype; float ones take the network's
    x = (example_input.to(device=device, dtype=dtype) if example_input.is_floating_point()
         else example_input.to(device))

    def forward() -> Any:
        with torch.inference_mode():
            out = gpu_model(x)
        torch.cuda.synchronize(device)
        return out

    try:
        forward()
    except RuntimeError as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RuntimeError(f"{runtime}: the model does not run in {runtime_dtype(runtime)} "
                           f"({first})") from None
    forward.warmup_s = GPU_WARMUP_S  # type: ignore[attr-defined]
    return forward


def time_runners(
    runners: Sequence[Callable[[], Any]],
    *,
    rounds: int = 5,
    inner: int = 5,
    warmup: int = 3,
    threads: int = 1,
    seed: int = 0,
    deadline_s: float | None = None,
    progress: Callable[[int], None] | None = None,
    settle: int = SETTLE,
    settle_mb: float = SETTLE_MB,
) -> np.ndarray:
    """Milliseconds per call of each runner by the method of this module (see its docstring).

    ``deadline_s`` stops starting new rounds once that many seconds have passed (at least one
    round always runs): the drift check's time bound.
    """
    return quietest_round(time_rounds(runners, rounds=rounds, inner=inner, warmup=warmup,
                                      threads=threads, seed=seed, deadline_s=deadline_s,
                                      progress=progress, settle=settle, settle_mb=settle_mb))


def quietest_round(per_round_ms: np.ndarray) -> np.ndarray:
    """Each runner's time by this module's method: its minimum over the rounds of
    :func:`time_rounds`' matrix (no runners: none; NaN: a round not run)."""
    return np.nanmin(per_round_ms, axis=1) if len(per_round_ms) else np.empty(0)


def halves_agreement(per_round_ms: np.ndarray, tolerance: float = 0.10) -> float | None:
    """The share of runners whose time by the first half of the rounds (their minimum) is within
    ``tolerance`` of the second half's: how far a timing run agrees with itself (None with
    fewer than two rounds). A machine that swings between the halves caps what any model fitted
    to the run can reach."""
    per_round_ms = np.asarray(per_round_ms, dtype=float)
    if per_round_ms.ndim != 2 or per_round_ms.shape[1] < 2 or not len(per_round_ms):
        return None
    # equal halves (an odd round count leaves the middle round out: a minimum over more rounds
    # reads faster)
    half = per_round_ms.shape[1] // 2
    first, second = per_round_ms[:, :half].min(axis=1), per_round_ms[:, -half:].min(axis=1)
    # (a runner that ran fewer rounds, NaN, counts as not agreeing)
    return float(np.mean(np.abs(second / first - 1.0) <= tolerance))


def time_rounds(
    runners: Sequence[Callable[[], Any]],
    *,
    rounds: int = 5,
    inner: int = 5,
    warmup: int = 3,
    threads: int = 1,
    seed: int = 0,
    deadline_s: float | None = None,
    progress: Callable[[int], None] | None = None,
    settle: int = SETTLE,
    settle_mb: float = SETTLE_MB,
) -> np.ndarray:
    """Each runner's burst median in each round, ms: shape (runners, rounds run) (see
    :func:`time_runners`, which takes the minimum over the rounds).

    ``warmup`` calls of each runner come first; a runner with a ``warmup_s`` attribute (a CUDA
    runner: :data:`GPU_WARMUP_S`) has all of them called on until that many seconds have passed
    since (``warmup=0``: no warm-up of either kind). The warm-up counts against ``deadline_s``.
    """
    if rounds < 1 or inner < 1 or warmup < 0 or threads < 1 or settle < 0 or settle_mb < 0:
        raise ValueError(f"rounds, inner and threads must be ≥ 1 and warmup, settle and "
                         f"settle_mb ≥ 0, got {rounds}, {inner}, {threads}, {warmup}, {settle}, "
                         f"{settle_mb}")
    rng = random.Random(seed)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    samples: list[list[float]] = [[] for _ in runners]
    settles = [settle_calls(run, settle, settle_mb) for run in runners]
    try:
        # a runner that names a warm-up time (a GPU's: GPU_WARMUP_S) is called on, round robin,
        # until that long has passed since the warm-up began, so that the first round meets the
        # device at speed
        warm_until = time.perf_counter() + max(
            (float(getattr(run, "warmup_s", 0.0)) for run in runners), default=0.0)
        for run in runners:
            for _ in range(warmup):
                run()
        while runners and warmup and time.perf_counter() < warm_until:
            for run in runners:
                run()
        for done in range(rounds):
            if done and deadline_s is not None and time.perf_counter() - started > deadline_s:
                break
            order = list(range(len(runners)))
            rng.shuffle(order)
            for i in order:
                run = runners[i]
                # the first calls after another network are cold; a network with many MB of
                # weights runs slow until they are cached (SETTLE_MB), up to SETTLE_MAX_S
                began, calls = time.perf_counter(), 0
                while calls < settle or (calls < settles[i]
                                         and time.perf_counter() - began < SETTLE_MAX_S):
                    run()
                    calls += 1
                burst = []
                for _ in range(inner):
                    begin = time.perf_counter_ns()
                    run()
                    burst.append(time.perf_counter_ns() - begin)
                samples[i].append(statistics.median(burst) * 1e-6)
                if progress is not None:
                    progress(1)
    finally:
        torch.set_num_threads(previous)
    return np.array(samples, dtype=float) if samples else np.empty((0, 0))


def time_networks(
    networks: Sequence[tuple[nn.Module, torch.Tensor]],
    *,
    rounds: int = 5,
    inner: int = 5,
    warmup: int = 3,
    threads: int = 1,
    runtime: str = "pytorch-eager",
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Milliseconds per forward pass of each ``(model, input)`` in ``runtime``."""
    runners = [make_runner(m, x, runtime=runtime, threads=threads) for m, x in networks]
    return time_runners(runners, rounds=rounds, inner=inner, warmup=warmup, threads=threads,
                        seed=seed, progress=progress)
