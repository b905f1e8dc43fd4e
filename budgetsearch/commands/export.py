"""The ``budgetsearch export`` command: a run's trial as an ONNX or TorchScript file.

The file is checked before it is written: the ONNX model runs in onnxruntime (CPU) on a random
batch of two, and its outputs must equal PyTorch's within 1e-4; the TorchScript file is loaded
back and compared the same way. Then it is timed on this CPU (batch 1, median of ``--runs``
calls after warm-up) and the time printed beside the latency the device profile predicted.

Example:
    budgetsearch export runs/demo --trial best --format onnx --out best.onnx
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from budgetsearch.commands.argtypes import positive_int
from budgetsearch.errors import UsageError

FORMATS = {"onnx": (".onnx",), "torchscript": (".ts", ".pt", ".pth", ".torchscript")}
#: Largest |ONNX − PyTorch| output difference accepted (issue 15).
TOLERANCE = 1e-4


def _check_out(out: Path, fmt: str, force: bool) -> None:
    if out.is_dir():
        raise UsageError(f"--out must be a file path, but {out} is a folder")
    if out.exists() and not force:
        raise UsageError(f"--out {out} already exists; choose another path or pass --force")
    if not out.parent.is_dir():
        raise UsageError(f"--out folder {out.parent} does not exist")
    if out.suffix.lower() not in FORMATS[fmt]:
        raise UsageError(f"--out for --format {fmt} must end in {' or '.join(FORMATS[fmt])}, "
                         f"got {out.name!r}")


def _input_shape(folder: Path, row: dict[str, Any], run_dir: Path) -> tuple[int, ...]:
    import json

    from budgetsearch.models.deploy import deploy_info
    from budgetsearch.search.results import resolve_row_path

    info = deploy_info(folder) or {}
    if info.get("input_shape"):
        return tuple(int(v) for v in info["input_shape"])
    config = resolve_row_path(row.get("pruned_config_path"), run_dir)
    try:
        return tuple(int(v) for v in json.loads(Path(str(config)).read_text())["input_shape"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"trial {row['trial_id']}: neither {folder / 'deploy.json'} nor its "
                         "pruned_config.json gives the input shape") from None


def _load_networks(row: dict[str, Any], run_dir: Path, fmt: str) -> tuple[
        nn.Module, nn.Module | None, str, str]:
    """(the network to export, budgetsearch's eager network or None, their sources).

    The exported file starts from the plain-PyTorch ``model.ts`` (any class); it is compared
    with the eager ``model.pt`` where that loads (the network the trial measured). The ONNX
    exporter (dynamo=False) needs a module that can be put in eval mode, which an exported
    program's module (``model.pt2``) is not."""
    from budgetsearch.search.results import load_row_model

    try:
        eager = load_row_model(row, run_dir)
    except (ValueError, FileNotFoundError):
        eager = None
    if isinstance(eager, torch.jit.ScriptModule | torch.fx.GraphModule):
        eager = None  # no model.pt (pickle could not name the class): only the deployable
    try:
        model = load_row_model(row, run_dir, prefer_deployable=True)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"trial {row['trial_id']} of {run_dir}: {error}") from None
    if isinstance(model, torch.fx.GraphModule) and fmt == "onnx":
        if eager is None:
            raise UsageError(f"trial {row['trial_id']} of {run_dir} was saved as an exported "
                             "program (model.pt2: tracing had failed, see deploy.json), which "
                             "the ONNX exporter cannot read, and its model.pt does not load")
        model = eager
    if model is eager:
        source = "model.pt"
    else:
        source = "model.ts" if isinstance(model, torch.jit.ScriptModule) else "model.pt2"
    return model, eager, source, "model.pt, eager" if eager is not None else source


def _median_ms(call: Callable[[], Any], runs: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _onnx_bytes(model: nn.Module, shape: tuple[int, ...], opset: int) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, *shape),), buffer, dynamo=False,
                          opset_version=opset, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return buffer.getvalue()


def _session(data: bytes, threads: int | None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("--format onnx checks the file in onnxruntime: pip install "
                         "onnxruntime") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _predicted(row: dict[str, Any], run_dir: Path, device: str | None) -> tuple[
        float | None, Any]:
    """(predicted latency in ms, profile) of the trial: re-priced on ``device`` when given,
    else the row's own figure on the run's device."""
    from budgetsearch.cost import load_profile
    from budgetsearch.pareto.reprice import PrunedConfig, price_config, run_latency_scale
    from budgetsearch.search.results import resolve_row_path

    name = device or (row.get("device") if isinstance(row.get("device"), str) else None)
    if name is None:
        return None, None
    profile = load_profile(name)
    latency = row.get("latency_ms")
    if device is None and isinstance(latency, (int, float)) and math.isfinite(latency):
        return float(latency), profile
    config = resolve_row_path(row.get("pruned_config_path"), run_dir)
    if config is None:
        return None, profile
    latency = price_config(PrunedConfig.load(config), profile).latency_ms
    if latency is None:
        return None, profile
    # the run's calibration, where the profile is its device
    return latency * run_latency_scale(row.get("latency_scale"), row.get("device"),
                                       profile), profile


def _cmd_export(args: argparse.Namespace) -> int:
    from budgetsearch.models.deploy import write_bytes_atomic
    from budgetsearch.profiling.timing import ONNX_OPSET
    from budgetsearch.search.results import resolve_row_path, select_trial

    run_dir = Path(args.run_dir)
    out = Path(args.out)
    fmt = args.format
    _check_out(out, fmt, args.force)
    row = select_trial(run_dir, args.trial)
    model_path = resolve_row_path(row["model_path"], run_dir)
    assert model_path is not None  # select_trial returns rows with a saved network
    folder = model_path.parent
    shape = _input_shape(folder, row, run_dir)
    predicted, profile = _predicted(row, run_dir, args.device)
    threads = args.threads
    if threads is None:  # as the profile's latency assumes; 1 where it says nothing
        assumed = profile.provenance.get("threads") if profile is not None else None
        threads = int(assumed) if isinstance(assumed, int) else 1
    model, eager, source, against = _load_networks(row, run_dir, fmt)
    check = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = (eager if eager is not None else model)(check)
    single = torch.randn(1, *shape, generator=torch.Generator().manual_seed(1))
    if fmt == "onnx":
        opset = args.opset or ONNX_OPSET
        try:
            data = _onnx_bytes(model, shape, opset)
        except Exception as error:
            raise UsageError(f"trial {row['trial_id']} could not be exported to ONNX (opset "
                             f"{opset}): {type(error).__name__}: "
                             f"{str(error).strip().splitlines()[0]}") from None
        session = _session(data, threads)
        got = torch.from_numpy(session.run(None, {"input": check.numpy()})[0])
        runtime = "onnxruntime CPU"
        feed = {"input": single.numpy()}
        measure: Callable[[], Any] = lambda: session.run(None, feed)  # noqa: E731
        what = f"onnx, opset {opset}"
    else:
        from budgetsearch.models.deploy import trace_torchscript

        scripted = model if isinstance(model, torch.jit.ScriptModule) else \
            trace_torchscript(model, single)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(scripted, buffer)
            buffer.seek(0)
            loaded = torch.jit.load(buffer, map_location="cpu").eval()
        data = buffer.getvalue()
        with torch.no_grad():
            got = loaded(check)
        torch.set_num_threads(threads)
        runtime = "PyTorch (TorchScript) CPU"

        def measure() -> Any:
            with torch.no_grad():
                return loaded(single)

        what = "torchscript"
    difference = float((got.float() - expected.float()).abs().max())
    if not difference <= TOLERANCE:
        print(f"budgetsearch: error: the {fmt} file's outputs differ from PyTorch's by "
              f"{difference:.3g} (> {TOLERANCE:g}) on a random batch of 2; nothing written",
              file=sys.stderr)
        return 1
    measured = _median_ms(measure, args.runs)
    write_bytes_atomic(out, data)
    print(f"wrote {out} ({what}, {len(data) / 1024:.0f} KiB) from trial {row['trial_id']} of "
          f"{run_dir} ({source}), input 1x{'x'.join(map(str, shape))}: outputs equal PyTorch's "
          f"({against}) within {TOLERANCE:g} (max |difference| {difference:.2g} on a random "
          "batch of 2)")
    how = f"{threads} thread(s)"
    line = (f"latency: {measured:.4f} ms measured here in {runtime} (median of {args.runs} runs, "
            f"batch 1, {how})")
    if profile is not None and predicted is not None:
        assumed = profile.provenance.get("threads")
        basis = (f"{profile.source} profile, {assumed} thread(s)" if isinstance(assumed, int)
                 else f"{profile.source} profile")
        line += f"; predicted on {profile.name} ({basis}): {predicted:.4f} ms"
    else:
        line += "; predicted: none (the run had no device profile: pass --device to re-price)"
    print(line)
    return 0


def register(sub: Any) -> None:
    """Add ``export`` to the ``budgetsearch`` subcommands."""
    p = sub.add_parser(
        "export", help="write a run's trial as an ONNX or TorchScript file, checked and timed",
        description="Write the network of a run's trial (default: the best feasible one) as an "
        "ONNX file (torch.onnx.export, TorchScript exporter) or a TorchScript file. The file is "
        "checked against PyTorch (outputs within 1e-4 on a random batch of 2; ONNX run in "
        "onnxruntime), then timed on this CPU, and the time printed beside the latency the "
        "device profile predicted. Every input is checked before anything is written.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (holding results.csv)")
    p.add_argument("--trial", default="best", metavar="best|ID",
                   help="'best' (default: the most accurate feasible trial) or a trial_id of "
                   "results.csv")
    p.add_argument("--format", required=True, choices=sorted(FORMATS))
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (.onnx, .ts)")
    p.add_argument("--opset", type=positive_int, metavar="N",
                   help="ONNX opset (default 17, as the onnxruntime profiles)")
    p.add_argument("--device", help="re-price the trial on this device profile for the "
                   "prediction (default: the run's device)")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="threads for the timing (default: the device profile's, else 1)")
    p.add_argument("--runs", type=positive_int, default=50, metavar="N",
                   help="timed runs; the median is printed (default 50)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.set_defaults(handler=_cmd_export)
