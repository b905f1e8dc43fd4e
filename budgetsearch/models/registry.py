"""Model registry: a plain dict behind a decorator."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, tuple[ModelFactory, str]] = {}


def register_model(name: str, description: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register ``factory(num_classes=, in_channels=, width_multiplier=)`` under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = (factory, description)
        return factory

    return decorate


def model_names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def describe_models() -> dict[str, str]:
    """Name → one-line description of every registered model."""
    return {name: _REGISTRY[name][1] for name in model_names()}


def registered_factory(name: str) -> tuple[ModelFactory, str]:
    """(factory, description) of a registered model.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name not in _REGISTRY:
        raise ValueError(f"model must be one of {', '.join(model_names())}, got {name!r}")
    return _REGISTRY[name]


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    width_multiplier: float = 1.0,
) -> nn.Module:
    """Build a registered model.

    Example:
        >>> model = build_model("wrn-16-2", num_classes=10, in_channels=1)

    Raises:
        ValueError: unknown name (the message lists the valid ones) or a bad argument.
    """
    if name not in _REGISTRY:
        raise ValueError(f"model must be one of {', '.join(model_names())}, got {name!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels}")
    if not 0.0 < width_multiplier <= 16.0:
        raise ValueError(f"width_multiplier must be in (0, 16], got {width_multiplier}")
    factory, _ = _REGISTRY[name]
    given = factory_keywords(factory, num_classes=num_classes, in_channels=in_channels,
                             width_multiplier=width_multiplier)
    if width_multiplier != 1.0 and "width_multiplier" not in given:
        raise ValueError(f"model {name!r} takes no width_multiplier; got {width_multiplier}")
    return factory(**given)


def factory_keywords(factory: Callable[..., Any], **available: Any) -> dict[str, Any]:
    """The subset of ``available`` keywords the factory names in its signature: a user's factory
    may take only ``num_classes``, say. A factory with ``**kwargs`` also gets ``num_classes``
    (torchvision's pass ``**kwargs`` to a model class that knows ``num_classes`` and nothing of
    ``in_channels`` or ``width_multiplier``); one without a readable signature gets only that.

    Example:
        >>> factory_keywords(lambda num_classes: None, num_classes=3, in_channels=1)
        {'num_classes': 3}
    """
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {k: v for k, v in available.items() if k == "num_classes"}
    named = {k: v for k, v in available.items() if k in parameters}
    if "num_classes" in available and any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        named.setdefault("num_classes", available["num_classes"])
    return named
