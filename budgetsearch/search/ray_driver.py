"""The Ray Tune engine: the same objective on a local or remote Ray cluster.

A ``tune.Tuner`` runs :func:`~budgetsearch.search.objective.run_trial` as a function trainable
over ``SearchSpace.to_ray()``: ``OptunaSearch`` (TPE or random, maximizing ``objective``) behind
a ``ConcurrencyLimiter``, ``ASHAScheduler`` on the intermediate validation accuracy, per-trial
CPU/GPU resources (``tune.with_resources``), ``FailureConfig(max_failures=2)`` retries of a trial
whose worker died. The experiment lives in ``RUN_DIR/ray/``; ``resume=True`` restores it with
``Tuner.restore``: finished trials are kept, unfinished and errored ones restart from scratch
(trials save no checkpoints), and the searcher goes on to the trial count first asked for.

The search metric ``objective`` is the validation accuracy of a feasible trial that finished,
and 0.0 for an infeasible (priced over the target before training) or failed one, so that the
searcher learns to avoid those regions without ever seeing a missing or NaN value.

Rows land in ``RUN_DIR/trials/ray-NNNNN/row.json`` and ``RUN_DIR/results.csv``, the table the
Optuna engine writes (``NNNNN`` counts trials in the order the searcher proposed them). A trial
ASHA stops early never returns from ``run_trial``, so its row (``status="pruned"``) is written by
the driver from the last reported result; so is the row of a trial whose worker ran on another
node (its artifacts stay on that node) and of a trial that failed on every retry.

Example:
    >>> rows = run_ray(load_space("bar"), TrialSettings(model="wrn-10-1"), Path("runs/r"),
    ...                RunRequest(engine="ray", max_concurrent=2))           # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from budgetsearch.cost import Target, load_profile
from budgetsearch.search.objective import build_trial_pruner, run_trial, split_params
from budgetsearch.search.request import RunRequest
from budgetsearch.search.results import (
    ARTIFACT_COLUMNS,
    RESULT_COLUMNS,
    empty_row,
    objective_value,
    trial_rows,
    write_results,
)
from budgetsearch.search.settings import TrialSettings
from budgetsearch.search.space import SearchSpace

EXPERIMENT_NAME = "budgetsearch"
RAY_DIR = "ray"
METRIC = "objective"
MAX_FAILURES = 2
INSTALL_HINT = "pip install 'ray[tune]'"
CONNECT_TIMEOUT_S = 5.0
# Ray's own connect loop retries an unreachable address for minutes: probe it first.
_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d+)$")
ProgressFn = Callable[[dict[str, Any]], None]


def import_tune() -> Any:
    """``ray.tune``, or an ``ImportError`` that names the install command."""
    try:
        from ray import tune
    except ImportError as error:
        raise ImportError(f"--engine ray needs Ray Tune: {INSTALL_HINT} ({error})") from error
    return tune


def parse_ray_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``HOST:PORT`` address; None for ``auto``.

    The driver runs on a node of the cluster (``ray://`` client mode is not offered: the rows
    are written by a callback that runs where the driver runs).

    Raises:
        ValueError: anything else, naming the value and the accepted forms.

    Example:
        >>> parse_ray_address("10.0.0.5:6379")
        ('10.0.0.5', 6379)
    """
    if address == "auto":
        return None
    match = _ADDRESS.match(address)
    port = int(match["port"]) if match else 0
    if match is None or not 0 < port < 65536:
        raise ValueError("ray_address must be 'auto' or HOST:PORT of a Ray head (e.g. "
                         f"127.0.0.1:6379, the address 'ray start --head' prints), got {address!r}")
    return match["host"].strip("[]"), port


#: what a run asking for GPUs it cannot have can do instead
_NO_GPU_HINT = "join a cluster with GPUs: --ray-address; or --gpus-per-trial 0 to train on CPUs"


def validate_request(request: RunRequest) -> None:
    """Reject Ray settings the engine cannot run, naming the option and the value."""
    if isinstance(request.max_concurrent, bool) or not isinstance(request.max_concurrent, int) \
            or request.max_concurrent < 1:
        raise ValueError(f"max_concurrent must be an integer ≥ 1, got {request.max_concurrent!r}")
    if not (math.isfinite(request.cpus_per_trial) and request.cpus_per_trial > 0):
        raise ValueError(f"cpus_per_trial must be a finite number > 0, got "
                         f"{request.cpus_per_trial!r}")
    if not (math.isfinite(request.gpus_per_trial) and request.gpus_per_trial >= 0):
        raise ValueError(f"gpus_per_trial must be a finite number ≥ 0, got "
                         f"{request.gpus_per_trial!r}")
    if len(request.optuna.objectives) > 1:
        raise ValueError("objectives must be 'accuracy' with engine 'ray' (multi-objective "
                         f"search is Optuna-only), got {','.join(request.optuna.objectives)!r}")
    if request.ray_address is not None:
        parse_ray_address(request.ray_address)
    elif request.gpus_per_trial > 0:
        # a local Ray has this machine's CUDA devices: with fewer, no trial could ever start
        import torch

        here = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if request.gpus_per_trial > here:
            raise ValueError(f"gpus_per_trial {request.gpus_per_trial:g}: this machine has "
                             f"{here} CUDA GPU(s) for a local Ray ({_NO_GPU_HINT})")


def search_value(row: dict[str, Any]) -> float:
    """The value the searcher maximizes: accuracy of a feasible finished trial, else 0.0."""
    if row.get("status") != "ok" or not row.get("feasible"):
        return 0.0
    value = objective_value(row)
    return value if math.isfinite(value) else 0.0


def trial_name(trial: Any) -> str:
    """``ray-NNNNN`` from the searcher's counter (``experiment_tag`` starts ``N_``).

    Tune's trial ids are random hex; the counter keeps folders (and ``results.csv``) in the
    order the searcher proposed the trials, and it survives ``Tuner.restore``.
    """
    head = str(getattr(trial, "experiment_tag", "")).split("_", 1)[0]
    return f"ray-{int(head):05d}" if head.isdigit() else f"ray-{trial.trial_id}"


def _final_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """The row as Tune metrics: scalars only (Tune adds its own ``trial_id``)."""
    metrics = {k: v for k, v in row.items() if k != "trial_id" and v is not None
               and isinstance(v, (str, int, float, bool))}
    return {**metrics, METRIC: search_value(row), "final": True}


def trial_settings_for(settings: TrialSettings, request: RunRequest) -> TrialSettings:
    """Settings as a trial sees them: torch threads = its CPUs, CUDA when it holds a GPU."""
    threads = settings.threads or max(1, int(request.cpus_per_trial))
    device = "cuda" if request.gpus_per_trial > 0 and settings.torch_device == "cpu" \
        else settings.torch_device
    return replace(settings, threads=threads, torch_device=device)


def reports_per_trial(space: SearchSpace, settings: TrialSettings) -> int:
    """How many times a trial reports: once per phase of its pruner, plus its final row."""
    _, options = split_params({}, space)
    target = settings.target or Target("params", fraction=0.5)  # phases do not depend on it
    profile = settings.device_profile if target.metric == "latency_ms" else None
    return len(build_trial_pruner(space, options, target, profile).phases()) + 1


def make_trainable(space: SearchSpace, settings: TrialSettings, run_dir: Path,
                   profile_check: dict[str, Any] | None = None) -> Callable[
        [dict[str, Any]], None]:
    """The function trainable: one :func:`run_trial` per Tune trial. ``profile_check``: the
    driver's drift check of the run's device profile, which each worker prices by instead of
    timing the anchors itself among the other trials (:func:`parent_check`)."""

    def trainable(config: dict[str, Any]) -> None:
        from ray import tune

        if profile_check is not None and settings.device_profile:
            from budgetsearch.profiling.anchors import adopt_check

            adopt_check(load_profile(settings.device_profile, check=False), profile_check)
        name = tune.get_context().get_trial_name()

        def report(step: int, accuracy: float) -> bool:
            # Intermediate accuracy for ASHA; Tune itself stops the trial if ASHA says so.
            tune.report({METRIC: 0.0 if math.isnan(accuracy) else accuracy, "step": step})
            return False

        row = run_trial(dict(config), settings, run_dir / "trials" / name,
                        trial_id=name, engine="ray", space=space, report=report)
        tune.report(_final_metrics(row))

    return trainable


def parent_check(settings: TrialSettings) -> dict[str, Any] | None:
    """The drift check of the run's device profile, made (or reused) here on the driver before
    any trial runs; None when the profile is not checked here (no profile, a datasheet's, another
    machine's, or the check turned off)."""
    if not settings.device_profile:
        return None
    check = load_profile(settings.device_profile).last_check
    return dict(check) if check else None


def row_from_result(trial_id: str, config: dict[str, Any], result: dict[str, Any],
                    settings: TrialSettings, space: SearchSpace, *,
                    error: str | None = None) -> dict[str, Any]:
    """A results row rebuilt on the driver from a trial's last Tune result."""
    row = empty_row(trial_id, "ray", settings, space.pruner, dict(config))
    if result.get("final"):
        known = set(RESULT_COLUMNS) | set(ARTIFACT_COLUMNS) | {f"hp_{k}" for k in config}
        row.update({k: v for k, v in result.items() if k in known and k != "trial_id"})
    elif error is None:
        # Stopped by ASHA (or the time budget) after an intermediate report.
        row.update(status="pruned", val_accuracy=result.get(METRIC),
                   seconds=float(result.get("time_total_s", 0.0)))
    if error is not None:
        row.update(status="failed", feasible=False, failure=error[:500],
                   seconds=float(result.get("time_total_s", 0.0)))
    return row


def _recorder(tune: Any, space: SearchSpace, settings: TrialSettings, run_dir: Path,
              progress: ProgressFn | None) -> Any:
    # Tune pickles the RunConfig (callbacks included, with cloudpickle) into the experiment for
    # restore: the instance keeps plain data only, and drops the progress function when pickled.
    class RowRecorder(tune.Callback):
        """Writes the row of every ended trial and refreshes ``results.csv`` as trials end."""

        def __init__(self) -> None:
            self.space, self.settings, self.run_dir = space, settings, run_dir
            self.progress = progress
            self.trials: list[Any] = []

        def __getstate__(self) -> dict[str, Any]:
            return {**self.__dict__, "progress": None}

        def record(self, trial: Any, error: str | None, *, note: str | None = None) -> None:
            """Write the trial's row (rebuilt from its last result when the worker wrote none)."""
            name = trial_name(trial)
            trial_dir = self.run_dir / "trials" / name
            path = trial_dir / "row.json"
            if path.is_file() and error is None:
                row = json.loads(path.read_text())
            else:
                row = row_from_result(name, trial.config, trial.last_result or {},
                                      self.settings, self.space, error=error)
                if note is not None:
                    row["failure"] = note
                trial_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(row, default=str))
            write_results(self.run_dir, trial_rows(self.run_dir))
            if self.progress is not None:
                self.progress(row)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                              **info: Any) -> None:
            self.record(trial, None)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any,
                           **info: Any) -> None:
            error = trial.get_error() if hasattr(trial, "get_error") else None
            lines = str(error).strip().splitlines() if error is not None else []
            reason = f"Ray trial error after {MAX_FAILURES} retries"
            self.record(trial, reason + (f": {lines[-1]}" if lines else ""))

        def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
            # Trials still running when the time budget ran out (or at Ctrl-C) are stopped
            # without on_trial_complete: the driver decides what their rows say.
            self.trials = list(trials)

        def unrecorded(self) -> list[Any]:
            """Trials of the experiment that have no row yet."""
            return [t for t in self.trials
                    if not (self.run_dir / "trials" / trial_name(t) / "row.json").is_file()]

    return RowRecorder()


#: How long the Ray handshake probe may take (a Python start, ``import ray`` and one GCS call).
PROBE_TIMEOUT_S = 20.0
_PROBE_OK = "budgetsearch-ray-gcs-ok"
_ANSWERED: set[str] = set()  # addresses whose probe passed in this process
# Run in a child process: Ray's GCS client retries an address that does not answer for minutes
# inside C++ code that a thread of this process could not interrupt.
_PROBE = (
    "import sys\n"
    "from ray._raylet import GcsClient\n"
    "GcsClient(address=sys.argv[1]).check_alive([], timeout=float(sys.argv[2]))\n"
    f"print({_PROBE_OK!r})\n"
)


def _token_hint(address: str) -> str:
    # Ray ≥ 2.5x clusters use token authentication, but a driver given an explicit address
    # sends its token only when told to (Ray's choice: a token is not offered to any host).
    return ("; if the cluster uses token authentication, set RAY_AUTH_MODE=token (token from "
            "~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)"
            if address != "auto" and os.environ.get("RAY_AUTH_MODE") != "token" else "")


def check_reachable(address: str, *, timeout_s: float | None = None) -> None:
    """Raise ``ConnectionError`` (one line) unless a Ray head answers at ``address``.

    A TCP connect first (a closed port fails at once), then a real Ray handshake: a child
    process asks the cluster's GCS whether it is alive (``GcsClient.check_alive``), killed
    after ``timeout_s``. An open port that is not Ray (a web server, a silent socket) fails
    here, before the run folder exists and before any training. ``timeout_s`` None:
    :data:`PROBE_TIMEOUT_S`.
    """
    timeout_s = PROBE_TIMEOUT_S if timeout_s is None else timeout_s
    parsed = parse_ray_address(address)
    if parsed is None or address in _ANSWERED:
        return
    advice = "start one with 'ray start --head --port PORT' and pass the address it prints"
    try:
        socket.create_connection(parsed, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ConnectionError(
            f"no Ray cluster at ray_address {address!r} ({error.strerror or error}); "
            f"{advice}") from None
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, address, str(timeout_s / 3)],
                              capture_output=True, text=True, timeout=timeout_s, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ConnectionError(
            f"no Ray cluster at ray_address {address!r}: the port is open but did not answer "
            f"Ray's handshake (GCS check_alive) within {timeout_s:g} s; {advice}") from None
    if done.returncode != 0 or _PROBE_OK not in done.stdout:
        lines = [line for line in (done.stderr or "").strip().splitlines() if line.strip()]
        why = lines[-1].strip()[:200] if lines else f"exit code {done.returncode}"
        raise ConnectionError(
            f"no Ray cluster at ray_address {address!r}: Ray's handshake (GCS check_alive) "
            f"failed ({why}){_token_hint(address)}; {advice}")
    _ANSWERED.add(address)


def check_experiment(run_dir: Path) -> None:
    """Before a resume writes anything: trial rows of a Ray run need its Tune experiment.

    Without ``RUN_DIR/ray/`` a resume would start a new experiment whose trials are named
    ``ray-00000``, ``ray-00001``, ... again and overwrite the finished ones.

    Raises:
        ValueError: finished trial rows exist but the experiment cannot be restored.
    """
    rows = sorted((run_dir / "trials").glob("ray-*/row.json"))
    if not rows:
        return
    tune = import_tune()
    experiment = run_dir / RAY_DIR / EXPERIMENT_NAME
    if not tune.Tuner.can_restore(str(experiment.resolve())):
        raise ValueError(f"cannot resume {run_dir}: {len(rows)} finished Ray trial(s) are in "
                         f"{run_dir / 'trials'} but the Tune experiment {experiment} is missing "
                         "or damaged, and a new one would overwrite them; start a new run "
                         "(another --out)")


def _init_ray(address: str | None) -> bool:
    """Connect to ``address`` (None: a new local instance). True when this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR"}
    if address is None:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **kwargs)
        return True
    check_reachable(address)
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as error:  # 'auto' with no cluster running, or refused
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = _token_hint(address)
        raise ConnectionError(f"cannot join the Ray cluster at ray_address {address!r}: "
                              f"{first}{hint}") from None
    return True


def _check_gpus(ray: Any, gpus_per_trial: float, *, local: bool) -> None:
    """No trial could start when it asks for more GPUs than one node has (a trial's resources
    come from one node; Tune would leave every trial pending until the run's timeout): on a
    local Ray that is final (``ValueError``); a joined cluster may still add such a node (an
    autoscaler), so it gets one line on stderr."""
    if gpus_per_trial <= 0:
        return
    largest = max((float(node.get("Resources", {}).get("GPU", 0.0))
                   for node in ray.nodes() if node.get("Alive", True)), default=0.0)
    if gpus_per_trial <= largest:
        return
    text = (f"gpus_per_trial {gpus_per_trial:g}: the largest node of the Ray cluster has "
            f"{largest:g} GPU(s), so no trial can start")
    if local:
        raise ValueError(f"{text} ({_NO_GPU_HINT})")
    print(f"budgetsearch: {text} until a node with {gpus_per_trial:g} joins (an autoscaler's); "
          f"the trials wait", file=sys.stderr)


def run_ray(space: SearchSpace, settings: TrialSettings, run_dir: Path, request: RunRequest, *,
            resume: bool = False, progress: ProgressFn | None = None) -> list[dict[str, Any]]:
    """Run (or, with ``resume``, restore) the Tune experiment; returns every trial's row.

    ``request.ray_address``: None starts a local Ray (all CPUs of this machine); ``"auto"`` or
    ``HOST:PORT`` joins a running cluster (``ray start --head``). Trials need ``run_dir`` on a
    filesystem the workers share for their artifacts; the rows reach ``results.csv`` either way.
    A timeout (``request.optuna.timeout_s``) stops the trials still running (recorded as
    ``pruned``), unlike the Optuna engine, which lets them finish. ``results.csv`` is refreshed
    as each trial ends.

    Raises:
        ImportError: Ray Tune is not installed (the message names the install command).
        ValueError: a bad Ray setting (see :func:`validate_request`).
        ConnectionError: no Ray cluster at ``request.ray_address``.
        KeyboardInterrupt: the experiment was interrupted (Ctrl-C); its state is saved and
            ``resume=True`` continues it.
    """
    validate_request(request)
    tune = import_tune()
    import ray
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    options = request.optuna
    settings = trial_settings_for(settings, request)
    run_dir = run_dir.resolve()
    storage = run_dir / RAY_DIR
    experiment = storage / EXPERIMENT_NAME
    if not resume:
        shutil.rmtree(storage, ignore_errors=True)
    # The classic reporter honours verbose=0; the new one still prints tables and hints.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    check = parent_check(settings)  # before Ray's processes start: they would slow the check
    started = _init_ray(request.ray_address)
    try:
        _check_gpus(ray, request.gpus_per_trial, local=request.ray_address is None)
        trainable = tune.with_resources(
            make_trainable(space, settings, run_dir, check),
            {"cpu": request.cpus_per_trial, "gpu": request.gpus_per_trial})
        callback = _recorder(tune, space, settings, run_dir, progress)
        if resume and tune.Tuner.can_restore(str(experiment)):
            # No checkpoints are saved, so errored trials restart from scratch.
            tuner = tune.Tuner.restore(str(experiment), trainable, restart_errored=True)
            # The restored RunConfig brings back the pickled recorder without its progress
            # function; Tuner.restore takes no callbacks, so swap in this run's recorder.
            run_config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)
            if run_config is not None:
                run_config.callbacks = [callback]
        else:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = (optuna.samplers.RandomSampler(seed=options.seed)
                       if options.sampler == "random" else
                       optuna.samplers.TPESampler(seed=options.seed,
                                                  n_startup_trials=options.n_startup_trials))
            searcher = ConcurrencyLimiter(
                OptunaSearch(metric=METRIC, mode="max", sampler=sampler),
                max_concurrent=request.max_concurrent)
            # One report per phase of the pruner plus the final row.
            scheduler = (ASHAScheduler(time_attr="training_iteration",
                                       max_t=reports_per_trial(space, settings), grace_period=1,
                                       reduction_factor=2)
                         if options.prune else FIFOScheduler())
            tuner = tune.Tuner(
                trainable,
                param_space=space.to_ray(),
                tune_config=tune.TuneConfig(
                    metric=METRIC, mode="max", search_alg=searcher, scheduler=scheduler,
                    num_samples=options.trials if options.trials is not None else -1,
                    time_budget_s=options.timeout_s, trial_name_creator=trial_name),
                run_config=tune.RunConfig(
                    storage_path=str(storage), name=EXPERIMENT_NAME, verbose=0,
                    failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                    callbacks=[callback]),
            )
        interrupted = _fit(tuner)
    finally:
        if started:
            ray.shutdown()
    if interrupted:
        write_results(run_dir, trial_rows(run_dir))
        raise KeyboardInterrupt(f"Ray Tune experiment interrupted, its state saved in {experiment}"
                                "; continue it with --resume")
    for trial in callback.unrecorded():  # stopped by the time budget
        callback.record(trial, None, note="stopped: the time budget (--timeout) ran out")
    rows = trial_rows(run_dir)
    write_results(run_dir, rows)
    return rows


def _fit(tuner: Any) -> bool:
    """``tuner.fit()``; True when Ctrl-C ended it (Tune then saves its state and returns).

    Tune's SIGINT handler puts the previous handler back when it fires, and stays installed
    otherwise: that is the only trace an interrupt leaves that the caller can read.
    """
    if threading.current_thread() is not threading.main_thread() or \
            os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") != "0":
        tuner.fit()
        return False
    before = signal.getsignal(signal.SIGINT)
    try:
        tuner.fit()
    finally:
        after = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, before)
    return after is before
