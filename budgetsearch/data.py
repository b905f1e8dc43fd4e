"""Datasets: Fashion-MNIST (default), CIFAR-10/100, a synthetic set for tests, the user's own
image folders (``DIR`` with ``train/`` and ``val/`` or ``test/``, one subfolder per class, read
with torchvision's ``ImageFolder``) and data sets registered in-process (:func:`register_dataset`).

Nothing is downloaded at import. Fashion-MNIST is looked for, in order, in ``--data-dir``,
``$BUDGETSEARCH_DATA``, Debian's ``dataset-fashion-mnist`` package and torchvision's cache; only
then, and only when asked (``download=True``), through torchvision's downloader.

Example:
    >>> splits = load_dataset("synthetic", train_subset=64)
    >>> splits.num_classes, splits.in_channels
    (10, 1)
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DATA_ENV_VAR = "BUDGETSEARCH_DATA"

# Per-channel mean/std of the training images, for normalisation.
_STATS = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataNotFoundError(FileNotFoundError):
    """The data set is not on this machine; the message says how to get it."""


@dataclass(frozen=True)
class DatasetSplits:
    """Train / validation / test sets of one data set, with what a model needs to know of it."""

    name: str
    train: Dataset
    val: Dataset | None
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    #: (height, width) where the images are not square; None: ``image_size`` × ``image_size``.
    image_hw: tuple[int, int] | None = None
    #: Where the data came from and how it was normalised (written into a run's config.yaml).
    description: dict[str, Any] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one image."""
        height, width = self.image_hw or (self.image_size, self.image_size)
        return (self.in_channels, height, width)

    def loaders(
        self, batch_size: int, *, eval_batch_size: int = 512, seed: int = 0
    ) -> tuple[DataLoader, DataLoader, DataLoader | None]:
        """Return (train, test, val) loaders; the train loader shuffles with ``seed``."""
        generator = torch.Generator().manual_seed(seed)
        train = DataLoader(self.train, batch_size=batch_size, shuffle=True, generator=generator)
        test = DataLoader(self.test, batch_size=eval_batch_size)
        val = DataLoader(self.val, batch_size=eval_batch_size) if self.val is not None else None
        return train, test, val


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset` (besides an image folder's path)."""
    return sorted(_LOADERS)


def is_image_folder_spec(name: str) -> bool:
    """Whether a ``--dataset`` value names a folder rather than a built-in or registered set."""
    return name not in _LOADERS and (os.sep in name or "/" in name or Path(name).is_dir())


def canonical_dataset_spec(name: str) -> str:
    """A data set name as given, or an image folder's absolute path (what a run stores, so that
    Ray workers and ``--resume`` find the same folder)."""
    return str(Path(name).expanduser().resolve()) if is_image_folder_spec(name) else name


def load_dataset(
    name: str = "fashion-mnist",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    train_subset: int | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    download: bool = False,
    input_shape: tuple[int, int, int] | None = None,
) -> DatasetSplits:
    """Load a data set as in-memory tensors, optionally a training subset and a validation split.

    Args:
        name: one of :func:`dataset_names`, or an image folder: ``DIR`` holding ``train/`` and
            ``val/`` (or ``test/``), each with one subfolder of images per class.
        data_dir: folder holding the files (IDX files for Fashion-MNIST, torchvision's layout for
            CIFAR); default: ``$BUDGETSEARCH_DATA``, then the usual places.
        train_subset: keep this many training images (a seeded random choice).
        val_fraction: move this fraction of the (subset) training images to a validation set.
        seed: seed for the subset and the split.
        download: let torchvision download the data when it is nowhere on this machine.
        input_shape: ``(C, H, W)``: an image folder's images are converted to C channels (1 or
            3) and resized to H×W (needed when they differ in size); a built-in set must
            already have this shape.
    """
    if train_subset is not None and train_subset <= 0:
        raise ValueError(f"train_subset must be a positive number of images, got {train_subset}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if input_shape is not None:
        input_shape = _check_shape(input_shape)
    if is_image_folder_spec(name):
        train, test, num_classes, description = _load_image_folder(
            str(Path(name).expanduser().resolve()), input_shape)
    elif name in _LOADERS:
        folder = Path(data_dir) if data_dir is not None else None
        if folder is None and os.environ.get(DATA_ENV_VAR):
            folder = Path(os.environ[DATA_ENV_VAR])
        train, test, num_classes = _LOADERS[name](folder, download)
        description = _describe_named(name)
    else:
        raise ValueError(f"dataset must be one of {', '.join(dataset_names())} or an image "
                         f"folder (DIR with train/ and val/ or test/), got {name!r}")
    shape = tuple(train[0][0].shape)  # (channels, height, width) of one image
    if input_shape is not None and shape != input_shape:
        raise ValueError(f"input_shape {_shape_text(input_shape)} differs from {name}'s "
                         f"{_shape_text(shape)} images (input_shape resizes image folders "
                         "only)")

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=generator)
    if train_subset is not None:
        order = order[: min(train_subset, len(train))]
    n_val = int(round(len(order) * val_fraction))
    val = Subset(train, order[:n_val].tolist()) if n_val else None
    train_set: Dataset = Subset(train, order[n_val:].tolist())
    return DatasetSplits(
        name=name,
        train=train_set,
        val=val,
        test=test,
        num_classes=num_classes,
        in_channels=int(shape[0]),
        image_size=int(shape[-1]),
        image_hw=None if shape[1] == shape[2] else (int(shape[1]), int(shape[2])),
        description={**description, "input_shape": list(shape)},
    )


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def _check_shape(shape: Any) -> tuple[int, int, int]:
    values = tuple(shape)
    if len(values) != 3 or not all(isinstance(v, int) and v >= 1 for v in values):
        raise ValueError(f"input_shape must be (channels, height, width) of positive integers, "
                         f"got {shape!r}")
    if values[0] not in (1, 3):
        raise ValueError(f"input_shape must have 1 (grey) or 3 (RGB) channels, got {values[0]}")
    return values  # type: ignore[return-value]


def _describe_named(name: str) -> dict[str, Any]:
    if name in _STATS:
        mean, std = _STATS[name]
        return {"source": name, "normalisation": "per-channel (x/255 - mean) / std",
                "mean": list(mean), "std": list(std)}
    if name == "synthetic":
        return {"source": "synthetic", "normalisation": "none (standard normal by design)"}
    return {"source": f"registered in-process as {name!r}", "normalisation": "as given"}


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                   ".pgm")
#: At most this many training images are read for the normalisation statistics.
STATS_SAMPLE = 10_000


def _read_images(folder: Path, shape: tuple[int, int, int] | None, mode: str
                 ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(uint8 N×C×H×W images, labels, classes) of an ImageFolder tree."""
    import torchvision.datasets as tv_datasets
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    try:
        tree = tv_datasets.ImageFolder(str(folder), is_valid_file=lambda p: p.lower().endswith(
            _IMAGE_SUFFIXES))
    except (FileNotFoundError, OSError) as error:
        raise ValueError(f"image folder {folder}: {str(error).splitlines()[0]} (expected one "
                         "subfolder of images per class)") from None
    images, sizes = [], {}
    for path, _ in tree.samples:
        try:
            with Image.open(path) as image:
                image = image.convert(mode)
                if shape is not None and image.size != (shape[2], shape[1]):
                    image = image.resize((shape[2], shape[1]), Image.Resampling.BILINEAR)
                sizes.setdefault(image.size, path)
                images.append(pil_to_tensor(image))
        except OSError as error:
            raise ValueError(f"image folder {folder}: cannot read {path} ({error})") from None
        if len(sizes) > 1:
            (w1, h1), (w2, h2) = list(sizes)[:2]
            first, second = list(sizes.values())[:2]
            raise ValueError(f"images in {folder} differ in size ({h1}x{w1} in {first}, "
                             f"{h2}x{w2} in {second}): pass --input-shape C,H,W (input_shape) "
                             "to resize them")
    labels = torch.tensor([label for _, label in tree.samples], dtype=torch.long)
    return torch.stack(images), labels, list(tree.classes)


@functools.lru_cache(maxsize=2)
def _load_image_folder(root: str, shape: tuple[int, int, int] | None
                       ) -> tuple[TensorDataset, TensorDataset, int, dict[str, Any]]:
    """Read an image-folder tree once per process (every trial uses the same tensors)."""
    from PIL import Image

    base = Path(root)
    if not base.is_dir():
        raise ValueError(f"dataset folder {base} does not exist")
    test_name = next((n for n in ("val", "test") if (base / n).is_dir()), None)
    if not (base / "train").is_dir() or test_name is None:
        found = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise ValueError(f"dataset folder {base} must hold train/ and val/ (or test/), one "
                         f"subfolder of images per class; it holds "
                         f"{', '.join(f + '/' for f in found) or 'no folder'}")
    if shape is not None:
        channels = shape[0]
    else:  # grey images stay grey; anything else is read as RGB
        first = next((p for p in sorted((base / "train").rglob("*"))
                      if p.suffix.lower() in _IMAGE_SUFFIXES), None)
        if first is None:
            raise ValueError(f"dataset folder {base / 'train'} holds no images "
                             f"({', '.join(_IMAGE_SUFFIXES)})")
        with Image.open(first) as image:
            channels = 1 if image.mode in ("1", "L", "I", "I;16", "F") else 3
    mode = "L" if channels == 1 else "RGB"
    train_x, train_y, classes = _read_images(base / "train", shape, mode)
    test_x, test_y, test_classes = _read_images(base / test_name, shape, mode)
    if test_classes != classes:
        raise ValueError(f"dataset folder {base}: {test_name}/ has classes "
                         f"{', '.join(test_classes)} but train/ has {', '.join(classes)}")
    if len(classes) < 2:
        raise ValueError(f"dataset folder {base}: train/ has {len(classes)} class folder(s), "
                         "a classifier needs at least 2")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(f"dataset folder {base}: train/ images are "
                         f"{_shape_text(tuple(train_x.shape[1:]))} but {test_name}/ images are "
                         f"{_shape_text(tuple(test_x.shape[1:]))}: pass --input-shape C,H,W "
                         "to resize them")
    # Per-channel statistics of (a seeded sample of) the training images, in [0, 1].
    sample = train_x[torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))[
        :STATS_SAMPLE]].float().div_(255.0)
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)

    def normalised(images: torch.Tensor) -> torch.Tensor:
        return (images.float().div_(255.0) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    description = {
        "source": f"image folder {base}", "train": "train/", "test": f"{test_name}/",
        "classes": classes, "train_images": len(train_x), "test_images": len(test_x),
        "colour": "grey (L)" if channels == 1 else "RGB",
        "resized_to": None if shape is None else [shape[1], shape[2]],
        "normalisation": f"per-channel (x/255 - mean) / std, statistics of "
                         f"{len(sample)} training images",
        "mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std],
    }
    return (TensorDataset(normalised(train_x), train_y), TensorDataset(normalised(test_x), test_y),
            len(classes), description)


def register_dataset(name: str, train: Dataset, test: Dataset, num_classes: int) -> str:
    """Make the user's own data loadable by name in this process (``load_dataset(name)``, and so
    a search's trials). Items are ``(image tensor C×H×W, class index)``; square images.

    Re-registering a name replaces it (a notebook re-running its cell).

    Raises:
        ValueError: a built-in name, or items that are not (C×H×W tensor, label).
    """
    if name in _BUILT_IN:
        raise ValueError(f"dataset name {name!r} is built in; choose another")
    image, _ = train[0]
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError(f"dataset {name!r}: items must be (C×H×W tensor, label), got an image "
                         f"of type {type(image).__name__}")
    if not (isinstance(num_classes, int) and num_classes >= 2):
        raise ValueError(f"num_classes must be an integer ≥ 2, got {num_classes!r}")
    _LOADERS[name] = lambda folder, download: (train, test, num_classes)
    return name


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an IDX file (optionally gzip-compressed) into a uint8 tensor.

    Raises:
        ValueError: the file is truncated or not an unsigned-byte IDX file.
    """
    path = Path(path)
    opener: Callable = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:  # gzip raises these on truncated archives
        raise ValueError(f"{path}: cannot read IDX file ({error})") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(torch.tensor(shape).prod().item()) if shape else header
    if len(raw) != expected:
        raise ValueError(
            f"{path}: truncated or padded IDX file: {len(raw)} bytes, expected {expected} "
            f"for shape {tuple(shape)}"
        )
    data = torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8)
    return data.reshape(shape)


def _fashion_mnist_folders(folder: Path | None) -> list[Path]:
    if folder is not None:
        # Accept the folder itself or torchvision's layout below it.
        return [folder, folder / "FashionMNIST" / "raw"]
    cache = Path.home() / ".cache" / "budgetsearch"
    return [DEBIAN_FASHION_MNIST, cache / "FashionMNIST" / "raw"]


def _find_idx(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                return candidate
    return None


def _normalise(images: torch.Tensor, name: str) -> torch.Tensor:
    mean, std = _STATS[name]
    x = images.float().div_(255.0)
    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def _load_fashion_mnist(
    folder: Path | None, download: bool
) -> tuple[TensorDataset, TensorDataset, int]:
    folders = _fashion_mnist_folders(folder)
    found = {
        split: tuple(_find_idx(folders, stem) for stem in stems)
        for split, stems in _IDX_FILES.items()
    }
    if any(path is None for paths in found.values() for path in paths):
        if download:
            target = folder or Path.home() / ".cache" / "budgetsearch"
            _torchvision_download("FashionMNIST", target)
            return _load_fashion_mnist(target, download=False)
        where = ", ".join(str(f) for f in folders)
        raise DataNotFoundError(
            f"Fashion-MNIST IDX files not found in {where}. Get them with "
            "'apt-get install dataset-fashion-mnist' (Debian), or pass --download to let "
            "torchvision fetch them, or point --data-dir / $BUDGETSEARCH_DATA at a folder "
            "holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz."
        )
    sets = []
    for split in ("train", "test"):
        image_path, label_path = found[split]
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{image_path}: expected N×H×W images with N labels, got images "
                f"{tuple(images.shape)} and labels {tuple(labels.shape)}"
            )
        x = _normalise(images.unsqueeze(1), "fashion-mnist")
        sets.append(TensorDataset(x, labels.long()))
    return sets[0], sets[1], 10


def _torchvision_download(class_name: str, root: Path) -> None:
    import torchvision.datasets as tv_datasets

    dataset_class = getattr(tv_datasets, class_name)
    for train in (True, False):
        dataset_class(root=str(root), train=train, download=True)


def _load_cifar(
    name: str, folder: Path | None, download: bool
) -> tuple[TensorDataset, TensorDataset, int]:
    import torchvision.datasets as tv_datasets

    root = folder or Path.home() / ".cache" / "budgetsearch"
    dataset_class = tv_datasets.CIFAR10 if name == "cifar10" else tv_datasets.CIFAR100
    try:
        raw = [dataset_class(root=str(root), train=t, download=download) for t in (True, False)]
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        raise DataNotFoundError(
            f"{name} not found under {root}: pass --download (needs internet) or point "
            f"--data-dir at a folder with torchvision's {dataset_class.base_folder} layout "
            f"({error})"
        ) from error
    sets = []
    for dataset in raw:
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor(dataset.targets, dtype=torch.long)
        sets.append(TensorDataset(_normalise(images, name), labels))
    return sets[0], sets[1], 100 if name == "cifar100" else 10


def make_synthetic(
    *,
    num_train: int = 512,
    num_test: int = 256,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 28,
    seed: int = 0,
) -> tuple[TensorDataset, TensorDataset, int]:
    """A learnable synthetic image set: each class is a fixed random pattern plus noise."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(num_classes, in_channels, image_size, image_size, generator=generator)

    def sample(n: int) -> TensorDataset:
        labels = torch.randint(num_classes, (n,), generator=generator)
        noise = torch.randn(n, in_channels, image_size, image_size, generator=generator)
        return TensorDataset(prototypes[labels] + 1.5 * noise, labels)

    return sample(num_train), sample(num_test), num_classes


_LOADERS: dict[str, Callable[[Path | None, bool], tuple[Dataset, Dataset, int]]] = {
    "fashion-mnist": _load_fashion_mnist,
    "cifar10": lambda folder, download: _load_cifar("cifar10", folder, download),
    "cifar100": lambda folder, download: _load_cifar("cifar100", folder, download),
    "synthetic": lambda folder, download: make_synthetic(),
}
_BUILT_IN = frozenset(_LOADERS)
