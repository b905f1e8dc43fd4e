"""Time the small-GEMM table of a PyTorch eager profile (:class:`~budgetsearch.cost.SmallGemm`).

A dense conv PyTorch eager runs on its own im2col + GEMM path (:mod:`budgetsearch.cost.dispatch`)
is one GEMM per image, N = its output area. MKL's single-precision GEMM repacks the weights on
every call once N > 1, so a conv on a 3×3 map can cost more than the same conv on 7×7: on the
profiling machine (2026-12-02, AMD EPYC) a 512→512 1×1 conv ran 30 µs on 1 position, 230–370 µs
per MB of weights on 2–15 positions (9 and 15 the worst), 115 on 16, then grew with N. No per-FLOP
or per-byte price follows that, and the fit set's maps (powers of two, mostly) do not sample it.

Method: two 1×1 convs, 256→256 and 512→512 (0.26 and 1.05 MB of weights), on a 1×N input for
every N in 1..:data:`AREAS`, timed by :mod:`budgetsearch.profiling.timing` (one interleaved run);
the price per MB at N is the slope between the two (what a conv's weights add, its per-call
overhead left to the fit). About 2 s.

Example:
    >>> table = measure_small_gemm(areas=4, rounds=1, inner=1)  # doctest: +SKIP
    >>> len(table.measured_ms_per_mb)                          # doctest: +SKIP
    4
"""

from __future__ import annotations

import torch
from torch import nn

from budgetsearch.cost.profiles import SmallGemm
from budgetsearch.profiling.timing import make_runner, time_runners

AREAS = 64  # output positions timed: up to an 8×8 map; beyond, the price grows with N
WIDTHS = (256, 512)  # channels of the two 1×1 convs whose difference prices a MB of weights


def measure_small_gemm(
    *, areas: int = AREAS, threads: int = 1, rounds: int = 5, inner: int = 5, seed: int = 0,
) -> SmallGemm:
    """The table of ms per MB of weights at output areas 1..``areas``, timed here (scale 1)."""
    if areas < 1 or rounds < 1 or inner < 1 or threads < 1:
        raise ValueError(f"areas, rounds, inner and threads must be ≥ 1, got {areas}, {rounds}, "
                         f"{inner}, {threads}")
    runners = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for width in WIDTHS:
            conv = nn.Conv2d(width, width, 1, bias=False).eval()
            for n in range(1, areas + 1):
                runners.append(make_runner(conv, torch.randn(1, width, 1, n),
                                           runtime="pytorch-eager", threads=threads))
    # on several threads PyTorch sends a 1×1 conv of a large input to oneDNN: keep it on the
    # GEMM path the table prices (oneDNN's own convs are priced apart)
    with torch.backends.mkldnn.flags(enabled=False):
        times = time_runners(runners, rounds=rounds, inner=inner, warmup=2, threads=threads,
                             seed=seed)
    small, large = times[:areas], times[areas:]
    megabytes = [width * width * 4 / 1e6 for width in WIDTHS]
    per_mb = (large - small) / (megabytes[1] - megabytes[0])
    method = (f"1x1 convs {WIDTHS[0]}->{WIDTHS[0]} and {WIDTHS[1]}->{WIDTHS[1]} on 1xN maps, "
              f"N = 1..{areas}, {threads} thread(s), {rounds} interleaved rounds x burst of "
              f"{inner}; ms per MB = the slope between the two (budgetsearch.profiling."
              f"small_gemm)")
    return SmallGemm(tuple(round(max(0.0, float(v)), 6) for v in per_mb), 1.0, method)
