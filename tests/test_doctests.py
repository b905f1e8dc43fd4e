"""Every docstring example in the package runs (those marked +SKIP need a cluster, a run folder
or minutes of timing)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import budgetsearch

MODULES = sorted(m.name for m in pkgutil.walk_packages(budgetsearch.__path__, "budgetsearch.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
