"""One search run end to end: plan the target, pick the pruner, run an engine, summarize.

Example:
    >>> import tempfile
    >>> from budgetsearch.cost import Target
    >>> from budgetsearch.search.settings import TrialSettings
    >>> settings = TrialSettings(model="wrn-10-1", dataset="synthetic", train_subset=64,
    ...                          target=Target.parse("params", "50%"), reference_epochs=0.5)
    >>> request = RunRequest(settings=settings, pruner="magnitude",
    ...                      optuna=OptunaOptions(trials=1, prune=False))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     summary = run_search(request, Path(folder), progress=False)
    >>> summary.best["feasible"]
    True
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from budgetsearch.cost import (
    DeviceProfile,
    is_positive_number,
    load_profile,
    resolve_profile_name,
)
from budgetsearch.files import LOCK_FILE, folder_lock, write_text_atomic, yaml_problem
from budgetsearch.models.files import load_model_file
from budgetsearch.pruners import pruner_class, search_order
from budgetsearch.search.families import (
    CandidatePlan,
    FamilyOutcome,
    family_outcome,
    plan_candidates,
)
from budgetsearch.search.objective import validate_space
from budgetsearch.search.optuna_driver import STUDY_FILE, OptunaOptions, check_study, run_optuna
from budgetsearch.search.plan import TargetPlan, plan_target
from budgetsearch.search.request import ENGINES, RunRequest
from budgetsearch.search.results import (
    best_feasible,
    failure_summary,
    load_row_model,
    results_frame,
    write_results,
)
from budgetsearch.search.settings import (
    TrialSettings,
    build_network,
    input_shape,
    run_profile,
    trial_data,
)
from budgetsearch.search.space import SearchSpace, load_space

__all__ = ["CONFIG_FILE", "ENGINES", "OptunaOptions", "RunRequest", "RunSummary",
           "choose_space", "run_search"]

CONFIG_FILE = "config.yaml"


@dataclass
class RunSummary:
    """What a run found: the table, the best feasible row, notes on pruner choice."""

    run_dir: Path
    table: pd.DataFrame
    best: dict[str, Any] | None
    notes: list[str]
    measured_latency_ms: float | None = None
    plan: TargetPlan | None = None
    #: Set when every trial failed, or none met the target: why, with the first failure's reason.
    failure: str | None = None
    families: FamilyOutcome | None = None
    #: Why the best row's model file could not be loaded (a damaged or replaced file), or None.
    model_error: str | None = None


def _pruner_spaces(request: RunRequest) -> list[SearchSpace]:
    """The named space, the named pruner's, or every ranked pruner's (in ``search_rank`` order)."""
    if request.space is not None:
        return [load_space(request.space)]
    if request.pruner is not None:
        pruner_class(request.pruner)  # an unknown name raises, listing the valid ones
        return [load_space(request.pruner)]
    return [load_space(name) for name in search_order()]


def choose_candidates(request: RunRequest) -> tuple[CandidatePlan, TargetPlan, list[str]]:
    """Plan a family search (:func:`~budgetsearch.search.families.plan_candidates`): the
    candidates, an equivalent :class:`TargetPlan` (absolute target, the user's network's cost),
    and notes.

    Raises:
        ValueError: no candidate can meet the target (the message names the minimum).
    """
    settings = request.settings
    assert settings.target is not None
    profile = run_profile(settings)
    plan = plan_candidates(settings, settings.target, profile, _pruner_spaces(request),
                           widths=request.widths)
    pruners = tuple(dict.fromkeys(c.pruner for c in plan.candidates))
    target_plan = TargetPlan(plan.target, plan.full_cost, {}, pruners, plan.notes)
    notes = list(plan.notes)
    notes.append(f"{len(plan.candidates)} candidate families: "
                 + ", ".join(c.key for c in plan.candidates))
    return plan, target_plan, notes


def choose_space(request: RunRequest) -> tuple[SearchSpace, TargetPlan | None, list[str]]:
    """Pick the pruner (and its space) that can meet the target, before any training.

    With a named pruner or space, that one; otherwise the registered pruners in their
    ``search_rank`` order, and the first that can meet the target (each asked through the
    protocol: :func:`~budgetsearch.search.plan.plan_target`).

    Raises:
        ValueError: the target is below the reachable minimum, or the named pruner cannot meet
            it (the message says why).
    """
    settings = request.settings
    profile = run_profile(settings)
    spaces = _pruner_spaces(request)
    if settings.target is None:
        return spaces[0], None, []
    plan = plan_target(settings.target, settings, profile, spaces)
    notes = list(plan.notes)
    chosen = next(s for s in spaces if s.pruner == plan.pruners[0])
    if len(spaces) > 1 and chosen is not spaces[0]:
        notes.append(f"chose {chosen.pruner}: the first pruner that can meet the target")
    return chosen, plan, notes


def measure_latency_ms(model: Any, input_shape: tuple[int, ...], *, threads: int | None = None,
                       runtime: str = "pytorch-eager", rounds: int = 5) -> float:
    """ms of one batch-1 forward pass on this machine in ``runtime`` (``pytorch-eager`` or
    ``onnxruntime`` on the CPU, ``pytorch-cuda[-fp16]`` on its GPU, as the device profile names
    it), by the profiles' own timer and method (:mod:`budgetsearch.profiling.timing`), so that it
    compares with their predictions."""
    import torch

    from budgetsearch.profiling.timing import make_runner, time_runners

    threads = threads or torch.get_num_threads()
    model = model.eval().cpu()
    runner = make_runner(model, torch.zeros(1, *input_shape), runtime=runtime, threads=threads)
    return float(time_runners([runner], rounds=rounds, threads=threads)[0])


def resolved_config(request: RunRequest, space: SearchSpace, notes: list[str],
                    command: str = "", candidates: CandidatePlan | None = None
                    ) -> dict[str, Any]:
    """Every setting of the run and the search space as used (what ``config.yaml`` holds); a
    family search adds its candidates and each pruner's space."""
    config = {
        "command": command,
        "engine": request.engine,
        "settings": request.settings.as_dict(),
        "optuna": {**asdict(request.optuna), "objectives": list(request.optuna.objectives)},
        "ray": {"address": request.ray_address, "max_concurrent": request.max_concurrent,
                "cpus_per_trial": request.cpus_per_trial,
                "gpus_per_trial": request.gpus_per_trial},
        "space": {"name": space.name, "path": space.path, **space.as_dict()},
        "notes": notes,
    }
    if candidates is not None:
        config["families"] = {
            "widths": None if request.widths is None else list(request.widths),
            "candidates": {c.key: {"pruner": c.pruner, "model": c.model, "width": c.width,
                                   "base_cost": c.base_cost} for c in candidates.candidates},
            "spaces": {c.pruner: {"name": c.space.name, "path": c.space.path,
                                  **c.space.as_dict()} for c in candidates.candidates},
        }
    return config


def write_config(run_dir: Path, request: RunRequest, space: SearchSpace, notes: list[str],
                 command: str = "", candidates: CandidatePlan | None = None) -> Path:
    """The resolved config (every setting, the search space as used), next to the results."""
    config = resolved_config(request, space, notes, command, candidates)
    # Where the data came from and how it was normalised (derived from the settings, so not
    # compared on --resume).
    config["data"] = trial_data(request.settings).description
    path = run_dir / CONFIG_FILE
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


# What may change between a run and its --resume: how long to go on, and how it is reported.
_RESUME_MAY_CHANGE = {"command", "notes", "optuna.trials", "optuna.timeout_s", "ray.address"}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): data}


def read_run_config(path: Path, *, what: str) -> dict[str, Any]:
    """A run's ``config.yaml`` as a mapping; ``what`` starts each error's one line.

    Raises:
        ValueError: unreadable, not valid YAML, or not a mapping (the message names the file).
    """
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{what}: {path} is not valid YAML: {yaml_problem(error)}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{what}: {path} cannot be read ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what}: {path} must hold a mapping of setting: value (a run's "
                         f"config.yaml), got {type(data).__name__}")
    return data


def check_resume(run_dir: Path, request: RunRequest, space: SearchSpace,
                 candidates: CandidatePlan | None = None) -> None:
    """Refuse to resume a run folder with other settings than the ones it was started with.

    Raises:
        ValueError: no ``config.yaml`` in ``run_dir``, or a setting differs (each one is named
            with its old and new value).
    """
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"cannot resume: {run_dir} holds no {CONFIG_FILE} (not a run folder, or "
                         "the run stopped before it started)")
    old = read_run_config(path, what="cannot resume")
    new = yaml.safe_load(yaml.safe_dump(resolved_config(request, space, [], "", candidates),
                                        allow_unicode=True))
    before, after = _flatten(old), _flatten(new)
    # runs started before calibration existed priced by the profile as it was
    before.setdefault("settings.latency_scale", 1.0)
    changed = sorted(k for k in set(before) | set(after)
                     if k not in _RESUME_MAY_CHANGE and not k.startswith("data.")
                     and before.get(k) != after.get(k))
    if changed:
        shown = "; ".join(f"{k}: {before.get(k)!r} then, {after.get(k)!r} now" for k in changed[:4])
        more = f" (and {len(changed) - 4} more)" if len(changed) > 4 else ""
        raise ValueError(f"cannot resume {run_dir} with other settings: {shown}{more}; resume "
                         "with the original options, or start a new run (another --out, or "
                         "--force to replace it)")


def _progress_bar(total: int | None) -> Any:
    from tqdm import tqdm

    bar = tqdm(total=total, desc="trials", unit="trial", dynamic_ncols=True)
    best = {"value": -math.inf}

    def update(row: dict[str, Any]) -> None:
        value = row.get("val_accuracy")
        if value is None:
            value = row.get("accuracy")
        if row.get("feasible") and value is not None and value > best["value"]:
            best["value"] = float(value)
        bar.update(1)
        shown = "-" if best["value"] == -math.inf else f"{best['value']:.4f}"
        bar.set_postfix(best=shown, last=row.get("status"))

    update.close = bar.close  # type: ignore[attr-defined]
    return update


def run_search(request: RunRequest, run_dir: Path, *, resume: bool = False,
               progress: bool = True, command: str = "", force: bool = True) -> RunSummary:
    """Plan, search with the chosen engine, write ``results.csv`` and ``config.yaml``.

    Every input is checked before the first file is written. The run folder is locked
    (:func:`~budgetsearch.files.folder_lock`) while the run writes it. ``force=False``: refuse
    a folder that holds anything (a run started there meanwhile); ``resume=True``: refuse a
    folder whose study and trial rows disagree (``optuna_driver.check_study``) or whose
    reference network does not load, before anything is written.

    With the Optuna engine ``request.optuna.timeout_s`` is the whole run's time limit, counted
    from here (the reference's training included): no trial starts after it and the trial in
    flight stops at its next report (:func:`~budgetsearch.search.optuna_driver.run_optuna`).
    """
    started = time.monotonic()
    settings = request.settings
    if settings.device_profile is not None:
        settings = replace(settings, device_profile=resolve_profile_name(settings.device_profile)
                           if "/" not in settings.device_profile else settings.device_profile)
        request = replace(request, settings=settings)
    if request.engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {request.engine!r}")
    trial_data(settings)  # the data set loads (or says what is missing) before any file
    settings, calibration_notes = calibrate_run(request, run_dir, resume=resume,
                                                progress=progress)
    request = replace(request, settings=settings)
    candidates: CandidatePlan | None = None
    family_notes: list[str] = []
    if request.families and request.engine == "ray":
        family_notes.append("the Ray engine does not search families yet: it searches one base "
                            "network's pruner (as --no-families)")
    elif request.families and settings.target is None:
        family_notes.append("no target: families are not compared (a family search needs a "
                            "target to price them against); searching one base network")
    if request.families and request.engine == "optuna" and settings.target is not None:
        candidates, plan, notes = choose_candidates(request)
        space = candidates.candidates[0].space
    else:
        space, plan, notes = choose_space(request)
    notes = calibration_notes + family_notes + notes
    if plan is not None:  # trials see the absolute target (a relative one resolved once here)
        settings = replace(settings, target=plan.target)
        request = replace(request, settings=settings)
    spaces = ([space] if candidates is None else
              list({c.pruner: c.space for c in candidates.candidates}.values()))
    for each in spaces:
        validate_space(each, settings.target)
    if request.engine == "ray" and request.ray_address is not None:
        from budgetsearch.search.ray_driver import check_reachable

        check_reachable(request.ray_address)  # a real Ray handshake, before any file or training
    if resume:
        check_resume(run_dir, request, space, candidates)
    run_dir.mkdir(parents=True, exist_ok=True)
    # One process at a time writes a run folder: a second run, or a --resume while the first
    # is alive, is refused here, before it writes anything.
    with folder_lock(run_dir, what="run folder"):
        timeout = request.optuna.timeout_s
        return _run_locked(request, settings, space, plan, notes, run_dir, resume=resume,
                           progress=progress, command=command, force=force,
                           candidates=candidates,
                           deadline=None if timeout is None else started + timeout)


def calibrate_run(request: RunRequest, run_dir: Path, *, resume: bool = False,
                  progress: bool = False) -> tuple[TrialSettings, list[str]]:
    """The run's settings with its latency calibration (``latency_scale``), and a note on it.

    With a latency target on a profile measured on this machine and ``request.calibrate``, the
    unpruned network is timed here once and the profile scaled toward measured / priced
    (:func:`~budgetsearch.profiling.calibrate.calibrate_to_network`); a resumed run keeps the
    scale its ``config.yaml`` holds; a scale already set is kept. Otherwise nothing changes,
    and a note says why ``--calibrate`` was ignored. A calibration that fails leaves the
    profile as it is and says why: the run goes on.
    """
    settings = request.settings
    target = settings.target
    asked = request.calibrate and settings.latency_scale == 1.0
    if not settings.device_profile or target is None or target.metric != "latency_ms":
        return settings, ["--calibrate ignored: it calibrates latency targets only"] if (
            asked and not resume) else []
    if resume:
        try:
            stored = read_run_config(run_dir / CONFIG_FILE, what="cannot resume")
            scale = stored.get("settings", {}).get("latency_scale", 1.0)
        except (ValueError, AttributeError, OSError):
            return settings, []  # check_resume says what is wrong with the folder
        if not is_positive_number(scale):
            return settings, []  # check_resume names the value
        if scale == 1.0:
            return settings, ["--calibrate ignored on --resume: the run started uncalibrated "
                              "and keeps its prices"] if asked else []
        return replace(settings, latency_scale=float(scale)), [
            f"latency calibrated when the run started: the profile's prices x{scale:.3f}"]
    if not asked:
        return settings, []
    from budgetsearch.profiling.calibrate import calibrate_to_network, calibration_refusal

    profile = load_profile(settings.device_profile)
    refusal = calibration_refusal(profile)
    if refusal is not None:  # another device: its prices stand for it
        return settings, [f"--calibrate ignored: {refusal}"]
    if progress:
        print(f"timing the unpruned {settings.model} here once: the run's latencies are priced "
              f"by it (--calibrate)", flush=True)
    import torch

    try:
        calibration = calibrate_to_network(
            profile, build_network(settings), torch.zeros(1, *input_shape(settings)),
            name=f"the unpruned {settings.model}")
    except Exception as error:  # noqa: BLE001 (an export or a forward fails in many ways)
        first = (str(error).strip().splitlines() or [""])[0][:160]
        return settings, [f"latency not calibrated ({type(error).__name__}: {first}): "
                          f"priced by {profile.name} as it is"]
    return (replace(settings, latency_scale=round(calibration.factor, 6)),
            [calibration.summary()])


def _check_reference_files(run_dir: Path) -> None:
    """A kept reference (``--resume``) must load: every trial starts from its weights."""
    import torch

    from budgetsearch.models.deploy import load_deployable
    from budgetsearch.search.reference import MODEL_FILE, STATE_FILE, reference_dir

    top = reference_dir(run_dir)
    # The single-base reference, and each base's of a family search (reference/MODEL@WIDTH).
    for folder in [top, *sorted(p for p in top.glob("*") if p.is_dir())]:
        if not (folder / "row.json").is_file():
            continue  # not trained yet (or unfinished): ensure_reference trains it
        advice = f"remove {folder} to train it again"
        try:
            state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
            try:
                load_model_file(folder / MODEL_FILE)
            except (ValueError, FileNotFoundError) as refused:
                # A user's own network class is never unpickled, and one pickle cannot name (a
                # class defined in the factory) has no model.pt: its deployable twin must load.
                if isinstance(refused, ValueError) and "was refused: it asks for" not in str(
                        refused):
                    raise
                # model.ts or model.pt2; where none could be written, the weights loaded above
                # are what trials use
                with contextlib.suppress(FileNotFoundError):
                    load_deployable(folder)
        except FileNotFoundError:
            continue  # unfinished: ensure_reference trains it again
        except Exception as error:  # noqa: BLE001 (torch raises many kinds on a damaged file)
            detail = " ".join(str(error).split())[:300] or type(error).__name__
            raise ValueError(f"cannot use the run's reference network: {detail}; "
                             f"{advice}") from None
        if not isinstance(state, dict):
            raise ValueError(f"cannot use the run's reference network: {folder / STATE_FILE} "
                             f"holds a {type(state).__name__}, not a state dict; {advice}")


def _run_locked(request: RunRequest, settings: TrialSettings, space: SearchSpace,
                plan: TargetPlan | None, notes: list[str], run_dir: Path, *, resume: bool,
                progress: bool, command: str, force: bool,
                candidates: CandidatePlan | None = None,
                deadline: float | None = None) -> RunSummary:
    if resume:
        if request.engine == "optuna":
            check_study(run_dir)
        else:
            from budgetsearch.search.ray_driver import check_experiment

            check_experiment(run_dir)
        _check_reference_files(run_dir)
    elif not force and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        # Empty when the caller checked it: another run wrote here meanwhile (and ended).
        raise ValueError(f"output folder {run_dir} already holds another run; choose a new "
                         "--out, --resume to continue it or pass --force to replace it")
    if not resume:  # a new run in a reused (--force) folder starts from a clean study
        (run_dir / STUDY_FILE).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "trials", ignore_errors=True)
        if candidates is not None:  # base references of an earlier family search
            shutil.rmtree(run_dir / "reference", ignore_errors=True)
    write_config(run_dir, request, space, notes, command, candidates)
    if candidates is not None and settings.reference_epochs > 0:
        # The user's network is trained once whatever the candidates: it is the yardstick of
        # every family (and, where it meets the target, an answer of its own), and the start
        # of its own pruned families. Other bases' references are trained when first used.
        from budgetsearch.search.reference import base_reference_dir, ensure_reference

        if progress:
            print(f"training the unpruned {settings.model} once ({settings.reference_epochs:g} "
                  f"epoch(s) on {_train_images(settings):,} images); {len(candidates.candidates)} "
                  "candidate families, a pruned family's base network trained once the first "
                  "time one of its trials runs", flush=True)
        ensure_reference(settings, run_dir,
                         base_reference_dir(run_dir, settings.model, settings.width))
    elif settings.reference_epochs > 0:
        from budgetsearch.search.reference import STATE_FILE, ensure_reference, reference_dir

        if progress:
            print(f"training the unpruned {settings.model} once ({settings.reference_epochs:g} "
                  "epoch(s)): every trial starts from it (and distils from it where its pruner "
                  "does)", flush=True)
        reference = ensure_reference(settings, run_dir)
        notes.append(f"unpruned reference {settings.model}: accuracy "
                     f"{reference['accuracy']:.4f}, {reference['params']:,.0f} parameters "
                     f"(trained {settings.reference_epochs:g} epoch(s) in "
                     f"{reference['seconds']:.0f} s; trials start from it)")
        # From the run folder, not the row (its paths are as the run was started, from
        # another working directory perhaps); absolute: Ray workers run in other folders.
        settings = replace(settings, reference_path=str(
            (reference_dir(run_dir) / STATE_FILE).resolve()))
    bar = _progress_bar(request.optuna.trials) if progress else None
    try:
        if request.engine == "ray":
            from budgetsearch.search.ray_driver import run_ray

            rows = run_ray(space, settings, run_dir, request, resume=resume, progress=bar)
        elif request.engine == "optuna":
            rows = run_optuna(space, settings, run_dir, request.optuna, resume=resume,
                              progress=bar, candidates=None if candidates is None
                              else candidates.candidates, deadline=deadline)
        else:
            raise ValueError(f"engine must be 'optuna' or 'ray', got {request.engine!r}")
    finally:
        if bar is not None:
            bar.close()
    write_results(run_dir, rows)
    table = results_frame(rows)
    best = best_feasible(table) if len(table) else None
    measured, model_error = None, None
    if best is not None and isinstance(best.get("model_path"), str):
        from budgetsearch.pareto.results import resolve_artifact

        # The row's path is as the run was started (perhaps from another folder).
        best["model_path"] = str(resolve_artifact(best["model_path"], run_dir))
        try:
            model = load_row_model(best, run_dir)
        except (ValueError, FileNotFoundError) as error:
            model_error = str(error)
        except Exception as error:  # noqa: BLE001 (torch's unpickler fails in many ways)
            detail = " ".join(str(error).split())[:200]
            model_error = (f"model file {best['model_path']} is corrupt, truncated or not a "
                           f"PyTorch file ({type(error).__name__}: {detail})")
        else:
            profile = _local_profile(settings.device_profile)
            if profile is not None:
                threads = profile.provenance.get("threads")
                try:
                    measured = measure_latency_ms(
                        model, input_shape(settings), runtime=profile.runtime,
                        threads=threads if isinstance(threads, int) else None)
                except Exception as error:  # noqa: BLE001 (an export fails in many ways)
                    # the search is done and written: say why there is no measurement
                    first = str(error).strip().splitlines()[0][:160] if str(error) else ""
                    notes.append(f"not measured here in {profile.runtime}: "
                                 f"{type(error).__name__}: {first}")
    outcome = None
    if candidates is not None:
        outcome = family_outcome(table)
        references = (table[(table["kind"].astype(str) == "reference")
                            & (table["status"] == "ok")] if len(table) else table)
        for _, ref in references.iterrows():
            notes.append(f"unpruned reference {ref['family'].split(':', 1)[1]}: test accuracy "
                         f"{ref['accuracy']:.4f}, trained {settings.reference_epochs:g} "
                         f"epoch(s) on {_train_images(settings):,} images in "
                         f"{ref['seconds']:.0f} s ("
                         + ("meets the target)" if ref["feasible"] else
                            "over the target: its pruned trials start from it)"))
    return RunSummary(run_dir, table, None if best is None else best.to_dict(), notes,
                      measured, plan, failure=failure_summary(table, best), families=outcome,
                      model_error=model_error)


def _train_images(settings: TrialSettings) -> int:
    """Images in the run's training split (validation held out)."""
    return len(trial_data(settings).train)


def _local_profile(profile_name: str | None) -> DeviceProfile | None:
    """The run's device profile when it was measured on this machine kind (this CPU kind, or
    this GPU for a GPU profile; whatever its name), in a runtime available here: the one
    "measured here" compares with; else None."""
    from budgetsearch.profiling.anchors import is_this_machine

    if not profile_name:
        return None
    profile = load_profile(profile_name)
    return profile if profile.source == "measured" and is_this_machine(profile) else None
