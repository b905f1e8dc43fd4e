"""``budgetsearch devices``, ``cost`` and ``profile``: the device profiles, what a network costs
on one, and measuring this machine into a new one."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from budgetsearch.commands.argtypes import (
    input_size,
    positive_float,
    positive_int,
)
from budgetsearch.commands.options import (
    input_shape_arg,
    model_spec,
)
from budgetsearch.errors import UsageError
from budgetsearch.files import write_text_atomic

# --runtime's names for more than one runtime
_RUNTIME_CHOICES = {"both": ["pytorch-eager", "onnxruntime"],
                    "cuda": ["pytorch-cuda", "pytorch-cuda-fp16"]}
_PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# A profiling run whose two halves of rounds agree for fewer networks than this is called noisy
# (the quiet AVX-512 machine of 2026-12-02 agreed with itself for 88-100% of networks).
REPEATABLE = 0.8


def resolve_device(name: str, *, quiet: bool = False) -> Any:
    from budgetsearch.cost import load_profile, resolve_profile_name
    from budgetsearch.profiling import anchors  # noqa: F401  (registers the drift check)

    profile = load_profile(name)
    if not quiet and "/" not in name and not name.endswith((".yaml", ".yml")):
        resolved = resolve_profile_name(name)
        if resolved != name:
            print(f"device {name!r} resolves to profile {resolved!r}")
    if not quiet:
        unchecked_notice(profile)
    return profile


def _this_machine_hint(runtime: str) -> str:
    """The profiles measured on this machine in ``runtime``, or how to make one."""
    from budgetsearch.cost import load_profile, profile_names
    from budgetsearch.profiling.anchors import not_this_machine

    here = []
    for name in profile_names():
        try:
            other = load_profile(name, check=False)
        except (OSError, ValueError):
            continue
        if other.source == "measured" and other.runtime == runtime and not_this_machine(
                other) is None:
            here.append(name)
    if here:
        return f"measured on this machine: {', '.join(here)}"
    from budgetsearch.profiling.timing import cuda_unavailable, runs_on_cuda

    flag = (" --runtime cuda" if runs_on_cuda(runtime)
            else "" if runtime == "pytorch-eager" else f" --runtime {runtime}")
    command = f"'budgetsearch profile --name NAME{flag}'"
    if cuda_unavailable(runtime):
        return f"a GPU is measured on a machine with one: {command}"
    return f"to measure this one: {command}"


def unchecked_notice(profile: Any) -> None:
    """One line on stderr when a measured profile's drift check cannot run here, and why."""
    from budgetsearch.profiling import anchors

    if profile.source != "measured":
        return
    elsewhere = anchors.not_this_machine(profile)
    if elsewhere:  # its prices stand, unchecked, for the machine it was measured on
        print(f"budgetsearch: profile {profile.name!r} is not checked here: {elsewhere}; its "
              f"prices are that machine's ({_this_machine_hint(profile.runtime)})",
              file=sys.stderr)
        return
    reason = anchors.unchecked_reason(profile)
    if reason:
        print(f"budgetsearch: profile {profile.name!r} is not checked: {reason}",
              file=sys.stderr)


def _device_summary(profile: Any, check: Any) -> dict[str, Any]:
    """One profile as plain data for ``devices`` (and ``devices --json``)."""
    error = profile.predictor_error
    summary: dict[str, Any] = {
        "name": profile.name, "source": profile.source, "runtime": profile.runtime,
        "threads": profile.provenance.get("threads"), "aliases": list(profile.aliases),
        "measured_on": profile.provenance.get("date"),
        "predictor_error": None if error is None else error.as_dict(),
        "run_repeatability": profile.run_repeatability,
        "leave_one_family_out": None, "last_check": None, "unchecked_reason": None,
        "published_check": (None if profile.published_check is None
                            else profile.published_check.summary()),
    }
    if profile.transfer_error:
        families = profile.transfer_error.get("families", {})
        within = [f["within_10pct"] for f in families.values()]
        summary["leave_one_family_out"] = {
            "families": len(families),
            "mean_within_10pct": round(sum(within) / len(within), 4) if within else None,
            "per_family": families,
        }
    if profile.source == "measured":
        from budgetsearch.profiling.anchors import unchecked_reason

        summary["unchecked_reason"] = unchecked_reason(profile)
    if check:
        summary["last_check"] = {
            k: check.get(k) for k in ("date", "seconds", "scale", "overhead_scale", "work_scale",
                                      "drift_pct", "recalibrated", "tolerance_pct",
                                      "residual_pct", "snapshot_scale", "refit", "shrunk",
                                      "refit_in_force")
            if k in check
        }
        history = check.get("history")
        summary["last_check"]["checks_in_history"] = (
            len(history) if isinstance(history, list) and history else 1)
    return summary


def _cmd_devices(args: argparse.Namespace) -> int:
    import json

    from budgetsearch.cost import load_profile, profile_names
    from budgetsearch.profiling.anchors import (
        factors_source,
        factors_text,
        last_check,
        refit_text,
    )

    rows = []
    for name in profile_names():
        profile = load_profile(name, check=not args.no_check)
        rows.append(_device_summary(profile, profile.last_check or last_check(name)))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max([20, *(len(row["name"]) + 1 for row in rows)])
    runtime_width = max([14, *(len(row["runtime"]) for row in rows)])
    print(f"{'name':<{width}} {'source':<9} {'runtime':<{runtime_width}} {'thr':>3}  "
          f"predictor error")
    for row in rows:
        error = row["predictor_error"]
        if error is None:
            text = "not measured (roofline from datasheet)"
        else:
            text = (f"{error['within_10pct']:.0%} of {error['networks']} held-out within ±10% "
                    f"(median |err| {error['median_abs_pct']:.1f}%, {row['measured_on']})")
            if row["run_repeatability"] is not None:
                text += (f"; the run agreed with itself for {row['run_repeatability']:.0%} of "
                         f"its networks")
            lofo = row["leave_one_family_out"]
            if lofo:
                text += (f"; unseen family: {lofo['mean_within_10pct']:.0%} within ±10% "
                         f"(leave-one-family-out, {lofo['families']} families)")
            check = row["last_check"]
            if row["unchecked_reason"]:
                text += f"; not checked here: {row['unchecked_reason']}"
                if row["source"] == "measured" and row["unchecked_reason"].startswith(
                        "measured on"):
                    text += f" ({_this_machine_hint(row['runtime'])})"
            elif check:
                state = (f"rescaled: {factors_text(check)}{refit_text(check)}"
                         if check["recalibrated"] else "holds as recorded")
                worst = max((abs(v) for v in (check.get("residual_pct") or {}).values()),
                            default=0.0)
                source = factors_source(check, check.get("checks_in_history", 1))
                typical = f"{source}; " if source else ""
                text += (f"; last check {check['date']}: drift {check['drift_pct']:+.1f}% "
                         f"({typical}{state}; anchors within ±{worst:.1f}% after)")
            else:
                text += "; never checked on this machine"
        threads = row["threads"] if row["threads"] is not None else "-"
        print(f"{row['name']:<{width}} {row['source']:<9} {row['runtime']:<{runtime_width}} "
              f"{threads!s:>3}  "
              f"{text}")
        if row.get("published_check"):
            print(f"{'':<{width + runtime_width + 16}} {row['published_check']}")
    return 0


def _add_devices_parser(sub: Any) -> None:
    p = sub.add_parser(
        "devices", help="list the device profiles (hw_profiles/*.yaml) and how true they are",
        description="List the device profiles: source, runtime, threads, the predictor's error "
        "(held-out and leave-one-family-out, as measured) and the drift check of this machine "
        "as of its last run, with its date. Measured profiles of this CPU are checked now "
        "(≤ 2 s each) unless --no-check.",
    )
    p.add_argument("--json", action="store_true", help="print the same as JSON, for scripts")
    p.add_argument("--no-check", action="store_true",
                   help="do not re-time the anchors; show the last stored check")
    p.set_defaults(handler=_cmd_devices)


def _cmd_cost(args: argparse.Namespace) -> int:
    import json

    import torch

    from budgetsearch.cost import FLOP_CONVENTION, layer_inventory
    from budgetsearch.models import build_model, model_label

    channels, height, width = args.input
    spec = model_spec(args.model)
    profile = resolve_device(args.device, quiet=args.json) if args.device else None
    model = build_model(spec, num_classes=args.num_classes, in_channels=channels,
                        width_multiplier=args.width)
    model.eval()
    try:
        with torch.no_grad():
            inventory = layer_inventory(model, torch.zeros(1, channels, height, width))
    except Exception as error:  # the network does not take this input: say so in one line
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UsageError(f"model {model_label(spec)!r} cannot be priced on a "
                         f"{channels}x{height}x{width} input ({type(error).__name__}: {text}); "
                         "pass its input with --input-shape C,H,W") from None
    times = inventory.layer_latency_ms(profile) if profile is not None else {}
    if args.json:
        print(json.dumps(_cost_json(spec, args, inventory, profile, times), indent=1))
        return 0
    print(f"{model_label(spec)} (width ×{args.width}), input 1x{channels}x{height}x{width}; "
          f"FLOPs: {FLOP_CONVENTION}")
    if profile is not None:
        how = ("roofline from datasheet, not measured" if profile.source == "datasheet"
               else f"measured, {profile.provenance.get('threads', '?')} thread(s)")
        print(f"latency on {profile.name} ({how})")
    header = (f"{'layer':<22} {'op':<9} {'in':>5} {'out':>5} {'kernel':>6} {'stride':>6} "
              f"{'out hw':>7} {'params':>10} {'FLOPs':>13} {'act.vol':>9}")
    print(header + (f" {'ms':>8}" if profile is not None else ""))
    for r in inventory.layers:
        line = (f"{r.name:<22} {r.op:<9} {r.in_channels:>5} {r.out_channels:>5} "
                f"{'x'.join(map(str, r.kernel_size)) or '-':>6} "
                f"{'x'.join(map(str, r.stride)) or '-':>6} "
                f"{r.output_hw[0]}x{r.output_hw[1]:<4} {r.params:>10,} {r.flops:>13,} "
                f"{r.activation_volume:>9,}")
        print(line + (f" {times[r.name]:>8.4f}" if profile is not None else ""))
    cost = inventory.price(profile=profile)
    print(f"total: {int(cost.params):,} parameters, {int(cost.flops):,} FLOPs ({FLOP_CONVENTION}), "
          f"activation volume {int(cost.activation_volume):,}, memory "
          f"{cost.memory_bytes / 2**20:.2f} MiB (float32 weights + peak activations)")
    if cost.latency_ms is not None and profile is not None:
        error = profile.predictor_error
        note = (f"; predictor: {error.within_10pct:.0%} of {error.networks} held-out networks "
                f"within ±10%" if error else "; not measured: a datasheet roofline estimate")
        if profile.last_check and profile.last_check.get("recalibrated"):
            from budgetsearch.profiling.anchors import factors_text

            note += f" (rescaled {factors_text(profile.last_check)} by today's drift check)"
        extra = sum(inventory.extra_latency_ms(profile).values())
        if extra:
            note += (f"; of which {extra:.3f} ms in {len(inventory.extra_ops)} ops fvcore does "
                     f"not count (activations, adds, ...)")
        print(f"predicted latency on {profile.name}: {cost.latency_ms:.3f} ms at batch 1{note}")
    return 0


def _cost_json(spec: str, args: argparse.Namespace, inventory: Any, profile: Any,
               times: dict[str, float]) -> dict[str, Any]:
    """``cost --json``: the totals, the device profile, and the layers, as plain data."""
    from budgetsearch.cost import FLOP_CONVENTION

    cost = inventory.price(profile=profile)
    threads = profile.provenance.get("threads") if profile is not None else None
    return {
        "model": spec, "width": args.width, "input_shape": list(args.input),
        "num_classes": args.num_classes,
        "params": int(cost.params), "flops": int(cost.flops), "flop_convention": FLOP_CONVENTION,
        "activation_volume": int(cost.activation_volume),
        "memory_bytes": int(cost.memory_bytes), "latency_ms": cost.latency_ms,
        "batch": 1,
        "device": None if profile is None else profile.name,
        "device_source": None if profile is None else profile.source,
        "runtime": None if profile is None else profile.runtime,
        "threads": threads if isinstance(threads, int) else None,
        "layers": [{"name": r.name, "op": r.op, "in_channels": r.in_channels,
                    "out_channels": r.out_channels, "params": r.params, "flops": r.flops,
                    "activation_volume": r.activation_volume,
                    "latency_ms": times.get(r.name)} for r in inventory.layers],
    }


def _add_cost_parser(sub: Any) -> None:
    p = sub.add_parser(
        "cost", help="per-layer parameters, FLOPs, activation volume and latency of a model",
        description="Trace a model once with fvcore and print its per-layer costs and totals "
        "(FLOPs: fvcore, 1 FLOP = 1 fused multiply-add), with predicted latency on a device "
        "profile. --json prints the totals, the profile and the layers for scripts.",
    )
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="a built-in name (see 'budgetsearch models'), path/to/file.py:FACTORY "
                   "or package.module:FACTORY")
    p.add_argument("--device", help="profile name, alias (jetson) or YAML path; see 'devices'")
    p.add_argument("--width", type=positive_float, default=1.0, help="width multiplier")
    p.add_argument("--input-shape", "--input", dest="input", type=input_shape_arg,
                   default=(1, 28, 28), metavar="C,H,W",
                   help="input shape; default 1,28,28 (Fashion-MNIST), CIFAR is 3,32,32")
    p.add_argument("--num-classes", type=positive_int, default=10)
    p.add_argument("--json", action="store_true", help="print the costs as JSON, for scripts")
    p.set_defaults(handler=_cmd_cost)


def _other_runtimes_rows(table: Path, runtimes: list[str]) -> Any:
    """The rows of ``table`` (a profiling run's CSV) of runtimes other than ``runtimes``, or
    None when it does not exist, cannot be read or holds none."""
    import pandas as pd

    if not table.is_file():
        return None
    try:
        old = pd.read_csv(table)
    except (OSError, ValueError):
        return None
    if "runtime" not in old.columns:
        return None
    others = old[~old["runtime"].isin(runtimes)]
    return others if len(others) else None


def _cmd_profile(args: argparse.Namespace) -> int:
    import json

    import numpy as np
    import pandas as pd
    import torch

    from budgetsearch.cost import save_profile
    from budgetsearch.cost.profiles import default_profile_path
    from budgetsearch.profiling.fit import profile_this_machine, timed_alone
    from budgetsearch.profiling.timing import RUNTIME_SUFFIX, cuda_unavailable, runs_on_cuda

    if not _PROFILE_NAME.match(args.name):
        raise UsageError(
            f"--name must be lower-case letters, digits, '.', '_' or '-' (like cpu-2core-x86), "
            f"got {args.name!r}"
        )
    out = Path(args.out) if args.out else default_profile_path(args.name)
    if out.suffix not in (".yaml", ".yml"):
        raise UsageError(f"--out must be a .yaml file path, got {str(out)!r}")
    runtimes = _RUNTIME_CHOICES.get(args.runtime, [args.runtime])
    for runtime in runtimes:
        why = cuda_unavailable(runtime)
        if why and not args.refit:  # a re-fit times nothing: it needs no GPU
            raise UsageError(f"--runtime {args.runtime}: {why}")
    outs = {rt: out.with_name(out.stem + RUNTIME_SUFFIX[rt] + out.suffix) for rt in runtimes}
    for path in outs.values():
        if args.refit and not path.is_file():
            raise UsageError(f"--refit needs the profile to fit again: {path} does not exist")
        if path.exists() and not args.force and not args.refit:
            raise UsageError(f"{path} already exists; choose another --out or pass --force")
    command = "budgetsearch " + " ".join(sys.argv[1:]) if sys.argv[1:] else "budgetsearch profile"
    if args.refit and args.input_size:
        raise UsageError("--input-size does not apply with --refit: the networks are drawn at "
                         "the input shapes the profile was measured at")
    if args.refit:
        return _refit(args, outs, out.with_suffix(".csv"), command)
    from budgetsearch.profiling.networks import INPUT_SHAPES

    shapes = INPUT_SHAPES + tuple((1, 3, n, n) for n in dict.fromkeys(args.input_size or ())
                                  if (1, 3, n, n) not in INPUT_SHAPES)
    args.fit = 216 if args.fit is None else args.fit
    args.holdout = 54 if args.holdout is None else args.holdout
    args.seed = 0 if args.seed is None else args.seed
    where = ("this GPU, " + torch.cuda.get_device_name(0) if any(map(runs_on_cuda, runtimes))
             else "this CPU")
    print(f"profiling {where} ({', '.join(runtimes)}) with {args.threads} thread(s): "
          f"{args.fit} networks to fit, {args.holdout} held out, {args.rounds} rounds "
          f"{'each, alone' if all(map(timed_alone, runtimes)) else 'interleaved'}")
    profiles, report = profile_this_machine(
        args.name, runtimes=runtimes, n_fit=args.fit, n_holdout=args.holdout, rounds=args.rounds,
        threads=args.threads, seed=args.seed, progress=not args.no_progress, command=command,
        input_shapes=shapes,
    )
    table = out.with_suffix(".csv")
    rows = pd.DataFrame(report.rows)
    kept = _other_runtimes_rows(table, runtimes)
    if kept is not None:  # profiling one runtime keeps the other's measurements (for --refit)
        rows = pd.concat([kept, rows], ignore_index=True)
    write_text_atomic(table, rows.to_csv(index=False))
    for runtime, profile in profiles.items():
        path = outs[runtime]
        save_profile(profile, path, header=(
            f"Measured latency profile ({runtime}) written by `{command}`.\n"
            f"Per-network measurements: {table.name}"))
        errors = report.holdout_errors_pct(runtime)
        e = profile.predictor_error
        assert e is not None
        quantiles = np.percentile(errors, [0, 10, 50, 90, 100])
        print(f"{runtime}: held-out error (predicted − measured, % of measured) over "
              f"{e.networks} networks: min {quantiles[0]:+.1f}, p10 {quantiles[1]:+.1f}, median "
              f"{quantiles[2]:+.1f}, p90 {quantiles[3]:+.1f}, max {quantiles[4]:+.1f}; "
              f"{e.within_10pct:.0%} within ±10%")
        agreement = profile.run_repeatability
        if agreement is not None:
            print(f"{runtime}: the run agreed with itself (first half of the rounds against the "
                  f"second) within ±10% for {agreement:.0%} of the networks"
                  + ("" if agreement >= REPEATABLE else
                     f"; below {REPEATABLE:.0%}: this machine's speed swung during the run, "
                     f"which caps the profile's accuracy; profile it again when it is quieter"))
        state = profile.provenance.get("process_state")
        if state:
            print(f"{runtime}: prices are of a network in a process of its own: the anchors ran "
                  f"x{state['factor']:.3f} of their fit-run times in a new process, and every "
                  f"price is scaled by it (the fit run holds every network in one process)")
        lofo = report.leave_one_family_out[runtime]
        print(f"{runtime}: leave-one-family-out within ±10%: "
              + json.dumps({f: v["within_10pct"] for f, v in lofo.items()}))
        print(f"profile: {path}")
    print(f"measurements: {table}  ({report.seconds:.0f} s)")
    return 0


def _refit(args: argparse.Namespace, outs: dict[str, Path], table: Path, command: str) -> int:
    """``profile --refit``: each profile fitted again from its measurements CSV. Everything is
    read, checked and fitted before the first file is written."""
    import pandas as pd

    from budgetsearch.cost import load_profile
    from budgetsearch.cost.profiles import profile_text
    from budgetsearch.profiling.fit import ProfileValueError, refit_profile

    if not table.is_file():
        raise UsageError(f"--refit needs the measurements the profile was fitted on: {table} "
                         f"does not exist")
    try:
        measurements = pd.read_csv(table)
        missing = {"runtime", "set", "network", "measured_ms"} - set(measurements.columns)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise UsageError(f"--refit: {table} is not a measurements CSV ({error})") from None
    if missing:
        raise UsageError(f"--refit: {table} is not a measurements CSV (no {sorted(missing)})")
    olds = {}
    for runtime, path in outs.items():
        olds[runtime] = load_profile(str(path), check=False)
        if olds[runtime].runtime != runtime:
            raise UsageError(f"--refit: {path} is a {olds[runtime].runtime} profile, not "
                             f"{runtime}")
    fitted = {}
    for runtime, old in olds.items():
        try:
            fitted[runtime] = refit_profile(old, measurements, n_fit=args.fit,
                                            n_holdout=args.holdout, seed=args.seed,
                                            command=command)
        except ProfileValueError as error:
            raise UsageError(f"--refit: {error}") from None
        except ValueError as error:
            raise UsageError(f"--refit: {table}: {error}") from None
    texts = {runtime: profile_text(profile, where=str(outs[runtime]), header=(
        f"Measured latency profile ({runtime}) re-fitted by `{command}` from {table.name}, "
        f"measured {olds[runtime].provenance.get('date', '?')}."))
        for runtime, (profile, _, _) in fitted.items()}  # all validated before any write
    kept = measurements
    for runtime, (_, rows, _) in fitted.items():
        # this runtime's fit and held-out rows are replaced one for one (same networks)
        kept = pd.concat([kept[(kept["runtime"] != runtime)
                               | ~kept["set"].isin(("fit", "holdout"))],
                          pd.DataFrame(rows)], ignore_index=True)
    for runtime, (profile, _, _) in fitted.items():
        write_text_atomic(outs[runtime], texts[runtime])
        e, before = profile.predictor_error, olds[runtime].predictor_error
        assert e is not None
        print(f"{runtime}: held-out {e.within_10pct:.0%} within ±10% (median |err| "
              f"{e.median_abs_pct:.1f}%)" + ("" if before is None else
                                             f", was {before.within_10pct:.0%}") +
              f"\nprofile: {outs[runtime]}")
    write_text_atomic(table, kept.to_csv(index=False))
    print(f"measurements: {table} (timed nothing)")
    return 0


def _add_profile_parser(sub: Any) -> None:
    p = sub.add_parser(
        "profile", help="measure this machine's CPU (or GPU) latency and write a device profile",
        description="Time a varied set of generated networks (plain, residual, bottleneck, "
        "depthwise-separable, inverted residual with squeeze-excitation, grouped, concat, "
        "shuffle, built-in WRN/ResNets dense and pruned; 1x28x28, 3x32x32, 3x64x64; batch 1) on "
        "this CPU in PyTorch eager and/or onnxruntime (or on a CUDA GPU in PyTorch, float32 "
        "and/or float16), fit the per-op latency model, measure its "
        "error on held-out networks and leave-one-family-out, and write a measured profile (YAML, "
        "with the anchors its drift check re-times) plus the per-network measurements (CSV).",
    )
    p.add_argument("--name", required=True, help="profile name, e.g. cpu-2core-x86")
    p.add_argument("--out", help="YAML path (default NAME.yaml in $BUDGETSEARCH_PROFILE_DIR "
                   "when set, else in hw_profiles/ of a writable source checkout, else in "
                   "~/.config/budgetsearch/hw_profiles; onnxruntime: NAME-ort.yaml)")
    p.add_argument("--runtime", choices=("pytorch-eager", "onnxruntime", "both",
                                         "pytorch-cuda", "pytorch-cuda-fp16", "cuda"),
                   default="pytorch-eager",
                   help="runtime to time in: on the CPU pytorch-eager, onnxruntime or both "
                   "(NAME.yaml and NAME-ort.yaml from one build); on the first CUDA GPU "
                   "pytorch-cuda (float32), pytorch-cuda-fp16 or cuda (both: NAME.yaml and "
                   "NAME-fp16.yaml)")
    p.add_argument("--threads", type=positive_int, default=1, help="threads (default 1)")
    p.add_argument("--fit", type=positive_int, default=None,
                   help="networks to fit (default 216, 24 per family; --refit: as measured)")
    p.add_argument("--holdout", type=positive_int, default=None,
                   help="held-out networks to measure the error on (default 54; --refit: as "
                   "measured)")
    p.add_argument("--rounds", type=positive_int, default=8,
                   help="timing rounds per network (default 8; on the CPU in 2 passes over "
                        "the set, each network alone in a process of its own)")
    p.add_argument("--seed", type=int, default=None,
                   help="draw of the generated networks (default 0; --refit: the profile's)")
    p.add_argument("--input-size", type=input_size, action="append", metavar="N",
                   help="also fit on 3xNxN inputs (repeatable; 16-512): the sizes you deploy "
                   "at, beyond the default 1x28x28, 3x32x32, 3x64x64 (a profile fitted on "
                   "those priced 128 px networks 18%% low); the fit set grows no larger, so "
                   "each size gets its share of it")
    p.add_argument("--force", action="store_true", help="overwrite an existing profile")
    p.add_argument("--refit", action="store_true",
                   help="time nothing: fit the existing profile(s) again from the measurements "
                   "CSV beside them (after the latency model changed); the networks are drawn "
                   "as the profiling run drew them (--threads and --rounds do not apply)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_profile)


def register(sub: Any) -> None:
    """Add this module's commands to the ``budgetsearch`` subparsers ``sub``."""
    _add_devices_parser(sub)
    _add_cost_parser(sub)
    _add_profile_parser(sub)
