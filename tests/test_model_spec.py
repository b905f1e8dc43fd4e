"""Model specs (models/spec.py): built-in names, file.py:FACTORY, package.module:FACTORY."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from budgetsearch.models import (
    build_model,
    canonical_model_spec,
    model_label,
    resolve_model_spec,
)


def test_a_built_in_name_is_registered() -> None:
    spec = resolve_model_spec("wrn-10-1")
    assert spec.kind == "registered" and spec.label == "wrn-10-1"
    assert build_model("wrn-10-1", num_classes=3, in_channels=1).fc.out_features == 3


def test_a_file_factory_gets_only_the_keywords_it_names(model_file: Path) -> None:
    spec = f"{model_file}:small_cnn"
    model = build_model(spec, num_classes=5, in_channels=3)
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 5)
    assert resolve_model_spec(spec).description.startswith("A small CNN")
    widening = build_model(f"{model_file}:Widening", num_classes=4, in_channels=1,
                           width_multiplier=0.5)
    assert widening.head.in_features == 24


def test_a_file_spec_is_stored_absolute(model_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(model_file.parent)
    assert canonical_model_spec("nets.py:small_cnn") == f"{model_file.resolve()}:small_cnn"
    assert canonical_model_spec("wrn-16-1") == "wrn-16-1"
    assert model_label(f"{model_file}:small_cnn") == "nets.py:small_cnn"


def test_a_module_factory_is_imported() -> None:
    model = build_model("torchvision.models:resnet18", num_classes=7, in_channels=3)
    assert isinstance(model, nn.Module) and model.fc.out_features == 7


@pytest.mark.parametrize("spec,fragment", [
    ("nowhere.py:f", "does not exist"),
    ("{file}:missing", "has no 'missing'; it defines Widening, not_a_network, raises, small_cnn"),
    ("{file}:NUMBER", "NUMBER is a int, expected a function or class"),
    ("{file}", "names a file but no factory"),
    ("no_such_package_xyz.models:f", "cannot import module no_such_package_xyz.models"),
    ("wrn-99-9", "model must be a built-in name"),
    ("{file}:bad name", "with FACTORY a Python name"),
])
def test_bad_specs_are_one_line_naming_the_spec(spec: str, fragment: str,
                                                 model_file: Path) -> None:
    spec = spec.format(file=model_file)
    with pytest.raises(ValueError) as caught:
        build_model(spec)
    message = str(caught.value)
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize("factory,fragment", [
    ("not_a_network", "returned a str, expected a torch.nn.Module"),
    ("raises", "raises(num_classes=10) raised RuntimeError: no weights here"),
])
def test_a_factory_that_fails_is_one_line(factory: str, fragment: str, model_file: Path) -> None:
    with pytest.raises(ValueError) as caught:
        build_model(f"{model_file}:{factory}")
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_a_file_that_does_not_import_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\ndef broken(:\n")
    with pytest.raises(ValueError, match=r"importing .*broken.py raised SyntaxError"):
        resolve_model_spec(f"{broken}:f")


def test_width_needs_a_width_parameter(model_file: Path) -> None:
    with pytest.raises(ValueError, match="takes no width_multiplier"):
        build_model(f"{model_file}:small_cnn", width_multiplier=0.5)


def test_a_file_model_with_its_own_classes_pickles(tmp_path: Path) -> None:
    # The run saves model.pt of the reference and of every trial: a class defined in the user's
    # file must pickle (it failed with "import of module 'budgetsearch_user_models.…' failed").
    import io

    import torch

    from budgetsearch.models import build_model

    path = tmp_path / "own.py"
    path.write_text(
        "from torch import nn\n"
        "class Twice(nn.Module):\n"
        "    def __init__(self, num_classes):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(4, num_classes)\n"
        "    def forward(self, x):\n"
        "        return 2 * self.fc(x.flatten(1))\n"
        "def make(num_classes=10):\n"
        "    return Twice(num_classes)\n")
    model = build_model(f"{path}:make", num_classes=3, in_channels=1)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=False)
    x = torch.randn(2, 1, 2, 2)
    assert torch.equal(again(x), model(x))
