"""Issue 16: do fit rows that separate an activation's price from its conv's help? Half offline.

One command (about four minutes)::

    R=experiments/results; PYTHONPATH=. python experiments/actfree_rows.py pytorch-eager \
        $R/latency_accuracy_1203-{0823,0910,1038,1058,1139,1155,1229,1324,1341,1358,1417,1426,1438,1455,1501,1516,1601}.csv

In the generated fit set nearly every conv is followed by an activation, so the fit is free to
put a conv's per-call cost on the activation after it (``op_ablation.py``: the shipped eager
profile prices an activation at 32 µs a call, removing one saves about 8). This times 65 of the
fit networks (generated, unpruned) now, each beside a variant with every activation replaced by
Identity, scales each variant's time to the profile's day by its original's ratio recorded/now,
adds the variants as fit rows, re-fits (as ``budgetsearch profile --refit``) and scores the
held-out networks and the foreign networks of each ``RESULTS_CSV`` as priced and centred.
Output quoted in experiments/README.md ("Where the eager profile's per-call prices sit"):
``results/actfree_rows_output.txt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bias_columns import (  # noqa: E402
    PROFILES,
    foreign_shares,
    offline_fit,
)
from op_ablation import ACTIVATIONS, without  # noqa: E402

from budgetsearch.cost import layer_inventory  # noqa: E402
from budgetsearch.profiling.fit import (  # noqa: E402
    features_for,
    fit_coefficients,
)
from budgetsearch.profiling.timing import time_networks  # noqa: E402


def main() -> None:
    runtime, paths = sys.argv[1], sys.argv[2:]
    name = PROFILES[runtime]
    data = offline_fit(runtime, [Path(p) for p in paths])
    fit = data.fit
    draw = [i for i in np.random.default_rng(1).choice(len(fit), 72, replace=False)
            if fit[i].family != "wrn" and not fit[i].kept_channels]
    chosen = [fit[i] for i in draw]
    pairs = []
    for b in chosen:
        pairs += [(b.model, b.example_input),
                  (without(b.model, ACTIVATIONS), b.example_input)]
    torch.set_num_threads(1)
    now = time_networks(pairs, rounds=8, inner=5, warmup=2, runtime=runtime)
    original_now, variant_now = now[0::2], now[1::2]

    recorded = data.fit_ms[draw]
    variants = np.stack([data.row(layer_inventory(without(b.model, ACTIVATIONS),
                                                  b.example_input), {})
                         for b in chosen])
    variant_ms = variant_now * recorded / original_now
    print(f"{name} ({runtime}): {len(chosen)} activation-free variants; the originals ran "
          f"x{np.median(original_now / recorded):.3f} of their recorded times (median), the "
          f"variants x{np.median(variant_now / original_now):.3f} of the originals")
    fit_rows, held_rows, foreign_rows = (data.rows[k] for k in ("fit", "holdout", "foreign"))
    fit_ms, held_ms, runs = data.fit_ms, data.held_ms, data.runs
    columns = [*features_for(runtime, small_gemm=data.profile.small_gemm is not None),
               ("network", "intercept")]

    def score(label: str, design: np.ndarray, target: np.ndarray) -> None:
        coef = fit_coefficients(design, target)
        held = held_rows @ coef / held_ms * 100 - 100
        priced, centred, worst = foreign_shares(foreign_rows, coef, runs)
        per_call = dict(zip(columns, coef * 1e3, strict=True))
        calls = ", ".join(f"{kind} {per_call.get((kind, 'overhead_ms'), 0.0):.1f}"
                          for kind in ("activation", "batchnorm", "conv", "onednn_conv",
                                       "binary", "concat"))
        print(f"{label:26s} held-out {np.mean(np.abs(held) <= 10):4.0%}; foreign over "
              f"{len(runs)} runs as priced {priced:4.0%}, centred {centred:4.0%} (worst run "
              f"{worst:4.0%}); µs per call: {calls}")

    score("the shipped fit", fit_rows, fit_ms)
    score("+ activation-free rows", np.vstack([fit_rows, variants]),
          np.concatenate([fit_ms, variant_ms]))


if __name__ == "__main__":
    main()
