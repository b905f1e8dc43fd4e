"""The public Python API: price a network, prune it in your own loop, search, load the winner.

Everything here is re-exported by ``import budgetsearch``; the README's "Python API" section is
executed by a test.

Example:
    >>> import torch
    >>> from torchvision.models import resnet18
    >>> cost = price(resnet18(num_classes=10), torch.zeros(1, 3, 32, 32), device="jetson")
    >>> int(cost.params), cost.latency_ms > 0
    (11181642, True)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from budgetsearch.cost import Cost, DeviceProfile, Target, layer_inventory, load_profile
from budgetsearch.data import register_dataset
from budgetsearch.models import canonical_model_spec, model_label, resolve_model_spec
from budgetsearch.models.registry import model_names, register_model
from budgetsearch.profiling import anchors as _drift_check  # noqa: F401 (registers it)
from budgetsearch.search.optuna_driver import OptunaOptions
from budgetsearch.search.request import RunRequest
from budgetsearch.search.results import load_row_model, select_trial
from budgetsearch.search.runner import RunSummary, run_search
from budgetsearch.search.settings import TrialSettings

_counter = itertools.count()


def price(model: nn.Module, example_input: torch.Tensor, *,
          device: str | DeviceProfile | None = None) -> Cost:
    """Parameters, FLOPs (fvcore: 1 FLOP = 1 fused multiply-add), activation volume, memory and,
    with a device profile, predicted batch-1 latency of ``model`` on ``example_input``'s shape.

    Args:
        model: any ``nn.Module``.
        example_input: one batch of the input (its shape is what is priced).
        device: a profile name or alias (``"jetson"``), a YAML path, or a :class:`DeviceProfile`.
    """
    profile = load_profile(device) if isinstance(device, str) else device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        inventory = layer_inventory(model, example_input)
    model.train(was_training)
    return inventory.price(profile=profile)


def calibrate(model: nn.Module, example_input: torch.Tensor, *,
              device: str | DeviceProfile, share: float | None = None) -> DeviceProfile:
    """``device``'s profile scaled toward ``model``'s time as it runs on this machine now.

    ``model`` is timed here once (a few seconds at most) by the profile's runtime, threads and
    method, and every price of the profile (after its drift check) is multiplied by (measured /
    priced) ** ``share``: the model's error on a family it never saw and the machine's speed
    today read in ``model``'s own time, and its pruned versions keep the model's relative
    prices. ``share`` None takes half the gap in log terms
    (:data:`~budgetsearch.profiling.calibrate.CALIBRATION_SHARE`), since one timing on a shared
    machine is about as noisy as the drift check; 1 prices ``model`` at exactly its measured
    time (a quiet machine). Pass the result to :func:`price` or ``build_pruner(...,
    profile=...)`` (a search takes ``run --calibrate`` instead); ``provenance["calibrated_on"]``
    says what was measured.

    Raises:
        ValueError: ``device`` is not a profile measured on this machine (a datasheet profile,
            or another CPU's), or ``share`` is outside [0, 1]; what the runtime raises for a
            network it cannot run propagates.
    """
    from budgetsearch.profiling.calibrate import CALIBRATION_SHARE, calibrate_to_network

    profile = load_profile(device) if isinstance(device, str) else device
    was_training = model.training
    try:
        return calibrate_to_network(profile, model, example_input, share=CALIBRATION_SHARE
                                    if share is None else share).profile
    finally:
        model.train(was_training)


def _as_target(target: Target | str, metric: str | None) -> Target:
    if isinstance(target, Target):
        return target
    if metric is None:
        raise ValueError("a target given as text needs its metric, e.g. "
                         "search(..., target='10ms', metric='latency')")
    return Target.parse(metric, target)


def run(model_factory: Callable[..., nn.Module] | str, train_data: Dataset, test_data: Dataset,
        *,
           num_classes: int, target: Target | str, metric: str | None = None,
           device: str | None = None, pruner: str | None = None, trials: int = 4,
           out: str | Path = "runs/api", epochs: float = 1.0, reference_epochs: float = 1.0,
           train_subset: int | None = None, val_fraction: float = 0.2, batch_size: int = 64,
           seed: int = 0, progress: bool = False, resume: bool = False) -> RunSummary:
    """Search for the most accurate pruned version of the user's network that meets a target.

    The factory is called as ``model_factory(num_classes=..., in_channels=...)`` (with only the
    keywords its signature accepts); the data are the user's own datasets of ``(C×H×W image,
    label)`` items. Trials run in this process with the Optuna engine (the factory and data need
    not be importable elsewhere).

    Args:
        model_factory: builds the unpruned network; or a model spec (``"wrn-16-1"``,
            ``"path/to/net.py:FACTORY"``, ``"package.module:FACTORY"``).
        train_data, test_data: the user's datasets (a validation split is held out of
            ``train_data``).
        num_classes: number of classes.
        target: a :class:`Target`, or text such as ``"10ms"``, ``"50%"`` with ``metric``.
        metric: the target's metric when ``target`` is text (``latency``, ``flops``, ...).
        device: device profile (needed for a latency target).
        pruner: a registered pruner name; default: the search's order.
        trials: number of trials.
        out: the run folder (must be new unless ``resume``).
        epochs: default epochs per trial (the search space may search them).
        reference_epochs: the unpruned network is trained this long once; trials start from it.

    Returns:
        The :class:`~budgetsearch.search.runner.RunSummary` (``.best`` row, ``.table``).

    Raises:
        RuntimeError: every trial failed (the message gives the first one's reason).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise ValueError(f"out folder {out} already holds a run; choose a new one or resume=True")
    if isinstance(model_factory, str):  # a model spec: a name, file.py:FACTORY, pkg.mod:FACTORY
        model = canonical_model_spec(model_factory)
        resolve_model_spec(model)
        name = f"user-{model_label(model)}-{next(_counter)}"
    else:
        name = model = f"user-{getattr(model_factory, '__name__', 'model')}-{next(_counter)}"
        if name not in model_names():
            register_model(name, "a network given to budgetsearch.run")(model_factory)
    dataset = register_dataset(f"{name}-data", train_data, test_data, num_classes)
    settings = TrialSettings(
        model=model, dataset=dataset, train_subset=train_subset, val_fraction=val_fraction,
        batch_size=batch_size, epochs=epochs, device_profile=device, seed=seed,
        target=_as_target(target, metric), reference_epochs=reference_epochs)
    request = RunRequest(settings=settings, pruner=pruner,
                         optuna=OptunaOptions(trials=trials, seed=seed))
    summary = run_search(request, out, resume=resume, progress=progress)
    if summary.failure is not None and summary.failure.startswith("every trial failed"):
        raise RuntimeError(f"{summary.failure} (results: {out / 'results.csv'})")
    return summary


def load_best_model(run_dir: str | Path, *, trial: str = "best") -> nn.Module:
    """The most accurate feasible network of a run (or trial ``trial``), as a plain eval-mode
    ``nn.Module`` on the CPU.

    It is read from the trial's ``model.ts`` (TorchScript, written by every trial since issue
    15: plain PyTorch, whatever classes the network was built from); a run from before has
    only ``model.pt``, read with :func:`~budgetsearch.models.files.load_model_file`. Paths in
    ``results.csv`` are read against ``run_dir``, so a moved run folder loads.

    Example:
        >>> model = load_best_model("runs/demo")                    # doctest: +SKIP
        >>> model(torch.zeros(1, 1, 28, 28)).shape                   # doctest: +SKIP
        torch.Size([1, 10])

    Raises:
        ValueError: the folder holds no results, no trial (nor the reference) met the target,
            no such trial, or its files do not load.
    """
    run_dir = Path(run_dir)
    return load_row_model(select_trial(run_dir, trial), run_dir, prefer_deployable=True)
