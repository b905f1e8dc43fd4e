"""Load a saved network (``model.pt`` of a trial) without running code from the file.

``torch.load(weights_only=True)`` builds only tensors, plain containers and the classes allowed
here: the built-in networks of :mod:`budgetsearch.models` and ``torch.nn``'s own layers. A file
that needs anything else (a pickle that would call ``os.system``, another project's classes) is
refused with a message that names the file; so is a corrupt or truncated one.

Example:
    >>> model = load_model_file("runs/demo/trials/optuna-0003/model.pt")   # doctest: +SKIP
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from budgetsearch.models import blocks, mixed, resnet, wrn


def _allowed_classes() -> list[type]:
    classes: set[type] = set()
    for module in (blocks, mixed, resnet, wrn, nn):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, nn.Module):
                classes.add(value)
    # erf-loss keeps its zeros with torch.nn.utils.prune's masks (forward pre-hooks).
    classes.update(v for v in vars(prune).values()
                   if isinstance(v, type) and issubclass(v, prune.BasePruningMethod))
    return sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def load_model_file(path: str | os.PathLike[str]) -> nn.Module:
    """Load a whole network saved with ``torch.save(model, path)``, on the CPU.

    Raises:
        FileNotFoundError: no such file.
        ValueError: corrupt or truncated, not a PyTorch file, a file that needs classes other than
            budgetsearch's networks and ``torch.nn`` layers, or a state dict instead of a network.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        with torch.serialization.safe_globals(_allowed_classes()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        if found is None:  # not a torch.save zip archive (a bare pickle, say)
            raise ValueError(f"model file {path} is not a file written by torch.save "
                             "(expected a trial's model.pt)") from None
        raise ValueError(f"model file {path} was refused: it asks for {found.group(1)}, which is "
                         "not a budgetsearch network or a torch.nn layer (only those are loaded, "
                         "never code)") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, KeyError) as error:
        text = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else ""
        reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
        raise ValueError(f"model file {path} is corrupt, truncated or not a PyTorch file "
                         f"({reason})") from None
    if not isinstance(obj, nn.Module):
        raise ValueError(f"model file {path} holds a {type(obj).__name__}, expected a whole "
                         "network saved with torch.save(model, path) (a trial's model.pt)")
    return obj
