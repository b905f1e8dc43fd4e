"""Every family competes: dense networks of other widths and depths, and pruned wider/deeper ones.

A family is a pruner applied to a base network: ``bar:wrn-16-1@2`` is BAR pruning WRN-16-1 at
twice its width; ``dense:wrn-16-1@0.5`` is the unpruned WRN-16-1 at half its width. Before any
training :func:`plan_candidates` prices every base on the run's device and keeps only the
families that can meet the target:

- a base that meets the target is a **dense** candidate (pruning it could only fine-tune it);
- a base that exceeds it is a **pruned** candidate of each pruner that can bring it under the
  target (asked through the protocol, ``prepare`` on a throw-away copy:
  :func:`~budgetsearch.search.plan.reachable_pruners`).

So when the target does not bind for the user's network, the budget is filled by wider (or
deeper) bases pruned down to it, and the dense networks that fit compete beside them. A target no
candidate meets is refused with the reachable minimum.

The search samples the candidate first, then that candidate's own parameters, named
``PRUNER.PARAM`` (:func:`suggest_candidate`). A pruned candidate starts from its base's reference
network, trained once per base the first time a trial of that base runs
(:func:`candidate_settings`); a dense one trains from scratch for the same compute.

Example:
    >>> from budgetsearch.cost import Target
    >>> from budgetsearch.search.settings import TrialSettings
    >>> from budgetsearch.search.space import load_space
    >>> settings = TrialSettings(model="wrn-10-1", dataset="synthetic", train_subset=64)
    >>> plan = plan_candidates(settings, Target.parse("params", "100k"), None,
    ...                        [load_space("bar")], widths=(0.5, 1.0, 2.0))
    >>> [c.key for c in plan.candidates]
    ['dense:wrn-10-1@0.5', 'dense:wrn-10-1@1', 'bar:wrn-10-1@2', 'bar:wrn-16-1@1']
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from budgetsearch.cost import DeviceProfile, Target
from budgetsearch.models import model_names
from budgetsearch.models.spec import takes_width
from budgetsearch.pruners import pruner_class
from budgetsearch.search.plan import reachable_pruners, resolve_target
from budgetsearch.search.reference import (
    base_reference_dir,
    ensure_reference,
    reference_state_path,
)
from budgetsearch.search.results import best_feasible, family_key
from budgetsearch.search.settings import TrialSettings, settings_inventory
from budgetsearch.search.space import SearchSpace, load_space

#: Width multipliers of the user's network tried by default (thinner and wider).
DEFAULT_WIDTHS = (0.5, 0.75, 1.0, 1.5, 2.0)
#: Wider multipliers only priced (never trained) to say where the target starts to bind.
_PROBE_WIDTHS = (4.0, 8.0, 16.0)
#: Precision of the thinner dense candidate's width (a multiple of the user's width): where the
#: target binds, the widest dense network of the user's family that meets it always competes
#: (the erf-loss paper's thinner dense baseline; the search is to beat it, so it is in the race).
FIT_STEP = 0.05
DENSE = "dense"


@dataclass(frozen=True)
class Candidate:
    """One family: a pruner (``dense`` for none) on a base network (``model`` at ``width``).

    ``base_cost`` is the unpruned base's cost on the target's metric.
    """

    pruner: str
    model: str
    width: float
    space: SearchSpace = field(compare=False, repr=False)
    base_cost: float = math.nan

    @property
    def key(self) -> str:
        """``PRUNER:MODEL@WIDTH``, e.g. ``bar:wrn-16-1@2``."""
        return family_key(self.pruner, self.model, self.width)

    @property
    def starts_from_reference(self) -> bool:
        """Whether its trials start from the base's trained reference network."""
        return pruner_class(self.pruner).starts_from_reference


@dataclass(frozen=True)
class CandidatePlan:
    """The families that can meet the target, decided before training.

    ``target`` is absolute; ``full_cost`` the user's network's cost; ``base_costs`` every
    priced base (``MODEL@WIDTH`` → cost); ``notes`` what was dropped and why.
    """

    target: Target
    full_cost: float
    candidates: tuple[Candidate, ...]
    base_costs: dict[str, float]
    notes: tuple[str, ...]

    def by_key(self) -> dict[str, Candidate]:
        """Candidates by their key."""
        return {c.key: c for c in self.candidates}


def depth_variants(model: str) -> list[str]:
    """The registered networks one step shallower and one step deeper than ``model`` in its
    family (WRN-d-k with the same k, CIFAR ResNet-N), shallower first.

    Example:
        >>> depth_variants("wrn-16-1"), depth_variants("resnet-20"), depth_variants("other")
        (['wrn-10-1', 'wrn-22-1'], ['resnet-32'], [])
    """
    patterns = (r"wrn-(\d+)-(\d+)", r"resnet-(\d+)()")
    for pattern in patterns:
        match = re.fullmatch(pattern, model)
        if match is None:
            continue
        depth, rest = int(match.group(1)), match.group(2)
        siblings = sorted(
            (int(m.group(1)), name) for name in model_names()
            if (m := re.fullmatch(pattern, name)) is not None and m.group(2) == rest)
        depths = [d for d, _ in siblings]
        index = depths.index(depth) if depth in depths else None
        if index is None:
            return []
        return [name for i, (_, name) in enumerate(siblings) if abs(i - index) == 1]
    return []


def candidate_bases(settings: TrialSettings,
                    widths: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """The base networks of a family search: the user's network at each width multiplier
    (default :data:`DEFAULT_WIDTHS`), and its shallower/deeper siblings at its own width.

    Example:
        >>> candidate_bases(TrialSettings(model="wrn-16-1"), widths=(0.5, 1.0))
        [('wrn-16-1', 0.5), ('wrn-16-1', 1.0), ('wrn-10-1', 1.0), ('wrn-22-1', 1.0)]
    """
    given = widths is not None
    widths = tuple(DEFAULT_WIDTHS if widths is None else widths)
    if not takes_width(settings.model):
        # A user's factory without a width_multiplier parameter: only the network as it is.
        if given and tuple(widths) != (1.0,):
            raise ValueError(f"--widths needs a model whose factory takes width_multiplier; "
                             f"{settings.model!r} does not")
        return [(settings.model, float(settings.width))]
    for width in widths:
        if not (isinstance(width, (int, float)) and 0 < width * settings.width <= 16):
            raise ValueError(f"widths must be multipliers in (0, 16] of the network's width "
                             f"(×{settings.width:g}), got {width!r}")
    bases = [(settings.model, float(settings.width * w)) for w in widths]
    bases += [(name, float(settings.width)) for name in depth_variants(settings.model)]
    return list(dict.fromkeys(bases))


def _base_cost(settings: TrialSettings, metric: str, profile: DeviceProfile | None) -> float:
    value = settings_inventory(settings).price(profile=profile).as_dict()[metric]
    assert value is not None  # resolve_target refused a latency target without a profile
    return float(value)


def plan_candidates(settings: TrialSettings, target: Target, profile: DeviceProfile | None,
                    spaces: Sequence[SearchSpace], *,
                    widths: Sequence[float] | None = None) -> CandidatePlan:
    """Price every base and keep the families that can meet ``target``.

    ``spaces`` are the pruners' search spaces (each registered pruner with a ``search_rank``,
    or the one the user named); the ``dense`` space is added for bases that meet the target. A
    relative target is resolved against the user's network (``settings``).

    Raises:
        ValueError: a latency target without a profile, or a target no candidate can meet (the
            message names the reachable minimum and what it is).
    """
    target, full = resolve_target(target, settings, profile)
    dense_space = load_space(DENSE)
    spaces = [s for s in spaces if s.pruner != DENSE]
    dense: list[Candidate] = []
    pruned: list[Candidate] = []
    costs: dict[str, float] = {}
    minimum: dict[str, float] = {}
    dropped: dict[str, list[str]] = {}
    unable: dict[str, str] = {}  # pruner → why it cannot prune the network at all
    for model, width in candidate_bases(settings, widths):
        base = replace(settings, model=model, width=width)
        name = f"{model}@{width:g}"
        cost = _base_cost(base, target.metric, profile)
        costs[name] = cost
        minimum[f"{DENSE}:{name}"] = cost
        if target.is_met(cost):
            dense.append(Candidate(DENSE, model, width, dense_space, cost))
            continue
        usable, floors, why, refused = reachable_pruners(target, base, profile, spaces)
        for pruner, floor in floors.items():
            minimum[f"{pruner}:{name}"] = floor
        for space in spaces:
            if space.pruner in usable:
                pruned.append(Candidate(space.pruner, model, width, space, cost))
        for line in why:
            dropped.setdefault(line.split(" ", 1)[0], []).append(name)
        for pruner, reason in refused.items():
            unable.setdefault(pruner, reason)
    fitted = _thinner_dense(settings, target, profile, costs)
    if fitted is not None:
        width, cost = fitted
        costs[f"{settings.model}@{width:g}"] = cost
        dense.append(Candidate(DENSE, settings.model, width, dense_space, cost))
    notes = [f"{pruner} dropped for {', '.join(bases)}: cannot meet the target from "
             f"{'that base' if len(bases) == 1 else 'those bases'}"
             for pruner, bases in dropped.items()]
    where = f" on {profile.name}" if profile is not None and target.metric == "latency_ms" else ""
    candidates = (*dense, *pruned)
    if not candidates:
        best_key = min(minimum, key=lambda k: minimum[k])
        best = minimum[best_key]
        raise ValueError(
            f"target {target.describe()} is below what any candidate can reach{where}: the "
            f"smallest, {best_key}, costs {target.describe(best)} ({settings.model} unpruned: "
            f"{target.describe(full)}); ask for at least {target.describe(best)}"
            + "".join(f"; {pruner} cannot prune it: {reason}"
                      for pruner, reason in unable.items()))
    if not pruned:
        notes.append(_no_binding_note(settings, target, profile, costs, where))
    return CandidatePlan(target, full, candidates, costs, tuple(notes))


def _thinner_dense(settings: TrialSettings, target: Target, profile: DeviceProfile | None,
                   costs: dict[str, float]) -> tuple[float, float] | None:
    """The thinner dense network fitted to the target: the widest width (to
    :data:`FIT_STEP` of the user's width) of the user's network that meets it, with its cost;
    None when the user's network meets it, cannot be narrowed, or a base already at that width
    or wider is dense."""
    if not takes_width(settings.model) or target.is_met(costs.get(
            f"{settings.model}@{settings.width:g}", math.inf)):
        return None
    low, high = 0.0, 1.0  # multipliers of the user's width: high fails, low meets (or is 0)
    while high - low > FIT_STEP / 2:
        middle = round((low + high) / 2 / FIT_STEP) * FIT_STEP
        if middle in (low, high):
            break
        cost = _base_cost(replace(settings, width=settings.width * middle), target.metric,
                          profile)
        low, high = (middle, high) if target.is_met(cost) else (low, middle)
    if low == 0.0:
        return None
    width = round(settings.width * low, 4)
    taken = [float(k.rsplit("@", 1)[1]) for k, c in costs.items()
             if k.startswith(f"{settings.model}@") and target.is_met(c)]
    if any(w >= width for w in taken):
        return None
    return width, _base_cost(replace(settings, width=width), target.metric, profile)


def _no_binding_note(settings: TrialSettings, target: Target, profile: DeviceProfile | None,
                     costs: dict[str, float], where: str) -> str:
    """Why every candidate is dense, and from which width the target would bind (priced only)."""
    widest = max(costs, key=lambda k: costs[k])
    note = (f"every base meets the target{where} (the costliest, {widest}, costs "
            f"{target.describe(costs[widest])} ≤ {target.describe()}): every candidate is dense")
    for multiplier in _PROBE_WIDTHS:
        width = settings.width * multiplier
        if width > 16:
            break
        cost = _base_cost(replace(settings, width=width), target.metric, profile)
        if not target.is_met(cost):
            return (note + f"; the target binds from about {settings.model}@{width:g} "
                    f"({target.describe(cost)}): --widths up to {multiplier:g} adds pruned "
                    "candidates of it")
    return note + f"; even {settings.model} ×16 meets it: no pruning is needed for this target"


def suggest_candidate(trial: Any, candidates: Sequence[Candidate]
                      ) -> tuple[Candidate, dict[str, Any]]:
    """Sample a candidate (``candidate``), then its space's parameters named ``PRUNER.PARAM``
    (so that two pruners' ``lr`` never clash); returns the candidate and its parameters under
    their plain names."""
    by_key = {c.key: c for c in candidates}
    key = trial.suggest_categorical("candidate", list(by_key))
    candidate = by_key[key]
    return candidate, candidate.space.suggest(trial, prefix=f"{candidate.pruner}.")


def candidate_settings(candidate: Candidate, settings: TrialSettings,
                       run_dir: Path) -> TrialSettings:
    """The trial settings of one candidate; a pruned candidate's base reference is trained here
    the first time it is needed (``RUN_DIR/reference/MODEL@WIDTH/``) and reused after.

    Raises:
        RuntimeError: the base's reference did not train.
    """
    chosen = replace(settings, model=candidate.model, width=candidate.width, reference_path=None)
    if candidate.starts_from_reference and settings.reference_epochs > 0:
        folder = base_reference_dir(run_dir, candidate.model, candidate.width)
        row = ensure_reference(chosen, run_dir, folder)
        chosen = replace(chosen,
                         reference_path=str(reference_state_path(row, run_dir).resolve()))
    return chosen


@dataclass(frozen=True)
class FamilyOutcome:
    """Which family won, and by how much over the best dense network that meets the target.

    ``winner`` is the family of the run's best feasible row (chosen as
    :func:`~budgetsearch.search.results.best_feasible` chooses it: validation accuracy first);
    ``dense`` the family of the best feasible dense row (a ``dense`` trial or an unpruned
    reference that meets the target), chosen the same way, None when none finished. Accuracies
    and ``margin`` are test accuracy.
    """

    winner: str
    accuracy: float
    dense: str | None
    dense_accuracy: float | None

    @property
    def margin(self) -> float | None:
        """Test accuracy of the winner minus that of the best dense network (None without one)."""
        return None if self.dense_accuracy is None else self.accuracy - self.dense_accuracy

    def describe(self) -> str:
        """One line for the run's summary."""
        line = f"winning family: {self.winner} (test accuracy {self.accuracy:.4f})"
        if self.dense is None:
            return line + "; no dense network that meets the target finished to compare with"
        if self.dense == self.winner:
            return line + ": a dense network, the best that meets the target"
        assert self.margin is not None and self.dense_accuracy is not None
        return (line + f", {self.margin:+.4f} over the best dense network that meets the "
                f"target, {self.dense} ({self.dense_accuracy:.4f})")


def family_outcome(table: Any) -> FamilyOutcome | None:
    """The :class:`FamilyOutcome` of a results table (None when no feasible row finished)."""
    if not len(table):
        return None
    best = best_feasible(table)
    if best is None:
        return None
    kind = table["kind"].astype(str)
    dense_rows = table[(table["pruner"].astype(str) == DENSE) | (kind == "reference")]
    dense = best_feasible(dense_rows) if len(dense_rows) else None
    return FamilyOutcome(
        winner=str(best["family"]), accuracy=float(best["accuracy"]),
        dense=None if dense is None else str(dense["family"]),
        dense_accuracy=None if dense is None else float(dense["accuracy"]))
