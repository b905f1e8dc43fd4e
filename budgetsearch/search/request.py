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

    ``calibrate``: with a latency target on a device profile measured on this machine, the
    unpruned network is timed here once, before anything is priced, and the profile scaled
    toward its measured time (half the gap in log terms; its pruned versions keep the model's
    relative prices; a relative target then selects the same networks, an absolute one may
    not); a resumed run keeps the scale it started with. Off by default: on a
    shared machine one network's few seconds of timing were as often further off than the
    drift check as nearer (``experiments/network_calibration.py``).

    ``families`` (Optuna, with a target): every family competes, dense networks of other widths
    and depths and pruned wider/deeper ones (:mod:`budgetsearch.search.families`); ``pruner`` /
    ``space`` then name the pruner of the pruned families. ``widths``: the width multipliers of
    the bases (default ``families.DEFAULT_WIDTHS``). The CLI turns families on by default; the
    library keeps the single-base search unless asked.
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
    families: bool = False
    widths: tuple[float, ...] | None = None
    #: With a latency target on a profile measured on this machine: time the unpruned network
    #: once here and price the run's latencies by it (``TrialSettings.latency_scale``).
    calibrate: bool = False

    def __post_init__(self) -> None:
        if self.widths is not None:
            widths = tuple(self.widths)
            if not widths or any(isinstance(w, bool) or not isinstance(w, (int, float))
                                 or not 0 < w <= 16 for w in widths):
                raise ValueError(f"widths must be width multipliers in (0, 16], got "
                                 f"{self.widths!r}")
            object.__setattr__(self, "widths", tuple(float(w) for w in widths))
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
