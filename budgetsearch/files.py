"""Files that survive a crash: write to a temporary file beside the target, then rename.

``os.replace`` is atomic on POSIX within one folder, so a reader (or a resumed run) sees either
the old file or the new one, never a half-written one, even after ``kill -9``. The new file gets the
mode a plain ``open(path, "w")`` would leave: an existing file's mode is kept, and a new file is
``0o666`` less the umask (``0o644`` under umask ``022``), not ``tempfile``'s private ``0o600``.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_text_atomic(folder / "row.json", "{}")
    >>> (folder / "row.json").read_text()
    '{}'
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import IO, Any


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new empty file next to ``path``, opened for writing, mode ``0o666`` less the umask."""
    # tempfile.mkstemp always creates 0o600; os.open with 0o666 lets the kernel apply the umask
    # (reading the umask would mean setting it, which races with other threads).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}: 100 names taken")


def _write_atomic(path: Path, mode: str, write: Callable[[IO[Any]], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = _create_beside(path)
    try:
        with os.fdopen(handle, mode) as stream:
            with contextlib.suppress(FileNotFoundError):  # an overwrite keeps the old file's mode
                os.chmod(temp, stat.S_IMODE(os.stat(path).st_mode))
            write(stream)
        os.replace(temp, path)
    except BaseException:  # KeyboardInterrupt too: never leave the temporary file behind
        Path(temp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` via write-then-rename."""
    _write_atomic(Path(path), "w", lambda stream: stream.write(text))


def torch_save_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)`` via write-then-rename."""
    import torch

    _write_atomic(Path(path), "wb", lambda stream: torch.save(obj, stream))


def save_whole_module(model: Any, path: str | os.PathLike[str]) -> str | None:
    """``torch.save`` a whole network to ``path`` (write-then-rename): None when written, else
    why it cannot be pickled, in one line, with nothing left at ``path``.

    A network whose class is defined inside a function (a user's factory may do so), or which
    holds a lambda, has no importable name, so pickle refuses it. Such a network is still
    deployed as ``model.ts`` and its weights as ``state_dict.pt``; callers say so and go on.
    """
    import pickle

    try:
        torch_save_atomic(model, path)
    except (AttributeError, TypeError, pickle.PicklingError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return None


def yaml_problem(error: Exception) -> str:
    """A YAML parser error in one line: what went wrong and where (``line L, column C``)."""
    import yaml

    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        what = " ".join(p for p in (error.context, error.problem) if p) or "invalid YAML"
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"{what}{where}"
    return " ".join(str(error).split())


def shipped_folder(name: str) -> Path:
    """A data folder shipped with budgetsearch (``hw_profiles``, ``search_spaces``).

    pyproject.toml maps the top-level folder to the package ``budgetsearch.<name>``, so a wheel
    holds it inside the package; a source checkout (editable install, ``PYTHONPATH=.``) keeps it
    beside the package. Asking for ``budgetsearch`` itself, not ``budgetsearch.<name>``, finds the
    copy next to whichever budgetsearch was imported.
    """
    packaged = resources.files("budgetsearch") / name
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / name


#: The lock file of a run folder (held while a ``budgetsearch`` process writes into it).
LOCK_FILE = ".budgetsearch.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], *, what: str = "folder") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder/.budgetsearch.lock`` (created) while in the block.

    ``flock`` is released by the kernel when the process ends, ``kill -9`` included, so a
    crashed run leaves an unlocked file behind and never a stale lock. Where ``fcntl`` is
    missing (Windows) the block runs unlocked.

    Raises:
        ValueError: another process holds the lock (its process id is named when known).

    Example:
        >>> import tempfile
        >>> with folder_lock(Path(tempfile.mkdtemp())) as lock:
        ...     lock.name
        '.budgetsearch.lock'
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX)
        yield Path(folder) / LOCK_FILE
        return
    path = Path(folder) / LOCK_FILE
    handle = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip()
            by = f" (process {holder})" if holder.isdigit() else ""
            raise ValueError(f"{what} {folder} is in use by another budgetsearch process{by}, "
                             f"which holds {path}; wait for it to end, or choose another "
                             "folder") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(handle)  # releases the lock
