from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from budgetsearch.data import (
    DEBIAN_FASHION_MNIST,
    DataNotFoundError,
    load_dataset,
    make_synthetic,
    read_idx,
)
from tests.conftest import write_idx


def test_read_idx_round_trips_compressed_and_raw(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for compress in (True, False):
        path = write_idx(tmp_path / f"a{compress}", array, compress=compress)
        assert torch.equal(read_idx(path), torch.from_numpy(array))


def test_read_idx_rejects_truncated_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", np.zeros((4, 5, 5), dtype=np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_read_idx_rejects_truncated_gzip(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28))
    path = write_idx(tmp_path / "x", images)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="cannot read IDX"):
        read_idx(path)


def test_read_idx_rejects_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "not-idx"
    path.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(ValueError, match="magic"):
        read_idx(path)


def test_fashion_mnist_from_data_dir(fake_fashion_mnist: Path) -> None:
    splits = load_dataset("fashion-mnist", data_dir=fake_fashion_mnist)
    assert (len(splits.train), len(splits.test)) == (60, 20)
    x, y = splits.train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert 0 <= int(y) < 10
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 1, 28)


def test_fashion_mnist_from_environment(fake_fashion_mnist: Path, monkeypatch) -> None:
    monkeypatch.setenv("BUDGETSEARCH_DATA", str(fake_fashion_mnist))
    assert len(load_dataset("fashion-mnist").test) == 20


def test_subset_and_validation_split_are_seeded_and_disjoint(fake_fashion_mnist: Path) -> None:
    a = load_dataset("fashion-mnist", data_dir=fake_fashion_mnist, train_subset=40,
                     val_fraction=0.25, seed=1)
    b = load_dataset("fashion-mnist", data_dir=fake_fashion_mnist, train_subset=40,
                     val_fraction=0.25, seed=1)
    assert (len(a.train), len(a.val)) == (30, 10)
    assert a.train.indices == b.train.indices
    assert not set(a.train.indices) & set(a.val.indices)


def test_missing_data_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_truncated_data_file_is_reported(fake_fashion_mnist: Path) -> None:
    path = fake_fashion_mnist / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    with pytest.raises(ValueError, match="t10k-images"):
        load_dataset("fashion-mnist", data_dir=fake_fashion_mnist)


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="fashion-mnist.*synthetic.*got 'mnist'"):
        load_dataset("mnist")


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_subset_is_rejected(bad: int) -> None:
    with pytest.raises(ValueError, match="train_subset"):
        load_dataset("synthetic", train_subset=bad)


def test_synthetic_is_deterministic() -> None:
    a, _, _ = make_synthetic(num_train=8, seed=3)
    b, _, _ = make_synthetic(num_train=8, seed=3)
    assert torch.equal(a.tensors[0], b.tensors[0])


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist absent")
def test_debian_copy_loads() -> None:
    splits = load_dataset("fashion-mnist", train_subset=100)
    assert len(splits.test) == 10_000 and len(splits.train) == 100
    pixels = splits.test.tensors[0]
    # Normalised with the training mean/std: overall mean ≈ 0, std ≈ 1.
    assert abs(float(pixels.mean())) < 0.05 and abs(float(pixels.std()) - 1.0) < 0.05
