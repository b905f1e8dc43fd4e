"""GPU profiles (``pytorch-cuda``, ``pytorch-cuda-fp16``): fitted, saved and checked like the
CPU's; refused where no CUDA GPU is; timed for real only under the ``gpu`` marker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from budgetsearch.cli import main
from budgetsearch.cost import load_profile, save_profile
from budgetsearch.profiling import anchors
from budgetsearch.profiling.fit import (
    FEATURES,
    build_fit_set,
    channel_block_of,
    features_for,
    fit_profile,
    profile_from_coefficients,
)
from budgetsearch.profiling.timing import make_runner, method_text, runtime_dtype

CUDA_RUNTIMES = ("pytorch-cuda", "pytorch-cuda-fp16")
HAS_CUDA = torch.cuda.is_available()


def _no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("runtime", CUDA_RUNTIMES)
def test_a_gpu_profile_fits_the_per_kind_terms_in_its_own_dtype(runtime: str) -> None:
    # cuDNN picks its kernels: none of the CPU's dispatch, SIMD block or small-GEMM terms
    assert features_for(runtime) == FEATURES
    assert channel_block_of(runtime, {"cpu_flags": "avx2 avx512f"}) == 1
    assert channel_block_of("pytorch-eager", {"cpu_flags": "avx2 avx512f"}) == 16
    profile = profile_from_coefficients("g", np.ones(len(FEATURES) + 1), provenance={},
                                        description="", runtime=runtime)
    assert profile.conv_dispatch == "" and not profile.prepacked_weights
    assert profile.bytes_per_element == (2 if runtime.endswith("fp16") else 4)
    assert not profile.folds_constants  # PyTorch runs each op on every call, on a GPU too
    assert runtime_dtype(runtime) in method_text(rounds=1, inner=1, warmup=1, threads=1,
                                                 runtime=runtime)
    assert "synchronize" in method_text(rounds=1, inner=1, warmup=1, threads=1, runtime=runtime)


def test_a_fitted_fp16_profile_recovers_its_oracle_and_loads(tmp_path: Path) -> None:
    """Oracle: times that are a known fp16 profile's own predictions; the fit gives them back,
    and the saved profile validates, says it stands for the GPU and prices in 2-byte elements
    (a float16 activation of 1 MB costs what 0.5 M elements cost, not 0.25 M)."""
    fit, holdout = build_fit_set(40, 8, seed=0)
    rng = np.random.default_rng(1)
    truth = profile_from_coefficients("t", rng.uniform(0.001, 0.05, len(FEATURES) + 1),
                                      provenance={}, description="",
                                      runtime="pytorch-cuda-fp16")
    def times(networks: list) -> np.ndarray:
        return np.array([n.inventory.predict_latency_ms(truth, kept_channels=n.kept_channels)
                         for n in networks])
    provenance = {"runtime": "pytorch-cuda-fp16", "device": "cuda", "gpu": "Test GPU 80GB",
                  "cpu": "Some Host CPU (16 logical CPUs visible)", "dtype": "float16",
                  "threads": 1, "date": "2026-12-04 18:00:00"}
    profile, rows, _ = fit_profile("box-fp16", fit, holdout, times(fit), times(holdout),
                                   runtime="pytorch-cuda-fp16", provenance=provenance,
                                   timing={"rounds": 2, "inner": 2})
    assert profile.predictor_error.within_10pct == 1.0
    assert max(abs(r["error_pct"]) for r in rows) < 1.0
    assert "Test GPU 80GB" in profile.description and "float16" in profile.description
    save_profile(profile, tmp_path / "box-fp16.yaml")
    loaded = load_profile(tmp_path / "box-fp16.yaml", check=False)
    assert loaded.runtime == "pytorch-cuda-fp16" and loaded.bytes_per_element == 2
    assert loaded.provenance["gpu"] == "Test GPU 80GB"
    net = holdout[0]
    assert net.inventory.predict_latency_ms(loaded, kept_channels=net.kept_channels) == \
        pytest.approx(times([net])[0], rel=0.01)


def test_a_gpu_profile_is_checked_only_on_a_gpu_of_its_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    profile = replace(load_profile("cpu-2core-x86", check=False), provenance={
        "runtime": "pytorch-cuda", "gpu": "NVIDIA H200", "cpu": "Another CPU", "threads": 1})
    _no_cuda(monkeypatch)
    assert anchors.not_this_machine(profile) == (
        "measured on NVIDIA H200; this machine has no CUDA device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    assert "not on this machine's NVIDIA A100" in anchors.not_this_machine(profile)
    # the host CPU is not the GPU profile's machine: the check's overhead factor follows it
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert anchors.not_this_machine(profile) is None


@pytest.mark.parametrize("runtime", ["cuda", "pytorch-cuda", "pytorch-cuda-fp16"])
def test_profiling_a_gpu_without_one_is_one_line_and_writes_nothing(
        runtime: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_cuda(monkeypatch)
    out = tmp_path / "gpu.yaml"
    assert main(["profile", "--name", "gpu", "--out", str(out), "--runtime", runtime]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--runtime {runtime}" in err and "no" in err
    assert "CUDA" in err and not list(tmp_path.iterdir())


def test_a_cuda_runner_without_a_gpu_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_cuda(monkeypatch)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        make_runner(torch.nn.Linear(2, 2), torch.zeros(1, 2), runtime="pytorch-cuda", threads=1)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_a_cuda_runner_runs_a_copy_in_its_dtype_and_leaves_the_model_be() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    x = torch.randn(1, 3, 16, 16)
    for runtime, dtype in (("pytorch-cuda", torch.float32), ("pytorch-cuda-fp16", torch.float16)):
        out = make_runner(model, x, runtime=runtime, threads=1)()
        assert out.is_cuda and out.dtype == dtype
        assert torch.allclose(out.float().cpu(), model(x), atol=1e-2, rtol=1e-2)
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_profile_writes_both_gpu_profiles(tmp_path: Path) -> None:
    out = tmp_path / "gpu.yaml"
    assert main(["profile", "--name", "gpu", "--out", str(out), "--runtime", "cuda", "--fit",
                 "18", "--holdout", "4", "--rounds", "2", "--no-progress"]) == 0
    for path, runtime in ((out, "pytorch-cuda"), (tmp_path / "gpu-fp16.yaml",
                                                   "pytorch-cuda-fp16")):
        profile = load_profile(path, check=False)
        assert profile.runtime == runtime and profile.predictor_error.networks == 4
        assert profile.provenance["gpu"] == torch.cuda.get_device_name(0)
        assert anchors.not_this_machine(profile) is None


def test_a_runner_that_names_a_warm_up_time_is_called_that_long_before_the_rounds() -> None:
    """An idle GPU clocks down: its runners (``warmup_s``) are called on until the device is at
    speed; a CPU runner gets its warm-up calls only."""
    import time

    from budgetsearch.profiling.timing import time_rounds

    calls: list[float] = []

    def gpu_like() -> None:
        calls.append(time.perf_counter())

    gpu_like.warmup_s = 0.05  # type: ignore[attr-defined]
    started = time.perf_counter()
    time_rounds([gpu_like], rounds=1, inner=1, warmup=1, settle=0)
    assert calls[-2] - started >= 0.05 and len(calls) > 3  # warmed ≥ 0.05 s, then one timed
    calls.clear()
    time_rounds([gpu_like], rounds=1, inner=1, warmup=0, settle=0)
    assert len(calls) == 1  # warmup=0: no warm-up of either kind
    cpu_calls: list[int] = []
    time_rounds([lambda: cpu_calls.append(1)], rounds=1, inner=1, warmup=2, settle=0)
    assert len(cpu_calls) == 3


def test_devices_says_a_gpu_profile_is_made_on_a_gpu(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGETSEARCH_DRIFT_CHECK", "0")
    _no_cuda(monkeypatch)
    assert main(["devices", "--no-check"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("gpu-h200 "))
    assert "not checked here: measured on NVIDIA H200; this machine has no CUDA device" in line
    assert "a GPU is measured on a machine with one: 'budgetsearch profile --name NAME " \
        "--runtime cuda'" in line


def test_the_re_profile_hint_names_the_command_that_writes_this_profile() -> None:
    """``--name X --runtime pytorch-cuda-fp16`` writes X-fp16: the hint names X, with the sizes
    the profile was fitted at."""
    from budgetsearch.profiling.anchors import reprofile_command

    assert reprofile_command(load_profile("gpu-h200-fp16", check=False)) == (
        "budgetsearch profile --name gpu-h200 --runtime pytorch-cuda-fp16 --input-size 128 "
        "--input-size 224 --force")
    assert reprofile_command(load_profile("cpu-2core-x86-ort", check=False)) == (
        "budgetsearch profile --name cpu-2core-x86 --runtime onnxruntime --force")


def test_a_gpu_profile_re_fits_its_drift_at_the_sizes_it_was_fitted_at() -> None:
    """At 28-64 px a GPU runs launch-bound: its re-fit draws at the profile's own sizes (224 px
    on the shipped pair), a CPU's at the default ones."""
    from budgetsearch.profiling.recalibrate import draw_shapes

    assert (1, 3, 224, 224) in draw_shapes(load_profile("gpu-h200", check=False))
    assert draw_shapes(load_profile("cpu-2core-x86-xeon", check=False)) is None
