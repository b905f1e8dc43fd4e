"""What the commands share: output folders, ``--config`` files and the checks their values go
through (one line naming the value and the rule, before anything is written)."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from budgetsearch.errors import UsageError
from budgetsearch.files import yaml_problem


def check_writable(path: Path, flag: str) -> None:
    """Refuse ``path`` when its nearest existing folder is a file or cannot be written."""
    import os

    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent != path and not parent.is_dir():
        raise UsageError(f"{flag} {path}: {parent} is a file, not a folder")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write in {parent} (permission denied)")


def check_output_dir(path: Path, *, force: bool = False, resume_hint: bool = False) -> None:
    """Refuse a file, a folder that cannot be written, or a non-empty folder unless ``force``;
    creates nothing."""
    from budgetsearch.files import LOCK_FILE

    if path.exists() and not path.is_dir():
        raise UsageError(f"--out must be a folder, but {path} is a file")
    check_writable(path, "--out")
    if path.exists() and any(p.name != LOCK_FILE for p in path.iterdir()) and not force:
        also = ", --resume to continue it" if resume_hint else ""
        raise UsageError(
            f"output folder {path} already holds another run; choose a new --out{also} or pass "
            "--force to replace it"
        )


def prepare_output_dir(path: Path, *, force: bool = False) -> Path:
    """Create ``path`` for a new run; refuse a non-empty folder unless ``force``."""
    check_output_dir(path, force=force)
    path.mkdir(parents=True, exist_ok=True)
    return path


def resume_command(argv: Sequence[str], out: Path) -> str:
    """The exact ``budgetsearch run ... --resume --out OUT`` that continues this run."""
    words: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--out":
            skip = True
        elif word not in ("--force", "--resume") and not word.startswith("--out="):
            words.append(word)
    return shlex.join(["budgetsearch", *words, "--resume", "--out", str(out)])




def load_config_defaults(path: str | None) -> dict[str, Any]:
    """Read a YAML config of defaults (``yaml.safe_load`` only: no objects built from tags)."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"--config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise UsageError(f"--config file {path} is not valid YAML: {yaml_problem(error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config file {path} must hold a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def choice(names: Sequence[str]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(names)}, got {text!r}")
        return text

    return check


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def as_text(text: str) -> str:
    return text


def boolean(text: str) -> bool:
    if text not in ("True", "False"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text == "True"


def check_file_settings(file_settings: dict[str, Any], checks: dict[str, Callable[[str], Any]],
                        path: str | None) -> dict[str, Any]:
    """``--config`` values through the same checks as their flags (None: the default).

    Raises:
        UsageError: one line naming the file, the option, the rule and the value.
    """
    checked: dict[str, Any] = {}
    for key, value in file_settings.items():
        check = checks.get(key)
        if value is None or check is None:
            checked[key] = value
            continue
        try:
            if isinstance(value, (dict, list)) or (isinstance(value, bool)
                                                   and check is not boolean):
                raise argparse.ArgumentTypeError(f"expected a single value, got {value!r}")
            checked[key] = check(str(value))
        except (argparse.ArgumentTypeError, ValueError) as error:
            raise UsageError(f"--config file {path}: {key}: {error}") from None
    return checked


def torch_device_name(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` that this machine has (checked before any file)."""
    import torch

    if text == "auto":
        return text
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"device must be auto, cpu, cuda or cuda:N, got {text!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"device {text!r} was asked for but CUDA is not "
                                             "available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"device must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def input_shape_arg(text: str) -> tuple[int, int, int]:
    parts = re.split(r"[x,]", str(text).lower().strip())
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected an input shape C,H,W of positive integers like 3,32,32 (or 3x32x32), "
            f"got {text!r}"
        )
    return values  # type: ignore[return-value]


def model_check(text: str) -> str:
    """A ``model:`` value of a ``--config`` file, checked like ``--model`` (one line if bad)."""
    from budgetsearch.models import canonical_model_spec, resolve_model_spec

    try:
        spec = canonical_model_spec(text)
        resolve_model_spec(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return spec


def dataset_check(text: str) -> str:
    """A built-in data set name or an image folder (``DIR`` with ``train/`` and ``val/``)."""
    from budgetsearch.data import canonical_dataset_spec, dataset_names, is_image_folder_spec

    if text in dataset_names() or is_image_folder_spec(text):
        return canonical_dataset_spec(text)
    raise argparse.ArgumentTypeError(
        f"expected one of {', '.join(dataset_names())} or an image folder DIR, got {text!r}")


def model_spec(text: str) -> str:
    """A ``--model`` value checked now (importing a file or module, finding its factory):
    a bad spec is one line before anything is written. File specs become absolute."""
    try:
        return model_check(text)
    except argparse.ArgumentTypeError as error:  # "model ...": said of the option
        raise UsageError(f"--{error}") from None
