"""One trial of a sweep: its settings applied to the sweep's recipe, trained as an ordinary ``cv`` folder (or, with
the ``held_out`` objective, a ``run`` folder) under ``trials/NNN-RECIPE/`` by ``evaluation.cv.run_cv`` (or
``runs.pipeline.run_recipe``) itself, scored, and told to the study.

``run_trial`` is the whole of it, in the sweep's process, a local process of its own or a Ray task: it reattaches
to the RUNNING trial in the study (``study.attach``), so a trial cut by a kill is run again under its number, and
its folder resumes fold by fold as ``cv`` does. A cv trial reports each finished fold (``run_cv``'s ``on_fold``):
the mean macro-F1 at 0.5 of its folds so far, which the median pruner weighs; a pruned trial stops there, and its
folder's ``trial.json`` says so. A trial that fails is told as failed with its one-line reason; the sweep goes on.
``trial.json`` (state, settings, objective, reason) is written in every trial's folder once it ends.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import load_recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import make_folder, write_json
from gen_emotion.runs.folder import TRIAL_FILE
from gen_emotion.sweeps.space import Space, overrides
from gen_emotion.sweeps.study import attach, frozen, import_optuna, open_study, should_prune

log = logging.getLogger(__name__)

TRIALS_DIR = "trials"
OBJECTIVES = ("oof", "held_out")


@dataclass(frozen=True)
class TrialJob:
    """What one trial needs to run anywhere that sees the sweep folder and the data: the study, its number, the
    sweep's resolved recipe (``recipe.yaml``), the space, the objective and the data."""

    sweep_dir: Path
    storage: str
    study_name: str
    number: int
    space: Space
    objective: str
    folds: int
    data: str | None
    parallel: int

    @property
    def recipe_path(self) -> Path:
        return self.sweep_dir / "recipe.yaml"


def trial_name(recipe_name: str, number: int) -> str:
    """The recipe name of trial ``number`` (what names it in ensembles and reports)."""
    return f"{recipe_name}-t{number:03d}"


def trial_folder(sweep_dir: Path, recipe_name: str, number: int) -> Path:
    """``trials/NNN-RECIPE``."""
    return sweep_dir / TRIALS_DIR / f"{number:03d}-{recipe_name}"


def one_line(err: BaseException) -> str:
    """An error in one line: the toolkit's own message, else the exception's type and first line."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    if isinstance(err, GenEmotionError):
        return lines[0] if lines else type(err).__name__
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


class FoldReporter:
    """``run_cv``'s ``on_fold`` for a trial: report the mean macro-F1 of the folds so far, and stop the trial (Optuna's
    ``TrialPruned``) where the median pruner says it cannot win. The last fold is never pruned (the cv is done)."""

    def __init__(self, study: Any, trial: Any, job: TrialJob, folder: Path) -> None:
        self.study, self.trial, self.job, self.folder = study, trial, job, folder
        self.scores: list[float] = []

    def __call__(self, k: int, fold_macro_f1: float) -> None:
        optuna = import_optuna()
        self.scores.append(fold_macro_f1)
        mean = float(np.mean(self.scores))
        if k not in frozen(self.study, self.job.number).intermediate_values:  # a resumed trial: reported already
            self.trial.report(mean, k)
        if k == self.job.folds - 1 or not should_prune(
            self.study, self.job.number, self.job.parallel, self.job.space.settings.pruner
        ):
            return
        reason = (
            f"pruned after fold {k + 1} of {self.job.folds}: its folds' mean macro-F1 {mean:.4f} is below the median "
            "of the finished trials' at that fold"
        )
        log.info("trial %d: %s", self.job.number, reason)
        raise optuna.TrialPruned(reason)


def objective_value(folder: Path, objective: str) -> tuple[float, float | None]:
    """The trial folder's objective and what it cost: a cv's honest out-of-fold macro-F1, or a run's honest
    held-out one (``scoring.run_metrics``)."""
    from gen_emotion.runs.folder import read_folder_metrics, read_run_metrics

    if objective == "oof":
        metrics = read_folder_metrics(folder)
        return float(metrics.honest_macro_f1), metrics.wall_s
    run = read_run_metrics(folder)
    seconds = sum(float(v or 0) for k, v in run.timings.items() if k.endswith("_s"))
    return float(run.honest_macro_f1), round(seconds, 1)


def train_trial(job: TrialJob, params: dict[str, Any], folder: Path, reporter: FoldReporter) -> None:
    """The trial's folder, by the same code path as ``gen-emotion cv`` (or ``run``)."""
    base = load_recipe(job.recipe_path)
    recipe = load_recipe(job.recipe_path, [*overrides(params), f"name={trial_name(base.name, job.number)}"])
    if job.objective == "oof":
        from gen_emotion.evaluation.cv import run_cv

        run_cv(recipe, job.data, folder, folds=job.folds, on_fold=reporter)
    else:
        from gen_emotion.runs.pipeline import run_recipe

        run_recipe(recipe, job.data, folder)


def run_trial(job: TrialJob) -> dict[str, Any]:
    """Run RUNNING trial ``job.number`` to its end and tell the study: complete (its objective), pruned or failed
    (its one-line reason). Returns what ``trial.json`` holds."""
    optuna = import_optuna()
    study = open_study(job.storage, job.study_name, seed=0)
    trial = attach(study, job.number, job.space)
    params = dict(trial.params)
    base_name = load_recipe(job.recipe_path).name
    folder = trial_folder(job.sweep_dir, base_name, job.number)
    trial.set_user_attr("folder", str(folder.relative_to(job.sweep_dir)))
    started = time.perf_counter()
    outcome: dict[str, Any] = {"number": job.number, "params": params, "folder": str(folder.relative_to(job.sweep_dir))}
    value, states = None, optuna.trial.TrialState
    try:
        train_trial(job, params, folder, FoldReporter(study, trial, job, folder))
        value, seconds = objective_value(folder, job.objective)
        state, attrs = states.COMPLETE, {"seconds": seconds}
        outcome.update(state="complete", objective=value, seconds=seconds)
    except optuna.TrialPruned as pruned:
        state, attrs = states.PRUNED, {"reason": str(pruned), "seconds": round(time.perf_counter() - started, 1)}
        outcome.update(state="pruned", reason=str(pruned), fold_scores=reporter_scores(study, job.number))
    except Exception as err:  # the trial's own failure, whatever raised it: recorded, and the sweep goes on
        state, attrs = states.FAIL, {"reason": one_line(err)}
        outcome.update(state="fail", reason=attrs["reason"])
    make_folder(folder)
    write_json(folder / TRIAL_FILE, outcome)  # before the study hears: a kill between the two runs the trial again
    for key, item in attrs.items():
        trial.set_user_attr(key, item)
    study.tell(job.number, value, state=state)
    return outcome


def reporter_scores(study: Any, number: int) -> dict[str, float]:
    """The fold figures trial ``number`` reported, by fold."""
    return {str(k): v for k, v in sorted(frozen(study, number).intermediate_values.items())}


def trial_task(job: TrialJob, cwd: str) -> dict[str, Any]:
    """``run_trial`` on whichever machine or process runs it, in the command's working folder (its relative paths)."""
    import contextlib

    with contextlib.chdir(cwd):
        return run_trial(job)
