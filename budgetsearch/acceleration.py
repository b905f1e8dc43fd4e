"""What this machine's CPU or GPU offers for training: bf16 autocast and channels_last.

:func:`choose_acceleration` turns a device and two settings into an :class:`Acceleration`: the
memory format for the model and its 4-D inputs, the autocast dtype (``None``: plain fp32) and a
one-line reason. ``"auto"`` picks bf16 only where the hardware computes it natively (a CPU with
AVX-512 BF16 or AMX-BF16, a CUDA device with bf16 support) and channels_last only for a network
with a ``Conv2d``; elsewhere it falls back to fp32 / contiguous and says why.

Example:
    >>> import torch
    >>> accel = choose_acceleration("cpu", precision="fp32", memory_format="contiguous")
    >>> accel.autocast_dtype is None, accel.memory_format == torch.contiguous_format
    (True, True)
    >>> accel.label
    'fp32'
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass, replace

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")

# /proc/cpuinfo flags of CPUs that compute bf16 dot products in hardware (oneDNN uses them).
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Acceleration:
    """How to run a model: memory format, autocast dtype (``None``: fp32) and why."""

    memory_format: torch.memory_format
    autocast_dtype: torch.dtype | None
    reason: str
    device_type: str = "cpu"

    @property
    def label(self) -> str:
        """Short name for results: ``"fp32"``, ``"bf16"``, ``"fp32+channels_last"``, …"""
        precision = "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32"
        if self.memory_format == torch.channels_last:
            return f"{precision}+channels_last"
        return precision

    def without_autocast(self) -> Acceleration:
        """The same memory format in plain fp32 (what :func:`~budgetsearch.train.train` evaluates
        with: bf16 logits flip the argmax of near ties, which moved test accuracy by up to 0.2
        point on Fashion-MNIST)."""
        if self.autocast_dtype is None:
            return self
        return replace(self, autocast_dtype=None, reason=f"{self.reason}; evaluated in fp32")

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Autocast context for a forward pass (a no-op when ``autocast_dtype`` is ``None``)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move ``model``'s 4-D parameters and buffers to the memory format (in place)."""
        if self.memory_format == torch.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def restore_model(self, model: nn.Module) -> nn.Module:
        """Undo :meth:`prepare_model`: back to contiguous parameters (in place), so that code
        after training (compaction, latency timing, saving) sees the usual layout."""
        if self.memory_format == torch.channels_last:
            model.to(memory_format=torch.contiguous_format)
        return model

    def prepare_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` in the memory format when it is a 4-D batch, unchanged otherwise."""
        if self.memory_format == torch.channels_last and inputs.dim() == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs


FP32 = Acceleration(torch.contiguous_format, None, "plain fp32, contiguous (NCHW)")


@functools.cache
def _cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux), ``None`` where they cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        return None
    return None


def cpu_bf16_support() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and how that was decided.

    Linux: the ``avx512_bf16`` or ``amx_bf16`` flag in /proc/cpuinfo, and oneDNN (mkldnn) in this
    torch build. Elsewhere the flags are unknown and the answer is ``False`` (fp32 is the safe
    choice: emulated bf16 is usually slower than fp32).
    """
    if not torch.backends.mkldnn.is_available():
        return False, "this torch build has no oneDNN (mkldnn) for bf16 convolutions"
    flags = _cpu_flags()
    if flags is None:
        return False, f"CPU bf16 support unknown on {sys.platform} (no /proc/cpuinfo flags)"
    found = [flag for flag in _NATIVE_BF16_FLAGS if flag in flags]
    if found:
        return True, f"CPU has {' and '.join(found)}"
    return False, "CPU lacks avx512_bf16 and amx_bf16 (bf16 would be emulated, slower)"


def cuda_bf16_support(device: torch.device) -> tuple[bool, str]:
    """Whether the CUDA device computes bf16 natively (``torch.cuda.is_bf16_supported``)."""
    if not torch.cuda.is_available():
        return False, "CUDA is not available"
    with torch.cuda.device(device):
        supported = torch.cuda.is_bf16_supported(including_emulation=False)
    name = torch.cuda.get_device_name(device)
    return supported, f"{name} {'supports' if supported else 'lacks native'} bf16"


def has_conv2d(model: nn.Module) -> bool:
    """Whether ``model`` contains a 2-D convolution (the layers channels_last speeds up)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def choose_acceleration(
    device: torch.device | str,
    precision: str = "auto",
    memory_format: str = "auto",
    *,
    model: nn.Module | None = None,
) -> Acceleration:
    """The acceleration to use on ``device``.

    Args:
        device: where the model runs (``"cpu"``, ``"cuda"``, ``torch.device``…).
        precision: ``"auto"`` (bf16 autocast where the hardware has native bf16, else fp32),
            ``"fp32"`` or ``"bf16"`` (forced; on a CPU without native bf16 it is emulated).
        memory_format: ``"auto"`` (channels_last for a conv net on CPU, or on CUDA with bf16),
            ``"channels_last"`` or ``"contiguous"``.
        model: the network; ``"auto"`` keeps a model without ``Conv2d`` contiguous.

    Raises:
        ValueError: an unknown ``precision`` or ``memory_format``, or ``precision="bf16"`` on a
            device that cannot run it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(
            f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}"
        )
    device = torch.device(device)
    reasons: list[str] = []

    dtype: torch.dtype | None = None
    if device.type == "cpu":
        native, why = cpu_bf16_support()
    elif device.type == "cuda":
        native, why = cuda_bf16_support(device)
    else:
        native, why = False, f"no bf16 autocast support known for device type {device.type!r}"
    if precision == "bf16":
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"precision 'bf16' is not supported on device {str(device)!r}: {why}")
        dtype = torch.bfloat16
        reasons.append("bf16 autocast (asked for)" + ("" if native else f"; {why}"))
    elif precision == "auto" and native:
        dtype = torch.bfloat16
        reasons.append(f"bf16 autocast: {why}")
    else:
        reasons.append("fp32 (asked for)" if precision == "fp32" else f"fp32: {why}")

    layout = torch.contiguous_format
    if memory_format == "channels_last":
        layout = torch.channels_last
        reasons.append("channels_last (asked for)")
    elif memory_format == "contiguous":
        reasons.append("contiguous (asked for)")
    elif model is not None and not has_conv2d(model):
        reasons.append("contiguous: the model has no Conv2d")
    elif device.type == "cpu" and torch.backends.mkldnn.is_available():
        layout = torch.channels_last
        reasons.append("channels_last: oneDNN convolutions run fastest in NHWC")
    elif device.type == "cuda" and dtype is not None:
        layout = torch.channels_last
        reasons.append("channels_last: tensor-core convolutions under bf16")
    else:
        reasons.append("contiguous: channels_last brings no known gain here")
    return Acceleration(layout, dtype, "; ".join(reasons), device_type=device.type)
