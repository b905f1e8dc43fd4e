"""What the user asked a search for, after the CLI (or a library caller) parsed it."""

from __future__ import annotations

from dataclasses import dataclass, field

from budgetsearch.search.optuna_driver import OptunaOptions
from budgetsearch.search.settings import TrialSettings

ENGINES = ("optuna", "ray")


@dataclass(frozen=True)
class RunRequest:
    """One search: the trials' settings, the pruner (or its space), the engine and its options.

    ``pruner`` None: the registered pruners with a ``search_rank`` are tried in that order and
    the first that can meet the target is searched.
    """

    settings: TrialSettings = field(default_factory=TrialSettings)
    pruner: str | None = None
    space: str | None = None
    engine: str = "optuna"
    optuna: OptunaOptions = field(default_factory=OptunaOptions)
    ray_address: str | None = None
    max_concurrent: int = 1
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
