"""Which kernel PyTorch eager runs a dense convolution on, on a CPU.

PyTorch (aten/src/ATen/native/Convolution.cpp, ``ConvParams::use_mkldnn``) sends a float32 CPU
convolution to oneDNN (``aten::mkldnn_convolution``) only when both hold:

* it is not a stride-1, undilated 1×1 conv on one thread with a batch under 16 ("THNN is faster
  when single-threaded"), and
* it is grouped, or its kernel is larger than 3×3 in both dimensions, or the batch is over 1, or
  its input holds more than 20,480 elements ("for some case, native is faster").

Every other dense conv runs PyTorch's own ``aten::_slow_conv2d_forward``: an im2col copy and one
GEMM. The two are different kernels with different costs (torchvision's resnet18 at 3×32×32 runs
its 7×7 stem on oneDNN and its 19 other convs on the GEMM path), and whether a conv crosses the
20,480-element line depends on its kept input channels: pruning can move a conv from one to the
other. A profile with ``conv_dispatch: pytorch`` prices the oneDNN ones as ``onednn_conv``.

Example:
    >>> onednn_always(kernel=(7, 7), stride=(2, 2), dilation=(1, 1), groups=1, batch=1, threads=1)
    True
    >>> onednn_always(kernel=(3, 3), stride=(1, 1), dilation=(1, 1), groups=1, batch=1, threads=1)
    False
    >>> onednn_by_size(kernel=(3, 3), stride=(1, 1), dilation=(1, 1), batch=1, threads=1)
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


def _gemm_eligible(kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                   batch: int, threads: int) -> bool:
    """The first condition: False only for a stride-1, undilated 1×1 conv on one thread with a
    batch under 16 (PyTorch keeps it on its own GEMM path whatever its size)."""
    pointwise = all(k == 1 for k in kernel)
    strided = any(s != 1 for s in stride)
    dilated = any(d != 1 for d in dilation)
    return strided or dilated or batch >= 16 or not pointwise or threads > 1


def onednn_always(*, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                  groups: int, batch: int, threads: int) -> bool:
    """True when PyTorch eager runs this 2-D conv on oneDNN at any input channel count."""
    if len(kernel) != 2 or not _gemm_eligible(kernel, stride, dilation, batch, threads):
        return False
    return groups > 1 or (kernel[0] > 3 and kernel[1] > 3) or batch > 1


def onednn_by_size(*, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                   batch: int, threads: int) -> bool:
    """True when this 2-D conv goes to oneDNN once its input holds more than
    :data:`ONEDNN_MIN_INPUT_ELEMENTS` elements (and runs the GEMM path below that)."""
    return len(kernel) == 2 and _gemm_eligible(kernel, stride, dilation, batch, threads)


__all__ = ["CONV_DISPATCH_RULES", "ONEDNN_MIN_INPUT_ELEMENTS", "onednn_always", "onednn_by_size"]
