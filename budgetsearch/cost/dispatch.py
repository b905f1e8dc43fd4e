"""Which kernel PyTorch eager runs a dense convolution on, on a CPU.

PyTorch (aten/src/ATen/native/Convolution.cpp, ``ConvParams::use_mkldnn``) sends a float32 CPU
convolution to oneDNN (``aten::mkldnn_convolution``) only when all of these hold:

* it is not a transposed conv whose output padding reaches its stride;
* it is not a stride-1, undilated 1×1 conv on one thread with a batch under 16 ("THNN is faster
  when single-threaded");
* it is grouped, or its kernel's last two sizes are both over 3, or the batch is over 1, or its
  input holds more than 20,480 elements counting batch, channels and all spatial sizes but the
  last ("for some case, native is faster").

A 1-D conv is viewed as a 2-D one with a kernel of height 1 (``view1d_as_2d``). Every other
dense conv runs PyTorch's own ``aten::_slow_conv2d_forward`` (an im2col copy and one GEMM) or its
transposed and 3-D counterparts. The two are different kernels with different costs
(torchvision's resnet18 at 3×32×32 runs its 7×7 stem on oneDNN and its 19 other convs on the GEMM
path), and whether a conv crosses the 20,480-element line depends on its kept input channels:
pruning can move a conv from one to the other. A profile with ``conv_dispatch: pytorch`` prices
the oneDNN ones as ``onednn_conv``.

Example:
    >>> shape = {"stride": (1, 1), "dilation": (1, 1), "batch": 1, "threads": 1}
    >>> onednn_always(kernel=(7, 7), groups=1, **shape)
    True
    >>> onednn_always(kernel=(3, 3), groups=1, **shape)
    False
    >>> onednn_by_size(kernel=(3, 3), **shape)
    True
    >>> ONEDNN_MIN_INPUT_ELEMENTS
    20480
"""

from __future__ import annotations

from collections.abc import Sequence

#: PyTorch's own line: a dense conv whose input holds more elements goes to oneDNN.
ONEDNN_MIN_INPUT_ELEMENTS = 20480
#: Dispatch rules a profile can name (``latency_model.conv_dispatch``).
CONV_DISPATCH_RULES = ("pytorch",)


def _as_2d(values: Sequence[int]) -> tuple[int, ...]:
    """A 1-D conv's kernel, stride or dilation as PyTorch views it: 2-D with height 1."""
    return (1, *values) if len(values) == 1 else tuple(values)


def _eligible(kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
              batch: int, threads: int, transposed: bool, output_padding: Sequence[int]) -> bool:
    """The first two conditions (no big output padding; not a one-thread 1×1 at stride 1)."""
    if transposed and any(p >= s for p, s in zip(output_padding, stride, strict=False)):
        return False
    kernel, stride, dilation = _as_2d(kernel), _as_2d(stride), _as_2d(dilation)
    pointwise = all(k == 1 for k in kernel)
    strided = any(s != 1 for s in stride)
    dilated = any(d != 1 for d in dilation)
    return strided or dilated or batch >= 16 or not pointwise or threads > 1


def onednn_always(*, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                  groups: int, batch: int, threads: int, transposed: bool = False,
                  output_padding: Sequence[int] = ()) -> bool:
    """True when PyTorch eager runs this conv on oneDNN at any input channel count."""
    if not kernel or not _eligible(kernel, stride, dilation, batch, threads, transposed,
                                   output_padding):
        return False
    last_two = _as_2d(kernel)[-2:]
    return groups > 1 or (last_two[0] > 3 and last_two[1] > 3) or batch > 1


def onednn_by_size(*, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                   batch: int, threads: int, transposed: bool = False,
                   output_padding: Sequence[int] = ()) -> bool:
    """True when this conv goes to oneDNN once its input (all spatial sizes but the last
    counted, see :func:`counted_input_elements`) holds more than
    :data:`ONEDNN_MIN_INPUT_ELEMENTS` elements, and runs PyTorch's own path below that."""
    return bool(kernel) and _eligible(kernel, stride, dilation, batch, threads, transposed,
                                      output_padding)


def counted_input_elements(input_shape: Sequence[int]) -> int:
    """The input elements PyTorch's line counts: batch × channels × the spatial sizes but the
    last of a 3-D conv (the first four sizes of its input); all of them for 1-D and 2-D."""
    counted = 1
    for size in input_shape[:4]:
        counted *= int(size)
    return counted


__all__ = ["CONV_DISPATCH_RULES", "ONEDNN_MIN_INPUT_ELEMENTS", "counted_input_elements",
           "onednn_always", "onednn_by_size"]
