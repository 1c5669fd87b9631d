"""``gen-emotion sweep RECIPE --space SPACE.yaml --trials N``: search a recipe's settings with Optuna, each trial an
ordinary cv (or run) folder, scored honestly, resumable after a kill at any moment (docs/sweeps.md).

A sweep folder holds ``recipe.yaml`` (the recipe searched, overrides applied), ``space.yaml`` (the space file as
given), ``settings.json`` (what must not change on a rerun), ``study.db`` (the Optuna study, unless ``--storage``
names another database), ``trials/NNN-RECIPE/`` (one folder per trial: ``trial.py``), ``sweep.json`` (rewritten
after every trial: ``results``), and at the end ``best_recipe.yaml``, the plots, ``data/`` and ``holdout-run/``
with ``--holdout``, ``ensemble-topK/`` with ``--ensemble-top K``. The same command again resumes: the study
remembers every trial, and a trial cut mid-way runs again under its number, from its folder (``study``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen_emotion.config.fields import ConfigError, arg, build
from gen_emotion.config.recipes import Recipe, load_recipe
from gen_emotion.config.task_kinds import task_kind
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import make_folder, read_json, write_json, write_text
from gen_emotion.core.logs import setup_logging
from gen_emotion.core.redaction import redact
from gen_emotion.runs.folder import default_run_dir, load_run_recipe
from gen_emotion.runs.locks import writing_folder
from gen_emotion.sweeps import results
from gen_emotion.sweeps.holdout import score_holdout, split_holdout
from gen_emotion.sweeps.pool import Finished, trial_pool
from gen_emotion.sweeps.space import Space, read_space
from gen_emotion.sweeps.study import (
    attach,
    frozen,
    import_optuna,
    left_running,
    open_study,
    start_trial,
    storage_url,
    trial_rows,
    waiting_for,
)
from gen_emotion.sweeps.trial import OBJECTIVES, TrialJob

log = logging.getLogger("gen_emotion.sweep")

SETTINGS_FILE = "settings.json"
SPACE_FILE = "space.yaml"
FIXED = ("recipe", "space", "objective", "folds", "data", "holdout", "seed", "storage")
"""The settings a rerun must keep (``--trials``, ``--timeout``, ``--parallel`` and ``--ensemble-top`` may change)."""


@dataclass
class SweepOptions:
    """``gen-emotion sweep``'s options (its flags are these fields)."""

    space: str = arg("", "the space file (YAML): the recipe fields to search and their ranges (docs/sweeps.md)")
    trials: int = arg(20, "trials in all; the same command with more goes on from where it stopped", low=1)
    folds: int = arg(5, "cv folds of each trial (objective oof)", low=2)
    objective: str = arg(
        "oof",
        "oof: a cv trial's honest out-of-fold macro-F1; held_out: a run's honest held-out one",
        choices=OBJECTIVES,
    )
    timeout: float | None = arg(None, "minutes after which no trial starts (those running finish)", above=0)
    out: str | None = arg(None, "the sweep folder (default: runs/sweep-RECIPE-TIME); an existing one resumes")
    parallel: int = arg(
        1, "trials at once: local processes on the shared study, or Ray tasks with --ray-address", low=1
    )
    ray_address: str | None = arg(None, "with --parallel: run the trials as tasks of the Ray cluster at ADDR")
    storage: str | None = arg(None, "the study's database URL (default: SQLite study.db in the sweep folder)")
    holdout: float | None = arg(
        None, "keep this share of the training rows out of every trial; score the best recipe there once", above=0
    )
    ensemble_top: int | None = arg(None, "ensemble the K best trials (gen-emotion ensemble) into ensemble-topK/", low=2)
    data: str | None = arg(None, "a data folder or dataset id, as cv's (default: the shipped sample)")


def is_sweep_folder(folder: Path) -> bool:
    """Whether ``folder`` is a sweep folder (its ``settings.json`` and ``space.yaml``): what it holds are trials."""
    return (folder / SETTINGS_FILE).is_file() and (folder / SPACE_FILE).is_file()


def sweep_options(values: dict[str, Any]) -> SweepOptions:
    """``SweepOptions`` from the command's flags, each checked by the config engine (ranges, choices)."""
    try:
        options = build(SweepOptions, values, "gen-emotion sweep", whole="the options")
    except ConfigError as err:
        raise GenEmotionError(str(err).replace("gen-emotion sweep: ", "gen-emotion sweep: --")) from None
    if not options.space:
        raise GenEmotionError("gen-emotion sweep needs --space SPACE.yaml (docs/sweeps.md)")
    if options.holdout is not None and options.holdout >= 1:
        raise GenEmotionError(f"--holdout is a share of the training rows below 1, got {options.holdout}")
    if options.ray_address and options.parallel < 2:
        raise GenEmotionError("--ray-address goes with --parallel N (N of 2 or more)")
    if options.ensemble_top is not None and options.objective != "oof":
        raise GenEmotionError("--ensemble-top ensembles cv trials: it needs --objective oof")
    return options


def _settings(recipe: Recipe, space: Space, options: SweepOptions, data: str | None) -> dict[str, Any]:
    return {
        "recipe": recipe.name,
        "space": space.to_dict(),
        "objective": options.objective,
        "folds": options.folds if options.objective == "oof" else None,
        "data": data,
        "holdout": options.holdout,
        "seed": recipe.data.seed,
        "storage": redact(options.storage) if options.storage else None,  # another database: another study
    }


def prepare(sweep_dir: Path, recipe: Recipe, space: Space, options: SweepOptions, data: str | None) -> dict[str, Any]:
    """Write the sweep folder's ``recipe.yaml``, ``space.yaml`` and ``settings.json``, or check that a rerun has the
    same ones; returns the settings (with the study's name, made once)."""
    make_folder(sweep_dir, "--out")
    settings = json.loads(json.dumps(_settings(recipe, space, options, data)))  # as settings.json holds it
    path = sweep_dir / SETTINGS_FILE
    if path.is_file():
        before = read_json(path, "the settings written by gen-emotion sweep")
        changed = [k for k in FIXED if before.get(k) != settings[k]]
        # the recipes compared as recipes (a field a newer gen-emotion added reads as its default), not as text
        if changed or load_run_recipe(sweep_dir) != recipe:
            what = ", ".join(changed) or "recipe settings"
            raise GenEmotionError(f"{sweep_dir} was started with other {what}; use a new --out")
        return before
    write_text(sweep_dir / "recipe.yaml", recipe.to_yaml())
    write_text(sweep_dir / SPACE_FILE, Path(options.space).read_text(encoding="utf-8"))
    settings["study"] = f"{recipe.name}-{uuid.uuid4().hex[:8]}"
    write_json(path, settings)  # last: a sweep folder with settings.json has the rest
    return settings


def _data_path(data: str | None) -> str | None:
    """``--data``: a folder of this machine as an absolute path (trials may run in other processes), else as given."""
    if data is None:
        return None
    from gen_emotion.data.sources import source_kind

    source_kind(data)  # refused at once if it is neither a folder nor a dataset id
    path = Path(data).expanduser()
    return str(path.resolve()) if path.exists() else data


def run_trials(study: Any, jobs: Any, options: SweepOptions, space: Space, seed: int, pool: Any, after: Any) -> None:
    """Run trials until the study holds ``options.trials`` (or ``--timeout`` passes): first the trials a killed
    command left RUNNING, then new ones, ``pool.size`` at a time; ``after(finished)`` once each has ended."""
    deadline = time.monotonic() + options.timeout * 60 if options.timeout else None
    again = left_running(study)
    if again:
        log.info("resuming trial(s) %s, cut by an earlier command", ", ".join(map(str, again)))
    while True:
        while pool.busy < pool.size:
            number = again.pop(0) if again else _next(study, options, space, seed, deadline)
            if number is None:
                break
            pool.submit(jobs(number))
        if not pool.busy:
            return
        after(pool.wait())


def _next(study: Any, options: SweepOptions, space: Space, seed: int, deadline: float | None) -> int | None:
    """Start the next trial, or ``None``: enough trials, out of time, or it must wait for earlier ones."""
    optuna = import_optuna()
    trials = study.get_trials(deepcopy=False)
    if deadline is not None and time.monotonic() > deadline:
        return None
    waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)  # one that holds its settings: start it
    if not waiting and (len(trials) >= options.trials or waiting_for(study, len(trials), options.parallel)):
        return None
    return start_trial(study, space, seed, options.parallel)


def record(study: Any, finished: Finished, total: int) -> None:
    """Log a trial's end; a trial whose process died before it could tell is told failed here, with why."""
    optuna = import_optuna()
    number = finished.job.number
    if finished.error is not None:
        if frozen(study, number).state == optuna.trial.TrialState.RUNNING:
            attach(study, number, finished.job.space).set_user_attr("reason", finished.error)
            study.tell(number, state=optuna.trial.TrialState.FAIL)
        log.error("trial %d (%d of %d) failed: %s", number, number + 1, total, finished.error)
        return
    outcome = finished.outcome or {}
    best = results.best_trial(study)
    figure = f"{outcome['objective']:.4f}" if outcome.get("objective") is not None else outcome.get("reason", "")
    log.info(
        "trial %d (%d of %d) %s: %s (%s)%s",
        number,
        number + 1,
        total,
        outcome.get("state"),
        figure,
        ", ".join(f"{k}={v}" for k, v in outcome.get("params", {}).items()),
        f"; best so far {best.value:.4f} (trial {best.number})" if best is not None else "",
    )


def summary(study: Any, settings: dict[str, Any], options: SweepOptions, extra: dict[str, Any]) -> dict[str, Any]:
    """What ``sweep.json`` holds."""
    best = results.best_trial(study)
    rows = trial_rows(study)
    states = [row["state"] for row in rows]
    return {
        "recipe": settings["recipe"],
        "objective": options.objective,
        "objective_means": results.OBJECTIVE_WORDS[options.objective],
        "trials_asked": options.trials,
        "counts": {state: states.count(state) for state in sorted(set(states))},
        "best": None
        if best is None
        else {
            "number": best.number,
            "objective": best.value,
            "params": best.params,
            "folder": best.user_attrs["folder"],
        },
        **extra,
        "settings": {k: v for k, v in settings.items() if k != "space"},
        "storage": redact(options.storage) if options.storage else "study.db",
        "study": settings["study"],
        "space": settings["space"],
        "trials": rows,
    }


def finish(study: Any, sweep_dir: Path, settings: dict[str, Any], options: SweepOptions, data: str | None) -> dict:
    """``sweep.json``, ``best_recipe.yaml``, the plots, the holdout score and the ensemble, once the trials are done."""
    extra: dict[str, Any] = {}
    best = results.best_trial(study)
    if best is not None:
        finished = sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished())
        extra["best_recipe"] = results.write_best_recipe(
            sweep_dir, best, finished, options.objective, options.space
        ).name
        extra["plots"] = results.write_plots(study, sweep_dir)
        if options.holdout is not None and data is not None:
            held = score_holdout(results.best_recipe(sweep_dir, best), Path(data), sweep_dir)
            extra["holdout"] = {"fraction": options.holdout, "best_trial_objective": best.value, **held}
        if options.ensemble_top:
            extra["ensemble"] = results.ensemble_top(study, sweep_dir, options.ensemble_top)
    content = summary(study, settings, options, {"finished": True, **extra})
    write_json(sweep_dir / results.SWEEP_FILE, content)
    return content


def run_sweep(recipe_name: str, overrides: list[str], options: SweepOptions) -> dict[str, Any]:
    """The whole sweep (module docstring); returns what ``sweep.json`` holds, with the folder as ``sweep_dir``."""
    import_optuna()
    recipe = load_recipe(recipe_name, overrides)
    space = read_space(Path(options.space), recipe)  # every mistake, before anything is written
    data = _data_path(options.data)
    sweep_dir = Path(options.out) if options.out else default_run_dir(recipe, prefix="sweep-")
    with writing_folder(sweep_dir):  # one command per sweep folder: a RUNNING trial found here was cut
        settings = prepare(sweep_dir, recipe, space, options, data)
        setup_logging(sweep_dir)
        if options.holdout is not None:
            data = str(split_holdout(recipe, data, options.holdout, sweep_dir).resolve())
        url = storage_url(sweep_dir, options.storage)
        study = open_study(url, settings["study"], recipe.data.seed)
        log.info(
            "sweep %s: %d trials of %s; %s",
            recipe.name,
            options.trials,
            space.path,
            "; ".join(p.describe() for p in space.params),
        )

        def job(number: int) -> TrialJob:
            return TrialJob(
                sweep_dir,
                url,
                settings["study"],
                number,
                space,
                options.objective,
                options.folds,
                data,
                options.parallel,
            )

        def after(finished: Finished) -> None:
            setup_logging(sweep_dir)  # a trial run in this process logs to its own folder
            record(study, finished, options.trials)
            write_json(sweep_dir / results.SWEEP_FILE, summary(study, settings, options, {"finished": False}))

        wants_gpu = task_kind(recipe.task).transformers_model
        with trial_pool(options.parallel, options.ray_address, wants_gpu) as pool:
            run_trials(study, job, options, space, recipe.data.seed, pool, after)
        setup_logging(sweep_dir)
        content = finish(study, sweep_dir, settings, options, data)
        return {**content, "sweep_dir": str(sweep_dir)}
