"""The unpruned reference network of a run: trained once, the start and the teacher of every trial.

BAR distils from "the unpruned network" (paper section 3.5) and, on its larger data set, starts
pruning from that network's weights (section 4.2); the erf-loss paper prunes while training. A
search trial is short, so both pruners start from one dense network trained once per run and saved
in ``RUN_DIR/reference/``: the trials then spend their epochs on pruning and recovery, and BAR's
teacher knows something (a frozen copy of an untrained network is a teacher of noise: every BAR
trial of an early 12-trial run ended at chance accuracy with one).

The reference is also a row of the results table (``kind="reference"``): the accuracy the pruned
trials are compared with, and, where the unpruned network already meets the target, an honest
answer of its own. ``--resume`` reuses it.

Example:
    >>> import tempfile
    >>> settings = TrialSettings(model="wrn-10-1", dataset="synthetic", train_subset=64,
    ...                          reference_epochs=0.5)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     row = ensure_reference(settings, Path(folder))
    ...     reused = ensure_reference(settings, Path(folder))  # a finished reference is reused
    >>> row["kind"], row["status"], row["model_path"], reused["seconds"] == row["seconds"]
    ('reference', 'ok', 'reference/model.pt', True)
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from budgetsearch.files import torch_save_atomic, write_text_atomic
from budgetsearch.models import model_label
from budgetsearch.models.deploy import MODEL_FILE, save_network
from budgetsearch.search.results import empty_row, resolve_row_path, run_relative, write_row
from budgetsearch.search.settings import (
    BN_RECALIBRATION_BATCHES,
    TrialSettings,
    build_network,
    input_shape,
    run_profile,
    settings_inventory,
    trial_data,
)
from budgetsearch.train import TrainConfig, seed_everything, train

REFERENCE_DIR = "reference"
STATE_FILE = "state_dict.pt"


def reference_dir(run_dir: Path) -> Path:
    """Where a run keeps its reference network and its row."""
    return run_dir / REFERENCE_DIR


def _finished(folder: Path) -> dict[str, Any] | None:
    path = folder / "row.json"
    try:
        row = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    # the file the row names: model.pt, or where pickle could not name the network's class
    # its deployable twin (model.ts or model.pt2), or where neither could be written the weights
    saved = folder / Path(str(row.get("model_path") or MODEL_FILE)).name
    if row.get("status") != "ok" or not saved.is_file() or not (folder / STATE_FILE).is_file():
        return None
    return row


def base_reference_dir(run_dir: Path, model: str, width: float) -> Path:
    """Where a family search keeps the reference of one base: ``reference/MODEL@WIDTH``.

    A model file spec (``/path/net.py:factory``) becomes one safe folder name (``net.py_factory``
    plus a short hash of the full spec), never a path of its own.

    Example:
        >>> base_reference_dir(Path("run"), "wrn-16-1", 2.0).as_posix()
        'run/reference/wrn-16-1@2'
    """
    label = model_label(model)
    name = re.sub(r"[^\w.@-]", "_", label)
    if label != model:
        name += "-" + hashlib.sha1(model.encode()).hexdigest()[:8]
    return reference_dir(run_dir) / f"{name}@{float(width):g}"


def ensure_reference(settings: TrialSettings, run_dir: Path,
                     folder: Path | None = None) -> dict[str, Any]:
    """Train the unpruned network for ``settings.reference_epochs`` (or reuse the run's), save it
    as ``model.pt`` in ``folder`` (default ``RUN_DIR/reference/``) and return its results row.

    Raises:
        RuntimeError: the reference did not train (a NaN loss): no trial could start from it.
    """
    folder = folder if folder is not None else reference_dir(run_dir)
    done = _finished(folder)
    if done is not None:
        return done
    start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    data = trial_data(settings)
    shape = input_shape(settings)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    seed_everything(settings.seed)
    model = build_network(settings)
    result = train(model, data, TrainConfig(
        epochs=settings.reference_epochs, batch_size=settings.batch_size, optimizer="adam",
        lr=settings.lr, weight_decay=settings.weight_decay, seed=settings.seed,
        device=settings.torch_device, progress=False,
        bn_recalibration_batches=BN_RECALIBRATION_BATCHES))
    name = (model_label(settings.model) if settings.width == 1
            else f"{model_label(settings.model)}@{settings.width:g}")
    row = empty_row(f"reference-{name}", "reference", settings, None, {
        "epochs": settings.reference_epochs, "lr": settings.lr})
    row.update(kind="reference", pruner=None, status=result.status, failure=result.failure,
               accuracy=result.test_accuracy, val_accuracy=result.val_accuracy)
    if result.status != "ok":
        row["seconds"] = time.perf_counter() - start
        write_row(folder, row)
        raise RuntimeError(f"the unpruned reference {model_label(settings.model)} did not train "
                           f"({result.failure}); no trial can start from it")
    profile = run_profile(settings)
    row.update(settings_inventory(settings).price(profile=profile).as_dict())
    # model.pt, and model.ts (plain PyTorch, any class) beside it; where neither could be
    # written, the row points at the weights, which is all a trial starts from
    model_path = (save_network(model, torch.zeros(1, *shape), folder, row["trial_id"])
                  or folder / STATE_FILE)
    # Plain tensors: trials rebuild the network from the run's factory and load these, so any
    # architecture works (a pickled module of a user's class would be refused on load).
    torch_save_atomic(model.state_dict(), folder / STATE_FILE)
    # The dense configuration, so that the Pareto module re-prices the reference on any device.
    config_path = folder / "pruned_config.json"
    write_text_atomic(config_path, json.dumps({
        "model": settings.model, "width": settings.width, "input_shape": list(shape),
        "num_classes": data.num_classes}, indent=1))
    row["pruned_config_path"] = run_relative(config_path, folder)
    target = settings.target
    row.update(model_path=run_relative(model_path, folder), seconds=time.perf_counter() - start,
               feasible=target is None or target.is_met(row.get(target.metric)))
    write_row(folder, row)  # last: a row.json means the model file is complete
    return row


def reference_state_path(row: dict[str, Any], run_dir: Path | None = None) -> Path:
    """The reference's ``state_dict.pt`` (next to its ``model.pt``; the row's path is read
    against ``run_dir``, the run folder)."""
    path = resolve_row_path(row["model_path"], run_dir) if run_dir is not None else None
    return (path or Path(row["model_path"])).with_name(STATE_FILE)


def load_reference_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Copy the reference network's weights (its ``state_dict.pt``) into ``model``."""
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model
