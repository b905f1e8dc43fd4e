"""The user's own images: an ImageFolder tree as a data set (data.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from budgetsearch.data import canonical_dataset_spec, load_dataset


def test_an_image_folder_loads_normalised_with_its_statistics_stated(image_folder: Path) -> None:
    splits = load_dataset(str(image_folder), train_subset=12, val_fraction=0.25)
    assert splits.num_classes == 2 and splits.input_shape == (3, 16, 16)
    assert len(splits.train) == 9 and len(splits.val) == 3 and len(splits.test) == 16
    described = splits.description
    assert described["classes"] == ["cat", "dog"] and described["test"] == "val/"
    assert described["train_images"] == 16 and len(described["mean"]) == 3
    # The oracle: the stated mean/std normalise the training images to mean 0, std 1.
    images = torch.stack([load_dataset(str(image_folder)).train.dataset[i][0]
                          for i in range(16)])
    assert images.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert (images.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-4


def test_input_shape_resizes_and_converts(tmp_path: Path, make_image_folder) -> None:
    root = make_image_folder(tmp_path / "mixed", size=(20, 12), test_name="test")
    splits = load_dataset(str(root), input_shape=(1, 8, 10))
    assert splits.input_shape == (1, 8, 10) and splits.description["colour"] == "grey (L)"
    assert splits.train[0][0].shape == (1, 8, 10)


def test_images_of_different_sizes_need_input_shape(tmp_path: Path, make_image_folder) -> None:
    root = make_image_folder(tmp_path / "sizes")
    make_image_folder(tmp_path / "sizes", classes=("cat",), per_class=1, size=(9, 9))
    with pytest.raises(ValueError, match=r"differ in size .*pass --input-shape C,H,W"):
        load_dataset(str(root))
    assert load_dataset(str(root), input_shape=(3, 9, 9)).input_shape == (3, 9, 9)


@pytest.mark.parametrize("layout,fragment", [
    ("no-test", "must hold train/ and val/ (or test/)"),
    ("one-class", "a classifier needs at least 2"),
    ("other-classes", "val/ has classes cat, cow but train/ has cat, dog"),
])
def test_bad_image_folders_are_one_line(tmp_path: Path, layout: str, fragment: str,
                                        make_image_folder) -> None:
    root = tmp_path / layout
    if layout == "no-test":
        make_image_folder(root, test_name="train")
    elif layout == "one-class":
        make_image_folder(root, classes=("cat",))
    else:
        make_image_folder(root)
        (root / "val" / "dog").rename(root / "val" / "cow")
    with pytest.raises(ValueError) as caught:
        load_dataset(str(root))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_a_folder_spec_is_stored_absolute(image_folder: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(image_folder.parent)
    assert canonical_dataset_spec("images") == str(image_folder.resolve())
    assert canonical_dataset_spec("fashion-mnist") == "fashion-mnist"
    with pytest.raises(ValueError, match="or an image folder"):
        load_dataset("no-such-set")


def test_a_built_in_set_refuses_another_input_shape() -> None:
    with pytest.raises(ValueError, match="input_shape 3x32x32 differs from synthetic's 1x28x28"):
        load_dataset("synthetic", input_shape=(3, 32, 32))
