"""Search spaces: declarative YAML files in ``search_spaces/`` → Optuna distributions / Ray spaces.

A file names one pruner, the hyperparameters to search and the settings to hold fixed::

    pruner: bar
    description: BAR over λ, schedule hardness, budget, distillation and training
    parameters:
      lam:      {type: float, low: 0.01, high: 10, log: true}
      budget:   {type: float, low: 0.2, high: 1.0}
      lr:       {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      variant:  {type: categorical, choices: [ga, bs]}
    fixed:
      transition: sigmoid

Files are read with ``yaml.safe_load`` only (no Python is built from them); every error names the
file and the key. ``lr``, ``epochs``, ``weight_decay`` and ``batch_size`` go to training; every
other name is an option of the pruner.

Example:
    >>> space = load_space("bar")
    >>> sorted(space.to_optuna())
    ['epochs', 'hardness', 'kd_alpha', 'kd_temperature', 'lam', 'lr', 'prune_fraction']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from budgetsearch.files import shipped_folder, yaml_problem

#: Folder of the search spaces shipped with budgetsearch.
SPACE_DIR = shipped_folder("search_spaces")
TRAIN_KEYS = ("lr", "epochs", "weight_decay", "batch_size")
ParamType = Literal["float", "int", "categorical"]
_TOP_KEYS = {"pruner", "description", "parameters", "fixed"}
_PARAM_KEYS = {"float": {"type", "low", "high", "log", "step"},
               "int": {"type", "low", "high", "log", "step"},
               "categorical": {"type", "choices"}}


@dataclass(frozen=True)
class ParamSpec:
    """One searched hyperparameter."""

    name: str
    type: ParamType
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def to_optuna(self) -> Any:
        """The matching ``optuna.distributions`` object."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.type == "categorical":
            return CategoricalDistribution(list(self.choices))
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log,  # type: ignore[arg-type]
                                   step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)  # type: ignore[arg-type]

    def to_ray(self) -> Any:
        """The matching ``ray.tune`` sampler (ray imported lazily)."""
        from ray import tune

        if self.type == "categorical":
            return tune.choice(list(self.choices))
        if self.type == "int":
            high = int(self.high) + 1  # type: ignore[arg-type]  # tune's randint excludes high
            return tune.lograndint(int(self.low), high) if self.log else tune.randint(  # type: ignore[arg-type]
                int(self.low), high)  # type: ignore[arg-type]
        if self.log:
            return tune.loguniform(self.low, self.high)
        if self.step:
            return tune.quniform(self.low, self.high, self.step)
        return tune.uniform(self.low, self.high)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: the pruner, searched parameters and fixed settings."""

    name: str
    pruner: str
    parameters: Mapping[str, ParamSpec]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    path: str | None = None

    def to_optuna(self) -> dict[str, Any]:
        """``{name: optuna distribution}``."""
        return {name: p.to_optuna() for name, p in self.parameters.items()}

    def suggest(self, trial: Any, prefix: str = "") -> dict[str, Any]:
        """Sample every parameter through an ``optuna.Trial``'s ``suggest_*`` methods.

        Optuna names each parameter ``prefix + name`` (a family search prefixes the pruner, so
        that two spaces' ``lr`` are two distributions); the values come back under ``name``.
        """
        values: dict[str, Any] = {}
        for name, p in self.parameters.items():
            key = prefix + name
            if p.type == "categorical":
                values[name] = trial.suggest_categorical(key, list(p.choices))
            elif p.type == "int":
                values[name] = trial.suggest_int(key, int(p.low), int(p.high),  # type: ignore[arg-type]
                                                 step=int(p.step or 1), log=p.log)
            else:
                values[name] = trial.suggest_float(key, p.low, p.high, step=p.step,  # type: ignore[arg-type]
                                                   log=p.log)
        return values

    def to_ray(self) -> dict[str, Any]:
        """``{name: ray.tune sampler}``."""
        return {name: p.to_ray() for name, p in self.parameters.items()}

    def override(self, **fixed: Any) -> SearchSpace:
        """A copy with these names held fixed (removed from the searched parameters)."""
        parameters = {k: v for k, v in self.parameters.items() if k not in fixed}
        return SearchSpace(self.name, self.pruner, parameters, {**self.fixed, **fixed},
                           self.description, self.path)

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping, as in the YAML file (for the resolved config)."""
        params: dict[str, Any] = {}
        for name, p in self.parameters.items():
            if p.type == "categorical":
                params[name] = {"type": p.type, "choices": list(p.choices)}
            else:
                params[name] = {"type": p.type, "low": p.low, "high": p.high, "log": p.log}
                if p.step is not None:
                    params[name]["step"] = p.step
        return {"pruner": self.pruner, "description": self.description, "parameters": params,
                "fixed": dict(self.fixed)}


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def _param(where: str, name: str, data: Any) -> ParamSpec:
    key = f"parameters.{name}"
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: {key} must be a mapping like "
                         f"{{type: float, low: 0.01, high: 10, log: true}}, got {data!r}")
    kind = data.get("type")
    if kind not in _PARAM_KEYS:
        raise ValueError(f"{where}: {key}.type must be one of float, int, categorical, "
                         f"got {kind!r}")
    unknown = sorted(set(data) - _PARAM_KEYS[kind])
    if unknown:
        raise ValueError(f"{where}: {key} has unknown key(s) {', '.join(map(str, unknown))}; "
                         f"a {kind} takes {', '.join(sorted(_PARAM_KEYS[kind]))}")
    if kind == "categorical":
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: {key}.choices must be a non-empty list, got {choices!r}")
        for choice in choices:
            if not isinstance(choice, (str, int, float, bool)) and choice is not None:
                raise ValueError(f"{where}: {key}.choices must hold plain values, got {choice!r}")
        return ParamSpec(name, "categorical", choices=tuple(choices))
    for needed in ("low", "high"):
        if needed not in data:
            raise ValueError(f"{where}: {key}.{needed} is missing")
    low = _number(where, f"{key}.low", data["low"])
    high = _number(where, f"{key}.high", data["high"])
    log = data.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"{where}: {key}.log must be true or false, got {log!r}")
    step = data.get("step")
    if step is not None and _number(where, f"{key}.step", step) <= 0:
        raise ValueError(f"{where}: {key}.step must be positive, got {step!r}")
    if not low < high:
        raise ValueError(f"{where}: {key} needs low < high, got low={low:g}, high={high:g}")
    if log and low <= 0:
        raise ValueError(f"{where}: {key} is log-scaled, so low must be > 0, got {low:g}")
    if log and step is not None:
        raise ValueError(f"{where}: {key} cannot have both log and step")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise ValueError(f"{where}: {key} is an int, so low and high must be whole numbers")
    return ParamSpec(name, kind, low, high, log, float(step) if step is not None else None)


def space_from_dict(data: Any, *, where: str = "<space>", name: str = "space") -> SearchSpace:
    """Validate a parsed YAML mapping into a :class:`SearchSpace` (errors name ``where``)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: must hold a mapping with keys pruner, parameters, fixed")
    unknown = sorted(set(map(str, data)) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(_TOP_KEYS))}")
    pruner = data.get("pruner")
    if not isinstance(pruner, str) or not pruner:
        raise ValueError(f"{where}: pruner must be a pruner name like 'bar', got {pruner!r}")
    raw = data.get("parameters")
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"{where}: parameters must be a non-empty mapping of name: spec")
    parameters = {str(k): _param(where, str(k), v) for k, v in raw.items()}
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, Mapping):
        raise ValueError(f"{where}: fixed must be a mapping of option: value, got {fixed!r}")
    for key, value in fixed.items():
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            raise ValueError(f"{where}: fixed.{key} must be a plain value, got {value!r}")
    both = sorted(set(parameters) & set(map(str, fixed)))
    if both:
        raise ValueError(f"{where}: {', '.join(both)} is both searched and fixed")
    description = data.get("description") or ""
    return SearchSpace(name, pruner, parameters, {str(k): v for k, v in fixed.items()},
                       str(description), where)


def space_names(directory: str | Path | None = None) -> list[str]:
    """Names of the search-space files (``search_spaces/*.yaml`` stems)."""
    folder = Path(directory) if directory is not None else SPACE_DIR
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load and validate a search space by name (``search_spaces/NAME.yaml``) or path.

    Raises:
        ValueError: unknown name (the valid ones are listed) or an invalid file (file and key
            named).
        FileNotFoundError: a path that does not exist.
    """
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"search space file {path} does not exist")
    else:
        path = SPACE_DIR / f"{text}.yaml"
        if not path.is_file():
            raise ValueError(f"search space must be one of {', '.join(space_names())} or a "
                             f"path to a .yaml file, got {text!r}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {yaml_problem(error)}") from None
    return space_from_dict(data, where=str(path), name=path.stem)
