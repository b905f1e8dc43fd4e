"""Issue 16: score profile YAMLs offline on one benchmark run's measured times (timing nothing).

Prices the benchmark's 48 foreign networks with each profile (no drift check) and scores them
against the ``measured_ms`` of the rows of a ``latency_accuracy*.csv`` whose ``profile`` is the
YAML's name: within ±10% as recorded, and centred (the one factor that centres the run).

    PYTHONPATH=. python experiments/rescore_profiles.py \\
        experiments/results/latency_accuracy_1204-2111-residency.csv \\
        experiments/results/residency/cpu-2core-x86-xeon-settled.yaml \\
        experiments/results/residency/cpu-2core-x86-xeon-residency.yaml

The residency variant needs the weight-residency table's code (not kept, experiments/README.md
"The night of 2026-12-04"); its output at 21:14 is in results/rescore_profiles_output_1204-2114.txt.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402

from budgetsearch.cost.profiles import DeviceProfile, load_profile  # noqa: E402


def foreign_networks() -> list[dict[str, Any]]:
    """The benchmark's 48 foreign networks, built and traced (its compact WRNs left out)."""
    return [n for n in bench.foreign_networks(quick=False) if n["family"] != "compact-wrn"]


def price_ratios(rows: pd.DataFrame, profile: DeviceProfile, networks: list[dict[str, Any]],
                 column: str = "measured_ms") -> dict[str, float]:
    """Per network of a benchmark table's ``rows`` (one profile's): ``profile``'s price (no
    drift check) over the time in ``column``."""
    times = dict(zip(rows["network"], rows[column], strict=True))
    return {n["network"]: n["inventory"].predict_latency_ms(profile, kept_channels=n["kept"])
            / times[n["network"]] for n in networks if n["network"] in times}


def main() -> None:
    table = pd.read_csv(sys.argv[1])
    networks = foreign_networks()
    for path in sys.argv[2:]:
        profile = load_profile(path, check=False)
        priced = price_ratios(table[table["profile"] == profile.name], profile, networks)
        ratio = np.array(list(priced.values()))
        factor = 1 / np.median(ratio)
        print(f"{path}: {len(ratio)} networks; as recorded {np.mean(abs(ratio - 1) <= 0.1):.0%} "
              f"within ±10% (median {100 * (np.median(ratio) - 1):+.1f}%), centred "
              f"{np.mean(abs(ratio * factor - 1) <= 0.1):.0%} (x{factor:.3f})")
        by_family: dict[str, list[float]] = {}
        for name, r in zip(priced, ratio * factor, strict=True):
            by_family.setdefault(name.split("/")[0].split("@")[0], []).append(100 * (r - 1))
        print("   centred per family: " + " ".join(f"{k} {np.median(v):+.0f}%"
                                                  for k, v in by_family.items()))


if __name__ == "__main__":
    main()
