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

A depthwise conv always goes to oneDNN, which runs it with its depthwise kernel (``jit_dw``)
unless the geometry rules that kernel out (:func:`onednn_depthwise_on_gemm`, read from oneDNN's
verbose log): then it falls back to one im2col + GEMM per channel (``gemm:jit``), 5–10× slower
per call. That is the 5×5 and 7×7 depthwise convs on the 1×1–4×4 maps of MobileNet-v3,
MnasNet and EfficientNet at small inputs (EfficientNet-B0 at 3×32×32 ran its nine 5×5 ones in
2.2 ms, priced 0.66 as the 3×3 kind). Pruning never moves a depthwise conv between the two:
the rule reads only its geometry. A profile with ``conv_dispatch: pytorch`` prices these as
``dwconv_gemm``.

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
#: oneDNN's depthwise kernel takes at most this many columns of left padding (more: per-channel
#: GEMMs, whatever the kernel, stride or input width), by the CPU's fp32 vector lanes: 6 with
#: AVX-512 (16 lanes), 4 with AVX2 (8; read on 2026-12-03 from oneDNN's verbose log over
#: kernels 3-9 wide, paddings 0-8, strides 1-3, inputs 12-40 wide: 5 and more ran as GEMMs),
#: 3 with SSE4.1 (4 lanes, its jit_dw:sse41 kernel, which an AVX machine without AVX2 runs too;
#: read the same day under ONEDNN_MAX_CPU_ISA=SSE41 and =AVX)
DEPTHWISE_MAX_LEFT_PADDING = 6
DEPTHWISE_MAX_LEFT_PADDING_BY_LANES = {16: 6, 8: 4, 4: 3}
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


def onednn_depthwise_on_gemm(*, input_hw: Sequence[int], kernel: Sequence[int],
                             stride: Sequence[int], padding: Sequence[int],
                             dilation: Sequence[int], multiplier: int = 1,
                             transposed: bool = False, lanes: int = 16,
                             channels: int | None = None) -> bool:
    """True when oneDNN runs a depthwise conv (groups = input channels, ``multiplier`` output
    channels per group) as per-channel GEMMs instead of its depthwise kernel.

    Its depthwise kernel takes only ``multiplier`` 1, and refuses a geometry where, along
    either axis, the (dilated) kernel lies wholly in the padding at the start or the end, or
    where the output is narrower than the left padding, or that padding is over
    :data:`DEPTHWISE_MAX_LEFT_PADDING_BY_LANES` columns for the CPU's vector width; its SSE4.1
    kernel (4 lanes) also refuses channels that are not a multiple of 8 (wider ones pad them).
    Read from oneDNN's verbose log (``torch.backends.mkldnn.verbose``) on AVX-512 machines, over
    random 1–12 × 1–12 inputs, kernels 1–9, strides 1–3, dilations 1–2 and paddings up to half
    the kernel plus one, at 1 and 2 threads, and wide inputs with paddings to 9; on an AVX2
    machine, and under ``ONEDNN_MAX_CPU_ISA=SSE41``, only the padding limit (and there the
    channels) moved (tests/cost/test_dispatch.py re-checks it on fresh draws with this
    machine's lanes and with every narrower instruction set oneDNN can be capped to there).
    1-D convs are viewed as 2-D with height 1; 3-D and transposed ones are left to their kind
    (False).

    Args:
        input_hw: the input's spatial sizes (1 or 2 of them).
        kernel, stride, padding, dilation: the conv's, one per spatial size; padding is the
            leading (left / top) padding.
        multiplier: output channels per input channel.
        lanes: fp32 lanes of the CPU's widest vector unit (16: AVX-512, 8: AVX2, 4: SSE4.1 or
            AVX without AVX2; an unknown width, such as a hand-written profile's
            ``channel_block`` of 1, AVX-512's, the rule's default).
        channels: the conv's input channels, for the SSE4.1 kernel (None: not checked; the
            inventory passes them for x86 profiles only, the rule being x86 oneDNN's).
    """
    if transposed or not kernel or len(kernel) > 2:
        return False
    if lanes == 4 and channels is not None and channels % 8:
        return True  # oneDNN's jit_dw:sse41 pads no channels: 33 of them ran as GEMMs
    if multiplier != 1:
        return True
    sizes, kernel, stride = _as_2d(input_hw), _as_2d(kernel), _as_2d(stride)
    padding, dilation = (0, *padding) if len(padding) == 1 else tuple(padding), _as_2d(dilation)
    for axis in (0, 1):
        extent = (kernel[axis] - 1) * dilation[axis] + 1
        out = (sizes[axis] + 2 * padding[axis] - extent) // stride[axis] + 1
        end_padding = (out - 1) * stride[axis] + extent - (sizes[axis] + padding[axis])
        if extent <= padding[axis] or extent <= end_padding:
            return True  # the kernel outside the input at one end
        max_left = DEPTHWISE_MAX_LEFT_PADDING_BY_LANES.get(lanes, DEPTHWISE_MAX_LEFT_PADDING)
        if axis == 1 and (out < padding[axis] or padding[axis] > max_left):
            return True  # fewer outputs than the left padding's columns, or too many of them
    return False


def counted_input_elements(input_shape: Sequence[int]) -> int:
    """The input elements PyTorch's line counts: batch × channels × the spatial sizes but the
    last of a 3-D conv (the first four sizes of its input); all of them for 1-D and 2-D."""
    counted = 1
    for size in input_shape[:4]:
        counted *= int(size)
    return counted


__all__ = ["CONV_DISPATCH_RULES", "DEPTHWISE_MAX_LEFT_PADDING",
           "DEPTHWISE_MAX_LEFT_PADDING_BY_LANES", "ONEDNN_MIN_INPUT_ELEMENTS",
           "counted_input_elements", "onednn_always", "onednn_by_size",
           "onednn_depthwise_on_gemm"]
