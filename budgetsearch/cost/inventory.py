"""Layer inventory: trace a model once with fvcore, then price any pruned configuration of it.

:func:`layer_inventory` runs fvcore's ``FlopCountAnalysis`` once (model in eval mode, so BatchNorm
counts fvcore's inference cost: 2 FLOPs per element with an affine) and one forward pass with
shape hooks. Every module that fvcore charges FLOPs to, or that owns parameters, becomes a
:class:`LayerRecord`; ops fvcore charges to a container (a functional ``adaptive_avg_pool2d`` in a
``forward``) become records named ``"<module>#<operator>"`` with unknown channels (their cost stays
fixed when pruning). Totals therefore equal fvcore's ``total()`` and ``parameter_count``.

FLOPs follow fvcore: **1 FLOP = 1 fused multiply-add**. Activation volume is BAR eq. (4): kept
output channels × output area, summed over conv and linear layers (the prunable ones; BatchNorm and
pooling records carry 0 so that nothing is counted twice). Memory is weights (4 bytes each) plus
the peak activations of one layer (input + output, 4 bytes per element).

A pruned configuration is priced from per-layer channel counts, never by re-tracing (DESIGN.md,
"trace once, then compute"): every cost of a layer is ``a·c_in·c_out + b·c_out + c`` with
coefficients precomputed from the trace, so :meth:`LayerInventory.price` is a few numpy operations,
and :meth:`LayerInventory.expected_cost` is the same formula in torch, differentiable in the
expected kept counts (independent gates: ``E[c_in·c_out] = E[c_in]·E[c_out]``) and densities.

Scaling rules, for a layer with kept input channels ``i``, kept output channels ``o`` and weight
density ``d`` (the kept fraction of its weights; biases are never pruned):

============  ==============================  ===========================  =================
op            parameters                      FLOPs                        activation volume
============  ==============================  ===========================  =================
conv, linear  d·k·i·o/g + bias·o              d·k·i·o/g·area               o·area
depthwise     d·k·o + bias·o                  d·k·o·area                   o·area
batchnorm     2·o                             2·o·area                     0
pool          0                               o·input area                 0
============  ==============================  ===========================  =================

Example:
    >>> from budgetsearch.models import build_model
    >>> inv = layer_inventory(build_model("wrn-16-1"), torch.zeros(1, 1, 28, 28))
    >>> inv["layer1.0.conv1"].out_channels
    16
    >>> half = inv.price(kept_channels={"layer1.0.conv1": (16, 8), "layer1.0.bn2": (8, 8),
    ...                                 "layer1.0.conv2": (8, 16)})
    >>> half.flops < inv.total_flops
    True
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from budgetsearch.cost.dispatch import (
    ONEDNN_MIN_INPUT_ELEMENTS,
    counted_input_elements,
    onednn_always,
    onednn_by_size,
    onednn_depthwise_on_gemm,
)
from budgetsearch.cost.metrics import canonical_metric
from budgetsearch.cost.ops import (
    FUNCTIONAL_CONVS,
    MAX_POOL_MODULES,
    POOL_MODULES,
    ExtraOp,
    on_model_device,
    pool_taps,
    prices_itself,
    runs_own_forward,
    trace_ops,
)
from budgetsearch.cost.profiles import CONV_AREA_KINDS, DeviceProfile

BYTES_PER_ELEMENT = 4  # float32 weights and activations for memory_bytes
METRICS = ("params", "flops", "activation_volume", "latency_ms")


def _blocked(channels: Tensor, block: int) -> Tensor:
    """``channels`` rounded up to a multiple of ``block``, with a straight-through gradient."""
    if block == 1:
        return channels
    return channels + (torch.ceil(channels / block) * block - channels).detach()


@dataclass(frozen=True)
class LayerRecord:
    """One op of the traced model (a conv, linear, BatchNorm, pooling or other fvcore-counted op).

    ``flops`` follow fvcore (1 FLOP = 1 fused multiply-add) for the ``example_input`` batch;
    ``activation_volume`` is ``out_channels × output area`` for conv/linear (BAR eq. 4), else 0.
    Channels are 0 where they are unknown (functional ops): such a record's cost never changes.
    """

    name: str
    op: str
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    groups: int
    stride: tuple[int, ...]
    output_hw: tuple[int, int]
    params: int
    flops: int
    activation_volume: int
    input_hw: tuple[int, int] = (1, 1)
    input_elements: int = 0
    output_elements: int = 0
    weight_params: int = 0
    calls: int = 1
    #: a BatchNorm whose input a conv returned: a compiling runtime folds it into the conv
    folded: bool = False
    #: share of a conv's kernel taps that read the input at some output position: the share of
    #: its weights a kernel that skips padding reads at all (1 elsewhere)
    read_taps: float = 1.0
    #: what PyTorch picks a conv's kernel by: dilation, batch, transposition, output padding,
    #: and the input elements its line counts (:func:`~budgetsearch.cost.dispatch.
    #: counted_input_elements`; 0: all of them)
    dilation: tuple[int, ...] = ()
    batch: int = 1
    transposed: bool = False
    output_padding: tuple[int, ...] = ()
    counted_input_elements: int = 0
    #: a pooling op's input reads (output elements × window area; a reduction's input elements):
    #: its work in a latency profile, where fvcore counts one FLOP per input element or none
    pool_taps: int = 0
    #: a max pooling (its own latency kind: eager computes indices beside the maxima)
    max_pool: bool = False
    #: a conv's leading (left / top) zero padding per spatial size, and the elements per size
    #: PyTorch pads its input with before the kernel sees it (a non-zero ``padding_mode``):
    #: what oneDNN picks a depthwise kernel by
    #: (:func:`~budgetsearch.cost.dispatch.onednn_depthwise_on_gemm`)
    padding: tuple[int, ...] = ()
    input_padding: tuple[int, ...] = ()
    #: a leaf whose calls the extra-op trace records (a parameter-free ``nn.Upsample``; a
    #: module with its own forward, a LayerScale): a profile that prices extra ops prices its
    #: calls there, not twice
    traced: bool = False
    #: a functional conv a container calls (``F.conv2d(x, self.weight)``), recorded as the
    #: layer it runs (one record per call, ``"<module>#conv.<i>"``): priced as a layer, not
    #: through the extra-op trace (which has no conv kind)
    proxied: bool = False

    @property
    def kind(self) -> str:
        """Op kind for latency profiles: conv, dwconv, gconv, linear, batchnorm, pool, maxpool
        or other."""
        if self.op == "conv" and self.groups > 1 and self.groups == self.in_channels:
            return "dwconv"
        if self.op == "conv" and self.groups > 1:
            return "gconv"
        if self.op == "pool" and self.max_pool:
            return "maxpool"
        return self.op if self.op in ("conv", "linear", "batchnorm", "pool") else "other"

    @property
    def latency_kind(self) -> str:
        """The kind a latency profile prices: :attr:`kind`, or ``fused_batchnorm`` for a folded
        BatchNorm (a profile without that kind prices it as ``batchnorm``)."""
        return "fused_batchnorm" if self.folded and self.op == "batchnorm" else self.kind

    @property
    def functional(self) -> bool:
        """True for an op fvcore charged to a container (``"<module>#<operator>"``)."""
        return "#" in self.name and not self.name.endswith("#parameters") and not self.proxied

    @property
    def depthwise(self) -> bool:
        """True for a depthwise conv (groups = in = out channels): cost scales with ``o`` only."""
        return (
            self.op == "conv"
            and self.groups > 1
            and self.groups == self.in_channels == self.out_channels
        )


@dataclass(frozen=True)
class Cost:
    """Cost of one configuration. FLOPs: fvcore convention, 1 FLOP = 1 fused multiply-add."""

    params: float
    flops: float
    activation_volume: float
    memory_bytes: float
    latency_ms: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        """Plain mapping (a results row)."""
        return {
            "params": self.params,
            "flops": self.flops,
            "activation_volume": self.activation_volume,
            "memory_bytes": self.memory_bytes,
            "latency_ms": self.latency_ms,
        }


def _as_hw(shape: tuple[int, ...]) -> tuple[int, int]:
    spatial = shape[2:]
    if len(spatial) == 0:
        return (1, 1)
    if len(spatial) == 1:
        return (int(spatial[0]), 1)
    return (int(spatial[0]), int(math.prod(spatial[1:])))


def _module_pool_taps(module: nn.Module, in_shape: Sequence[int],
                      out_shape: Sequence[int]) -> int:
    adaptive = isinstance(module, (nn.modules.pooling._AdaptiveAvgPoolNd,
                                   nn.modules.pooling._AdaptiveMaxPoolNd,
                                   nn.FractionalMaxPool2d, nn.FractionalMaxPool3d))
    kernel = None if adaptive else getattr(module, "kernel_size", None)
    return pool_taps(kernel, in_shape, out_shape)


def _is_max_pool(module: nn.Module) -> bool:
    return isinstance(module, MAX_POOL_MODULES)


#: The ops a leaf record is a layer of (the others are priced as their kind's calls).
LAYER_OPS = ("conv", "linear", "batchnorm", "pool")
#: torch's layer classes (a subclass with children, timm's BatchNormAct2d, is a layer too)
LAYER_MODULES = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm,
                 *POOL_MODULES)
#: fvcore operators (as :func:`_op_of_operator` names them) the extra-op trace prices: a custom
#: module whose forward is its own and runs only these is priced through the trace
_TRACE_PRICED = frozenset({"linear", "batchnorm", "pool", "einsum", "layer_norm", "group_norm",
                           "instance_norm", "upsample_nearest2d", "upsample_bilinear2d",
                           "upsample_bicubic2d", "upsample_nearest1d", "upsample_nearest3d",
                           "upsample_linear1d", "upsample_trilinear3d", "grid_sampler"})


def _op_of(module: nn.Module) -> str:
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "batchnorm"
    if isinstance(module, POOL_MODULES):
        return "pool"
    name = type(module).__name__.lower()
    # a user's class named Conv or Linear is not torch's layer: its op must not read as one
    return f"custom_{name}" if name in LAYER_OPS else name


def _op_of_operator(operator: str) -> str:
    if "conv" in operator:
        return "conv"
    if operator in ("linear", "addmm", "matmul", "mm", "bmm"):
        return "linear"
    if "batch_norm" in operator:
        return "batchnorm"
    if "pool" in operator:
        return "pool"
    return operator


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


#: Functional pooling ops whose cost fvcore charges per input element (so per channel).
_FUNCTIONAL_POOLS = frozenset({
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
})


#: Functional convolutions and linears, their arguments after the input and weight in order.
_FUNCTIONAL_LAYERS: dict[str, tuple[str, ...]] = {
    **{name: ("bias", "stride", "padding", "output_padding", "groups", "dilation")
       if name.startswith("conv_transpose") else ("bias", "stride", "padding", "dilation", "groups")
       for name in FUNCTIONAL_CONVS},
    "linear": ("bias",),
}


def _layer_proxy(operator: str, args: Sequence[Any], kwargs: Mapping[str, Any]
                 ) -> nn.Module | None:
    """The ``nn.Conv*d`` / ``nn.Linear`` (on the meta device: no memory) that runs what one
    functional call runs: a custom module calling ``F.conv2d(x, self.weight, ...)`` (weight
    standardisation, a hand-written layer) is then priced as the conv it is, not as one call
    of an unknown kind (a stack of four such 64→64 3×3 convs: priced 0.19 ms, ran 2.37)."""
    weight = args[1] if len(args) > 1 else kwargs.get("weight")
    if not isinstance(weight, Tensor) or weight.dim() < 2:
        return None
    options = dict(zip(_FUNCTIONAL_LAYERS[operator], args[2:], strict=False))
    options.update({k: v for k, v in kwargs.items() if k in _FUNCTIONAL_LAYERS[operator]})
    bias = options.pop("bias", None) is not None
    try:
        if operator == "linear":
            return nn.Linear(weight.shape[-1], weight.shape[0], bias=bias, device="meta")
        groups = int(options.get("groups", 1))
        if operator.startswith("conv_transpose"):
            cin, cout = weight.shape[0], weight.shape[1] * groups
        else:
            cin, cout = weight.shape[1] * groups, weight.shape[0]
        return FUNCTIONAL_CONVS[operator](cin, cout, tuple(weight.shape[2:]), bias=bias,
                                       device="meta", **options)
    except (TypeError, ValueError, RuntimeError, IndexError):
        return None


class _FunctionalCalls(TorchFunctionMode):
    """Input/output shapes of functional pooling calls, keyed by (calling module, operator),
    and the functional convs and linears each module calls (:func:`_layer_proxy`)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.shapes: dict[tuple[str, str], list[tuple[tuple[int, ...], tuple[int, ...]]]] = {}
        self.layers: dict[str, list[tuple[nn.Module | None, tuple[tuple[int, ...],
                                                                  tuple[int, ...]]]]] = {}

    def enter(self, name: str):  # noqa: ANN201 - a forward pre-hook
        def pre_hook(module: nn.Module, inputs: Any) -> None:
            self.stack.append(name)

        return pre_hook

    def leave(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self.stack.pop()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        result = func(*args, **(kwargs or {}))
        operator = getattr(func, "__name__", "")
        if operator in _FUNCTIONAL_POOLS and self.stack and isinstance(args[0], Tensor):
            self.shapes.setdefault((self.stack[-1], operator), []).append(
                (tuple(args[0].shape), tuple(result.shape))
            )
        elif operator in _FUNCTIONAL_LAYERS and self.stack and args \
                and isinstance(args[0], Tensor) and isinstance(result, Tensor):
            self.layers.setdefault(self.stack[-1], []).append(
                (_layer_proxy(operator, args, kwargs or {}),
                 (tuple(args[0].shape), tuple(result.shape))))
        return result

    def layer_of(self, name: str, calls: int) -> tuple[nn.Module, tuple[tuple[int, ...],
                                                                         tuple[int, ...]]] | None:
        """The one conv or linear module ``name`` runs on each of its ``calls`` (its proxy and
        the first call's shapes), or None when it runs none, several, or one we cannot size."""
        found = self.layers.get(name, [])
        if not found or len(found) != calls or found[0][0] is None:
            return None
        return found[0][0], found[0][1]


def layer_inventory(model: nn.Module, example_input: Tensor) -> LayerInventory:
    """Trace ``model`` once with fvcore and record every op it counts, in forward order.

    The model is put in eval mode for the trace (and restored), so BatchNorm is counted as at
    inference. Use a batch of 1 (``example_input`` of shape ``1×C×H×W``): all costs are per
    ``example_input``.

    Raises:
        TypeError: ``example_input`` is not a tensor.
    """
    with warnings.catch_warnings():
        # fvcore.nn runs torch.jit.script on its focal loss at import, and torch warns that
        # jit.script is deprecated: noise for us (we never use that loss). Only that warning.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                                category=FutureWarning, module=r"torch\.jit\._script")
        from fvcore.nn import FlopCountAnalysis

    if not isinstance(example_input, Tensor):
        raise TypeError(f"example_input must be a torch.Tensor, got {type(example_input).__name__}")
    example_input = on_model_device(model, example_input)
    was_training = model.training
    model.eval()
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    calls: dict[str, int] = {}
    order: list[str] = []
    handles = []

    pool_work: dict[str, list[int]] = {}  # a pool's input reads and elements, over its calls

    def hook_for(name: str):  # noqa: ANN202 - a forward hook
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            first_in, first_out = _first_tensor(inputs), _first_tensor(output)
            if _op_of(module) == "pool" and first_in is not None and first_out is not None \
                    and first_in.dim() > 2:
                work = pool_work.setdefault(name, [0, 0, 0])
                work[0] += _module_pool_taps(module, first_in.shape, first_out.shape)
                work[1] += first_in.numel()
                work[2] += first_out.numel()
            if name in shapes:
                return
            shapes[name] = (
                tuple(first_in.shape) if first_in is not None else (),
                tuple(first_out.shape) if first_out is not None else (),
            )
            order.append(name)

        return hook

    functional = _FunctionalCalls()
    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_hook(hook_for(name)))
            handles.append(module.register_forward_pre_hook(functional.enter(name)))
            handles.append(module.register_forward_hook(functional.leave))
        with torch.no_grad(), functional:
            model(example_input)
        for handle in handles:
            handle.remove()
        handles = []
        analysis = FlopCountAnalysis(model, example_input).set_op_handle(
            "aten::matmul", _matmul_flops,
            "aten::_native_multi_head_attention", _fast_attention_flops)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        by_module = analysis.by_module_and_operator()
        total = int(analysis.total())
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    modules = dict(model.named_modules())
    children_of: dict[str, list[str]] = {name: [] for name in modules}
    for name in modules:
        if name:
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            children_of.setdefault(parent, []).append(name)

    def own_flops(name: str) -> dict[str, int]:
        mine = dict(by_module.get(name, {}))
        for child in children_of.get(name, []):
            for op, count in by_module.get(child, {}).items():
                mine[op] = mine.get(op, 0) - count
        return {op: int(count) for op, count in mine.items() if count}

    records: list[LayerRecord] = []
    ordered = order + [name for name in modules if name not in shapes]
    for name in ordered:
        module = modules[name]
        params = sum(p.numel() for p in module.parameters(recurse=False))
        flops_by_op = own_flops(name)
        # a layer class with children (timm's BatchNormAct2d: a BatchNorm2d holding its
        # activation) is a layer too: its own op is priced as the layer, its children apart
        # (it was a functional record, which a profile of extra ops priced at nothing)
        is_leaf = not children_of.get(name) or isinstance(module, LAYER_MODULES)
        # a pooling module fvcore counts no FLOPs for (max pools, windowed average pools) is
        # still a pass over its input on every runtime: recorded (when called), with 0 FLOPs
        pooling = _op_of(module) == "pool" and name in shapes
        if is_leaf and pooling and calls.get(name, 0) > 1 and name in pool_work:
            # one pool module applied to several tensors (a tutorial CNN's one MaxPool2d after
            # each conv): no one channel count follows a pruned conv, so its cost stays fixed,
            # summed over its calls
            taps, read, written = pool_work[name]
            records.append(replace(
                _fixed_record(name, "pool", sum(flops_by_op.values()), params),
                pool_taps=taps, input_elements=read, output_elements=written,
                calls=calls[name], max_pool=_is_max_pool(module)))
        elif is_leaf and (params or flops_by_op or pooling):
            runs = functional.layer_of(name, calls.get(name, 0)) \
                if (params or "conv" in flops_by_op) and not isinstance(module, LAYER_MODULES) \
                else None
            layer, shape = runs if runs is not None else (module, shapes.get(name))
            op = _op_of(layer)
            flops, rest = sum(flops_by_op.values()), []
            if op in LAYER_OPS and runs_own_forward(module) and prices_itself(module):
                # its own forward's other calls are traced (a StdConv2d standardising its
                # weights): their FLOPs go to functional records, priced through the trace
                flops = sum(c for o, c in flops_by_op.items() if _op_of_operator(o) == op)
                rest = [_fixed_record(f"{name}#{o}", _op_of_operator(o), c, 0)
                        for o, c in flops_by_op.items() if _op_of_operator(o) != op]
            record = _leaf_record(name, layer, shape, flops, params, calls.get(name, 0))
            # priced through the trace: a leaf of no parameters, or one whose own forward the
            # trace records (a LayerScale's multiply) unless its record is a layer
            traced = record.op not in LAYER_OPS and (
                not prices_itself(module) or runs_own_forward(module)) and all(
                _op_of_operator(o) in _TRACE_PRICED for o in flops_by_op)
            records.append(replace(record, traced=True) if traced else record)
            records.extend(rest)
        elif not is_leaf:
            if params:  # parameters owned directly by a container (rare): a fixed-cost record
                records.append(_fixed_record(f"{name or '<model>'}#parameters", "other", 0, params))
            for operator, count in flops_by_op.items():
                record_name = f"{name or '<model>'}#{operator}"
                convs = _functional_convs(record_name, functional.layers.get(name, []), count) \
                    if operator == "conv" else []
                if convs:
                    records.extend(convs)
                    continue
                pool_shapes = functional.shapes.get((name, operator))
                if pool_shapes is not None and len(pool_shapes) == 1:
                    # a pooling call in a forward (mobilenet_v2's adaptive_avg_pool2d): its cost
                    # scales with its channels, so record them (one call, shapes known)
                    records.append(_functional_pool_record(record_name, pool_shapes[0], count))
                else:
                    records.append(
                        _fixed_record(record_name, _op_of_operator(operator), count, 0)
                    )
    unpriced = [name for name, module in modules.items() if name in calls
                and isinstance(module, (nn.RNNBase, nn.RNNCellBase))]
    if unpriced:
        # fvcore counts no FLOPs for recurrent layers and the latency model prices them as one
        # call (an LSTM of 2 × 128 units over 64 steps: 0.03 ms priced, 1.1 ms measured,
        # experiments/unusual_ops.py): say so rather than answer with a price that is not one
        warnings.warn(
            f"{type(modules[unpriced[0]]).__name__} {unpriced[0]!r}"
            f"{f' and {len(unpriced) - 1} more recurrent layers' if len(unpriced) > 1 else ''}: "
            "their FLOPs are not counted (fvcore has none for recurrent layers) and their "
            "latency is priced as one call each: this network's FLOPs and latency leave "
            "their work out",
            UserWarning, stacklevel=2)
    scalable = {r.name for r in records if r.out_channels > 0}
    extra_ops, folded = trace_ops(
        model, example_input, layer_names=scalable,
        layer_ops={r.name: r.op for r in records if r.op in LAYER_OPS and r.name in modules},
        priced_whole={r.name for r in records if r.op not in LAYER_OPS and not r.traced})
    records = [replace(r, folded=True) if r.name in folded else r for r in records]
    inventory = LayerInventory(records, extra_ops=extra_ops)
    if inventory.total_flops != total:  # a bookkeeping bug, not a user mistake
        raise RuntimeError(
            f"layer inventory lost FLOPs: records sum to {inventory.total_flops}, "
            f"fvcore says {total}"
        )
    return inventory


def _matmul_flops(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore's count for ``aten::matmul`` (output elements × the shared size), for every rank
    ``torch.matmul`` takes: fvcore's own handle fails on a vector operand (a dot product,
    ``matrix @ v``), which a user's network may well hold."""
    from fvcore.nn.jit_handles import get_shape

    first, out = get_shape(inputs[0]), get_shape(outputs[0])
    if not first:
        return 0
    return int(math.prod(out or ()) * first[-1])


def _functional_convs(
    record_name: str,
    calls: list[tuple[nn.Module | None, tuple[tuple[int, ...], tuple[int, ...]]]],
    fvcore_flops: int,
) -> list[LayerRecord]:
    """One conv record per functional conv a container calls (``calls``: its functional layers
    in order, :class:`_FunctionalCalls`), each priced as the ``nn.Conv*d`` it runs; [] when
    one cannot be sized or their FLOPs (fvcore's convention: output elements × input channels
    per group × kernel; a transposed conv's over its input) do not add up to fvcore's count."""
    convs = [(proxy, shapes) for proxy, shapes in calls
             if proxy is None or isinstance(proxy, nn.modules.conv._ConvNd)]
    if not convs or any(proxy is None for proxy, _ in convs):
        return []
    flops = []
    for proxy, (in_shape, out_shape) in convs:
        taps = math.prod(proxy.kernel_size)
        if proxy.transposed:
            flops.append(math.prod(in_shape) * proxy.out_channels // proxy.groups * taps)
        else:
            flops.append(math.prod(out_shape) * proxy.in_channels // proxy.groups * taps)
    if sum(flops) != fvcore_flops:
        return []
    # params and weights stay with the record that owns them (the container's, or the
    # ParameterList's): counted once, and priced there
    return [replace(_leaf_record(f"{record_name}.{i}", proxy, shapes, count, 0, 1),
                    proxied=True, weight_params=0)
            for i, ((proxy, shapes), count) in enumerate(zip(convs, flops, strict=True))]


def _fast_attention_flops(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    """fvcore's ``linear`` count of the projections of ``nn.MultiheadAttention``'s fast path
    (``aten::_native_multi_head_attention``, which PyTorch takes under ``no_grad`` or with
    frozen weights, and fvcore does not count: the FLOPs of a transformer then depended on the
    grad mode, 1.7 against 3.3 MFLOPs for a two-layer encoder over 49 tokens): q, k, v and the
    output projection, each output elements × embedding width, as the slow path's linears."""
    from fvcore.nn.jit_handles import get_shape

    query, key, value = (get_shape(v) for v in inputs[:3])
    if not query or not key or not value:
        return Counter()
    embed = query[-1]
    rows_q, rows_kv = math.prod(query[:-1]), math.prod(key[:-1])
    return Counter({"linear": int(2 * rows_q * embed * embed + rows_kv * key[-1] * embed
                                  + math.prod(value[:-1]) * value[-1] * embed)})


def _fixed_record(name: str, op: str, flops: int, params: int) -> LayerRecord:
    return LayerRecord(
        name=name, op=op, in_channels=0, out_channels=0, kernel_size=(), groups=1, stride=(),
        output_hw=(1, 1), params=params, flops=flops, activation_volume=0,
    )


def _functional_pool_record(
    name: str, shape: tuple[tuple[int, ...], tuple[int, ...]], flops: int
) -> LayerRecord:
    in_shape, out_shape = shape
    channels = int(in_shape[1])
    return LayerRecord(
        name=name, op="pool", in_channels=channels, out_channels=channels, kernel_size=(),
        groups=1, stride=(), output_hw=_as_hw(out_shape), params=0, flops=flops,
        activation_volume=0, input_hw=_as_hw(in_shape), input_elements=math.prod(in_shape),
        output_elements=math.prod(out_shape),
    )


def _leaf_record(
    name: str,
    module: nn.Module,
    shape: tuple[tuple[int, ...], tuple[int, ...]] | None,
    flops: int,
    params: int,
    calls: int,
) -> LayerRecord:
    op = _op_of(module)
    if shape is None or not shape[0] or not shape[1]:
        return _fixed_record(name, op, flops, params)
    in_shape, out_shape = shape
    in_elements, out_elements = math.prod(in_shape), math.prod(out_shape)
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    output_padding: tuple[int, ...] = ()
    transposed = False
    groups = 1
    weight = 0
    read = 1.0
    padding: tuple[int, ...] = ()
    input_padding: tuple[int, ...] = ()
    taps, max_pool = 0, False
    if op == "conv":
        conv: nn.modules.conv._ConvNd = module  # type: ignore[assignment]
        cin, cout = conv.in_channels, conv.out_channels
        kernel, stride, groups = tuple(conv.kernel_size), tuple(conv.stride), conv.groups
        dilation = tuple(conv.dilation)
        transposed = bool(conv.transposed)
        output_padding = tuple(conv.output_padding)
        weight = conv.weight.numel()
        read = _read_tap_share(conv, in_shape[2:], out_shape[2:])
        padding, input_padding = _kernel_padding(conv)
    elif op == "linear":
        lin: nn.Linear = module  # type: ignore[assignment]
        cin, cout = lin.in_features, lin.out_features
        weight = lin.weight.numel()
    elif op in ("batchnorm", "pool"):
        cin = cout = int(in_shape[1]) if len(in_shape) > 1 else 0
        if op == "pool" and len(in_shape) > 2:
            taps = _module_pool_taps(module, in_shape, out_shape)
            max_pool = _is_max_pool(module)
    else:
        return _fixed_record(name, op, flops, params)
    if op == "linear":
        output_hw: tuple[int, int] = (1, 1)
        input_hw: tuple[int, int] = (1, 1)
    else:
        output_hw, input_hw = _as_hw(out_shape), _as_hw(in_shape)
    volume = out_elements if op in ("conv", "linear") else 0  # BAR eq. (4): channels × area
    return LayerRecord(
        name=name, op=op, in_channels=cin, out_channels=cout, kernel_size=kernel, groups=groups,
        stride=stride, output_hw=output_hw, params=params, flops=flops, activation_volume=volume,
        input_hw=input_hw, input_elements=in_elements, output_elements=out_elements,
        # a weight the module does not own (weight_norm's parametrisation, a borrowed one) is
        # priced with the record that owns it: never more weight than parameters
        weight_params=min(weight, params), calls=calls, read_taps=read, dilation=dilation,
        batch=int(in_shape[0]) if in_shape else 1, transposed=transposed,
        output_padding=output_padding, counted_input_elements=counted_input_elements(in_shape),
        pool_taps=taps, max_pool=max_pool, padding=padding, input_padding=input_padding,
    )


def _kernel_padding(conv: nn.modules.conv._ConvNd) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the zero padding a conv's kernel sees before each spatial size's first element, the
    elements per size PyTorch pads the input with itself). Zero padding: ``padding``, and for
    ``"same"`` half the dilated kernel's reach rounded down (PyTorch pads the input's end by the
    odd one). A non-zero padding mode pads the input first, then convolves unpadded."""
    dims = len(conv.kernel_size)
    if conv.padding == "valid":
        return (0,) * dims, (0,) * dims
    if conv.padding == "same":
        total = tuple(d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation, strict=True))
    else:
        total = tuple(2 * int(p) for p in conv.padding)  # type: ignore[union-attr]
    if conv.padding_mode != "zeros":
        return (0,) * dims, total
    # an odd "same" total: PyTorch pads the input's end by the extra one itself, then
    # convolves with half on each side
    return tuple(t // 2 for t in total), tuple(t % 2 for t in total)


def _aligned(aligns: Any, groups: Any, step: int, ci: Any, co: Any,
             rounding: Callable[[Any], Any]) -> Any:
    """Which layers take the aligned price: ``aligns`` (a dense or grouped conv) whose kept
    input and output channels, counted per group, are multiples of ``step``. NumPy arrays with
    ``np.round`` (:meth:`LayerInventory.price`) or tensors with ``torch.round``
    (``expected_cost``)."""
    i, o = rounding(ci), rounding(co)
    return (aligns & (rounding(i / groups) % step == 0) & (rounding(o / groups) % step == 0)
            & (i % groups == 0) & (o % groups == 0))


def _onednn(always: Any, by_size: Any, per_channel: Any, ci: Any,
            rounding: Callable[[Any], Any]) -> Any:
    """Which layers PyTorch eager runs on oneDNN at kept input channels ``ci``: ``always``, or
    ``by_size`` once the elements its line counts (``per_channel`` per kept input channel) pass
    :data:`~budgetsearch.cost.dispatch.ONEDNN_MIN_INPUT_ELEMENTS`. NumPy arrays with
    ``np.round`` or tensors with ``torch.round``, as :func:`_aligned`."""
    return always | (by_size & (rounding(per_channel * rounding(ci))
                                > ONEDNN_MIN_INPUT_ELEMENTS))


def _area_prices(profile: DeviceProfile, record: LayerRecord) -> tuple[float, float]:
    """(ms per FLOP, ms per weight element) a dense conv pays again for its output area: the
    profile's kind of that area in :data:`~budgetsearch.cost.profiles.CONV_AREA_KINDS`, and its
    small-GEMM table (:class:`~budgetsearch.cost.profiles.SmallGemm`); 0 where it names
    neither. Not on oneDNN: the caller switches the weight price off there."""
    if record.kind != "conv" or record.out_channels <= 0:
        return 0.0, 0.0
    area = record.output_hw[0] * record.output_hw[1]
    per_byte = 1e-6 * profile.bytes_per_element
    alpha, gamma_w = 0.0, 0.0
    if (profile.small_gemm is not None and profile.conv_dispatch == "pytorch"
            and not record.transposed and len(record.kernel_size) <= 2):
        # the GEMM's N is the output area of one image: PyTorch's slow_conv2d runs one GEMM,
        # repacking the weights, per image of the batch; transposed and 3-D convs run other
        # GEMMs, not timed for the table
        gamma_w = profile.small_gemm.ms_per_mb(area) * per_byte * max(1, record.batch)
    coefficients = _area_coefficients(profile, area)
    if coefficients is not None:
        alpha = coefficients.ms_per_gflop * 1e-9
        gamma_w += (coefficients.ms_per_weight_mb or 0.0) * per_byte
    return alpha, gamma_w


def _area_coefficients(profile: DeviceProfile, area: int) -> Any:
    """The profile's coefficients of the conv-area kind holding ``area`` (None where it names
    none: looked up without fallback)."""
    for kind, (low, high) in CONV_AREA_KINDS.items():
        if low <= area <= high:
            return profile.ops.get(kind)
    return None


def linear_rows(record: LayerRecord) -> int:
    """The rows a linear layer's weights meet in one call (its input elements per input
    feature: the batch × the tokens or positions it runs over); 1 for any other record. A
    layer called on inputs of several shapes is priced at its first call's rows (the record
    keeps one input shape; its FLOPs are every call's)."""
    if record.op != "linear" or record.in_channels <= 0 or record.input_elements <= 0:
        return 1
    return max(1, round(record.input_elements / record.in_channels))


def rows_alpha(profile: DeviceProfile, one_row_alpha: float, rows: int) -> float:
    """ms per FLOP of a matmul whose shared operand meets ``rows`` rows: the first row at the
    op's own price (a classifier head's GEMV, the only linear the fit set holds, streams its
    weights: the eager fits' 238 ms per GFLOP), every further row at the dense conv's GEMM price
    (a 1×1 conv over that many positions is the same GEMM; that price includes its area's).
    Measured on 2026-12-04 (``experiments/token_linears.py``): a 768→768 linear over 256 rows ran
    3.3 ms, as long as a 1×1 conv over 256 positions, where the head's price put it at 33 ms."""
    if rows <= 1:
        return one_row_alpha
    area = _area_coefficients(profile, rows)
    gemm = (profile.op_latency("conv").ms_per_gflop
            + (area.ms_per_gflop if area is not None else 0.0)) * 1e-9
    return (one_row_alpha + gemm * (rows - 1)) / rows


def _take(lat: dict[str, Any], on: Any, suffix: str, where: Callable[..., Any]) -> None:
    """Where ``on``, the α, γ, γ_w and β of ``lat`` become those of the ``suffix`` price
    (``np.where`` or ``torch.where``)."""
    for key in ("alpha", "gamma", "gamma_w", "beta", "area_gamma_w"):
        if f"{key}{suffix}" in lat:
            lat[key] = where(on, lat[f"{key}{suffix}"], lat[key])


def _read_tap_share(conv: nn.Module, size_in: Sequence[int], size_out: Sequence[int]) -> float:
    """Share of a conv's kernel taps that read the input at some output position.

    A kernel that skips padding (MLAS's NCHWc convolutions in onnxruntime) never reads the
    weights of the other taps: a 512-channel 3×3 conv on the 1×1 map a small input leaves in
    the last stage reads its centre tap's 1/9 of the weights (resnet18 on 28×28: predicted
    +151 % by onnxruntime's profile with every weight priced, +30 % with the read ones). A
    transposed conv, a string padding other than 'valid' / 'same', or a shape this cannot
    follow reads every tap.
    """
    if isinstance(conv, nn.modules.conv._ConvTransposeNd):
        return 1.0
    kernel, stride = tuple(conv.kernel_size), tuple(conv.stride)  # type: ignore[arg-type]
    dilation, padding = tuple(conv.dilation), conv.padding  # type: ignore[arg-type]
    dims = len(kernel)
    if len(size_in) != dims or len(size_out) != dims:
        return 1.0
    if padding == "valid":
        padding = (0,) * dims
    elif padding == "same":
        padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel, strict=True))
    elif isinstance(padding, str):
        return 1.0
    share = 1.0
    for n_in, n_out, k, st, pad, dil in zip(size_in, size_out, kernel, stride, padding, dilation,
                                            strict=True):
        if n_out <= 0 or k <= 0:
            return 1.0
        read = sum(1 for t in range(k)
                   if any(0 <= o * st - pad + t * dil < n_in for o in range(n_out)))
        share *= read / k
    return share


class LayerInventory:
    """Per-layer costs of a traced model, and the pricing of pruned configurations of it.

    Attributes:
        layers: the :class:`LayerRecord` of every counted op, in forward order.
        extra_ops: the calls fvcore does not count (activations, adds, concat, ...; see
            :mod:`budgetsearch.cost.ops`): they carry no parameters or FLOPs, only latency.
    """

    def __init__(self, layers: Iterable[LayerRecord], *,
                 extra_ops: Iterable[ExtraOp] = ()) -> None:
        self.layers: list[LayerRecord] = list(layers)
        self.extra_ops: list[ExtraOp] = list(extra_ops)
        self._index = {record.name: i for i, record in enumerate(self.layers)}
        if len(self._index) != len(self.layers):
            raise ValueError("layer names in an inventory must be unique")
        self._coefficients()
        self._latency_cache: dict[int, tuple[DeviceProfile, dict[str, np.ndarray]]] = {}
        self._torch_cache: dict[tuple[Any, ...], dict[str, Tensor]] = {}

    # -- plain data --------------------------------------------------------------------------

    def __getitem__(self, name: str) -> LayerRecord:
        try:
            return self.layers[self._index[name]]
        except KeyError:
            raise KeyError(f"no layer named {name!r} in the inventory") from None

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[LayerRecord]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def names(self, op: str | None = None) -> list[str]:
        """Layer names in forward order, optionally only those of ``op`` (e.g. ``"conv"``)."""
        return [r.name for r in self.layers if op is None or r.op == op]

    @property
    def total_params(self) -> int:
        """Parameters of the model (equals fvcore's ``parameter_count(model)[""]``)."""
        return sum(r.params for r in self.layers)

    @property
    def total_flops(self) -> int:
        """FLOPs of one forward pass (fvcore: 1 FLOP = 1 fused multiply-add; equals ``total()``)."""
        return sum(r.flops for r in self.layers)

    @property
    def total_activation_volume(self) -> int:
        """BAR eq. (4): output channels × output area, summed over conv and linear layers."""
        return sum(r.activation_volume for r in self.layers)

    @property
    def memory_bytes(self) -> int:
        """Weights plus the peak activations (input + output of one layer), float32."""
        peak = max((r.input_elements + r.output_elements for r in self.layers), default=0)
        return BYTES_PER_ELEMENT * (self.total_params + peak)

    def table(self) -> list[dict[str, Any]]:
        """One plain dict per layer (build a ``pandas.DataFrame`` from it)."""
        return [
            {"layer": r.name, "op": r.op, "in": r.in_channels, "out": r.out_channels,
             "kernel": "x".join(map(str, r.kernel_size)), "groups": r.groups,
             "stride": "x".join(map(str, r.stride)),
             "output_hw": f"{r.output_hw[0]}x{r.output_hw[1]}",
             "params": r.params, "flops": r.flops, "activation_volume": r.activation_volume}
            for r in self.layers
        ]

    # -- coefficients ------------------------------------------------------------------------

    def _coefficients(self) -> None:
        """Precompute ``cost = a·i·o + b·o + c`` per layer and metric (see the module table)."""
        n = len(self.layers)
        z = lambda: np.zeros(n)  # noqa: E731
        full_in, full_out = z(), z()
        w_io, w_o, p_o, p_c = z(), z(), z(), z()  # weight params (density applies), other params
        f_io, f_o, g_o, f_c = z(), z(), z(), z()  # weight FLOPs (density applies), other FLOPs
        t_o, t_c = z(), z()  # other FLOPs as latency counts them: a pool's input reads
        v_o = z()
        a_i, a_o, a_c = z(), z(), z()  # activation elements: per input/output channel, fixed
        scalable = np.zeros(n, dtype=bool)
        for k, r in enumerate(self.layers):
            work = r.pool_taps if r.op == "pool" and r.pool_taps else r.flops
            if r.out_channels <= 0:
                p_c[k], f_c[k], t_c[k] = r.params, r.flops, work
                a_c[k] = r.input_elements + r.output_elements
                continue
            scalable[k] = True
            full_in[k], full_out[k] = r.in_channels, r.out_channels
            a_i[k] = r.input_elements / r.in_channels
            a_o[k] = r.output_elements / r.out_channels
            v_o[k] = r.activation_volume / r.out_channels
            if r.op in ("conv", "linear"):
                bias = r.params - r.weight_params
                p_o[k] = bias / r.out_channels
                if r.depthwise:
                    w_o[k] = r.weight_params / r.out_channels
                    f_o[k] = r.flops / r.out_channels
                else:
                    w_io[k] = r.weight_params / (r.in_channels * r.out_channels)
                    f_io[k] = r.flops / (r.in_channels * r.out_channels)
            else:
                p_o[k] = r.params / r.out_channels
                g_o[k] = r.flops / r.out_channels
                t_o[k] = work / r.out_channels
        self._full_in, self._full_out, self._scalable = full_in, full_out, scalable
        # a profile of a runtime that prepacks weights prices only those a kernel reads (see
        # _read_tap_share); params stay all of them. Not a depthwise conv's (one input channel a
        # group, channel multipliers too): onnxruntime runs one whose channels it cannot block
        # as one small GEMM per channel, every tap's weights read whatever the map (777 channels
        # of 3×3 took 138 µs on a 1×1 map and 215 on 4×4, against 12 and 28 µs blocked at 776:
        # experiments/README.md, "Depthwise convs onnxruntime cannot block"); a blocked one has
        # no weight price
        self._read = np.array([1.0 if r.kind == "dwconv" else r.read_taps
                               for r in self.layers], dtype=float)
        # extra ops: elements / FLOPs at full width, scaled by kept/full of their channel source
        m = len(self.extra_ops)
        source = np.full(m, -1, dtype=np.int64)
        for j, op in enumerate(self.extra_ops):
            k = self._index.get(op.source, -1) if op.source is not None else -1
            if k >= 0 and scalable[k]:
                source[j] = k
        self._extra_source = source
        per_channel = np.zeros(m)  # (a network of extra ops only has no layer to index)
        sourced = source >= 0
        per_channel[sourced] = 1.0 / np.maximum(full_out[source[sourced]], 1.0)
        self._extra_np = {
            "elements": np.array([op.elements for op in self.extra_ops], dtype=float),
            "flops": np.array([op.flops for op in self.extra_ops], dtype=float),
            "per_channel": per_channel,
        }
        self._np = {
            "w_io": w_io, "w_o": w_o, "p_o": p_o, "p_c": p_c, "f_io": f_io, "f_o": f_o,
            "g_o": g_o, "f_c": f_c, "t_o": t_o, "t_c": t_c, "v_o": v_o, "a_i": a_i, "a_o": a_o,
            "a_c": a_c,
        }

    def _latency_arrays(self, profile: DeviceProfile) -> dict[str, np.ndarray]:
        cached = self._latency_cache.get(id(profile))
        if cached is not None and cached[0] is profile:
            return cached[1]
        # A profile that prices the extra ops (the calls fvcore does not count) prices a
        # functional op fvcore charged to a container, or a parameter-free leaf the trace
        # records (nn.Upsample), through its extra op, not twice.
        drop = profile.prices_extra_ops and bool(self.extra_ops)
        on_gemm = self._depthwise_on_gemm(profile)
        coeffs = [
            profile.op_latency("none" if drop and (r.functional or r.traced)
                               else "dwconv_gemm" if gemm else r.latency_kind)
            for r, gemm in zip(self.layers, on_gemm, strict=True)
        ]
        per_byte = 1e-6 * profile.bytes_per_element
        # a dense or grouped conv whose kept channels (per group) are aligned takes the
        # profile's aligned_conv / aligned_gconv price; a depthwise one whose kept channels
        # are, aligned_dwconv (onnxruntime blocks a depthwise conv's channels, not its groups:
        # a channel-pruned MobileNet-v2 ran 0.62-1.17 ms unaligned against 0.21-0.35 rounded
        # to 8, experiments/README.md "Depthwise convs that oneDNN runs as GEMMs", part 7)
        kinds = [r.kind if r.op == "conv" and not gemm else ""
                 for r, gemm in zip(self.layers, on_gemm, strict=True)]
        aligns = np.array([k in ("conv", "gconv", "dwconv") for k in kinds], dtype=bool)
        aligned = [profile.op_latency(f"aligned_{k}") if a else c
                   for k, a, c in zip(kinds, aligns, coeffs, strict=True)]
        arrays = {"aligns": aligns & (profile.channel_alignment > 0),
                  "groups": np.array([1 if k == "dwconv" else max(1, r.groups)
                                      for k, r in zip(kinds, self.layers, strict=True)],
                                     dtype=float)}
        # a dense conv PyTorch eager runs on oneDNN takes the profile's onednn_conv price:
        # always, or once its input holds more than PyTorch's line of elements (by_size)
        always, by_size = self._onednn_dispatch(profile)
        arrays["onednn_always"], arrays["onednn_by_size"] = always, by_size
        # the elements PyTorch's line counts, per kept input channel
        arrays["onednn_per_channel"] = np.array(
            [(r.counted_input_elements or r.input_elements) / r.in_channels
             if r.in_channels > 0 else 0.0 for r in self.layers])
        onednn = [profile.op_latency("onednn_conv") if a or b else c
                  for a, b, c in zip(always, by_size, coeffs, strict=True)]
        for suffix, group in (("", coeffs), ("_aligned", aligned), ("_onednn", onednn)):
            arrays.update({
                f"alpha{suffix}": np.array([c.ms_per_gflop * 1e-9 for c in group]),
                f"gamma{suffix}": np.array([c.ms_per_mb * per_byte for c in group]),
                f"gamma_w{suffix}": np.array([c.weight_ms_per_mb * per_byte for c in group]),
                f"beta{suffix}": np.array([c.overhead_ms for c in group]),
            })
        # a linear over many rows (tokens, a ConvNeXt's pixels) runs a GEMM that reuses its
        # weights, where the fit set's linears are heads on one vector: rows_alpha prices them
        # apart (a profile that prices extra ops prices a functional linear's record through
        # its extra op, below; one that does not, at this record's own rows: 1)
        for k, record in enumerate(self.layers):
            rows = linear_rows(record)
            if rows > 1:
                for suffix in ("", "_aligned", "_onednn"):
                    alphas = arrays[f"alpha{suffix}"]
                    alphas[k] = rows_alpha(profile, float(alphas[k]), rows)
        # a dense conv's FLOPs priced again by its output area (CONV_AREA_KINDS: looked up
        # without fallback, so a profile that does not name them adds nothing), and its weights
        # by that area (the small-GEMM table: on PyTorch's GEMM path MKL repacks the weights
        # each call once the output has 2 positions or more; a 512→512 1×1 conv ran 30 µs on
        # 1 position, 230-370 µs on 2-15, 115 on 16: experiments/README.md, "Small GEMMs");
        # oneDNN reorders its weights at any area (onednn_conv's own weight price), so not there
        area = np.array([_area_prices(profile, r) for r in self.layers]).reshape(-1, 2)
        arrays["area_alpha"], arrays["area_gamma_w"] = area[:, 0], area[:, 1]
        arrays["area_gamma_w_onednn"] = np.zeros(len(self.layers))
        # Extra-op kinds the profile does not name cost nothing (a datasheet roofline prices
        # fvcore's layers only: its compiler fuses element-wise ops into them).
        extra = [None if op.constant and profile.folds_constants
                 else profile.extra_op_latency(f"fused_{op.kind}" if op.fused else op.kind)
                 for op in self.extra_ops]
        # a functional matmul's weights (its shared operand, when no input made it) stream as a
        # linear layer's do: a fixed price per call, whatever the kept channels
        weights = [c.weight_ms_per_mb * per_byte * op.weight_elements if c else 0.0
                   for c, op in zip(extra, self.extra_ops, strict=True)]
        arrays["e_alpha"] = np.array([
            rows_alpha(profile, c.ms_per_gflop * 1e-9, op.rows) if c and op.kind == "linear"
            else c.ms_per_gflop * 1e-9 if c else 0.0
            for c, op in zip(extra, self.extra_ops, strict=True)])
        arrays["e_gamma"] = np.array([c.ms_per_mb * per_byte if c else 0.0 for c in extra])
        arrays["e_beta"] = np.array([(c.overhead_ms if c else 0.0) + w
                                     for c, w in zip(extra, weights, strict=True)])
        self._latency_cache[id(profile)] = (profile, arrays)
        return arrays

    def _onednn_dispatch(self, profile: DeviceProfile) -> tuple[np.ndarray, np.ndarray]:
        """Per layer: PyTorch eager runs it on oneDNN at any width; or does once its input
        passes :data:`~budgetsearch.cost.dispatch.ONEDNN_MIN_INPUT_ELEMENTS` (both False unless
        the profile's ``conv_dispatch`` is ``pytorch``). Only dense convs: grouped ones keep
        their own kinds (``dwconv``, ``gconv``), which PyTorch runs on oneDNN except a grouped
        1×1 at stride 1 on one thread."""
        n = len(self.layers)
        always, by_size = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        if profile.conv_dispatch != "pytorch":
            return always, by_size
        threads = profile.threads
        for k, r in enumerate(self.layers):
            if r.kind != "conv" or r.out_channels <= 0 or not r.kernel_size:
                continue
            shape = {"kernel": r.kernel_size, "stride": r.stride,
                     "dilation": r.dilation or (1,) * len(r.kernel_size),
                     "batch": r.batch, "threads": threads, "transposed": r.transposed,
                     "output_padding": r.output_padding}
            always[k] = onednn_always(groups=r.groups, **shape)
            by_size[k] = not always[k] and onednn_by_size(**shape)
        return always, by_size

    def _depthwise_on_gemm(self, profile: DeviceProfile) -> list[bool]:
        """Per layer: a depthwise conv PyTorch eager's oneDNN runs as per-channel GEMMs
        (:func:`~budgetsearch.cost.dispatch.onednn_depthwise_on_gemm`; all False unless the
        profile's ``conv_dispatch`` is ``pytorch``). Its geometry and the profile's vector
        width (``channel_block``: the lanes its CPU computes in) decide, so pruning never
        switches it (on a 4-lane SSE4.1 CPU the channel count decides too: the full network's
        is checked, a pruned width that leaves a multiple of 8 is not)."""
        if profile.conv_dispatch != "pytorch":
            return [False] * len(self.layers)
        # the SSE4.1 kernel's channel rule is x86 oneDNN's: only for a profile of an x86 CPU
        x86 = "sse4_1" in str(profile.provenance.get("cpu_flags", "")).split()
        return [r.kind == "dwconv" and r.out_channels > 0 and bool(r.padding)
                and onednn_depthwise_on_gemm(
                    input_hw=[size + added for size, added in zip(
                        r.input_hw[:len(r.kernel_size)],
                        r.input_padding or (0,) * len(r.kernel_size), strict=False)],
                    kernel=r.kernel_size, stride=r.stride, padding=r.padding,
                    dilation=r.dilation or (1,) * len(r.kernel_size),
                    multiplier=r.out_channels // max(1, r.in_channels),
                    transposed=r.transposed, lanes=profile.channel_block,
                    channels=r.in_channels if x86 else None)
                for r in self.layers]

    def _latency_numpy(
        self, profile: DeviceProfile, ci: np.ndarray, co: np.ndarray, d: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted ms of each layer and of each extra op at kept channels ``ci``/``co``."""
        lat = dict(self._latency_arrays(profile))
        if lat["aligns"].any():
            on = _aligned(lat["aligns"], lat["groups"], profile.channel_alignment, ci, co,
                          np.round)
            _take(lat, on, "_aligned", np.where)
        c = self._np
        if lat["onednn_always"].any() or lat["onednn_by_size"].any():
            on = _onednn(lat["onednn_always"], lat["onednn_by_size"], lat["onednn_per_channel"],
                         ci, np.round)
            _take(lat, on, "_onednn", np.where)
        sparse = 1.0 - profile.sparse_speedup * (1.0 - d)
        block = profile.channel_block
        po = co if block == 1 else np.ceil(co / block) * block
        weight_flops = c["f_io"] * ci * po + c["f_o"] * po  # output channels in whole blocks
        other_flops = c["t_o"] * co + c["t_c"]
        read = self._read if profile.prepacked_weights else 1.0
        weights = (c["w_io"] * ci * co + c["w_o"] * co) * sparse * read + c["p_o"] * co + c["p_c"]
        activations = c["a_i"] * ci + c["a_o"] * co + c["a_c"]
        compute = (lat["alpha"] * (weight_flops * sparse + other_flops)
                   + lat["area_alpha"] * weight_flops * sparse)
        moved = lat["gamma"] * activations + (lat["gamma_w"] + lat["area_gamma_w"]) * weights
        body = np.maximum(compute, moved) if profile.combine == "max" else compute + moved
        alive = np.where(self._scalable, co > 0, True)
        layers = body + lat["beta"] * alive
        src = self._extra_source
        e = self._extra_np
        kept = np.ones(len(src))
        kept[src >= 0] = co[src[src >= 0]]
        scale = np.where(src >= 0, kept * e["per_channel"], 1.0)
        e_compute = lat["e_alpha"] * e["flops"] * scale
        e_moved = lat["e_gamma"] * e["elements"] * scale
        e_body = np.maximum(e_compute, e_moved) if profile.combine == "max" else e_compute + e_moved
        extras = e_body + lat["e_beta"] * (kept > 0)
        return layers, extras

    # -- pricing -----------------------------------------------------------------------------

    def _channels(
        self,
        kept_channels: Mapping[str, tuple[float, float]] | None,
        densities: Mapping[str, float] | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ci, co = self._full_in.copy(), self._full_out.copy()
        d = np.ones(len(self.layers))
        index = self._index
        try:
            if kept_channels:
                for name, (kin, kout) in kept_channels.items():
                    k = index[name]
                    ci[k], co[k] = kin, kout
            if densities:
                for name, density in densities.items():
                    d[index[name]] = density
        except KeyError as error:
            raise ValueError(
                f"kept_channels/densities name layer {error.args[0]!r}, which is not in the "
                f"inventory (names are as in model.named_modules(), e.g. {self.layers[0].name!r})"
            ) from None
        if kept_channels and (
            np.any(ci < 0) or np.any(co < 0)
            or np.any(ci > self._full_in) or np.any(co > self._full_out)
        ):
            bad = next(
                n for n, (a, b) in kept_channels.items()
                if not (0 <= a <= self._full_in[index[n]] and 0 <= b <= self._full_out[index[n]])
            )
            r = self[bad]
            raise ValueError(
                f"kept_channels[{bad!r}] must be (0..{r.in_channels}, 0..{r.out_channels}) "
                f"(and the layer's channels must be known), got {kept_channels[bad]}"
            )
        if densities and (np.any(d < 0) or np.any(d > 1)):
            raise ValueError(f"densities must be fractions in [0, 1], got {dict(densities)}")
        return ci, co, d

    def price(
        self,
        *,
        kept_channels: Mapping[str, tuple[float, float]] | None = None,
        densities: Mapping[str, float] | None = None,
        index_ops: Sequence[int] = (),
        profile: DeviceProfile | None = None,
    ) -> Cost:
        """Cost of a pruned configuration, without re-tracing.

        Args:
            kept_channels: layer name → (kept input channels, kept output channels); layers not
                named keep all their channels. A channel removed from one layer's output must also
                be removed from the next layers' inputs (and its BatchNorm): name them all.
            densities: layer name → fraction of weights kept (unstructured, erf-loss): parameters
                and FLOPs of the weights scale by it (erf-loss paper, section 3.1: dense FLOPs ×
                density); latency drops only by the profile's declared ``sparse_speedup``.
            index_ops: elements of each gather / scatter the delivered network runs that this
                inventory does not hold (a compact mixed-connectivity ResNet's, from
                :func:`~budgetsearch.cost.ops.index_op_elements`): latency adds their price.
            profile: device profile for ``latency_ms`` (None → ``latency_ms`` is None).

        Raises:
            ValueError: an unknown layer name, or channels / densities out of range.
        """
        ci, co, d = self._channels(kept_channels, densities)
        c = self._np
        io = ci * co
        weight_params = c["w_io"] * io + c["w_o"] * co
        params = float((d * weight_params + c["p_o"] * co + c["p_c"]).sum())
        weight_flops = c["f_io"] * io + c["f_o"] * co
        other_flops = c["g_o"] * co + c["f_c"]
        flops = float((d * weight_flops + other_flops).sum())
        volume = float((c["v_o"] * co).sum())
        activations = c["a_i"] * ci + c["a_o"] * co + c["a_c"]
        memory = BYTES_PER_ELEMENT * (params + float(activations.max(initial=0.0)))
        latency = None
        if profile is not None:
            layer_ms, extra_ms = self._latency_numpy(profile, ci, co, d)
            latency = (float(layer_ms.sum() + extra_ms.sum()) + profile.network_overhead_ms
                       + profile.extra_ops_ms("index", index_ops))
        return Cost(params=params, flops=flops, activation_volume=volume, memory_bytes=memory,
                    latency_ms=latency)

    def predict_latency_ms(self, profile: DeviceProfile, **kwargs: Any) -> float:
        """Shortcut for ``price(profile=profile, **kwargs).latency_ms``."""
        latency = self.price(profile=profile, **kwargs).latency_ms
        assert latency is not None  # price() always sets it when a profile is given
        return latency

    def layer_latency_ms(
        self, profile: DeviceProfile, *,
        kept_channels: Mapping[str, tuple[float, float]] | None = None,
    ) -> dict[str, float]:
        """Predicted time of each layer on ``profile`` (without the network overhead), full or
        at ``kept_channels`` (as :meth:`price` takes them).

        Extra ops (activations, adds, ... see :attr:`extra_ops`) are not layers: their time is
        in :meth:`extra_latency_ms` (full network only); for the full network both, plus the
        network overhead, add up to :meth:`price`'s ``latency_ms``.
        """
        ci, co, d = self._channels(kept_channels, None)
        times, _ = self._latency_numpy(profile, ci, co, d)
        return {r.name: float(t) for r, t in zip(self.layers, times, strict=True)}

    def extra_latency_ms(self, profile: DeviceProfile) -> dict[str, float]:
        """Predicted time of each extra op of the full network on ``profile``."""
        _, times = self._latency_numpy(
            profile, self._full_in, self._full_out, np.ones(len(self.layers))
        )
        return {op.name: float(t) for op, t in zip(self.extra_ops, times, strict=True)}

    def latency_fit(self, profile: DeviceProfile) -> dict[str, tuple[float, float]]:
        """Per-layer linear fit ``time ≈ α·FLOPs + β`` (ms per FLOP, ms) while the layer is alive.

        ``β`` is the profile's per-layer overhead for the layer's op kind; ``α`` is the secant
        through the full layer's predicted time (DESIGN.md: latency enters BAR this way).
        """
        times = self.layer_latency_ms(profile)
        fits = {}
        for r in self.layers:
            beta = profile.op_latency(r.kind).overhead_ms
            alpha = (times[r.name] - beta) / r.flops if r.flops else 0.0
            fits[r.name] = (alpha, beta)
        return fits

    # -- differentiable expected cost --------------------------------------------------------

    def _torch_coefficients(self, dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
        key = (dtype, device)
        cached = self._torch_cache.get(key)
        if cached is None:
            cached = {
                k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in self._np.items()
            }
            cached["full_in"] = torch.as_tensor(self._full_in, dtype=dtype, device=device)
            cached["full_out"] = torch.as_tensor(self._full_out, dtype=dtype, device=device)
            cached["scalable"] = torch.as_tensor(self._scalable, device=device)
            cached["read"] = torch.as_tensor(self._read, dtype=dtype, device=device)
            cached["e_source"] = torch.as_tensor(
                np.maximum(self._extra_source, 0), dtype=torch.long, device=device
            )
            cached["e_sourced"] = torch.as_tensor(self._extra_source >= 0, device=device)
            for key, value in self._extra_np.items():
                cached[f"e_{key}"] = torch.as_tensor(value, dtype=dtype, device=device)
            self._torch_cache[key] = cached
        return cached

    def expected_cost(
        self,
        metric: str,
        *,
        kept_channels: Mapping[str, tuple[Tensor | float, Tensor | float]] | None = None,
        densities: Mapping[str, Tensor | float] | None = None,
        profile: DeviceProfile | None = None,
        layers: Iterable[str] | None = None,
    ) -> Tensor:
        """Expected cost as a differentiable scalar, for budget losses.

        Args:
            metric: ``"params"``, ``"flops"`` (fvcore: 1 FLOP = 1 fused multiply-add),
                ``"activation_volume"`` or ``"latency_ms"`` (needs ``profile``); aliases such
                as ``"latency"`` are accepted (``budgetsearch.cost.metrics``).
            kept_channels: layer name → (expected kept input channels, expected kept output
                channels), tensors or floats; a 1-D tensor is read as per-channel keep
                probabilities and summed. Independent gates: ``E[i·o] = E[i]·E[o]``, so a conv's
                parameters and FLOPs scale with the product, its volume with ``E[o]``.
            densities: layer name → expected fraction of weights kept.
            profile: device profile (required for ``"latency"``).
            layers: restrict the sum to these layer names (default: all layers).

        Latency is the profile's per-layer model at the expected counts: ``α·E[FLOPs] (+ or
        max) γ·E[bytes] + β·min(E[o], 1)``: the fixed overhead ``β`` is paid while the layer is
        alive, and fades only once fewer than one output channel is expected (DESIGN.md: time ≈
        α·FLOPs + β while the layer is alive).

        Raises:
            ValueError: unknown metric or layer name, or ``"latency"`` without a profile.
        """
        metric = canonical_metric(metric)
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if metric == "latency_ms" and profile is None:
            raise ValueError("metric 'latency' needs a device profile (profile=load_profile(...))")
        given = [
            v for pair in (kept_channels or {}).values() for v in pair if isinstance(v, Tensor)
        ] + [v for v in (densities or {}).values() if isinstance(v, Tensor)]
        dtype = next((v.dtype for v in given if v.is_floating_point()), torch.float64)
        device = given[0].device if given else torch.device("cpu")
        c = self._torch_coefficients(dtype, device)

        def scalar(value: Tensor | float) -> Tensor:
            t = torch.as_tensor(value, dtype=dtype, device=device)
            return t.sum() if t.dim() == 1 else t.reshape(())

        def positions(names: Iterable[str]) -> list[int]:
            try:
                return [self._index[n] for n in names]
            except KeyError as error:
                raise ValueError(
                    f"no layer named {error.args[0]!r} in the inventory (names are as in "
                    f"model.named_modules())"
                ) from None

        ci, co = c["full_in"], c["full_out"]
        d = torch.ones_like(ci)
        if kept_channels:
            idx = torch.as_tensor(positions(kept_channels), device=device, dtype=torch.long)
            pairs = list(kept_channels.values())
            ci = ci.index_put((idx,), torch.stack([scalar(p[0]) for p in pairs]))
            co = co.index_put((idx,), torch.stack([scalar(p[1]) for p in pairs]))
        if densities:
            idx = torch.as_tensor(positions(densities), device=device, dtype=torch.long)
            d = d.index_put((idx,), torch.stack([scalar(v) for v in densities.values()]))
        if metric == "params":
            per_layer = d * (c["w_io"] * ci * co + c["w_o"] * co) + c["p_o"] * co + c["p_c"]
        elif metric == "flops":
            per_layer = d * (c["f_io"] * ci * co + c["f_o"] * co) + c["g_o"] * co + c["f_c"]
        elif metric == "activation_volume":
            per_layer = c["v_o"] * co
        else:
            assert profile is not None
            arrays = self._latency_arrays(profile)
            switches = ("aligns", "groups", "onednn_always", "onednn_by_size",
                        "onednn_per_channel")
            lat = {k: torch.as_tensor(v, dtype=dtype, device=device)
                   for k, v in arrays.items() if k not in switches}
            if arrays["aligns"].any():
                # which price applies switches with the rounded channel counts; no gradient
                # flows through the switch, only through the price it picks
                with torch.no_grad():
                    on = _aligned(torch.as_tensor(arrays["aligns"], device=device),
                                  torch.as_tensor(arrays["groups"], dtype=dtype, device=device),
                                  profile.channel_alignment, ci, co, torch.round)
                _take(lat, on, "_aligned", torch.where)
            if arrays["onednn_always"].any() or arrays["onednn_by_size"].any():
                with torch.no_grad():  # a switch, as above
                    on = _onednn(torch.as_tensor(arrays["onednn_always"], device=device),
                                 torch.as_tensor(arrays["onednn_by_size"], device=device),
                                 torch.as_tensor(arrays["onednn_per_channel"], dtype=dtype,
                                                 device=device), ci, torch.round)
                _take(lat, on, "_onednn", torch.where)
            sparse = 1.0 - profile.sparse_speedup * (1.0 - d)
            read = c["read"] if profile.prepacked_weights else 1.0
            weights = ((c["w_io"] * ci * co + c["w_o"] * co) * sparse * read
                       + c["p_o"] * co + c["p_c"])
            # output channels in whole blocks, as price() counts them; the rounding passes gradients
            # straight through (its value is price()'s, its slope the unrounded count's)
            po = _blocked(co, profile.channel_block)
            weight_flops = (c["f_io"] * ci * po + c["f_o"] * po) * sparse
            compute = (lat["alpha"] * (weight_flops + c["t_o"] * co + c["t_c"])
                       + lat["area_alpha"] * weight_flops)
            activations = c["a_i"] * ci + c["a_o"] * co + c["a_c"]
            moved = (lat["gamma"] * activations
                     + (lat["gamma_w"] + lat["area_gamma_w"]) * weights)
            body = torch.maximum(compute, moved) if profile.combine == "max" else compute + moved
            alive = torch.where(c["scalable"], co.clamp(max=1.0), torch.ones_like(co))
            per_layer = body + lat["beta"] * alive
            # extra ops follow the kept output channels of their channel source
            kept = torch.where(c["e_sourced"], co.index_select(0, c["e_source"]),
                               torch.ones_like(c["e_elements"]))
            scale = torch.where(c["e_sourced"], kept * c["e_per_channel"],
                                torch.ones_like(kept))
            e_compute = lat["e_alpha"] * c["e_flops"] * scale
            e_moved = lat["e_gamma"] * c["e_elements"] * scale
            e_body = (torch.maximum(e_compute, e_moved) if profile.combine == "max"
                      else e_compute + e_moved)
            extra_total = (e_body + lat["e_beta"] * kept.clamp(max=1.0)).sum()
        if layers is not None:
            idx = torch.as_tensor(positions(layers), device=device, dtype=torch.long)
            total = per_layer.index_select(0, idx).sum()
        else:
            total = per_layer.sum()
            if metric == "latency_ms":
                assert profile is not None
                total = total + extra_total + profile.network_overhead_ms
        return total
