"""Early stopping that compares a trial only with trials of its own pruner.

Successive halving compares trials at equal resource (epochs of training behind the network, a
pruned trial's reference included). Across pruners that comparison is not fair: at its first
report a BAR trial is a quarter epoch into pruning (its gates closing, its network still over the
target), while a dense trial at the same step has trained undisturbed from scratch; the pruned
trial loses that comparison whatever it ends at. :class:`PerPrunerPruner` hands the wrapped rule
a view of the study holding only the trials of the same pruner (``dense``, ``bar``, ...), so a
trial is stopped only by trials at the same stage of the same schedule. Which pruner wins is left
to the finished trials' accuracy and to the sampler.

Example:
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> rule = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4)
    >>> study = optuna.create_study(direction="maximize", pruner=PerPrunerPruner(rule))
    >>> def stopped(family: str, value: float) -> bool:
    ...     study.enqueue_trial({"candidate": family})
    ...     trial = study.ask()
    ...     trial.suggest_categorical("candidate", ["dense:m@1", "bar:m@2"])
    ...     trial.report(value, 1)
    ...     stop = trial.should_prune()
    ...     study.tell(trial, value)
    ...     return stop
    >>> [stopped("dense:m@1", 0.9) for _ in range(3)], stopped("bar:m@2", 0.5)
    ([False, False, False], False)
"""

from __future__ import annotations

from typing import Any

import optuna

#: The trial parameter a family search samples first (``PRUNER:MODEL@WIDTH``).
CANDIDATE_PARAM = "candidate"


def pruner_group(trial: optuna.trial.FrozenTrial) -> str:
    """The pruner of a family search's trial (``"bar"`` of ``"bar:wrn-16-1@2"``); ``""`` for
    a single-space search, where every trial is of one pruner."""
    return str(trial.params.get(CANDIDATE_PARAM, "")).split(":", 1)[0]


class _PrunerView:
    """The study as the wrapped rule sees it: only the trials of one pruner."""

    def __init__(self, study: optuna.Study, group: str) -> None:
        self._study = study
        self._group = group

    def get_trials(self, deepcopy: bool = True,
                   states: Any = None) -> list[optuna.trial.FrozenTrial]:
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if pruner_group(t) == self._group]

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, name: str) -> Any:  # direction, _storage, ...: the study's own
        return getattr(self._study, name)


class PerPrunerPruner(optuna.pruners.BasePruner):
    """Run ``rule`` (successive halving, median) among the trials of the trial's own pruner.

    Not for :class:`optuna.pruners.HyperbandPruner`: it builds its own per-bracket studies
    from the storage and would not see the view.

    Raises:
        TypeError: ``rule`` is a HyperbandPruner or not an Optuna pruner.
    """

    def __init__(self, rule: optuna.pruners.BasePruner) -> None:
        if isinstance(rule, optuna.pruners.HyperbandPruner) or not isinstance(
                rule, optuna.pruners.BasePruner):
            raise TypeError(f"rule must be an Optuna pruner other than HyperbandPruner, "
                            f"got {type(rule).__name__}")
        self.rule = rule

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        """Whether ``trial`` should stop, judged against its own pruner's trials only."""
        return self.rule.prune(_PrunerView(study, pruner_group(trial)), trial)  # type: ignore[arg-type]
