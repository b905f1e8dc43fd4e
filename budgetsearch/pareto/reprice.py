"""Re-price the trials of a sweep on other device profiles, without retraining.

Each trial's ``pruned_config_path`` JSON names its model, width, input shape and either kept
channels per layer (structured, BAR) or weight densities per layer (unstructured, erf-loss). The
model is traced once per (model, width, input shape, classes) and every trial is priced from its
channel counts (the cost model's "trace once, then compute").

Example:
    >>> import pandas as pd
    >>> table = pd.read_csv("runs/sweep/results.csv")  # doctest: +SKIP
    >>> long = reprice_trials(table, ["jetson-nano", "jetson-orin-nano"],
    ...                       base_dir="runs/sweep")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from budgetsearch.cost import (
    Cost,
    DeviceProfile,
    LayerInventory,
    is_positive_number,
    layer_inventory,
    load_profile,
    resolve_profile_name,
)
from budgetsearch.models import build_model
from budgetsearch.pareto.results import resolve_artifact


@dataclass(frozen=True)
class PrunedConfig:
    """A trial's saved configuration (the ``pruned_config_path`` JSON)."""

    model: str
    width: float
    input_shape: tuple[int, int, int]
    num_classes: int
    kept_channels: dict[str, tuple[float, float]] | None = None
    densities: dict[str, float] | None = None
    #: elements of each gather the delivered network runs beyond the full network's inventory
    index_ops: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "pruned config") -> PrunedConfig:
        try:
            shape = tuple(int(v) for v in data["input_shape"])
            kept = data.get("kept_channels")
            dens = data.get("densities")
            config = cls(
                model=str(data["model"]),
                width=float(data.get("width", 1.0)),
                input_shape=shape[-3:],  # type: ignore[arg-type]
                num_classes=int(data.get("num_classes", 10)),
                kept_channels={k: (float(v[0]), float(v[1])) for k, v in kept.items()}
                if kept else None,
                densities={k: float(v) for k, v in dens.items()} if dens else None,
                index_ops=tuple(int(v) for v in data.get("index_ops") or ()),
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ValueError(f"{source} must hold model, width, input_shape [C, H, W], "
                             f"num_classes and kept_channels or densities: {error!r}") from None
        if len(config.input_shape) != 3:
            raise ValueError(f"{source}: input_shape must be [C, H, W], got {data['input_shape']}")
        return config

    @classmethod
    def load(cls, path: str | Path) -> PrunedConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"pruned configuration {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"pruned configuration {path} is not valid JSON: {error}") from None
        except OSError as error:
            raise ValueError(f"pruned configuration {path} cannot be read "
                             f"({error.strerror or error})") from None
        return cls.from_dict(data, source=str(path))

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"model": self.model, "width": self.width,
                                "input_shape": list(self.input_shape),
                                "num_classes": self.num_classes}
        if self.kept_channels:
            data["kept_channels"] = {k: list(v) for k, v in self.kept_channels.items()}
        if self.densities:
            data["densities"] = dict(self.densities)
        if self.index_ops:
            data["index_ops"] = list(self.index_ops)
        return data


class InventoryCache:
    """Layer inventories keyed by (model, width, input shape, classes): each traced once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, float, tuple[int, int, int], int], LayerInventory] = {}

    def get(self, config: PrunedConfig) -> LayerInventory:
        key = (config.model, round(config.width, 9), config.input_shape, config.num_classes)
        if key not in self._cache:
            channels = config.input_shape[0]
            model = build_model(config.model, num_classes=config.num_classes,
                                in_channels=channels, width_multiplier=config.width)
            self._cache[key] = layer_inventory(model, torch.zeros(1, *config.input_shape))
        return self._cache[key]

    def __len__(self) -> int:
        return len(self._cache)


def price_config(config: PrunedConfig, profile: DeviceProfile | None = None, *,
                 cache: InventoryCache | None = None) -> Cost:
    """Cost of a saved configuration on ``profile`` (None → no latency)."""
    inventory = (cache if cache is not None else InventoryCache()).get(config)
    return inventory.price(kept_channels=config.kept_channels, densities=config.densities,
                           index_ops=config.index_ops, profile=profile)


def _resolve_path(value: Any, base_dir: Path | None) -> Path | None:
    return resolve_artifact(value, base_dir)


def names_profile(device: Any, profile: DeviceProfile) -> bool:
    """True when a results row's ``device`` (a name, an alias or a YAML path) is ``profile``."""
    if not isinstance(device, str) or not device:
        return False
    if device in (profile.name, profile.path) or device in profile.aliases:
        return True
    try:
        return resolve_profile_name(device) == profile.name if "/" not in device else (
            Path(device).resolve() == Path(profile.path or "").resolve())
    except (ValueError, OSError):
        return False


def run_latency_scale(scale: Any, device: Any, profile: DeviceProfile) -> float:
    """The factor a run's latency on ``profile`` takes: its calibration ``scale`` (``run
    --calibrate``, a results row's ``latency_scale``) where ``device`` (the run's) is
    ``profile``, else 1: other devices are priced as they are."""
    return float(scale) if is_positive_number(scale) and names_profile(device, profile) else 1.0


def reprice_trials(table: pd.DataFrame, devices: Sequence[str | DeviceProfile], *,
                   base_dir: str | Path | None = None,
                   cache: InventoryCache | None = None) -> pd.DataFrame:
    """Long table: one row per (trial, device) with that device's costs.

    Keeps every column of ``table`` except the cost columns and ``device``, which are replaced by
    the re-priced values; adds ``repriced`` (False where a trial has no readable configuration:
    then its cost columns are NaN, and ``reprice_note`` says why). Relative config paths are read
    against ``base_dir``, the run folder (see
    :func:`~budgetsearch.pareto.results.resolve_artifact`); a table merged from several runs
    by :func:`~budgetsearch.pareto.results.load_runs` has its paths resolved already.
    """
    profiles = [load_profile(d) if isinstance(d, str) else d for d in devices]
    if not profiles:
        raise ValueError("devices must name at least one device profile")
    cache = cache if cache is not None else InventoryCache()
    base = Path(base_dir) if base_dir is not None else None
    configs: list[PrunedConfig | None] = []
    notes: list[str] = []
    for value in table.get("pruned_config_path", pd.Series([None] * len(table))):
        path = _resolve_path(value, base)
        if path is None:
            configs.append(None)
            notes.append("no pruned_config_path")
            continue
        try:
            configs.append(PrunedConfig.load(path))
            notes.append("")
        except (FileNotFoundError, ValueError) as error:
            configs.append(None)
            notes.append(str(error))
    frames = []
    run_devices = table.get("device", pd.Series([None] * len(table), index=table.index))
    scales = table.get("latency_scale", pd.Series([None] * len(table), index=table.index))
    for profile in profiles:
        # a calibrated run priced its own device by a scaled profile: re-priced there, its rows
        # keep that scale (each row's device named once per profile, not once per row)
        named = {d: names_profile(d, profile) for d in set(run_devices.dropna())}
        rows = []
        for config, device, scale in zip(configs, run_devices, scales, strict=True):
            if config is None:
                rows.append({c: math.nan for c in
                             ("params", "flops", "activation_volume", "memory_bytes",
                              "latency_ms")})
                continue
            cost = price_config(config, profile, cache=cache).as_dict()
            if cost["latency_ms"] is not None and named.get(device) and is_positive_number(
                    scale):
                cost["latency_ms"] *= float(scale)
            rows.append(cost)
        costs = pd.DataFrame(rows, index=table.index)
        frame = table.drop(columns=[c for c in costs.columns if c in table], errors="ignore")
        frame = frame.drop(columns=["device"], errors="ignore").join(costs)
        frame.insert(0, "device", profile.name)
        frame["repriced"] = [c is not None for c in configs]
        frame["reprice_note"] = notes
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def layer_profile(config: PrunedConfig, *, cache: InventoryCache | None = None) -> pd.DataFrame:
    """Per prunable layer (conv/linear): full and kept channels, weight density and sparsity.

    The data behind the per-layer sparsity plot (erf-loss paper Fig. 5) and the kept channels per
    block (BAR paper Fig. 7).
    """
    inventory = (cache if cache is not None else InventoryCache()).get(config)
    kept = config.kept_channels or {}
    dens = config.densities or {}
    rows = []
    for record in inventory:
        if record.op not in ("conv", "linear"):
            continue
        kin, kout = kept.get(record.name, (record.in_channels, record.out_channels))
        density = dens.get(record.name, 1.0)
        channel_fraction = (kin * kout) / max(1, record.in_channels * record.out_channels)
        rows.append({
            "layer": record.name, "op": record.op,
            "in_channels": record.in_channels, "out_channels": record.out_channels,
            "kept_in": kin, "kept_out": kout, "density": density,
            "weights": record.weight_params,
            "kept_weights": record.weight_params * density * channel_fraction,
            "sparsity": 1.0 - density * channel_fraction,
        })
    return pd.DataFrame(rows)
