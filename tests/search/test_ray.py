"""The Ray Tune engine: validation (fast) and real sweeps on a local Ray cluster (``-m ray``).

The ``ray``-marked tests start one head node with ``ray start --head`` on a free port (in its own
``--temp-dir``), run tiny sweeps of wrn-10-1 on synthetic images against its address through the
CLI, and stop exactly the processes of that node afterwards. ``ray stop --force`` is not used:
it ends every Ray process of the machine, and this machine is shared.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from budgetsearch.cli import main
from budgetsearch.search.objective import TrialSettings
from budgetsearch.search.optuna_driver import OptunaOptions
from budgetsearch.search.ray_driver import (
    check_reachable,
    parse_ray_address,
    row_from_result,
    search_value,
    trial_name,
    trial_settings_for,
    validate_request,
)
from budgetsearch.search.runner import RunRequest
from budgetsearch.search.space import load_space

BIN = Path(sys.executable).parent
# One searched value, the rest fixed: every trial trains the same short while (~3 s).
SPACE = """\
pruner: bar
parameters:
  lam: {type: float, low: 0.1, high: 1.0, log: true}
fixed: {epochs: 1.0, budget: 0.6, kd_alpha: 0.0}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Fast: validation and pure helpers


@pytest.mark.parametrize(("change", "message"), [
    ({"max_concurrent": 0}, "max_concurrent must be an integer ≥ 1, got 0"),
    ({"max_concurrent": 1.5}, "max_concurrent must be an integer ≥ 1, got 1.5"),
    ({"max_concurrent": True}, "max_concurrent must be an integer ≥ 1, got True"),
    ({"cpus_per_trial": 0.0}, "cpus_per_trial must be a finite number > 0, got 0.0"),
    ({"cpus_per_trial": float("nan")}, "cpus_per_trial must be a finite number > 0, got nan"),
    ({"gpus_per_trial": -1.0}, "gpus_per_trial must be a finite number ≥ 0, got -1.0"),
    ({"ray_address": "localhost"}, "ray_address must be 'auto' or HOST:PORT"),
    ({"ray_address": "10.0.0.5:70000"}, "got '10.0.0.5:70000'"),
    ({"optuna": OptunaOptions(objectives=("accuracy", "latency"))},
     "multi-objective search is Optuna-only"),
])
def test_validate_request_names_the_bad_value(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_request(RunRequest(engine="ray", **change))
    validate_request(RunRequest(engine="ray", max_concurrent=4, cpus_per_trial=0.5,
                                gpus_per_trial=0.25, ray_address="auto"))


def test_parse_ray_address() -> None:
    assert parse_ray_address("auto") is None
    assert parse_ray_address("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert parse_ray_address("head-node.local:10001") == ("head-node.local", 10001)
    assert parse_ray_address("[::1]:6379") == ("::1", 6379)
    for bad in ("", "6379", "host:", "host:0", "ray://host:10001", "host:port"):
        with pytest.raises(ValueError, match=f"got {bad!r}"):
            parse_ray_address(bad)


def test_unreachable_address_fails_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"no Ray cluster at ray_address '127\.0\.0\.1:"):
        check_reachable(f"127.0.0.1:{_free_port()}")
    assert time.perf_counter() - start < 5


def test_trial_names_follow_the_searcher_counter() -> None:
    assert trial_name(SimpleNamespace(experiment_tag="7_lam=0.3", trial_id="ab12cd34")) == \
        "ray-00007"
    assert trial_name(SimpleNamespace(experiment_tag="", trial_id="ab12cd34")) == "ray-ab12cd34"


def test_rows_rebuilt_from_tune_results() -> None:
    space, settings = load_space("bar"), TrialSettings(model="wrn-10-1")
    config = {"lam": 0.5}
    final = row_from_result("ray-00001", config, {"final": True, "status": "ok", "accuracy": 0.8,
                                                  "feasible": True, "objective": 0.8,
                                                  "trial_id": "ab12"}, settings, space)
    assert final["trial_id"] == "ray-00001" and final["accuracy"] == 0.8 and final["feasible"]
    assert "objective" not in final and final["hp_lam"] == 0.5
    pruned = row_from_result("ray-00002", config, {"objective": 0.3, "time_total_s": 2.0},
                             settings, space)
    assert pruned["status"] == "pruned" and pruned["val_accuracy"] == 0.3
    failed = row_from_result("ray-00003", config, {}, settings, space, error="worker died")
    assert failed["status"] == "failed" and failed["failure"] == "worker died"
    assert search_value(final) == 0.8 and search_value(pruned) == 0.0
    assert search_value({**final, "feasible": False}) == 0.0


def test_trial_settings_follow_resources() -> None:
    base = TrialSettings()
    assert trial_settings_for(base, RunRequest(cpus_per_trial=2.0)).threads == 2
    assert trial_settings_for(base, RunRequest(cpus_per_trial=0.5)).threads == 1
    assert trial_settings_for(TrialSettings(threads=3), RunRequest()).threads == 3
    assert trial_settings_for(base, RunRequest(gpus_per_trial=1.0)).torch_device == "cuda"


@pytest.mark.parametrize(("args", "message"), [
    (["--engine", "ray", "--max-concurrent", "0"], "expected a positive integer, got '0'"),
    (["--engine", "ray", "--gpus-per-trial", "-1"], "expected a finite number ≥ 0, got '-1'"),
    (["--engine", "ray", "--cpus-per-trial", "inf"], "expected a positive finite number"),
    (["--max-concurrent", "2"], "--max-concurrent need(s) --engine ray"),
    (["--engine", "ray", "--ray-address", "nowhere"], "ray_address must be 'auto' or HOST:PORT"),
    (["--engine", "ray", "--objectives", "accuracy,latency"], "Optuna-only"),
    (["--engine", "ray", "--gpus-per-trial", "99"],
     "gpus_per_trial 99: this machine has"),
    (["--engine", "ray", "--gpus-per-trial", "0.5"],
     "gpus_per_trial 0.5: this machine has 0 CUDA GPU(s) for a local Ray"),
])
def test_cli_rejects_bad_ray_options_in_one_line(
        args: list[str], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / "run").exists()


def test_a_trial_asking_more_gpus_than_a_node_has_is_refused_or_named(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A trial's resources come from one node: two 1-GPU nodes cannot start a 2-GPU trial. On a
    local Ray that is final; a joined cluster may add a node (an autoscaler): one line."""
    from budgetsearch.search.ray_driver import _check_gpus

    two_nodes = SimpleNamespace(nodes=lambda: [
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"Alive": False, "Resources": {"GPU": 8.0}}])  # a dead node counts for nothing
    _check_gpus(two_nodes, 1.0, local=True)
    _check_gpus(two_nodes, 0.0, local=True)
    with pytest.raises(ValueError, match=r"gpus_per_trial 2: the largest node of the Ray "
                                         r"cluster has 1 GPU\(s\)"):
        _check_gpus(two_nodes, 2.0, local=True)
    _check_gpus(two_nodes, 2.0, local=False)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "until a node with 2 joins" in err


def test_cli_unreachable_cluster_is_a_usage_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{_free_port()}"
    assert main(["run", "--engine", "ray", "--ray-address", address,
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"no Ray cluster at ray_address '{address}'" in err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# Real sweeps on a local Ray cluster (pytest -m ray)


def _processes() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, command line)}`` of every process, read from ``/proc`` (Linux)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name in (…) may hold spaces
        table[int(entry.name)] = (ppid, cmdline)
    return table


def _node_processes(temp_dir: Path) -> dict[int, str]:
    """``{pid: command line}`` of the head node started in ``temp_dir`` and its descendants."""
    table = _processes()
    found = {pid for pid, (_, cmd) in table.items() if str(temp_dir) in cmd}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return {pid: table[pid][1] for pid in found}


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue


def _stop_node(temp_dir: Path) -> None:
    """End the processes of this one node (TERM, then KILL what is left after 10 s)."""
    _signal(_node_processes(temp_dir), signal.SIGTERM)
    end = time.monotonic() + 10
    while _node_processes(temp_dir) and time.monotonic() < end:
        time.sleep(0.2)
    _signal(_node_processes(temp_dir), signal.SIGKILL)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[SimpleNamespace]:
    """A one-node Ray cluster (2 CPUs) on 127.0.0.1 and a free port, with its own auth token.

    Ray 2.60 clusters use token authentication, and a driver given an explicit address only
    sends a token when ``RAY_AUTH_MODE=token``: the token file is private to this cluster, not
    the shared ``~/.ray/auth_token``.
    """
    port = _free_port()
    # Short: Ray's Unix socket paths under the temp dir must fit in 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        env.setenv("RAY_AUTH_MODE", "token")
        env.setenv("RAY_AUTH_TOKEN_PATH", str(token))
        try:
            subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address",
                            "127.0.0.1", "--port", str(port), "--num-cpus", "2",
                            "--include-dashboard", "false", "--temp-dir", str(temp_dir),
                            "--disable-usage-stats"],
                           check=True, capture_output=True, timeout=180)
            yield SimpleNamespace(address=f"127.0.0.1:{port}", temp_dir=temp_dir)
        finally:
            _stop_node(temp_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)


def _run_args(address: str, out: Path, tmp_path: Path, *extra: str) -> list[str]:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return ["run", "--engine", "ray", "--ray-address", address, "--space", str(space),
            "--model", "wrn-10-1", "--dataset", "synthetic", "--train-subset", "32",
            "--batch-size", "16", "--threads", "1", "--no-pruning", "--no-progress",
            "--out", str(out), *extra]


def _cli(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([str(BIN / "budgetsearch"), *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str,
              timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep ended (rc {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _results(out: Path) -> pd.DataFrame:
    """The run's trial rows, without the unpruned reference's (trained once, before any trial)."""
    path = out / "results.csv"
    if not path.is_file():
        return pd.DataFrame({"trial_id": []})
    table = pd.read_csv(path)
    return table[table["kind"] != "reference"].reset_index(drop=True)


def _trial_failures(out: Path) -> dict[str, int]:
    """``{trial name: retries}`` from Tune's own experiment state."""
    [state] = (out / "ray" / "budgetsearch").glob("experiment_state-*.json")
    failures = {}
    for trial_json, runtime_json in json.loads(state.read_text())["trial_data"]:
        trial, runtime = json.loads(trial_json), json.loads(runtime_json)
        failures[trial["custom_trial_name"]] = runtime["num_failures"]
    return failures


@pytest.mark.ray
def test_handshake_probe_accepts_a_real_head(ray_cluster: SimpleNamespace) -> None:
    """The GCS probe (issue 18: an open port that is not Ray is refused) passes a real head."""
    from budgetsearch.search import ray_driver

    ray_driver._ANSWERED.discard(ray_cluster.address)
    start = time.monotonic()
    check_reachable(ray_cluster.address)
    assert ray_cluster.address in ray_driver._ANSWERED
    assert time.monotonic() - start < ray_driver.PROBE_TIMEOUT_S


@pytest.mark.ray
def test_sweep_on_a_cluster_fills_results_csv(ray_cluster: SimpleNamespace, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    out = tmp_path / "run"
    code = main(_run_args(ray_cluster.address, out, tmp_path, "--trials", "3",
                          "--max-concurrent", "2"))
    assert code == 0, capsys.readouterr().err
    table = _results(out)
    assert list(table["trial_id"]) == ["ray-00001", "ray-00002", "ray-00003"]
    assert set(table["engine"]) == {"ray"} and set(table["status"]) == {"ok"}
    assert table["hp_lam"].between(0.1, 1.0).all() and table["params"].gt(0).all()
    assert all((out / p).is_file() for p in table["model_path"])  # relative to the run folder
    assert not ray.is_initialized()  # the driver let go of the cluster


@pytest.mark.ray
def test_killed_worker_is_retried_and_the_sweep_finishes(ray_cluster: SimpleNamespace,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _cli(_run_args(ray_cluster.address, out, tmp_path, "--trials", "2"))
    first = out / "trials" / "ray-00001"
    _wait_for(first.is_dir, proc, "the first trial started")

    def trial_workers() -> list[int]:
        return [pid for pid, cmd in _node_processes(ray_cluster.temp_dir).items()
                # The function trainable runs as an ImplicitFunc actor (its process title).
                if cmd.startswith("ray::") and ("ImplicitFunc" in cmd or "trainable" in cmd)]

    _wait_for(lambda: bool(trial_workers()), proc, "the trial's worker appeared")
    assert not (first / "row.json").exists()  # killed mid-trial
    _signal(trial_workers(), signal.SIGKILL)
    out_text, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    table = _results(out)
    assert list(table["trial_id"]) == ["ray-00001", "ray-00002"]
    assert set(table["status"]) == {"ok"}
    assert _trial_failures(out) == {"ray-00001": 1, "ray-00002": 0}


@pytest.mark.ray
def test_interrupted_sweep_resumes_without_redoing_trials(
        ray_cluster: SimpleNamespace, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = _run_args(ray_cluster.address, out, tmp_path, "--trials", "3")
    proc = _cli(args)
    _wait_for(lambda: len(_results(out)) >= 1, proc, "the first trial finished")
    proc.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves the experiment state and stops
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "--resume" in err, err
    done = _results(out)
    assert 1 <= len(done) < 3
    model_times = {t: (out / p).stat().st_mtime for t, p in zip(done["trial_id"],
                                                                  done["model_path"])}

    assert main([*args, "--resume"]) == 0, capsys.readouterr().err
    table = _results(out)
    assert list(table["trial_id"]) == ["ray-00001", "ray-00002", "ray-00003"]
    assert set(table["status"]) == {"ok"}
    kept = table.set_index("trial_id").loc[list(done["trial_id"]), "seconds"]
    assert list(kept) == pytest.approx(list(done["seconds"]))  # the same rows, not redone
    for trial_id, mtime in model_times.items():
        assert (out / table.set_index("trial_id").loc[trial_id, "model_path"]).stat().st_mtime \
            == mtime
