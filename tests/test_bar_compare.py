"""experiments/bar_compare.py's bookkeeping: the tables section 9 of experiments/README.md
quotes (mean ± sample std over seeds, the best in bold, missing cells and seeds marked) and the
cells a shared results folder already holds. Oracles: numpy's mean and ddof=1 std."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture
def bar_compare(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import bar_compare as module

    return module


def _rows() -> pd.DataFrame:
    rows = []
    accuracies = {("bar", 0): 0.80, ("bar", 1): 0.78, ("wm", 0): 0.83, ("wm", 1): 0.82,
                  ("dense", 0): 0.85}
    for (method, seed), accuracy in accuracies.items():
        rows.append({"method": method, "metric": "flops", "factor": 2.0, "seed": seed,
                     "test_accuracy": accuracy, "flops": 1e6, "params": 1e4,
                     "cost_fraction": 0.5, "latency_ms": 1.0, "measured_ms": 2.0,
                     "measured_min_ms": 1.9, "latency_vs_full": 0.6, "met_target": seed == 0})
    return pd.DataFrame(rows)


def test_summarise_takes_mean_and_sample_std_over_seeds(bar_compare: ModuleType) -> None:
    table = bar_compare.summarise(_rows()).set_index("method")
    assert table.loc["bar", "accuracy"] == pytest.approx(np.mean([0.80, 0.78]))
    assert table.loc["bar", "spread"] == pytest.approx(np.std([0.80, 0.78], ddof=1))
    assert table.loc["wm", "seeds"] == 2 and table.loc["dense", "seeds"] == 1
    assert np.isnan(table.loc["dense", "spread"])  # one seed: no spread
    assert not table.loc["bar", "met"]  # every seed must meet the target


def test_markdown_bolds_the_best_and_marks_missing_cells_and_seeds(
        bar_compare: ModuleType) -> None:
    text = bar_compare.markdown(bar_compare.summarise(_rows()), ["bar", "wm", "dense", "tp"])
    row = next(line for line in text.splitlines() if line.startswith("| flops | 2× |"))
    cells = [c.strip() for c in row.strip("|").split("|")][2:]
    assert cells[0] == "0.790 ± 0.014"
    assert cells[1] == "0.825 ± 0.007"
    assert cells[2] == "**0.850 ± 0.000 (n=1)**"  # the best mean, from fewer seeds
    assert cells[3] == "–"  # a method with no rows


def test_done_cells_reads_every_process_rows(bar_compare: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    assert bar_compare.done_cells(path) == set()
    path.write_text(json.dumps({"method": "bar", "metric": "flops", "factor": 2, "seed": 1})
                    + "\n\n" + json.dumps({"method": "wm", "metric": "latency_ms",
                                           "factor": 4.0, "seed": 0}) + "\n")
    assert bar_compare.done_cells(path) == {("bar", "flops", 2.0, 1),
                                            ("wm", "latency_ms", 4.0, 0)}
