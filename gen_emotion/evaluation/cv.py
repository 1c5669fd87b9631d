"""K-fold cross-validation of a recipe: out-of-fold probabilities for every training row, thresholds
tuned on them, and the test file predicted by every fold model (probabilities averaged).

Each fold is trained and predicted the way ``run`` does its one fold (``steps.fit_predict``). A cv run
folder holds ``recipe.yaml``, ``cv.json`` (folds, seed, rows), ``folds/fold-k/`` (the fold's model,
``val_probs.csv``, ``test_probs.csv`` and ``fold.json``, written last), and, once every fold is done:
``oof_probs.csv``, ``oof_predictions.csv``, ``oof_labels.csv``, ``thresholds.json``, ``test_probs.csv``,
``test_predictions.csv``, ``submission.csv`` and ``oof_metrics.json``. A fold whose ``fold.json`` exists is
not trained again, so an interrupted run resumes fold by fold. The trackers of ``train.report_to`` get one
tracker run per fold, grouped under the cv's own, which gets the out-of-fold figures (``tracking``).

``cv --parallel-folds N`` trains the folds still to do side by side first (``cluster.run_folds``: Ray tasks, each
``train_pending_fold``, the same ``run_fold`` as the sequential loop, writing its own ``folds/fold-k/`` while this
process holds the cv folder's lock); the loop then finds every fold done and gathers them as a resumed run would.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import Recipe, columns, data_source, with_header_labels
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import read_json, write_json
from gen_emotion.core.logs import setup_logging
from gen_emotion.data.dataset import EmotionData, sample_data_dir
from gen_emotion.data.folds import fold_indices
from gen_emotion.data.sources import TEST, TRAIN, DataSource, read_splits
from gen_emotion.models.hardware import compute_threads, machine, peak_memory
from gen_emotion.runs.folder import (
    CV_SETTINGS,
    FOLD_DONE,
    SUBMISSION,
    TEST_PROBS,
    VAL_PROBS,
    OutOfFold,
    default_run_dir,
    fold_path,
    load_run_recipe,
    prepare_run_dir,
    read_cv_settings,
    write_folder_metrics,
    write_out_of_fold,
)
from gen_emotion.runs.locks import writing_folder
from gen_emotion.runs.pipeline import gold_test_scores, log_test_scores
from gen_emotion.runs.steps import Fold, Launcher, fit_predict, import_task, task_reference
from gen_emotion.scoring.metrics import macro_f1, score
from gen_emotion.scoring.prediction_files import (
    as_written,
    read_probabilities,
    write_probabilities,
)
from gen_emotion.scoring.run_metrics import CvMetrics
from gen_emotion.scoring.thresholds import apply_thresholds, tune_thresholds
from gen_emotion.tasks.base import Task, get_task
from gen_emotion.training.tracking import cv_figures, fold_figures, open_cv, open_fold, training_steps

log = logging.getLogger("gen_emotion.evaluation.cv")


def _check_settings(
    run_dir: Path, recipe: Recipe, settings: dict[str, Any], data: dict[str, Any], restart: bool = False
) -> None:
    """Write ``recipe.yaml``, ``data.json`` and ``cv.json``, or check that a resumed run has the same ones."""
    prepare_run_dir(recipe, run_dir, data, restart)
    settings_path = run_dir / CV_SETTINGS
    if settings_path.is_file():
        previous_settings = read_cv_settings(run_dir)
        changed = [k for k in ("folds", "seed", "rows", "test_rows") if previous_settings.get(k) != settings[k]]
        if changed:
            raise GenEmotionError(
                f"{run_dir} was started with other {', '.join(changed)} "
                f"({', '.join(f'{k}={previous_settings.get(k)}' for k in changed)}); use a new --out"
            )
    else:
        write_json(settings_path, settings)


def _load_fold(fold_dir: Path, held_out: EmotionData, test: EmotionData) -> tuple[np.ndarray, np.ndarray, dict]:
    """A finished fold's saved predictions, checked against the rows it must cover."""
    summary = read_json(fold_dir / FOLD_DONE, "the fold's figures written by gen-emotion cv")
    val_ids, val = read_probabilities(fold_dir / VAL_PROBS, held_out.label_names)
    test_ids, tst = read_probabilities(fold_dir / TEST_PROBS, held_out.label_names)
    if val_ids != held_out.ids or test_ids != test.ids:
        raise GenEmotionError(f"{fold_dir} was written for other rows; use a new --out")
    return val, tst, summary


def run_fold(
    recipe: Recipe, fold: Fold, fold_dir: Path, run_dir: Path, task: Task, launcher: Launcher | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Train and predict one fold unless its ``fold.json`` exists; returns ``(val, test, summary)``, the
    scores being probabilities, or 0/1 predictions when ``summary["hard"]``: as its files hold them, so a resumed
    cv tunes its thresholds on the same numbers as an uninterrupted one."""
    if (fold_dir / FOLD_DONE).is_file():
        return _load_fold(fold_dir, fold.held_out, fold.test)
    started = time.perf_counter()
    tracker = open_fold(recipe, run_dir, fold_dir)
    with tracker.training():
        result = fit_predict(recipe, fold, fold_dir, run_dir, task=task, launcher=launcher)
    val, tst = result.val.scores, result.test.scores
    names = fold.full.label_names
    held_out = score(fold.held_out.labels, result.val.labels, names)
    tracker.finish(fold_figures(held_out), recipe, {"decision": task.base_decision}, training_steps(result.training))
    write_probabilities(fold_dir / VAL_PROBS, result.val.ids, val, names)
    write_probabilities(fold_dir / TEST_PROBS, result.test.ids, tst, names)
    summary = {
        **result.training,
        "predict_s": result.seconds["predict_s"],
        **({"hard": True} if result.val.probs is None else {}),
        "train_rows": result.training.get("train_rows", len(fold.train_idx)),
        "val_rows": len(fold.val_idx),
        "seconds": round(time.perf_counter() - started, 2),
        "threads": compute_threads(),
        **peak_memory(),
    }
    write_json(fold_dir / FOLD_DONE, summary)
    return as_written(val), as_written(tst), summary


def drop_model(fold_dir: Path, task: Task) -> None:
    """Delete a finished fold's model files (``cv --drop-models``)."""
    for pattern in task.model_files:
        for path in fold_dir.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@dataclass(frozen=True)
class PendingFolds:
    """The folds of a cv run still to train, with what each needs to train alone, in a process or on a machine of
    its own (``train_pending_fold``): the run folder (its ``recipe.yaml``), the data and how it is cut."""

    run_dir: Path
    source: DataSource
    folds: int
    indices: tuple[int, ...]
    task: str
    """``module:Class`` of the task (``steps.task_reference``)."""
    launcher: Launcher
    keep_models: bool
    local_data: bool
    """Whether the data is a folder of the command's machine (not a dataset id): every machine must see it."""


def train_pending_fold(pending: PendingFolds, k: int, launcher: Launcher | None = None) -> None:
    """Train and predict fold ``k`` into ``folds/fold-k/`` exactly as the sequential loop does (``run_fold``, then
    ``drop_model`` under ``--drop-models``), from the run folder's ``recipe.yaml`` and the data folder alone."""
    recipe = load_run_recipe(pending.run_dir)
    task = import_task(pending.task)
    fold = Fold.load(pending.source, pending.folds, k, recipe.data.seed)
    folder = fold_path(pending.run_dir, k)
    log.info("fold %d/%d: training on %d rows", k + 1, pending.folds, len(fold.train_idx))
    run_fold(recipe, fold, folder, pending.run_dir, task, launcher or pending.launcher)
    if not pending.keep_models:
        drop_model(folder, task)


def run_cv(
    recipe: Recipe,
    data_dir: Path | str | None,
    run_dir: Path,
    folds: int = 5,
    rows: int | None = None,
    keep_models: bool = True,
    *,
    task: Task | None = None,
    launcher: Launcher | None = None,
    restart: bool = False,
    val: Path | None = None,
    parallel: Callable[[PendingFolds], None] | None = None,
    on_fold: Callable[[int, float], None] | None = None,
) -> CvMetrics:
    """Cross-validate ``recipe`` on the training split of ``data_dir`` (a folder or a dataset id: ``sources``)
    with ``folds`` multilabel-stratified folds and predict its test split; write the run folder (module
    docstring) and return its metrics. A validation split is not used: the folds are cut from the training split.
    ``parallel`` trains the folds not yet done side by side before they are gathered (``cluster.run_folds``).
    ``on_fold(k, macro_f1)`` is called as each fold is gathered, in fold order (a saved fold too), with the fold's
    held-out macro-F1 at 0.5: a sweep reports it to its pruner (``sweeps.trial``), which may stop the cv by raising."""
    task = task or get_task(recipe.task)
    started = time.perf_counter()
    source = data_source(recipe, data_dir or sample_data_dir(), val, rows)
    data = read_splits(source)
    full, test = data.train, data.test
    recipe = with_header_labels(recipe, full.label_names)
    splits = fold_indices(full.labels, folds, recipe.data.seed)
    settings = {"folds": folds, "seed": recipe.data.seed, "rows": len(full), "test_rows": len(test)}
    with writing_folder(run_dir):  # one writer per cv folder
        _check_settings(run_dir, recipe, {**settings, "data": source.data}, data.record((TRAIN, TEST)), restart)
        setup_logging(run_dir)
        tracker = open_cv(recipe, run_dir)  # before the folds: the parent of theirs
        log.info("cv %s (%s): %d rows in %d folds, %d test rows", recipe.name, recipe.task, len(full), folds, len(test))
        if data.validation is not None:
            log.info(
                "the validation split (%d rows) is not used: cv cuts its folds from the training split",
                len(data.validation),
            )
        if data.id_note():
            log.info("%s", data.id_note())
        pending = tuple(k for k in range(folds) if not (fold_path(run_dir, k) / FOLD_DONE).is_file())
        if parallel is not None and pending:
            where = (run_dir, source, folds, pending, task_reference(task))
            local = Path(source.data).expanduser().exists()
            parallel(PendingFolds(*where, launcher or Launcher(), keep_models, local))

        from tqdm.auto import tqdm

        width = len(full.label_names)
        oof = np.zeros((len(full), width))
        covered = np.zeros(len(full), dtype=np.int64)
        fold_of = np.full(len(full), -1)
        test_sum = np.zeros((len(test), width))
        summaries = []

        for k, split in enumerate(tqdm(splits, desc=f"cv {recipe.name}", unit="fold")):
            folder = fold_path(run_dir, k)
            fold = Fold.load(source, folds, k, recipe.data.seed, data=data, split=split)
            resumed = (folder / FOLD_DONE).is_file()
            log.info(
                "fold %d/%d: %s", k + 1, folds, "saved, skipping" if resumed else f"training on {len(split[0])} rows"
            )
            val, tst, summary = run_fold(recipe, fold, folder, run_dir, task, launcher)
            if not keep_models:
                drop_model(folder, task)
            oof[split[1]] = val
            covered[split[1]] += 1
            fold_of[split[1]] = k
            test_sum += tst
            summaries.append({"fold": k, **summary})
            if on_fold is not None:
                on_fold(k, macro_f1(fold.held_out.labels, apply_thresholds(val, np.full(width, 0.5))))
        if not (covered == 1).all():
            raise GenEmotionError(f"internal error: out-of-fold rows predicted {covered.min()}..{covered.max()} times")
        metrics = finish_cv(
            recipe, task, run_dir, full, test, oof, test_sum / folds, fold_of, summaries, source.data, started
        )
        tracker.finish(
            cv_figures(metrics), recipe, {"decision": "thresholds" if metrics.has_probabilities else task.base_decision}
        )
        return metrics


def finish_cv(
    recipe: Recipe,
    task: Task,
    run_dir: Path,
    full: EmotionData,
    test: EmotionData,
    oof: np.ndarray,
    test_scores: np.ndarray,
    fold_of: np.ndarray,
    summaries: list[dict[str, Any]],
    data_dir: Path | str,
    started: float,
) -> CvMetrics:
    """Tune thresholds on the out-of-fold scores, score, and write the run's files (``folder.write_out_of_fold``).
    ``wall_s`` is the folds' own time plus this step's, so a resumed run reports what the whole run cost."""
    finishing = time.perf_counter()
    hard = any(s.get("hard") for s in summaries)
    y, names = full.labels, full.label_names
    thresholds = np.full(len(names), 0.5) if hard else tune_thresholds(y, oof)
    layout = OutOfFold(
        full.ids,
        y,
        oof,
        test.ids,
        test_scores,
        thresholds,
        names,
        columns(recipe).id_header,
        probabilities=not hard,
        tuned=not hard,
        seed=recipe.data.seed,
    )
    figures = write_out_of_fold(run_dir, layout)
    oof_pred = layout.predictions

    folds = len(summaries)
    per_fold = []
    for s in summaries:
        rows = fold_of == s["fold"]
        per_fold.append(
            {
                "fold": s["fold"],
                "rows": int(rows.sum()),
                "macro_f1": macro_f1(y[rows], oof_pred[rows]),
                "macro_f1_at_0_5": macro_f1(y[rows], apply_thresholds(oof[rows], np.full(len(names), 0.5))),
                "seconds": s.get("seconds"),
                "train_s": round(s.get("seconds", 0) - s.get("predict_s", 0), 2),
                "predict_s": s.get("predict_s"),
                "peak_rss_mib": s.get("peak_rss_mib"),
            }
        )
    fold_scores = [f["macro_f1"] for f in per_fold]
    memory = peak_memory()
    memory["peak_rss_mib"] = max([memory["peak_rss_mib"], *(s.get("peak_rss_mib", 0) for s in summaries)])
    cuda = [s["peak_cuda_mib"] for s in summaries if "peak_cuda_mib" in s]
    if cuda:
        memory["peak_cuda_mib"] = max(cuda)
    metrics = CvMetrics(
        name=recipe.name,
        kind="cv",
        task=recipe.task,
        model=task.describe_model(recipe),
        has_probabilities=not hard,
        folds=folds,
        seed=recipe.data.seed,
        **figures,
        per_fold=per_fold,
        per_fold_macro_f1_mean=float(np.mean(fold_scores)),
        per_fold_macro_f1_std=float(np.std(fold_scores)),
        test_rows=len(test),
        test=gold_test_scores(test, layout.test_predictions, names),
        wall_s=round(sum(s.get("seconds", 0) for s in summaries) + time.perf_counter() - finishing, 1),
        this_call_s=round(time.perf_counter() - started, 1),
        **memory,
        note="macro_f1 uses thresholds tuned on these same out-of-fold rows (slightly optimistic); "
        "macro_f1_thresholds_cv tunes them on 4/5 of the rows and scores the other 1/5, pooled (honest).",
        data=str(data_dir),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine(),
    )
    write_folder_metrics(run_dir, metrics)
    log.info(
        "cv %s: out-of-fold macro-F1 %.4f (folds %.4f +- %.4f), micro-F1 %.4f, jaccard %.4f; %.0f s; wrote %s",
        recipe.name,
        metrics.macro_f1,
        metrics.per_fold_macro_f1_mean,
        metrics.per_fold_macro_f1_std,
        metrics.micro_f1,
        metrics.jaccard,
        metrics.wall_s,
        run_dir / SUBMISSION,
    )
    if metrics.test is not None:
        log_test_scores(metrics.test)
    return metrics


def default_cv_dir(recipe: Recipe) -> Path:
    """``runs/cv-RECIPE-TIME``."""
    return default_run_dir(recipe, prefix="cv-")
