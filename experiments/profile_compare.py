"""Issue 16: two fits of one profile, compared offline on times already measured (timing nothing).

    git show f1057b2:hw_profiles/cpu-2core-x86-avx2-ort.yaml > /tmp/before-ort.yaml
    PYTHONPATH=. python experiments/profile_compare.py /tmp/before-ort.yaml \\
        hw_profiles/cpu-2core-x86-avx2-ort.yaml \\
        --until 1203-2141 \\
        --relatives experiments/results/network_calibration_ort_output_1203-2145.txt

Scores both on (1) their own held-out and leave-one-family-out errors (from the YAMLs); (2) the
48 foreign networks of every committed benchmark run of this profile
(``results/latency_accuracy_MMDD-HHMM.csv`` of 2026-12-02 and -03 whose rows name the profile;
``--until`` the last run priced with ``before``): each run's price is taken back
to the profile it was priced with (the run's factor, prediction / ``before``'s price, kept)
and re-priced by ``after``, then scored as run and centred per run (the model's scatter);
(3) with ``--relatives``, the channel-pruned relatives of a ``network_calibration.py`` output
against their measured times, at the drift factor its header prints. The profile the runs
were priced with must be ``before`` for (2) to mean anything, and the runs must have timed the
machine the profile stands for (a profile of another CPU is priced there, rescaled, unchecked).
"""

from __future__ import annotations

import argparse
import glob
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_accuracy as bench  # noqa: E402
import network_calibration as calibration  # noqa: E402

from budgetsearch.cost import DeviceProfile, load_profile  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _within(errors: np.ndarray, pct: float = 10) -> float:
    return float(np.mean(np.abs(errors) <= pct / 100))


def own_errors(profile: DeviceProfile) -> str:
    """The profile's own held-out and leave-one-family-out shares within ±10 %, as one line."""
    held = profile.predictor_error
    if held is None:
        return "no held-out error recorded"
    lofo = profile.transfer_error or {}
    families = {f: v.get("within_10pct") for f, v in (lofo.get("families") or {}).items()}
    mean = np.mean([v for v in families.values() if v is not None]) if families else float("nan")
    return (f"held-out {held.within_10pct:.0%} within ±10%; leave-one-family-out mean "
            f"{mean:.0%} (" + ", ".join(f"{f} {v:.0%}" for f, v in families.items()) + ")")


def foreign(before: DeviceProfile, after: DeviceProfile, name: str, until: str) -> None:
    """Print both profiles' shares on the 48 foreign networks of every run of ``name``."""
    networks = bench.foreign_networks(False)
    names = [n["network"] for n in networks]
    raw_before, raw_after = bench.predict(networks, before), bench.predict(networks, after)
    scores = {"before": [], "after": []}
    for table in sorted(glob.glob(str(RESULTS / "latency_accuracy_120[23]-*.csv"))):
        if until and Path(table).stem.rsplit("_", 1)[1] > until:
            continue
        rows = pd.read_csv(table)
        rows = rows[(rows.profile == name) & (rows.family != "compact-wrn")]
        if set(rows.network) != set(names):
            continue
        rows = rows.set_index("network").loc[names]
        factor = rows.predicted_ms.to_numpy() / raw_before
        for key, raw in (("before", raw_before), ("after", raw_after)):
            ratio = raw * factor / rows.measured_ms.to_numpy()
            centred = np.exp(np.log(ratio) - np.median(np.log(ratio)))
            scores[key].append((_within(ratio - 1), _within(centred - 1),
                                _within(centred - 1, 20)))
    for key, runs in scores.items():
        if not runs:
            print(f"  {key}: no benchmark run priced these 48 networks with {name}")
            continue
        s = np.array(runs)
        print(f"  {key}: {len(s)} runs' 48 foreign networks within ±10% as run "
              f"{s[:, 0].mean():.0%}; centred {s[:, 1].mean():.0%} (worst run "
              f"{s[:, 1].min():.0%}), ±20% {s[:, 2].mean():.0%}")


def relatives(before: DeviceProfile, after: DeviceProfile, output: str) -> None:
    """Print both profiles' shares on the pruned relatives a network_calibration.py output
    timed, at the drift factor its header prints."""
    text = Path(output).read_text()
    factor = float(re.search(r"drift check x([\d.]+)", text).group(1))
    measured = {m.group(1): float(m.group(2)) for m in
                re.finditer(r"^(\S+@\S+)\s+([\d.]+)\s+[\d.]+\s+[+-][\d.]+", text, re.M)}
    errors = {"before": [], "after": []}
    for name in calibration.NAMES:
        for size in (32, 64):
            for n in calibration.relatives(name, size)[1:]:
                if n["network"] not in measured:
                    continue
                for key, profile in (("before", before), ("after", after)):
                    price = n["inventory"].predict_latency_ms(profile) * factor
                    errors[key].append(price / measured[n["network"]] - 1)
    for key, e in errors.items():
        e = np.array(e)
        print(f"  {key}: {len(e)} pruned relatives ({Path(output).name}, check x{factor:.3f}) "
              f"within ±10% {_within(e):.0%}, ±20% {_within(e, 20):.0%}, median "
              f"{100 * np.median(e):+.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--until", default="", help="the last run (MMDD-HHMM) priced with before")
    parser.add_argument("--relatives", help="a network_calibration.py output of this profile")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    before, after = load_profile(args.before, check=False), load_profile(args.after, check=False)
    for key, path, profile in (("before", args.before, before), ("after", args.after, after)):
        print(f"{key} ({path}): {own_errors(profile)}")
    foreign(before, after, after.name, args.until)
    if args.relatives:
        relatives(before, after, args.relatives)


if __name__ == "__main__":
    main()
