"""Argument types shared by the commands: one line naming the value and the rule, via argparse."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _number(text: str, accept: Callable[[float], bool], unparsable: str, rejected: str) -> float:
    """``text`` as a float that ``accept`` takes; else one line naming the rule and the value."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {unparsable}, got {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {rejected}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    return _number(text, lambda v: v > 0 and v != math.inf, "a positive number",
                   "a positive finite number")


def non_negative_float(text: str) -> float:
    return _number(text, lambda v: v >= 0 and v != math.inf, "a number ≥ 0",
                   "a finite number ≥ 0")


def fraction(text: str) -> float:
    return _number(text, lambda v: 0.0 <= v < 1.0, "a fraction in [0, 1)",
                   "a fraction in [0, 1)")


def input_size(text: str) -> int:
    """An image side in pixels, 16 to 512 (``profile --input-size``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a side in pixels (16-512), got {text!r}") \
            from None
    if not 16 <= value <= 512:
        raise argparse.ArgumentTypeError(f"expected a side in pixels (16-512), got {text!r}")
    return value
