"""Shared fixtures: tiny synthetic data sets, made by the tests (nothing is downloaded)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file, gzip-compressed when ``compress``."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


@pytest.fixture
def fake_fashion_mnist(tmp_path: Path) -> Path:
    """A folder with Fashion-MNIST-shaped IDX files: 60 train / 20 test images of 28×28."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 256, (n, 28, 28))
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels, compress=False)
    return tmp_path


def write_image_folder(root: Path, *, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 8,
                       size: tuple[int, int] = (16, 16), mode: str = "RGB",
                       test_name: str = "val") -> Path:
    """A tiny ImageFolder tree: ``root/{train,val}/CLASS/i.png``; class k is brighter by k."""
    from PIL import Image

    rng = np.random.default_rng(0)
    channels = 3 if mode == "RGB" else 1
    for split in ("train", test_name):
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 80, (size[1], size[0], channels)) + 120 * k
                array = pixels.astype(np.uint8).squeeze(-1) if channels == 1 else pixels.astype(
                    np.uint8)
                Image.fromarray(array, mode).save(folder / f"{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """2 classes × 8 RGB PNGs of 16×16 in train/ and val/."""
    return write_image_folder(tmp_path / "images")


SMALL_CNN_FILE = '''
from torch import nn


def small_cnn(num_classes):
    """A small CNN for RGB images (only num_classes in its signature)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


class Widening(nn.Module):
    """A network of its own class, with a width multiplier (so it has thinner twins)."""

    def __init__(self, num_classes=10, in_channels=3, width_multiplier=1.0):
        super().__init__()
        width = max(1, int(48 * width_multiplier))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def not_a_network(num_classes):
    return "a string"


def raises(num_classes):
    raise RuntimeError("no weights here")


NUMBER = 3
'''


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """``nets.py`` with ``small_cnn(num_classes)``, a ``Widening`` class and bad factories."""
    path = tmp_path / "nets.py"
    path.write_text(SMALL_CNN_FILE)
    return path


@pytest.fixture
def make_image_folder():  # noqa: ANN201  (the helper itself, for trees of other shapes)
    """:func:`write_image_folder`, for tests that need other classes, sizes or layouts."""
    return write_image_folder


@pytest.fixture(scope="session")
def user_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(``nets.py``, a 2-class image folder), made once for the tests that share a run."""
    root = tmp_path_factory.mktemp("user")
    (root / "nets.py").write_text(SMALL_CNN_FILE)
    return root / "nets.py", write_image_folder(root / "images")


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of ``budgetsearch ARGV``, checking the one-line contract: exit 2 is
    exactly one line, ``budgetsearch: error: ...``, no traceback."""
    from budgetsearch.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip()
    if code == 2:
        assert len(err.splitlines()) == 1, err
        assert err.startswith("budgetsearch: error: ") and "Traceback" not in err
    return code, err


class SqueezeExcite(nn.Module):
    """Squeeze-excitation with linear layers and a functional pool (torchvision's MobileNetV3
    uses 1×1 convs): a channel multiply the pruners' coupled-channel search must follow."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, squeezed)
        self.fc2 = nn.Linear(squeezed, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s)))).view(x.shape[0], -1, 1, 1)
