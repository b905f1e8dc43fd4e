"""Deployable network files: what a trial writes beside its ``model.pt`` so that the network
loads with plain PyTorch, whatever classes it was built from.

``model.pt`` pickles the network's own classes (budgetsearch's compact ResNets, or the user's
class): only budgetsearch reads it back (:func:`~budgetsearch.models.files.load_model_file`), and
a user's class is refused there. Beside it a trial writes

- ``model.ts``: TorchScript, traced on an example input in eval mode and checked against the
  network on a random batch of two (``torch.jit.load(path)`` needs no budgetsearch class; the
  batch size stays free). TorchScript because ``torch.onnx.export(dynamo=False)`` and
  ``.eval()`` both work on it, which is not so of an exported program's module in torch 2.14;
- or, where tracing fails or its outputs differ, ``model.pt2`` (``torch.export``,
  ``torch.export.load(path).module()``), with the reason in ``deploy.json``;
- ``deploy.json``: which file, its format, the input shape, and any note.

Example:
    >>> import tempfile, torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     info = save_deployable(net, torch.zeros(1, 1, 5, 5), folder)
    ...     again = load_deployable(folder)
    >>> info["format"], again(torch.zeros(3, 1, 5, 5)).shape
    ('torchscript', torch.Size([3, 18]))
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from budgetsearch.files import save_whole_module

DEPLOY_FILE = "deploy.json"
MODEL_FILE = "model.pt"  # budgetsearch's own: the whole network, pickled
TORCHSCRIPT_FILE = "model.ts"
EXPORTED_FILE = "model.pt2"
#: How far the deployable file's outputs may stray from the network's (float32 reorderings).
TOLERANCE = 1e-4


def write_bytes_atomic(path: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # torch 2.14 warns that torch.jit is deprecated on every call, and TracerWarnings flag
    # shape tests that are constant for a compacted network (its channel counts are fixed).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def trace_torchscript(model: nn.Module, example_input: torch.Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of ``model`` in eval mode (warnings of the deprecated API silenced)."""
    with _quiet(), torch.no_grad():
        return torch.jit.trace(model.eval(), example_input, check_trace=False)


def _torchscript_bytes(model: nn.Module, example: torch.Tensor, check: torch.Tensor,
                       expected: torch.Tensor) -> bytes:
    traced = trace_torchscript(model, example)
    buffer = io.BytesIO()
    with _quiet():
        torch.jit.save(traced, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer, map_location="cpu")
    with torch.no_grad():
        difference = _max_difference(loaded(check), expected)
    if not difference <= TOLERANCE:
        raise ValueError(f"the traced network's outputs differ from the network's by "
                         f"{difference:.3g} on a batch of {len(check)} (data-dependent Python "
                         "control flow is fixed by tracing)")
    return buffer.getvalue()


def _exported_bytes(model: nn.Module, check: torch.Tensor, expected: torch.Tensor) -> bytes:
    batch = torch.export.Dim.AUTO
    program = torch.export.export(model, (check,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    with torch.no_grad():
        difference = _max_difference(torch.export.load(buffer).module()(check), expected)
    if not difference <= TOLERANCE:
        raise ValueError(f"the exported program's outputs differ by {difference:.3g}")
    return buffer.getvalue()


def save_deployable(model: nn.Module, example_input: torch.Tensor,
                    folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``model.ts`` (or ``model.pt2``) and ``deploy.json`` into ``folder``; never raises
    for a network that cannot be saved so (``deploy.json`` then says why, ``file`` is None).

    The network is put in eval mode and moved to the CPU. Returns what ``deploy.json`` holds.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    example = example_input.detach().cpu()
    shape = list(example.shape[1:])
    check = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    info: dict[str, Any] = {"file": None, "format": None, "input_shape": shape,
                            "torch": torch.__version__, "note": None}
    notes: list[str] = []
    try:
        with torch.no_grad():
            expected = model(check)
        if not isinstance(expected, torch.Tensor):
            raise TypeError(f"the network returns a {type(expected).__name__}, expected a tensor")
    except Exception as error:  # the network itself does not run: nothing to save
        info["note"] = f"not saved: the network fails on a batch of 2 ({type(error).__name__}: " \
                       f"{str(error).strip().splitlines()[0] if str(error).strip() else ''})"
        write_bytes_atomic(folder / DEPLOY_FILE, json.dumps(info, indent=1).encode())
        return info
    for name, form, make in (
            (TORCHSCRIPT_FILE, "torchscript",
             lambda: _torchscript_bytes(model, example, check, expected)),
            (EXPORTED_FILE, "torch.export", lambda: _exported_bytes(model, check, expected))):
        try:
            data = make()
        except Exception as error:
            text = str(error).strip().splitlines()[0] if str(error).strip() else ""
            notes.append(f"{form} failed: {type(error).__name__}: {text}"[:500])
            continue
        write_bytes_atomic(folder / name, data)
        info.update(file=name, format=form)
        break
    info["note"] = "; ".join(notes) or None
    write_bytes_atomic(folder / DEPLOY_FILE, json.dumps(info, indent=1).encode())
    return info


def deploy_info(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``folder/deploy.json`` as a dict, or None where there is none (a run from before)."""
    path = Path(folder) / DEPLOY_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def save_network(model: nn.Module, example_input: torch.Tensor,
                 folder: str | os.PathLike[str], label: str) -> Path | None:
    """Save a run's network into ``folder``: ``model.pt`` (the whole network, pickled) and the
    plain-PyTorch ``model.ts`` with ``deploy.json`` (:func:`save_deployable`).

    Returns the file a results row points at: ``model.pt``; where pickle cannot name the
    network's class (one defined inside the user's factory function, say), the deployable
    file, which every reader of a run falls back to; None when neither could be written. A
    file not written is named in one line on stderr (``label`` says whose), and the run goes on.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    why = save_whole_module(model, folder / MODEL_FILE)
    info = save_deployable(model, example_input, folder)
    if why is None:
        return folder / MODEL_FILE
    deployable = folder / info["file"] if info.get("file") else None
    kept = (f"the network is in {deployable}" if deployable is not None
            else f"and no deployable file either ({info.get('note')})")
    print(f"note: {label}: {MODEL_FILE} not written (pickle refuses the network: {why}; a "
          f"class defined at module level can be pickled); {kept}", file=sys.stderr)
    return deployable


def load_deployable(folder: str | os.PathLike[str]) -> nn.Module:
    """The network a trial folder's ``deploy.json`` names, with plain PyTorch, in eval mode
    (a TorchScript module; an exported program's module where tracing had failed).

    Raises:
        FileNotFoundError: the folder holds no deployable file.
        ValueError: the file is corrupt.
    """
    folder = Path(folder)
    info = deploy_info(folder) or {}
    name = info.get("file")
    if name is None:
        candidates = [n for n in (TORCHSCRIPT_FILE, EXPORTED_FILE) if (folder / n).is_file()]
        if not candidates:
            why = f" ({info['note']})" if info.get("note") else ""
            raise FileNotFoundError(f"{folder} holds no {TORCHSCRIPT_FILE} or "
                                    f"{EXPORTED_FILE}{why}")
        name = candidates[0]
    path = folder / str(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (named by {folder / DEPLOY_FILE})")
    try:
        if path.suffix == ".pt2":
            # Exported in eval mode; its module refuses .eval() and .train() (torch 2.14), so
            # the flag is set directly to say so.
            exported = torch.export.load(str(path)).module()
            for submodule in exported.modules():
                submodule.training = False
            return exported
        with _quiet():
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, OSError, ValueError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"{path} is corrupt or not a {path.suffix} file "
                         f"({type(error).__name__}: {text})") from None
    return module.eval()
