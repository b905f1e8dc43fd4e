"""Atomic writers: the file is whole, nothing is left beside it, and its mode follows the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from budgetsearch.files import torch_save_atomic, write_text_atomic


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test that sets it."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _plain_open_mode(path: Path) -> int:
    path.write_text("")
    return _mode(path)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_get_0666_less_the_umask(mask: int, expected: int, tmp_path: Path,
                                           umask: None) -> None:
    os.umask(mask)
    write_text_atomic(tmp_path / "results.csv", "a,b\n1,2\n")
    torch_save_atomic({"w": torch.zeros(2)}, tmp_path / "runs" / "model.pt")
    assert _mode(tmp_path / "results.csv") == expected
    assert _mode(tmp_path / "runs" / "model.pt") == expected
    assert _plain_open_mode(tmp_path / "plain.txt") == expected  # the oracle: open() itself
    assert (tmp_path / "results.csv").read_text() == "a,b\n1,2\n"
    assert torch.load(tmp_path / "runs" / "model.pt")["w"].shape == (2,)


def test_overwrite_keeps_the_existing_files_mode(tmp_path: Path, umask: None) -> None:
    path = tmp_path / "report.md"
    path.write_text("old")
    path.chmod(0o640)
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o640


def test_a_failed_write_leaves_nothing_beside_the_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    write_text_atomic(tmp_path / "row.json", "{}")

    def disk_full(obj: object, stream: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="disk full"):
        torch_save_atomic({"w": 1}, tmp_path / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["row.json"]
