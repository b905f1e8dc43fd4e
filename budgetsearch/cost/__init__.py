"""Cost model: parameters, FLOPs, activation volume, memory and device latency of a network.

Trace once, then compute: :func:`layer_inventory` traces a model with fvcore and records every
layer; :meth:`LayerInventory.price` prices a pruned configuration (kept channels per layer, or
weight densities per layer) in microseconds; :meth:`LayerInventory.expected_cost` gives the same
costs as a differentiable scalar of expected kept counts / densities, for budget losses. Latency
comes from a :class:`DeviceProfile` (``hw_profiles/*.yaml``), measured or datasheet. The names of
the metrics, their units and targets on them live in :mod:`budgetsearch.cost.metrics`.

FLOPs follow fvcore: **1 FLOP = 1 fused multiply-add**.

Example:
    >>> import torch
    >>> from budgetsearch.models import build_model
    >>> inv = layer_inventory(build_model("wrn-16-2"), torch.zeros(1, 1, 28, 28))
    >>> cost = inv.price(densities={"layer2.0.conv1": 0.1}, profile=load_profile("jetson"))
    >>> cost.flops < inv.total_flops
    True
    >>> budget = inv.expected_cost("flops", kept_channels={
    ...     "layer1.0.conv1": (16.0, torch.tensor(20.0, requires_grad=True))})
"""

from __future__ import annotations

from typing import Literal

from budgetsearch.cost.inventory import (
    BYTES_PER_ELEMENT,
    METRICS,
    Cost,
    LayerInventory,
    LayerRecord,
    layer_inventory,
)
from budgetsearch.cost.metrics import (
    FLOP_CONVENTION,
    TARGET_METRICS,
    TOLERANCE,
    Target,
    canonical_metric,
    format_value,
    is_met,
    is_positive_number,
    metric_label,
    parse_count,
    parse_duration_ms,
)
from budgetsearch.cost.ops import index_op_elements
from budgetsearch.cost.profiles import (
    OP_KINDS,
    PROFILE_DIR,
    DeviceProfile,
    OpLatency,
    PredictorError,
    SmallGemm,
    load_profile,
    profile_from_dict,
    profile_names,
    resolve_profile_name,
    save_profile,
)

#: A metric a target or a budget may count (canonical names; see ``cost.metrics``).
TargetMetric = Literal["latency_ms", "flops", "params", "activation_volume"]

__all__ = [
    "BYTES_PER_ELEMENT",
    "FLOP_CONVENTION",
    "METRICS",
    "OP_KINDS",
    "PROFILE_DIR",
    "TARGET_METRICS",
    "TOLERANCE",
    "Cost",
    "DeviceProfile",
    "LayerInventory",
    "LayerRecord",
    "OpLatency",
    "PredictorError",
    "SmallGemm",
    "Target",
    "TargetMetric",
    "canonical_metric",
    "format_value",
    "index_op_elements",
    "is_met",
    "is_positive_number",
    "layer_inventory",
    "load_profile",
    "metric_label",
    "parse_count",
    "parse_duration_ms",
    "profile_from_dict",
    "profile_names",
    "resolve_profile_name",
    "save_profile",
]
