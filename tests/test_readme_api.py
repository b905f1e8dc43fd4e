"""The README's "Python API" section, executed as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_blocks() -> list[str]:
    text = README.read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_api_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _api_blocks()
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"run_folder": tmp_path / "run"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own README
    printed = capsys.readouterr().out.splitlines()
    assert re.match(r"[\d,]+ parameters, [\d,]+ FLOPs, \d+\.\d+ ms", printed[0])
    kept, target = (float(x.replace(",", "")) for x in
                    re.match(r"([\d,]+) parameters kept \(target ([\d,]+)\)", printed[1]).groups())
    assert kept <= target
    assert printed[-1].endswith("True")
    model = namespace["best"]
    assert not model.training  # type: ignore[attr-defined]
