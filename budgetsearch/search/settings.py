"""Run-wide settings of every trial, and what they load once per process (data, inventory).

Example:
    >>> settings = TrialSettings(model="wrn-10-1", dataset="synthetic", train_subset=64)
    >>> splits = trial_data(settings)
    >>> input_shape(settings)
    (1, 28, 28)
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch.utils.data import Subset

from budgetsearch.cost import (
    DeviceProfile,
    LayerInventory,
    Target,
    is_positive_number,
    layer_inventory,
    load_profile,
)
from budgetsearch.data import DatasetSplits, load_dataset
from budgetsearch.models import build_model, model_label
from budgetsearch.profiling import anchors as _drift_check  # noqa: F401 (registers it)

# Short pruning runs leave BN running statistics far behind the (re-gated) weights: the eval
# network fell to chance in every trial of a 12-trial run without re-estimating them.
BN_RECALIBRATION_BATCHES = 20


@dataclass(frozen=True)
class TrialSettings:
    """Run-wide settings of every trial (hyperparameters come per trial).

    ``target`` is absolute by the time trials run (a relative one is resolved against the
    unpruned network once, by the runner).
    """

    #: A model spec (:mod:`budgetsearch.models.spec`): a built-in name, ``/abs/file.py:FACTORY``
    #: or ``package.module:FACTORY``.
    model: str = "wrn-16-2"
    width: float = 1.0
    #: A data set name or an image folder's absolute path.
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    train_subset: int | None = 2000
    val_fraction: float = 0.2
    batch_size: int = 64
    lr: float = 2e-3
    epochs: float = 1.0
    weight_decay: float = 5e-4
    device_profile: str | None = None
    #: Every latency of the device profile × this: the run's calibration on its unpruned
    #: network as it ran here (:func:`budgetsearch.profiling.calibrate.calibrate_to_network`);
    #: 1 where none was made (without ``--calibrate``, or on another device).
    latency_scale: float = 1.0
    target: Target | None = None
    seed: int = 0
    torch_device: str = "cpu"
    threads: int | None = None
    # The unpruned network is trained this long once per run; every trial starts from it and
    # distils from it where its pruner distils (search/reference.py). 0: trials start from
    # random weights, without a teacher.
    reference_epochs: float = 2.0
    reference_path: str | None = None
    #: ``(C, H, W)`` an image folder's images are converted and resized to (None: as they are).
    input_shape: tuple[int, int, int] | None = None
    #: Score the test set on its first N images (quick experiments: evaluating the whole test
    #: set was most of a short trial's time); None: all of it.
    test_subset: int | None = None

    def __post_init__(self) -> None:
        if not is_positive_number(self.latency_scale):
            raise ValueError(f"latency_scale must be a positive number, got "
                             f"{self.latency_scale!r}")

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping (for the resolved config)."""
        data = asdict(self)
        data["target"] = None if self.target is None else self.target.as_dict()
        data["input_shape"] = None if self.input_shape is None else list(self.input_shape)
        return data


@functools.lru_cache(maxsize=4)
def _splits(dataset: str, data_dir: str | None, train_subset: int | None, val_fraction: float,
            seed: int, shape: tuple[int, int, int] | None,
            test_subset: int | None = None) -> DatasetSplits:
    splits = load_dataset(dataset, data_dir=data_dir, train_subset=train_subset,
                          val_fraction=val_fraction, seed=seed, input_shape=shape)
    if test_subset is not None and test_subset < len(splits.test):
        splits = replace(splits, test=Subset(splits.test, range(test_subset)))
    return splits


def trial_data(settings: TrialSettings) -> DatasetSplits:
    """The run's data split, loaded once per worker process (every trial uses the same).

    Raises:
        ValueError: ``test_subset`` is not a positive number of images.
    """
    if settings.test_subset is not None and (isinstance(settings.test_subset, bool) or
                                             not isinstance(settings.test_subset, int)
                                             or settings.test_subset < 1):
        raise ValueError(f"test_subset must be a positive number of images, "
                         f"got {settings.test_subset!r}")
    shape = None if settings.input_shape is None else tuple(int(v) for v in settings.input_shape)
    return _splits(settings.dataset, settings.data_dir, settings.train_subset,
                   settings.val_fraction, settings.seed, shape,  # type: ignore[arg-type]
                   settings.test_subset)


def run_profile(settings: TrialSettings) -> DeviceProfile | None:
    """The run's device profile as its trials price by: loaded (with its drift check) and
    scaled by the run's calibration (``latency_scale``); None without a device."""
    if not settings.device_profile:
        return None
    profile = load_profile(settings.device_profile)
    if settings.latency_scale == 1.0:
        return profile
    return profile.scaled(settings.latency_scale)


def input_shape(settings: TrialSettings) -> tuple[int, int, int]:
    """``(channels, height, width)`` of one input image of the run's data."""
    return trial_data(settings).input_shape


def check_network(settings: TrialSettings) -> torch.nn.Module:
    """Build the run's network and run it on a batch of two of the data's shape, so that a
    model that does not fit the data is refused before any file is written.

    Raises:
        ValueError: the spec or the factory fails (see :func:`~budgetsearch.models.build_model`),
            or the network does not take the data's images or does not return one score per
            class (the message names the model, the shapes and the rule).
    """
    data = trial_data(settings)
    model = build_network(settings)
    shape = data.input_shape
    label = model_label(settings.model)
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *shape))
    except Exception as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"model {label!r} fails on the data's {'x'.join(map(str, shape))} "
                         f"images ({type(error).__name__}: {text})") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, data.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model {label!r} returns {got} for a batch of 2 images, expected "
                         f"(2, {data.num_classes}): one score per class of {settings.dataset}")
    return model


def build_network(settings: TrialSettings) -> torch.nn.Module:
    """The unpruned network of the run, freshly initialised."""
    data = trial_data(settings)
    return build_model(settings.model, num_classes=data.num_classes, in_channels=data.in_channels,
                       width_multiplier=settings.width)


@functools.lru_cache(maxsize=16)
def full_inventory(model: str, width: float, shape: tuple[int, int, int],
                   num_classes: int) -> LayerInventory:
    """Layer inventory of the unpruned network (traced once per process)."""
    net = build_model(model, num_classes=num_classes, in_channels=shape[0],
                      width_multiplier=width)
    return layer_inventory(net, torch.zeros(1, *shape))


def settings_inventory(settings: TrialSettings) -> LayerInventory:
    """:func:`full_inventory` of the run's network."""
    return full_inventory(settings.model, settings.width, input_shape(settings),
                          trial_data(settings).num_classes)
