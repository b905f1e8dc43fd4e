"""Experiment 4 (issue 9): mixed connectivity vs regular ResBlocks (BAR paper Table 2 / supp.
section 5) on the compact WRN-16-2 networks that ``experiments/bar_budgets.py`` saved.

For each saved compact network (2×, 4×, 8×, 16× activation-volume reduction) this builds its
*regular-block twin*: the same learned structure (stream widths, inner widths, removed blocks),
but every block reads and writes the whole live stream of its stage, as a usual pre-act ResBlock
must for the residual sums to match (BAR section 4.2). Then it counts both (parameters, fvcore
FLOPs, activation volume = BAR eq. 4, all through ``budgetsearch.cost.layer_inventory``), checks
the counts against ``experiments/results/bar/summary.json`` (priced there from the gates with
``PrunePlan.kept_channels``), prices both on the ``cpu-2core-x86`` profile, and times both plus
the unpruned WRN-16-2 on this CPU the way ``budgetsearch profile`` does (interleaved rounds in
shuffled order, batch 1, one thread, medians), several times over to see the spread under load.

The twin has random weights: it exists to be counted and timed, not to be evaluated.

    .venv/bin/python experiments/mixed_connectivity.py   # writes experiments/results/mixed/
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from budgetsearch.cost import Cost, DeviceProfile, layer_inventory, load_profile  # noqa: E402
from budgetsearch.models import build_model  # noqa: E402
from budgetsearch.models.files import load_model_file  # noqa: E402
from budgetsearch.models.mixed import CompactResNet, MixedBlock  # noqa: E402
from budgetsearch.profiling.timing import time_networks  # noqa: E402

SHAPE = (1, 28, 28)
PROFILE = "cpu-2core-x86"
FACTORS = (2, 4, 8, 16)
# BAR paper Table 2 (WRN / CIFAR-10): % of the volume reduction lost with regular ResBlocks.
PAPER_TABLE2_LOST = {2: 0.12, 4: 0.43, 8: 0.53, 16: 0.58}
# Ops a mixed block runs that a regular block does not (gather / scatter of stream channels).
INDEX_OPS = ("aten::index_select", "aten::index_add", "aten::index_copy", "aten::new_zeros",
             "aten::zeros", "aten::zero_", "aten::fill_")


class RegularBlock(nn.Module):
    """Pre-act ResBlock over a whole stream: BN-ReLU, conv3×3 (S_in→mid), BN-ReLU, conv3×3
    (mid→S_out), plus ``x`` or a 1×1 projection (S_in→S_out) of the pre-activation.
    ``mid=0`` is a block whose branch was pruned away (only a pooling block keeps a body then)."""

    def __init__(self, stream_in: int, mid: int, stream_out: int, *, stride: int,
                 projection: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(stream_in)
        self.relu = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(stream_in, mid, 3, stride=stride, padding=1, bias=False) if mid \
            else None
        self.bn2 = nn.BatchNorm2d(mid) if mid else None
        self.conv2 = nn.Conv2d(mid, stream_out, 3, padding=1, bias=False) if mid else None
        self.shortcut = nn.Conv2d(stream_in, stream_out, 1, stride=stride, bias=False) \
            if projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = x if self.shortcut is None else self.shortcut(pre)
        if self.conv1 is not None:
            out = out + self.conv2(self.relu(self.bn2(self.conv1(pre))))
        return out


class RegularResNet(nn.Module):
    """Stem conv (→ S_0), :class:`RegularBlock` s, BN-ReLU, global pooling, linear head."""

    def __init__(self, *, in_channels: int, stem_width: int, blocks: list[RegularBlock],
                 width: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.conv1(x))
        out = self.pool(self.relu(self.bn(out)))
        return self.fc(torch.flatten(out, 1))


def regular_twin(compact: CompactResNet) -> RegularResNet:
    """The regular-block network with the structure ``compact`` learned (random weights).

    Stream widths are the compact blocks' ``out_width`` (the stem's ``stem_width`` for the first
    stream), inner widths are ``conv1.out_channels``; a block absent from ``compact`` (branch
    pruned, identity shortcut) stays absent.
    """
    blocks = []
    stream = compact.stem_width
    for block in compact.blocks:
        if not isinstance(block, MixedBlock):
            raise TypeError(f"expected MixedBlock in compact.blocks, got {type(block).__name__}")
        mid = 0 if block.conv1 is None else block.conv1.out_channels
        conv = block.conv1 if block.conv1 is not None else block.shortcut
        stride = int(conv.stride[0]) if conv is not None else 1
        projection = block.shortcut is not None
        if not projection and block.out_width != stream:
            raise ValueError(f"identity block changes the stream width {stream} → "
                             f"{block.out_width}; the compact network is inconsistent")
        blocks.append(RegularBlock(stream, mid, block.out_width, stride=stride,
                                   projection=projection))
        stream = block.out_width
    return RegularResNet(in_channels=compact.conv1.in_channels, stem_width=compact.stem_width,
                         blocks=blocks, width=stream, num_classes=compact.fc.out_features).eval()


@dataclass(frozen=True)
class Counted:
    """Cost-model figures of one network, counted from its own fvcore trace."""

    params: float
    flops: float
    volume: float
    predicted_ms: float

    @classmethod
    def of(cls, model: nn.Module, profile: DeviceProfile) -> Counted:
        cost: Cost = layer_inventory(model, torch.zeros(1, *SHAPE)).price(profile=profile)
        assert cost.latency_ms is not None  # a profile was given
        return cls(cost.params, cost.flops, cost.activation_volume, cost.latency_ms)


def index_op_count(compact: CompactResNet) -> int:
    """Gathers / scatters one forward pass of ``compact`` runs (MixedBlock.forward's branches)."""
    count = int(compact.conv1.out_channels != compact.stem_width)  # stem index_copy
    for b in compact.blocks:
        count += b.in_index is not None  # index_select
        count += b.conv2 is not None and b.conv2.out_channels != b.out_width  # index_add
        count += b.shortcut is not None and b.shortcut.out_channels != b.out_width  # index_copy
    return count


def index_op_share(model: nn.Module, *, calls: int = 200) -> float:
    """Fraction of the self CPU time of ``calls`` forward passes spent in INDEX_OPS
    (torch.profiler; its per-op overhead inflates small ops, so read it as a rough share)."""
    from torch.profiler import ProfilerActivity, profile

    x = torch.zeros(1, *SHAPE)
    with torch.inference_mode():
        for _ in range(10):
            model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                model(x)
    total = index = 0.0
    for event in prof.key_averages():
        total += event.self_cpu_time_total
        if event.key in INDEX_OPS:
            index += event.self_cpu_time_total
    return index / total if total else 0.0


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def timing_runs(models: dict[str, nn.Module], *, runs: int, rounds: int, pause_s: float,
                quiet_load: float, max_wait_s: float) -> list[dict[str, object]]:
    """``runs`` repetitions of the profiler's timing of every model. Before each run, wait (up to
    ``max_wait_s`` in all) for the 1-minute load average to fall to ``quiet_load``."""
    x = torch.zeros(1, *SHAPE)
    networks = [(m, x) for m in models.values()]
    waited = 0.0
    results = []
    for run in range(runs):
        if run:
            time.sleep(pause_s)
        while os.getloadavg()[0] > quiet_load and waited < max_wait_s:
            time.sleep(15)
            waited += 15
        before = loadavg()
        start = time.perf_counter()
        times = time_networks(networks, rounds=rounds, seed=run)
        results.append({"run": run, "load_before": before, "load_after": loadavg(),
                        "seconds": time.perf_counter() - start,
                        "ms": dict(zip(models, times.tolist(), strict=True))})
        print(f"run {run}: load {before[0]:.2f} → {results[-1]['load_after'][0]:.2f}, "
              + ", ".join(f"{k} {v:.2f}" for k, v in results[-1]["ms"].items()), flush=True)
    return results


def compare(name: str, counted: float, summary: float | None, mismatches: list[str]) -> None:
    if summary is not None and abs(counted - summary) > 0.5:
        mismatches.append(f"{name}: counted {counted:,.0f}, summary.json {summary:,.0f} "
                          f"({counted / summary - 1:+.2%})")


def plot(table: pd.DataFrame, out: Path) -> None:
    """Grouped bars per factor: volume reduction lost, FLOPs and measured latency."""
    labels = [f"{f}×" for f in table["factor"]]
    pos = np.arange(len(labels))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].bar(pos, 100 * table["volume_reduction_lost"], color="tab:red",
                label="here (WRN-16-2 / Fashion-MNIST)")
    axes[0].plot(pos, [100 * PAPER_TABLE2_LOST[f] for f in table["factor"]], "kD",
                 mfc="none", label="paper Table 2 (CIFAR-10)")
    axes[0].legend(fontsize=8)
    axes[0].set_ylabel("% of the volume reduction lost (regular)")
    axes[0].set_title("Volume reduction lost by regular blocks")
    for ax, key, scale, ylabel, title in (
        (axes[1], "flops", 1e-6, "MFLOPs (fvcore, 1 = 1 multiply-add)", "FLOPs"),
        (axes[2], "measured_ms", 1.0, "ms per forward (batch 1, 1 thread, median)",
         "Measured CPU latency"),
    ):
        ax.bar(pos - 0.2, scale * table[f"{key}_mixed"], 0.4, label="mixed")
        ax.bar(pos + 0.2, scale * table[f"{key}_regular"], 0.4, label="regular")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
    if "measured_ms_dense" in table:
        axes[2].axhline(float(table["measured_ms_dense"].iloc[0]), color="k", ls=":",
                        label="dense WRN-16-2")
        axes[2].legend()
    for ax in axes:
        ax.set_xticks(pos, labels)
        ax.set_xlabel("BAR volume-reduction target")
    fig.suptitle("BAR WRN-16-2 / Fashion-MNIST: mixed connectivity vs regular ResBlocks "
                 "(same learned widths)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bar-dir", type=Path, default=Path("experiments/results/bar"))
    parser.add_argument("--runs", type=int, default=8, help="timing repetitions (spread)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds of 5 passes per run")
    parser.add_argument("--pause-s", type=float, default=30.0, help="sleep between runs")
    parser.add_argument("--quiet-load", type=float, default=1.0,
                        help="wait before a run until the 1-min load average is at most this")
    parser.add_argument("--max-wait-s", type=float, default=300.0,
                        help="total waiting allowed for --quiet-load")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/mixed"))
    args = parser.parse_args()
    wall_start = time.perf_counter()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    profile = load_profile(PROFILE)
    summary = json.loads((args.bar_dir / "summary.json").read_text())
    runs_by_factor = {int(r["factor"]): r for r in summary["runs"]}
    dense = build_model("wrn-16-2", num_classes=10, in_channels=1).eval()
    dense_cost = Counted.of(dense, profile)

    rows, mismatches = [], []
    models: dict[str, nn.Module] = {"dense": dense}
    for factor in FACTORS:
        path = args.bar_dir / f"wrn16-2_bar_{factor}x.pt"
        if not path.is_file():
            print(f"skipped {factor}x: {path} missing (run experiments/bar_budgets.py)")
            continue
        mixed = load_model_file(path).eval()
        regular = regular_twin(mixed)
        with torch.inference_mode():  # the twin runs, and has the compact net's output shape
            assert regular(torch.zeros(1, *SHAPE)).shape == mixed(torch.zeros(1, *SHAPE)).shape
        mix, reg = Counted.of(mixed, profile), Counted.of(regular, profile)
        ref = runs_by_factor.get(factor, {})
        for label, counted, key in (
            ("volume mixed", mix.volume, "volume"), ("volume regular", reg.volume,
                                                     "volume_regular"),
            ("flops mixed", mix.flops, "flops"), ("flops regular", reg.flops, "flops_regular"),
            ("params mixed", mix.params, "params"),
            ("params regular", reg.params, "params_regular"),
            ("predicted ms mixed", mix.predicted_ms * 1e3, "latency_predicted_ms"),
        ):
            value = ref.get(key)
            scale = 1e3 if label.startswith("predicted") else 1.0
            compare(f"{factor}x {label}", counted, None if value is None else value * scale,
                    mismatches)
        blocks = list(mixed.blocks)
        rows.append({
            "factor": factor,
            "blocks": len(blocks),
            "index_ops_per_forward": index_op_count(mixed),
            "stream_widths": [mixed.stem_width] + [b.out_width for b in blocks],
            "volume_full": dense_cost.volume,
            "volume_mixed": mix.volume, "volume_regular": reg.volume,
            "volume_reduction_lost": (reg.volume - mix.volume) / (dense_cost.volume - mix.volume),
            "volume_mixed_vs_regular": mix.volume / reg.volume - 1,
            "factor_mixed": dense_cost.volume / mix.volume,
            "factor_regular": dense_cost.volume / reg.volume,
            "flops_mixed": mix.flops, "flops_regular": reg.flops,
            "params_mixed": mix.params, "params_regular": reg.params,
            "predicted_ms_mixed": mix.predicted_ms, "predicted_ms_regular": reg.predicted_ms,
            "predicted_ms_dense": dense_cost.predicted_ms,
            "index_op_cpu_share_mixed": index_op_share(mixed),
        })
        models[f"{factor}x mixed"] = mixed
        models[f"{factor}x regular"] = regular

    timing = timing_runs(models, runs=args.runs, rounds=args.rounds, pause_s=args.pause_s,
                         quiet_load=args.quiet_load, max_wait_s=args.max_wait_s)
    # The final figures: the run with the lowest mean of its 1-min load before and after.
    final = min(timing, key=lambda r: r["load_before"][0] + r["load_after"][0])
    for row in rows:
        for kind in ("mixed", "regular"):
            name = f"{row['factor']}x {kind}"
            values = [r["ms"][name] for r in timing]
            row[f"measured_ms_{kind}"] = final["ms"][name]
            row[f"measured_ms_{kind}_min"] = min(values)
            row[f"measured_ms_{kind}_max"] = max(values)
        row["measured_regular_over_mixed"] = row["measured_ms_regular"] / row["measured_ms_mixed"]
        row["regular_faster_in_runs"] = sum(r["ms"][f"{row['factor']}x regular"]
                                            < r["ms"][f"{row['factor']}x mixed"] for r in timing)
        dense_values = [r["ms"]["dense"] for r in timing]
        row["measured_ms_dense"] = final["ms"]["dense"]
        row["measured_ms_dense_min"] = min(dense_values)
        row["measured_ms_dense_max"] = max(dense_values)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.drop(columns=["stream_widths"]).to_csv(args.out / "mixed_connectivity.csv", index=False)
    meta = {
        "command": "experiments/mixed_connectivity.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "profile": PROFILE, "threads": 1, "input": [1, *SHAPE],
        "twin": "regular ResBlocks, random weights (counted and timed only)",
        "volume_reduction_lost": "(V_regular - V_mixed) / (V_dense - V_mixed)",
        "dense": asdict(dense_cost),
        "final_run": final["run"], "timing_runs": timing,
        "summary_mismatches": mismatches,
        "index_ops_counted": list(INDEX_OPS),
        "torch": torch.__version__,
        "wall_s": time.perf_counter() - wall_start,
        "rows": rows,
    }
    (args.out / "mixed_connectivity.json").write_text(json.dumps(meta, indent=1))
    plot(table, args.out / "mixed_connectivity.png")
    shown = ["factor", "volume_mixed", "volume_regular", "volume_reduction_lost", "flops_mixed",
             "flops_regular", "measured_ms_mixed", "measured_ms_regular", "measured_ms_dense",
             "predicted_ms_mixed", "predicted_ms_regular", "index_op_cpu_share_mixed",
             "regular_faster_in_runs"]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("summary.json mismatches:", mismatches or "none")
    print(f"final run {final['run']} (load {final['load_before']} → {final['load_after']}), "
          f"wall {meta['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
