"""The ops fvcore does not count: activations, adds, SE gating, concat, shuffle, gathers, pools.

fvcore charges FLOPs to convolutions, linear layers, BatchNorm and a few pools; a ReLU, the
residual add, the squeeze-excitation multiply, ``torch.cat`` or a channel shuffle cost it nothing,
yet on a CPU at batch 1 they are a large share of the time (each is one dispatch plus one pass over
its tensor). :func:`trace_extra_ops` runs one forward pass under a ``TorchFunctionMode`` and
records every tensor-producing call made *outside* the modules the inventory already prices (conv,
linear, BatchNorm, pooling modules and leaf modules that own parameters; inside such a module whose
forward is its own, every call but the one its layer record prices, :func:`runs_own_forward`): its
kind, the elements it reads and writes, whether it is computed from weights alone (``constant``),
and the *channel source*, the inventory layer whose output channels the op's
tensor carries. The source is followed through element-wise and shape-keeping ops, so that when a
conv's output channels are pruned, the ReLU, add or pool that consumes them is priced at the kept
width (:meth:`LayerInventory.price` scales the op by ``kept / full`` of its source).

Kinds (latency profiles price each with its own coefficients):

==========  =====================================================================================
activation  unary element-wise maps: relu, relu6 (hardtanh), hardswish, hardsigmoid, sigmoid, silu
binary      element-wise add / mul / sub / div, including the broadcast SE gating ``x * scale``
concat      ops that copy: ``cat``, ``stack``, ``contiguous`` / ``reshape`` that copy (shuffle),
            ``pixel_shuffle`` / ``pixel_unshuffle``, ``pad``
batchnorm   functional norms outside a norm layer (``batch_norm``, ``layer_norm``, ``group_norm``,
            ...), at the profile's ``batchnorm`` price
index       gathers and scatters along an axis: ``index_select``, ``index_add``, ``index_copy``,
            ``gather``, ``scatter``, and the ``new_zeros`` / ``zeros`` they fill (the mixed-
            connectivity blocks of a compact pruned ResNet run three or four per block)
pool        functional average pools and channel means (``adaptive_avg_pool2d``,
            ``x.mean([2, 3])``); FLOPs: the input reads (output × window, or the input once);
            and resampling (``interpolate``, ``nn.Upsample``, ``grid_sample``): output × the
            taps of its mode (nearest 1, bilinear 4, bicubic 16)
maxpool     functional max pools and ``amax``, as ``pool`` (eager computes indices beside)
linear      functional matmul (``F.linear``, ``@``), priced with FLOPs = out elements × in features
            and its ``rows``, the rows each shared operand meets (a linear over tokens: many);
            ``scaled_dot_product_attention`` as its two matmuls (FLOPs = Tq × Tk × (d + d_v));
            ``einsum`` by its index space; ``nn.MultiheadAttention``'s one call as its
            projections and attention (PyTorch runs it whole: the trace cannot see inside)
reshape     metadata only (view, flatten, transpose, chunk, eval-mode dropout): dispatch cost only
==========  =====================================================================================

A runtime that compiles the graph (onnxruntime) folds a BatchNorm into the conv before it and
fuses the activation and the residual add that follow a conv into the conv's kernel. The trace
marks such ops ``fused`` (an activation or an add whose input a conv, or a BatchNorm folded into
one, made; what they output counts as the conv's again), and a BatchNorm layer whose input a
conv returned as folded (:func:`trace_ops`): an onnxruntime profile prices them with their own
coefficients (``fused_activation``, ``fused_binary``, ``fused_batchnorm``, fitted near zero); a
PyTorch eager profile, whose runtime runs every op as it comes, names none and prices them as
the unfused kinds.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten())
    >>> [(op.kind, op.source) for op in trace_extra_ops(net, torch.zeros(1, 1, 8, 8))]
    [('activation', '0'), ('reshape', None)]

    (The ReLU follows conv ``0``'s kept channels; the flatten's output has no channel axis.)
"""

from __future__ import annotations

import inspect
import itertools
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

EXTRA_KINDS = ("activation", "binary", "concat", "index", "pool", "maxpool", "linear", "reshape")

_ACTIVATIONS = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardswish", "hardswish_", "hardsigmoid",
    "hardsigmoid_", "sigmoid", "sigmoid_", "silu", "silu_", "gelu", "tanh", "tanh_", "elu",
    "leaky_relu", "softmax", "log_softmax", "clamp", "clamp_", "mish", "selu", "prelu",
}
_BINARY = {
    "add", "add_", "__add__", "__iadd__", "__radd__", "mul", "mul_", "__mul__", "__imul__",
    "__rmul__", "sub", "sub_", "__sub__", "__isub__", "__rsub__", "div", "div_", "__truediv__",
    "__itruediv__",
}
_COPIES = {"cat", "concat", "concatenate", "stack", "contiguous", "clone", "reshape", "flatten",
           "pad"}
#: calls that write their first argument in place (the ``*_`` methods besides)
_WRITES = {"__setitem__", "copy_", "__iadd__", "__imul__", "__isub__", "__itruediv__",
           "index_put_", "masked_fill_", "scatter_", "index_copy_", "index_add_"}
#: random draws: never constant (a runtime does not fold them)
_RANDOM = {"rand", "randn", "randint", "rand_like", "randn_like", "randint_like", "normal",
           "bernoulli", "multinomial", "randperm"}
#: functional norms (outside a norm layer): priced with the profile's ``batchnorm`` price
_NORMS = {"batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm",
          "local_response_norm", "normalize"}

_INDEXING = {
    "index_select", "index_add", "index_add_", "index_copy", "index_copy_", "gather", "scatter",
    "scatter_", "scatter_add", "scatter_add_", "index_put", "index_put_", "take",
    "masked_select", "masked_scatter", "new_zeros", "zeros_like", "new_full", "full_like",
}
# activations onnxruntime fuses into a conv (FusedConv / NCHWc conv), and the fusable add
_FUSABLE_ACTIVATIONS = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "clamp", "clamp_",
                        "leaky_relu", "sigmoid", "sigmoid_", "tanh", "tanh_", "hardsigmoid",
                        "hardsigmoid_"}
_ADDS = {"add", "add_", "__add__", "__iadd__", "__radd__"}
_FILLS = {"new_zeros", "zeros_like", "new_full", "full_like"}  # write their output, read nothing
_MAX_POOLS = {
    "amax", "amin", "max", "min", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d_with_indices", "max_pool1d", "max_pool2d", "max_pool3d",
    "max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d_with_indices",
    "fractional_max_pool2d", "fractional_max_pool3d", "fractional_max_pool2d_with_indices",
    "fractional_max_pool3d_with_indices",
}
_WINDOWED_POOLS = {"avg_pool1d", "avg_pool2d", "avg_pool3d", "max_pool1d", "max_pool2d",
                   "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
                   "max_pool3d_with_indices", "lp_pool1d", "lp_pool2d", "lp_pool3d",
                   "fractional_max_pool2d", "fractional_max_pool3d",
                   "fractional_max_pool2d_with_indices", "fractional_max_pool3d_with_indices"}
_POOLS = {  # average pools and reductions, then the max pools
    "mean", "sum", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "lp_pool1d", "lp_pool2d", "lp_pool3d",
    *_MAX_POOLS,
}
#: torch's functional convolutions, and the layer class each one is the call of
FUNCTIONAL_CONVS: dict[str, type[nn.Module]] = {
    "conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "conv3d": nn.Conv3d,
    "conv_transpose1d": nn.ConvTranspose1d, "conv_transpose2d": nn.ConvTranspose2d,
    "conv_transpose3d": nn.ConvTranspose3d,
}
#: the call a layer record of each op prices (a custom-forward layer's other calls are traced)
LAYER_CALLS: dict[str, set[str]] = {
    "conv": set(FUNCTIONAL_CONVS),
    "linear": {"linear", "matmul", "__matmul__", "addmm", "mm"},
    "batchnorm": {"batch_norm"},
    "pool": _POOLS,
}
_MATMULS = {"linear", "matmul", "__matmul__", "addmm", "mm", "bmm"}
_EINSUMS = {"einsum"}
#: attention as one call (torch's fused kernels): two matmuls, q·kᵀ and the weights · v
_ATTENTION = {"scaled_dot_product_attention"}
#: attention modules PyTorch runs as one call: priced as their projections and attention
_ATTENTION_MODULES = {"multi_head_attention_forward"}
#: resampling: each output element reads this many input elements (PyTorch's modes); priced as
#: a pool by those reads ("area" is an adaptive average pool: its input once)
_RESAMPLES = {"interpolate", "upsample", "upsample_nearest1d", "upsample_nearest2d",
              "upsample_nearest3d", "upsample_linear1d", "upsample_bilinear2d",
              "upsample_bicubic2d", "upsample_trilinear3d", "grid_sample"}
_RESAMPLE_TAPS = {"nearest": 1, "nearest-exact": 1, "linear": 2, "bilinear": 4, "bicubic": 16,
                  "trilinear": 8}
#: copies that move every element once (a sub-pixel shuffle)
_SHUFFLES = {"pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle"}
#: Pooling module classes: the inventory records them, Torch-Pruning's groups carry them.
MAX_POOL_MODULES = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
                    nn.FractionalMaxPool2d, nn.FractionalMaxPool3d)
POOL_MODULES = (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AvgPoolNd,
                nn.modules.pooling._LPPoolNd, *MAX_POOL_MODULES)


@dataclass(frozen=True)
class ExtraOp:
    """One call the network makes outside the inventory's layers (see the module table).

    ``elements`` counts the elements read and written (inputs + outputs) for batch 1; ``source``
    names the inventory layer whose output channels the op's tensor carries (None: the op's
    width never changes when channels are pruned).
    """

    name: str
    kind: str
    elements: int
    flops: int = 0
    source: str | None = None
    fused: bool = False  # an activation or add a compiling runtime fuses into the conv before it
    #: a matmul's rows per shared operand (:func:`matmul_rows`; 1 for every other kind)
    rows: int = 1
    #: computed from parameters and constants only (a standardised weight, a position table):
    #: a runtime that compiles the graph folds it once (onnxruntime), eager runs it every call
    constant: bool = False
    #: a matmul's shared operand when no input made it (a weight): priced as weight bytes
    weight_elements: int = 0


def matmul_rows(name: str, inputs: Sequence[Tensor], output: Tensor) -> int:
    """The rows of one GEMM of a matmul-kind call: how many rows of its first operand meet each
    column of the operand they share (``inputs``: the two operands, first the rows' one).
    ``F.linear`` / ``addmm`` / ``mm`` (and a ``matmul`` whose
    second operand is a matrix) share one weight with every row of every leading dimension
    (a linear over 196 tokens: 196 rows; a classifier head at batch 1: 1); a batched ``matmul`` /
    ``bmm`` (attention's ``q @ kᵀ``) runs one GEMM per batch entry, of the output's second-to-
    last size. A head's GEMV streams its weights once per row; a GEMM over many rows reuses
    them: :meth:`~budgetsearch.cost.inventory.LayerInventory.price` prices the two apart. A
    vector operand (``matrix @ v``, ``v @ batch``) makes every product a GEMV: 1."""
    if output.dim() < 2 or output.shape[-1] == 0 or any(t.dim() < 2 for t in inputs[:2]):
        return 1
    batched = name == "bmm" or (name in ("matmul", "__matmul__") and len(inputs) > 1
                                and inputs[1].dim() > 2)
    rows = output.shape[-2] if batched else output.numel() // output.shape[-1]
    return max(1, int(rows))


def attention_work(query: Sequence[int], key: Sequence[int], value: Sequence[int]
                   ) -> tuple[int, int]:
    """FLOPs and rows of one attention call of these shapes (``q·kᵀ``, then the weights times
    ``v``): per query row, ``Tk × (d + d_v)`` multiply-adds; each of its GEMMs runs over the
    ``Tq`` query rows."""
    flops = math.prod(query[:-1]) * key[-2] * (query[-1] + value[-1])
    return int(flops), max(1, int(query[-2]))


def einsum_work(equation: str, operands: Sequence[Tensor]) -> tuple[int, int]:
    """FLOPs and rows of an ``einsum`` (one multiply-add per point of its index space: the
    product of every letter's size). With two operands, the rows are the smaller of the two
    operands' own letters that reach the output (a linear written as ``"bnd,de->bne"``:
    ``b × n``; ``"ij,j->i"``: 1, a GEMV; attention's ``"bhqd,bhkd->bhqk"``: the smaller of
    ``q`` and ``k``, its batch letters run apart); 1 otherwise. An ellipsis stands for the
    broadcast dimensions it covers (batch letters)."""
    spec = equation.replace(" ", "")
    inputs, arrow, output = spec.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(operands):
        return 0, 1
    spare = [chr(c) for c in range(0x100, 0x140)]  # letters no equation uses, for the ellipsis
    covered = max((t.dim() - len(term.replace("...", "")) for term, t in
                   zip(terms, operands, strict=True) if "..." in term), default=0)
    batch = "".join(spare[:covered])
    terms = [term.replace("...", batch[covered - (t.dim() - len(term) + 3):] if covered else "")
             for term, t in zip(terms, operands, strict=True)]
    if any(len(term) != t.dim() for term, t in zip(terms, operands, strict=True)):
        return 0, 1
    sizes: dict[str, int] = {}
    for term, tensor in zip(terms, operands, strict=True):
        for letter, size in zip(term, tensor.shape, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), int(size))  # broadcast: the larger
    if arrow:
        output = output.replace("...", batch)
    else:  # implicit output: the broadcast letters, then the letters seen once, sorted
        output = batch + "".join(sorted(c for c in sizes if c not in batch
                                        and sum(term.count(c) for term in terms) == 1))
    flops = math.prod(sizes.values())
    if len(terms) != 2:
        return int(flops), 1
    # the rows a GEMM's shared operand meets: the smaller of the two operands' own output
    # letters (x·Wᵀ either way round: the batch; W·v: 1, a GEMV)
    own = [math.prod(sizes[c] for c in set(mine) & set(output) - set(other))
           for mine, other in (terms, terms[::-1])]
    return int(flops), max(1, min(own))


def _attention_module_ops(args: Sequence[Any], kwargs: dict[str, Any]
                          ) -> list[tuple[str, int, int, int]]:
    """The linears one ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, every
    ``nn.TransformerEncoderLayer``) runs, as ``(part, elements, FLOPs, rows)``: the input
    projections (one packed ``E → 3E`` linear when query, key and value are one tensor),
    attention's two matmuls, the output projection. PyTorch dispatches the call whole, so the
    trace cannot see inside it; fvcore's ``#linear`` records of the same call are priced
    through these (issue 16, the review of 2026-12-04: ViT was priced without them)."""
    bound = inspect.signature(F.multi_head_attention_forward).bind(*args, **kwargs)
    query, key, value = (bound.arguments[k] for k in ("query", "key", "value"))
    if not all(isinstance(t, Tensor) and t.dim() >= 2 for t in (query, key, value)):
        return []
    unbatched = query.dim() == 2
    length, sources = query.shape[0], key.shape[0]
    batch = 1 if unbatched else query.shape[1]
    embed = query.shape[-1]
    ops: list[tuple[str, int, int, int]] = []
    if query is key is value:  # self-attention: one packed projection
        ops.append(("in_proj", length * batch * (embed + 3 * embed) + 3 * embed * (embed + 1),
                    length * batch * embed * 3 * embed, length * batch))
    else:
        for part, tensor in (("q_proj", query), ("k_proj", key), ("v_proj", value)):
            rows = tensor.shape[0] * batch
            ops.append((part, rows * (tensor.shape[-1] + embed) + embed * (tensor.shape[-1] + 1),
                        rows * tensor.shape[-1] * embed, rows))
    # its heads together: one attention of width embed over (batch, length) queries
    flops, rows = attention_work((batch, length, embed), (batch, sources, embed),
                                 (batch, sources, embed))
    ops.append(("attention", batch * embed * (2 * length + 2 * sources), flops, rows))
    ops.append(("out_proj", length * batch * 2 * embed + embed * (embed + 1),
                length * batch * embed * embed, length * batch))
    return ops


def _func_name(func: Callable[..., Any]) -> str:
    name = getattr(func, "__name__", None) or str(func)
    return name.rsplit(".", 1)[-1]


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def _storage(t: Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return -1


def pool_taps(kernel: Any, in_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """Input reads of one pooling call: output elements × window area, for a window
    ``kernel`` (an integer, or one per spatial axis; a single one applies to every axis);
    ``None`` for an adaptive pool, whose windows on an axis of ``n`` inputs and ``m`` outputs
    span ``[⌊i·n/m⌋, ⌈(i+1)·n/m⌉)`` (a global pool reads every input element once)."""
    spatial_in, spatial_out = tuple(in_shape[2:]), tuple(out_shape[2:])
    if kernel is None:  # the sum over the windows of an axis, times the other axes' outputs
        per_axis = [sum(-(-(k + 1) * n // m) - (k * n // m) for k in range(m)) / m
                    for n, m in zip(spatial_in, spatial_out, strict=False) if m > 0]
        return int(round(math.prod(out_shape) * math.prod(per_axis)))
    sizes = [kernel] if isinstance(kernel, numbers.Integral) else list(kernel)
    if len(sizes) == 1:
        sizes = sizes * len(spatial_out)
    return int(math.prod(out_shape) * math.prod(int(k) for k in sizes))


def _pool_reads(name: str, args: Any, kwargs: dict[str, Any], source: Tensor,
                result: Tensor) -> int:
    """Input reads of a functional pool (its work in a latency profile): :func:`pool_taps` of
    a windowed pool given its kernel; a reduction or adaptive pool reads its input once."""
    if name in _WINDOWED_POOLS and source.dim() > 2:
        kernel = kwargs.get("kernel_size", args[1] if len(args) > 1 else None)
        if isinstance(kernel, numbers.Integral) or (
                isinstance(kernel, (tuple, list)) and kernel
                and all(isinstance(k, numbers.Integral) for k in kernel)):
            return pool_taps(kernel, source.shape, result.shape)
    return int(source.numel())


def _resample_reads(name: str, args: Any, kwargs: dict[str, Any], source: Tensor,
                    result: Tensor) -> int:
    """Input reads of a resampling call: its output elements × the taps of its mode (``area``
    and unknown modes: the input once). ``F.interpolate`` hands its options on by keyword;
    ``grid_sample`` and the ``upsample_*`` ops may take them by position. An antialiased
    downsample reads more than its taps (not counted)."""
    mode = kwargs.get("mode")
    if mode is None:
        if name == "grid_sample":
            mode = args[2] if len(args) > 2 and isinstance(args[2], str) else "bilinear"
        elif name in ("interpolate", "upsample"):
            mode = args[3] if len(args) > 3 and isinstance(args[3], str) else "nearest"
        else:  # upsample_<mode>Nd
            mode = name.removeprefix("upsample_")[:-2]
    if name == "grid_sample" and mode == "bilinear" and source.dim() == 5:
        mode = "trilinear"  # a 5-D grid sample interpolates in three axes
    taps = _RESAMPLE_TAPS.get(str(mode))
    return int(result.numel() * taps) if taps else int(source.numel())


def runs_own_forward(module: nn.Module) -> bool:
    """True when ``module``'s forward is not one of torch.nn's own (timm's StdConv2d
    standardises its weights, Conv2dSame pads, a hand-written layer calls F.conv2d): the
    trace records the calls inside it, but for the one its layer record prices."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch.nn.") and "forward" in vars(cls):
            return type(module).forward is not cls.forward
    return True


def prices_itself(module: nn.Module) -> bool:
    """Leaf modules the inventory records (their inner calls are not counted again, unless
    the module's forward is its own: :func:`runs_own_forward`)."""
    if any(True for _ in module.parameters(recurse=False)):
        return True
    return isinstance(
        module, (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm,
                 *POOL_MODULES))


class _Recorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # > 0 while inside a module the inventory prices itself
        self.scopes = ["<model>"]  # module names, innermost last
        self.sources: dict[int, str] = {}  # id(tensor) → inventory layer name
        self.keep: list[Tensor] = []  # keeps ids unique during the pass
        self.live: set[int] = set()  # ids of tensors computed from the network's input
        self.live_storage: set[int] = set()  # storages such a tensor was written into
        self.ops: list[ExtraOp] = []
        self.counts: dict[str, int] = {}
        self.conv_made: set[int] = set()  # ids of tensors a conv (or what fuses into it) made
        self.conv_out: set[int] = set()  # ids of tensors a conv module returned
        self.folded: set[str] = set()  # BatchNorm layers whose input a conv returned
        #: per open scope, the calls its layer record prices (skipped once), or None
        self.skip: list[set[str] | None] = []

    def made_by_conv(self, value: Any) -> None:
        for t in _tensors(value):
            self.conv_made.add(id(t))
            self.keep.append(t)

    def tag(self, value: Any, source: str) -> None:
        for t in _tensors(value):
            self.sources[id(t)] = source
            self.keep.append(t)

    def is_live(self, t: Tensor) -> bool:
        """True for a tensor computed from the network's input (or written with one)."""
        return id(t) in self.live or _storage(t) in self.live_storage

    def record_attention_module(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        scope = self.scopes[-1]
        index = self.counts.get(scope, 0)
        self.counts[scope] = index + 1
        for part, elements, flops, rows in _attention_module_ops(args, kwargs):
            self.ops.append(ExtraOp(name=f"{scope}:multi_head_attention_forward#{index}.{part}",
                                    kind="linear", elements=elements, flops=flops, rows=rows))

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        outputs = _tensors(out)
        inputs = _tensors(list(args) + list((kwargs or {}).values()))
        name = _func_name(func)
        live = name in _RANDOM or any(self.is_live(t) for t in inputs)
        if live:
            self.live.update(id(t) for t in outputs)
            self.keep.extend(outputs)
            if inputs and (name in _WRITES or (name.endswith("_") and not name.startswith("_"))):
                self.live_storage.add(_storage(inputs[0]))  # written in place: a buffer, a view
        if self.depth or not outputs:
            return out  # inside a layer priced whole; or size(), dim(), shape: no work
        if name in LAYER_CALLS["conv"] and len(outputs) == 1:
            # a conv's output, however it was called: what a compiling runtime folds a
            # BatchNorm into and fuses an activation with
            self.made_by_conv(out)
            self.conv_out.add(id(outputs[0]))
        if self.skip and self.skip[-1] and name in self.skip[-1]:
            self.skip[-1] = None  # the call the scope's layer record prices
            known = self.sources.get(id(inputs[0])) if inputs else None
            if known is not None:
                self.tag(out, known)  # its channels are its input's
            if name == "batch_norm" and inputs and id(inputs[0]) in self.conv_out:
                self.made_by_conv(out)  # a batch norm a conv feeds folds into it
            return out
        if name in _ATTENTION_MODULES:
            self.record_attention_module(args, kwargs or {})
            return out
        in_storage = {_storage(t) for t in inputs}
        shares = all(_storage(t) in in_storage for t in outputs)
        if name in _ACTIVATIONS:
            kind = "activation"
        elif name in _BINARY:
            kind = "binary"
        elif name in _NORMS:
            kind = "batchnorm"  # a functional norm: a pass over its tensor, as a BatchNorm
        elif name in _INDEXING:
            kind = "index"
        elif name in ("max", "min") and any(isinstance(a, Tensor) for a in args[1:]):
            kind = "binary"  # torch.max(a, b): element-wise
        elif name in _POOLS:
            kind = "maxpool" if name in _MAX_POOLS else "pool"
        elif name in _MATMULS or name in _ATTENTION or name in _EINSUMS:
            kind = "linear"
        elif name in _RESAMPLES:
            kind = "pool"
        elif (name in _COPIES and not shares) or name in _SHUFFLES:
            kind = "concat"
        else:
            kind = "reshape"
        elements = sum(t.numel() for t in inputs if t.is_floating_point())
        elements += sum(t.numel() for t in outputs)
        if kind == "reshape":
            elements = 0
        elif name in _FILLS:
            elements = sum(t.numel() for t in outputs)
        flops, rows, weight_elements = 0, 1, 0
        if name in _ATTENTION and len(inputs) >= 3 and min(t.dim() for t in inputs[:3]) >= 2:
            flops, rows = attention_work(*(t.shape for t in inputs[:3]))
        elif name in _EINSUMS and args and isinstance(args[0], str):
            flops, rows = einsum_work(args[0], inputs)
        elif name in _RESAMPLES and inputs:
            flops = _resample_reads(name, args, kwargs or {}, inputs[0], outputs[0])
        elif kind == "linear" and inputs:
            # addmm(bias, a, b): the shared dimension is a's last
            operands = inputs[1:] if name == "addmm" and len(inputs) > 2 else inputs
            flops = int(sum(t.numel() for t in outputs) * operands[0].shape[-1])
            rows = matmul_rows(name, operands, outputs[0])
            if len(operands) > 1 and not self.is_live(operands[1]):
                weight_elements = int(operands[1].numel())
        elif kind in ("pool", "maxpool") and inputs:
            flops = _pool_reads(name, args, kwargs or {}, inputs[0], outputs[0])
        source = None
        first = outputs[0]
        for t in inputs:
            known = self.sources.get(id(t))
            if known is not None and t.dim() >= 2 and first.dim() >= 2 and len(outputs) == 1 \
                    and t.shape[1] == first.shape[1] and t.shape[0] == first.shape[0]:
                source = known
                break
        fused = bool(inputs) and (
            (name in _FUSABLE_ACTIVATIONS and id(inputs[0]) in self.conv_made)
            or (name in _ADDS and any(id(t) in self.conv_made for t in inputs)))
        if fused:
            self.made_by_conv(out)
        scope = self.scopes[-1]
        index = self.counts.get(scope, 0)
        self.counts[scope] = index + 1
        self.ops.append(ExtraOp(name=f"{scope}:{name}#{index}", kind=kind,
                                elements=int(elements), flops=flops, source=source,
                                fused=fused, rows=rows, constant=not live,
                                weight_elements=weight_elements))
        if source is not None:
            self.tag(out, source)
        return out


def trace_extra_ops(
    model: nn.Module, example_input: Tensor, *, layer_names: set[str] | None = None
) -> list[ExtraOp]:
    """Record the calls ``model`` makes outside the modules the inventory prices (one pass).

    Args:
        model: the network (put in eval mode for the pass, then restored).
        example_input: a batch-1 input.
        layer_names: names of the inventory's layers; outputs of these modules become channel
            sources (default: every module that prices itself).
    """
    return trace_ops(model, example_input, layer_names=layer_names)[0]


def trace_ops(
    model: nn.Module, example_input: Tensor, *, layer_names: set[str] | None = None,
    layer_ops: Mapping[str, str] | None = None,
    priced_whole: frozenset[str] | set[str] = frozenset(),
) -> tuple[list[ExtraOp], set[str]]:
    """:func:`trace_extra_ops`, and the names of the BatchNorm layers a conv's output feeds
    directly: a compiling runtime folds them into that conv's weights (a pre-activation
    block's first BatchNorm, after an add, stays). ``layer_ops``: the inventory's layer
    records' ops by module name (``conv``, ``linear``, ``batchnorm``, ``pool``): what a custom
    module's record is (one calling ``F.conv2d`` is a conv), and which of the calls a module
    with its own forward makes its record prices (:data:`LAYER_CALLS`; the others are traced).
    Without it, the modules' types say. ``priced_whole``: modules priced whole by their own
    record, whose forward the trace must not open (one running a conv it has no kind for)."""
    recorder = _trace(model, example_input, layer_names, layer_ops, priced_whole)
    return recorder.ops, recorder.folded


def on_model_device(model: nn.Module, example_input: Tensor) -> Tensor:
    """``example_input`` on the device every parameter and buffer of ``model`` is on: a network
    trained on a GPU is priced with the example input its caller made on the CPU. A network
    spread over devices (or holding none) gets the input as given: where it enters is its own
    business (a pipeline, an offloading hook)."""
    devices = {t.device for t in itertools.chain(model.parameters(), model.buffers())}
    if len(devices) != 1:
        return example_input
    (device,) = devices
    return example_input if device == example_input.device else example_input.to(device)


def _trace(model: nn.Module, example_input: Tensor, layer_names: set[str] | None,
           layer_ops: Mapping[str, str] | None = None,
           priced_whole: frozenset[str] | set[str] = frozenset()) -> _Recorder:
    example_input = on_model_device(model, example_input)
    recorder = _Recorder()
    handles = []
    modules = dict(model.named_modules())
    if layer_ops is None:
        layer_ops = {name: op for name, module in modules.items() for op, types in
                     (("conv", nn.modules.conv._ConvNd), ("linear", nn.Linear),
                      ("batchnorm", nn.modules.batchnorm._BatchNorm)) if isinstance(module, types)}
    leaves = {
        name: module for name, module in modules.items()
        if not any(True for _ in module.children())
        and (prices_itself(module) or name in priced_whole)
    }
    # leaves whose forward is their own, and layers with children (a BatchNorm holding its
    # activation): scopes whose calls are traced, but for the one their record prices
    opened = {name for name, module in leaves.items()
              if runs_own_forward(module) and name not in priced_whole}
    opened |= {name for name in layer_ops if name in modules and name not in leaves}
    convs = {name for name, op in layer_ops.items() if op == "conv"}

    closed = set(leaves) - opened  # leaves whose every call their record prices

    def enter(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any) -> None:
            if name in closed:
                recorder.depth += 1
            elif recorder.depth == 0:
                recorder.scopes.append(name or "<model>")
                recorder.skip.append(set(LAYER_CALLS.get(layer_ops.get(name, ""), ()))
                                     if name in opened else None)

        return hook

    def leave(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if any(recorder.is_live(t) for t in _tensors(inputs)):
                recorder.live.update(id(t) for t in _tensors(output))  # whatever ran inside
                recorder.keep.extend(_tensors(output))
            if name in closed:
                recorder.depth -= 1
            elif recorder.depth == 0 and len(recorder.scopes) > 1:
                recorder.scopes.pop()
                recorder.skip.pop()
            if recorder.depth:
                return
            if name in leaves or name in layer_ops:
                if layer_names is None or name in layer_names:
                    recorder.tag(output, name)
                if name in convs:
                    recorder.made_by_conv(output)
                    recorder.conv_out.update(id(t) for t in _tensors(output))
                elif layer_ops.get(name) == "batchnorm" and any(
                        id(t) in recorder.conv_out for t in _tensors(inputs)[:1]):
                    recorder.folded.add(name)
                    if name in leaves:  # a BatchNorm holding its activation: what the
                        recorder.made_by_conv(output)  # activation made is not the conv's

        return hook

    was_training = model.training
    model.eval()
    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave(name)))
        recorder.live.add(id(example_input))
        with torch.no_grad(), recorder:
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return recorder


def index_op_elements(model: nn.Module, example_input: Tensor) -> list[int]:
    """Elements read and written by each gather/scatter (kind ``index``) ``model`` runs.

    A compact mixed-connectivity ResNet (what BAR and channel-magnitude deliver) runs three or
    four per block; the full network priced at its kept channels runs none, so a trial records
    these beside its kept channels and every price of it adds them
    (:meth:`~budgetsearch.cost.DeviceProfile.extra_ops_ms`).
    """
    return [op.elements for op in trace_extra_ops(model, example_input) if op.kind == "index"]

