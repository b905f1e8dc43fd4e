"""Model specs: the one place a model given as text becomes a network factory.

A spec is one of

- a registered name: ``wrn-16-1`` (see ``budgetsearch models``);
- a Python file and a factory in it: ``path/to/net.py:make_net`` (a function or a class);
- an importable module and a factory in it: ``package.module:make_net``
  (``torchvision.models:resnet18``).

The factory is called with the keywords its signature names among ``num_classes``,
``in_channels`` and ``width_multiplier`` (a factory with ``**kwargs`` gets ``num_classes``
only: torchvision's convention). A search stores the spec (a file spec with its absolute path,
:func:`canonical_model_spec`) so that Ray workers and ``--resume`` rebuild the same network.

Example:
    >>> build_model("wrn-10-1", num_classes=10, in_channels=1).fc.out_features
    10
    >>> model_label("/home/me/nets/small.py:small_cnn")
    'small.py:small_cnn'
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from budgetsearch.models import registry

ModelFactory = Callable[..., nn.Module]
_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_ATTRIBUTE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
#: Prefix of the module names under which user model files are imported (one top-level module
#: per file: pickle imports a class's module by name, and a dotted name would need a parent
#: package that does not exist).
USER_MODULE_PREFIX = "budgetsearch_user_model"


@dataclass(frozen=True)
class ModelSpec:
    """A resolved spec: the factory, where it came from, and a short name for messages."""

    spec: str
    kind: str  # "registered", "file" or "module"
    factory: ModelFactory
    description: str
    label: str


def _usage(spec: str) -> str:
    return (f"model must be a built-in name ({', '.join(registry.model_names())}), "
            f"path/to/file.py:FACTORY or package.module:FACTORY, got {spec!r}")


def _split(spec: str) -> tuple[str, str, str]:
    """(kind, where, attribute) of a spec, without importing anything."""
    if spec in registry.model_names():
        return "registered", spec, ""
    if ":" not in spec:
        if spec.endswith(".py"):
            raise ValueError(f"model {spec!r} names a file but no factory in it: write "
                             f"{spec}:FACTORY (a function or class that returns an nn.Module)")
        raise ValueError(_usage(spec))
    where, _, attribute = spec.rpartition(":")
    if not where or not _ATTRIBUTE.match(attribute):
        raise ValueError(f"model {spec!r}: expected FILE.py:FACTORY or package.module:FACTORY "
                         f"with FACTORY a Python name, got factory {attribute!r}")
    if where.endswith(".py") or "/" in where or "\\" in where:
        return "file", where, attribute
    if not _MODULE_NAME.match(where):
        raise ValueError(_usage(spec))
    return "module", where, attribute


def canonical_model_spec(spec: str) -> str:
    """The spec with a file's path made absolute (what a run stores); others unchanged.

    Raises:
        ValueError: not a valid spec (the message says what is expected).
    """
    kind, where, attribute = _split(spec)
    if kind == "file":
        return f"{Path(where).expanduser().resolve()}:{attribute}"
    return spec


def model_label(spec: str) -> str:
    """A short name of the spec for tables and messages: the file's name for a file spec."""
    try:
        kind, where, attribute = _split(spec)
    except ValueError:
        return spec
    return f"{Path(where).name}:{attribute}" if kind == "file" else spec


def _import_file(spec: str, path: Path) -> Any:
    if not path.is_file():
        raise ValueError(f"model {spec!r}: file {path} does not exist")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"{USER_MODULE_PREFIX}_{stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    location = importlib.util.spec_from_file_location(name, path)
    if location is None or location.loader is None:
        raise ValueError(f"model {spec!r}: {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(location)
    # In sys.modules while it runs, as Python's own import does (dataclasses and pickling of
    # the file's classes look their module up there).
    sys.modules[name] = module
    try:
        location.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ValueError(f"model {spec!r}: importing {path} raised "
                         f"{type(error).__name__}: {_first_line(error)}") from None
    return module


def _import_module(spec: str, name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as error:
        raise ValueError(f"model {spec!r}: cannot import module {name} "
                         f"({type(error).__name__}: {_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


@functools.lru_cache(maxsize=64)
def resolve_model_spec(spec: str) -> ModelSpec:
    """The factory a spec names, imported once per process.

    Raises:
        ValueError: not a spec, a missing file, an import that fails, no such factory, or a
            factory that is not callable (one line, naming the spec and what was expected).
    """
    kind, where, attribute = _split(spec)
    if kind == "registered":
        factory, description = registry.registered_factory(spec)
        return ModelSpec(spec, kind, factory, description, spec)
    if kind == "file":
        module = _import_file(spec, Path(where).expanduser().resolve())
        source = f"file {where}"
    else:
        module = _import_module(spec, where)
        source = f"module {where}"
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            names = sorted(n for n, v in vars(module).items()
                           if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == module.__name__)
            known = f"; it defines {', '.join(names)}" if names else ""
            raise ValueError(f"model {spec!r}: {source} has no {attribute!r}{known}")
        value = getattr(value, part)
    if not callable(value):
        raise ValueError(f"model {spec!r}: {attribute} is a {type(value).__name__}, expected a "
                         "function or class that returns an nn.Module")
    doc = (inspect.getdoc(value) or "").strip().splitlines()
    description = doc[0] if doc else f"{attribute} from {source}"
    return ModelSpec(spec, kind, value, description, model_label(spec))


def takes_width(spec: str) -> bool:
    """Whether the spec's factory takes ``width_multiplier`` (so it has thinner dense twins)."""
    factory = resolve_model_spec(spec).factory
    return "width_multiplier" in registry.factory_keywords(factory, width_multiplier=1.0)


def build_model(
    spec: str,
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    width_multiplier: float = 1.0,
) -> nn.Module:
    """Build the network a spec names (a registered name, ``file.py:FACTORY`` or
    ``package.module:FACTORY``).

    Example:
        >>> model = build_model("wrn-16-2", num_classes=10, in_channels=1)

    Raises:
        ValueError: a bad spec (see :func:`resolve_model_spec`), a bad argument, a width other
            than 1 for a factory without ``width_multiplier``, a factory that raises, or one
            that returns something other than an ``nn.Module``.
    """
    resolved = resolve_model_spec(spec)
    if resolved.kind == "registered":
        return registry.build_model(spec, num_classes=num_classes, in_channels=in_channels,
                                    width_multiplier=width_multiplier)
    if not 0.0 < width_multiplier <= 16.0:
        raise ValueError(f"width_multiplier must be in (0, 16], got {width_multiplier}")
    given = registry.factory_keywords(resolved.factory, num_classes=num_classes,
                                      in_channels=in_channels, width_multiplier=width_multiplier)
    if width_multiplier != 1.0 and "width_multiplier" not in given:
        raise ValueError(f"model {resolved.label!r} takes no width_multiplier (got "
                         f"{width_multiplier}): give its factory a width_multiplier parameter")
    shown = ", ".join(f"{k}={v!r}" for k, v in given.items())
    try:
        model = resolved.factory(**given)
    except Exception as error:
        raise ValueError(f"model {resolved.label!r}: {resolved.spec.rpartition(':')[2]}({shown}) "
                         f"raised {type(error).__name__}: {_first_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {resolved.label!r}: the factory returned a "
                         f"{type(model).__name__}, expected a torch.nn.Module")
    return model
