"""``run`` a recipe: one held-out fold of the training split (or the validation split, where the data gives one)
trained and scored, and the test split predicted (``predictor`` predicts any file with the finished folder).

A run folder holds the resolved recipe (``recipe.yaml``), the task's model (``adapter/``, ``model/`` or
``tfidf_logreg.pkl``), ``val_predictions.csv``, ``test_predictions.csv``, ``submission.csv``,
``metrics.json`` and ``run.log``, plus ``val_probs.csv``, ``test_probs.csv`` and ``thresholds.json`` where the
task gives probabilities, and what the trackers of ``train.report_to`` keep here (``tracking``). A run is one
fold of ``cv`` (``steps.fit_predict``); each step is skipped when its output exists, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import Recipe, columns, data_source, label_set, with_header_labels
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LabelSet
from gen_emotion.core.logs import setup_logging
from gen_emotion.data.dataset import EmotionData, sample_data_dir
from gen_emotion.data.sources import TEST, TRAIN, VALIDATION, Splits, read_splits
from gen_emotion.models.hardware import machine
from gen_emotion.runs.folder import (
    SUBMISSION,
    TEST_PREDICTIONS,
    TEST_PROBS,
    VAL_PREDICTIONS,
    VAL_PROBS,
    prepare_run_dir,
    write_run_metrics,
    write_thresholds,
)
from gen_emotion.runs.locks import writing_folder
from gen_emotion.runs.steps import Fold, FoldResult, Launcher, fit_predict, run_isolated
from gen_emotion.scoring.metrics import macro_f1, score
from gen_emotion.scoring.prediction_files import write_predictions, write_probabilities, write_submission
from gen_emotion.scoring.run_metrics import RunMetrics
from gen_emotion.scoring.thresholds import apply_thresholds, choose_thresholds, thresholds_to_dict
from gen_emotion.tasks.base import Task, get_task
from gen_emotion.training.tracking import open_run, run_figures, training_steps

log = logging.getLogger("gen_emotion")


def run_recipe(
    recipe: Recipe,
    data_dir: Path | str | None,
    run_dir: Path,
    *,
    task: Task | None = None,
    launcher: Launcher | None = None,
    restart: bool = False,
    val: Path | None = None,
) -> RunMetrics | None:
    """Hold out fold ``data.fold`` of the training split of ``data_dir`` (a folder or a dataset id:
    ``sources``), or its validation split where it has one (or ``val``, a validation file), train the recipe's
    task on the rest, predict the held-out rows and the test split, score, and write everything to ``run_dir``.
    Returns the metrics; ``None`` on a machine other than the main one of a training over several
    (``join_training``)."""
    task = task or get_task(recipe.task)
    started = time.perf_counter()
    source = data_source(recipe, data_dir or sample_data_dir(), val)
    data = read_splits(source)
    recipe = with_header_labels(recipe, data.train.label_names)
    given = data.validation is not None
    fold = Fold.load(source, recipe.data.folds, recipe.data.fold, recipe.data.seed, data=data, given=given)
    data_s = round(time.perf_counter() - started, 2)
    used = (TRAIN, VALIDATION, TEST) if given else (TRAIN, TEST)
    with writing_folder(run_dir):  # one writer per run folder
        prepare_run_dir(recipe, run_dir, data.record(used), restart)
        setup_logging(run_dir)
        log_data(fold, data)
        machines = launcher.machines if launcher is not None else None
        if machines is not None and machines.rank > 0:
            return join_training(recipe, task, fold, run_dir, launcher)
        tracker = open_run(recipe, run_dir)
        with tracker.training():
            result = fit_predict(recipe, fold, run_dir, run_dir, task=task, launcher=launcher)
        timings = {"data_s": data_s, "train_s": result.training.get("seconds"), **result.seconds}
        metrics = finish_run(recipe, task, fold, result, run_dir, timings)
        tracker.finish(
            run_figures(metrics), recipe, {"decision": str(metrics.decision)}, training_steps(result.training)
        )
        return metrics


def log_data(fold: Fold, data: Splits) -> None:
    """The run's data in its log: what is trained on, what is held out, what is predicted, and the IDs."""
    if fold.given:
        origin = data.origins[VALIDATION]  # a file, or the dataset's split
        log.info(
            "data: %d training rows, %d held out as given (%s, no fold cut), %d test rows from %s",
            len(fold.train_idx),
            len(fold.val_idx),
            "the validation split" if origin == VALIDATION else origin,
            len(fold.test),
            data.shown,
        )
    else:
        log.info(
            "data: %d training rows (%d in the training folds, %d held out as fold %d of %d), %d test rows from %s",
            len(fold.full),
            len(fold.train_idx),
            len(fold.val_idx),
            fold.index,
            fold.folds,
            len(fold.test),
            data.shown,
        )
    if data.id_note():
        log.info("%s", data.id_note())


def join_training(recipe: Recipe, task: Task, fold: Fold, run_dir: Path, launcher: Launcher) -> None:
    """A machine other than the main one of a training over several (``Launcher.machines``): its share of the
    training step, in step with the others; the main machine saves the model, predicts and writes the run."""
    if not task.isolated(recipe):
        raise GenEmotionError(f"recipe {recipe.name!r} (task: {recipe.task}) does not train over several machines")
    log.info(
        "machine %d of %d: training with the main machine at %s",
        launcher.machines.rank,
        launcher.machines.count,
        launcher.machines.main_ip,
    )
    run_isolated("fit", task, fold, run_dir, run_dir, launcher)
    log.info(
        "machine %d: its share of the training is done; the main machine predicts and writes the run",
        launcher.machines.rank,
    )


def finish_run(
    recipe: Recipe, task: Task, fold: Fold, result: FoldResult, run_dir: Path, timings: dict[str, Any]
) -> RunMetrics:
    """Score the held-out fold, decide between the task's own labels and tuned thresholds (``choose_thresholds``),
    and write the predictions, the submission and ``metrics.json`` (one layout for every task)."""
    held, test, val, tst = fold.held_out, fold.test, result.val, result.test
    labels = label_set(recipe)
    names = labels.names
    held_scores = score(held.labels, val.labels, names)
    decision, val_final, test_final = task.base_decision, val.labels, tst.labels
    probabilities = None
    if val.probs is not None and tst.probs is not None:
        choice = choose_thresholds(held.labels, val.probs, held_scores["macro_f1"], seed=recipe.data.seed)
        write_thresholds(run_dir, choice.thresholds, names)
        write_probabilities(run_dir / VAL_PROBS, held.ids, val.probs, names)
        write_probabilities(run_dir / TEST_PROBS, test.ids, tst.probs, names)
        probabilities = {
            "method": task.probability_method(recipe),
            "thresholds": thresholds_to_dict(choice.thresholds, names),
            "base": task.base_decision,
            "base_macro_f1": held_scores["macro_f1"],
            "thresholded_macro_f1_in_sample": choice.in_sample,
            "thresholded_macro_f1_cv": choice.cross_validated,
            "note": "held_out scores the base decision; in_sample tunes and scores on the same held-out rows "
            "(optimistic), cv tunes on 4/5 of them and scores the other 1/5, pooled (honest). The run uses the "
            "tuned thresholds when cv beats the base decision.",
        }
        if choice.use:
            decision = "thresholds"
            val_final = apply_thresholds(val.probs, choice.thresholds)
            test_final = apply_thresholds(tst.probs, choice.thresholds)
    write_predictions(run_dir / VAL_PREDICTIONS, held.ids, val_final, val.outputs, names)
    write_predictions(run_dir / TEST_PREDICTIONS, test.ids, test_final, tst.outputs, names)
    write_submission(run_dir / SUBMISSION, test.ids, test_final, names, columns(recipe).id_header)
    metrics = RunMetrics(
        recipe=recipe.name,
        task=recipe.task,
        model=task.describe_model(recipe),
        held_out={**held_out_split(fold), **held_scores},
        decision=decision,
        held_out_final_macro_f1=macro_f1(held.labels, val_final),
        probabilities=probabilities,
        outputs=output_counts(val.outputs, tst.outputs, recipe.prompt.target_format, labels),
        test_rows=len(test),
        test=gold_test_scores(test, test_final, names),
        training=result.training,
        timings=timings,
        data=fold.source.data,
        backend=recipe.generate.backend if val.outputs is not None else None,
        machine=machine(),
    )
    write_run_metrics(run_dir, metrics)
    log.info(
        "held-out macro-F1 %.4f (%s), %.4f as submitted (%s); micro-F1 %.4f, jaccard %.4f; wrote %s",
        held_scores["macro_f1"],
        task.base_decision,
        metrics.held_out_final_macro_f1,
        decision,
        held_scores["micro_f1"],
        held_scores["jaccard"],
        run_dir / SUBMISSION,
    )
    if metrics.test is not None:
        log_test_scores(metrics.test)
    return metrics


def gold_test_scores(test: EmotionData, predicted: np.ndarray, names: tuple[str, ...]) -> dict[str, Any] | None:
    """The submission's scores on the test split, where the data gives its gold labels (a hub dataset's test split);
    ``None`` where it does not (the Kaggle test file)."""
    return None if test.labels is None else score(test.labels, predicted, names)


def log_test_scores(scores: dict[str, Any]) -> None:
    log.info(
        "test split (%d rows, gold labels): macro-F1 %.4f as submitted; micro-F1 %.4f, jaccard %.4f",
        scores["rows"],
        scores["macro_f1"],
        scores["micro_f1"],
        scores["jaccard"],
    )


def held_out_split(fold: Fold) -> dict[str, Any]:
    """What ``metrics.json`` says was held out: the validation split as given, or a fold of the training split."""
    return {"split": VALIDATION} if fold.given else {"fold": fold.index, "folds": fold.folds}


def output_counts(
    val: list[str] | None, test: list[str] | None, target_format: str, labels: LabelSet
) -> dict[str, Any] | None:
    """How many generated outputs are strings of the output grammar (``None`` for tasks that generate none)."""
    if val is None or test is None:
        return None
    outputs = val + test
    canonical = sum(labels.is_canonical(o, target_format) for o in outputs)
    return {"total": len(outputs), "canonical": canonical, "canonical_share": canonical / max(len(outputs), 1)}
