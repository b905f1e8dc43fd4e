"""Importing fvcore stays quiet: torch's jit.script FutureWarning is silenced there, nowhere else.

Both checks run in a fresh interpreter: in the test process fvcore is imported already.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

# Scripting a function of our own after the fvcore import must still warn.
STILL_WARNS = """
import warnings
import torch
from budgetsearch.cost import layer_inventory
from budgetsearch.models import build_model

def plus_one(x: torch.Tensor) -> torch.Tensor:
    return x + 1

with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    layer_inventory(build_model("wrn-10-1"), torch.zeros(1, 1, 28, 28))
    during_import = [str(w.message) for w in seen if w.category is FutureWarning]
    torch.jit.script(plus_one)
    after = [str(w.message) for w in seen if w.category is FutureWarning]
print(len(during_import), len(after), sep=",")
"""


def test_cost_command_prints_no_future_warning() -> None:
    result = subprocess.run([sys.executable, "-m", "budgetsearch", "cost", "--model", "wrn-10-1"],
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "FutureWarning" not in result.stderr, result.stderr


def test_only_the_fvcore_import_is_silenced(tmp_path: Path) -> None:
    script = tmp_path / "still_warns.py"  # a file: jit.script reads the function's source
    script.write_text(STILL_WARNS)
    result = subprocess.run([sys.executable, str(script)], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0,1"
