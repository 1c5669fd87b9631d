"""``run`` a recipe (one held-out fold of ``train.csv``, trained and scored, and the test file predicted) and
``predict`` any file with a finished run.

A run folder holds the resolved recipe (``recipe.yaml``), the task's model (``adapter/``, ``model/`` or
``tfidf_logreg.pkl``), ``val_predictions.csv``, ``test_predictions.csv``, ``submission.csv``,
``metrics.json`` and ``run.log``, plus ``val_probs.csv``, ``test_probs.csv`` and ``thresholds.json`` where the
task gives probabilities. A run is one fold of ``cv`` (``steps.fit_predict``); each step is skipped when its
output exists, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.data import SEMEVAL_COLUMNS, Columns, EmotionData, read_test
from gen_emotion.errors import GenEmotionError
from gen_emotion.export import write_predictions, write_probabilities, write_submission
from gen_emotion.files import read_json, write_json
from gen_emotion.labels import LabelSet
from gen_emotion.metrics import macro_f1, score
from gen_emotion.recipes import Recipe, apply_override, columns, label_set, recipe_from_dict, with_header_labels
from gen_emotion.runs import load_run_recipe, machine, prepare_run_dir, read_data, sample_data_dir, setup_logging
from gen_emotion.steps import Fold, FoldResult, Launcher, fit_predict
from gen_emotion.tasks import Task, get_task
from gen_emotion.thresholds import apply_thresholds, choose_thresholds, thresholds_from_dict, thresholds_to_dict

log = logging.getLogger("gen_emotion")

METRICS = "metrics.json"
THRESHOLDS = "thresholds.json"


def run_recipe(
    recipe: Recipe,
    data_dir: Path | None,
    run_dir: Path,
    *,
    task: Task | None = None,
    launcher: Launcher | None = None,
) -> dict[str, Any]:
    """Hold out fold ``data.fold`` of ``data_dir/train.csv``, train the recipe's task on the rest, predict the
    fold and ``data_dir/test.csv``, score, and write everything to ``run_dir``. Returns the metrics."""
    task = task or get_task(recipe.task)
    data_dir = data_dir or sample_data_dir()
    started = time.perf_counter()
    data = read_data(data_dir, None, columns(recipe))
    recipe = with_header_labels(recipe, data[0].label_names)
    fold = Fold.load(data_dir, None, recipe.data.folds, recipe.data.fold, recipe.data.seed, data=data)
    data_s = round(time.perf_counter() - started, 2)
    prepare_run_dir(recipe, run_dir)
    setup_logging(run_dir)
    log.info(
        "data: %d training rows (%d in the training folds, %d held out as fold %d of %d), %d test rows from %s",
        len(fold.full),
        len(fold.train_idx),
        len(fold.val_idx),
        recipe.data.fold,
        recipe.data.folds,
        len(fold.test),
        data_dir,
    )
    result = fit_predict(recipe, fold, run_dir, run_dir, task=task, launcher=launcher)
    timings = {"data_s": data_s, "train_s": result.training.get("seconds"), **result.seconds}
    return finish_run(recipe, task, fold, result, run_dir, timings)


def finish_run(
    recipe: Recipe, task: Task, fold: Fold, result: FoldResult, run_dir: Path, timings: dict[str, Any]
) -> dict[str, Any]:
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
        write_json(run_dir / THRESHOLDS, thresholds_to_dict(choice.thresholds, names))
        write_probabilities(run_dir / "val_probs.csv", held.ids, val.probs, names)
        write_probabilities(run_dir / "test_probs.csv", test.ids, tst.probs, names)
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
    write_predictions(run_dir / "val_predictions.csv", held.ids, val_final, val.outputs, names)
    write_predictions(run_dir / "test_predictions.csv", test.ids, test_final, tst.outputs, names)
    write_submission(run_dir / "submission.csv", test.ids, test_final, names, recipe.data.id_column)
    metrics = {
        "recipe": recipe.name,
        "task": recipe.task,
        "model": task.describe_model(recipe),
        "held_out": {"fold": fold.index, "folds": fold.folds, **held_scores},
        "decision": decision,
        "held_out_final_macro_f1": macro_f1(held.labels, val_final),
        "probabilities": probabilities,
        "outputs": output_counts(val.outputs, tst.outputs, recipe.prompt.target_format, labels),
        "test_rows": len(test),
        "training": result.training,
        "timings": timings,
        "data": str(fold.data_dir),
        "backend": recipe.generate.backend if val.outputs is not None else None,
        "machine": machine(),
    }
    write_json(run_dir / METRICS, metrics)
    log.info(
        "held-out macro-F1 %.4f (%s), %.4f as submitted (%s); micro-F1 %.4f, jaccard %.4f; wrote %s",
        held_scores["macro_f1"],
        task.base_decision,
        metrics["held_out_final_macro_f1"],
        decision,
        held_scores["micro_f1"],
        held_scores["jaccard"],
        run_dir / "submission.csv",
    )
    return metrics


def output_counts(
    val: list[str] | None, test: list[str] | None, target_format: str, labels: LabelSet
) -> dict[str, Any] | None:
    """How many generated outputs are strings of the output grammar (``None`` for tasks that generate none)."""
    if val is None or test is None:
        return None
    outputs = val + test
    canonical = sum(labels.is_canonical(o, target_format) for o in outputs)
    return {"total": len(outputs), "canonical": canonical, "canonical_share": canonical / max(len(outputs), 1)}


def read_inputs(path: Path, columns: Columns = SEMEVAL_COLUMNS) -> EmotionData:
    """Texts to predict: a data file with the run's ID and text columns, or a ``.txt`` file with one
    text per line (IDs are the line numbers, from 1; blank lines are texts too, never dropped)."""
    if path.suffix.lower() == ".txt":
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise GenEmotionError(f"{path}: cannot read as UTF-8 text ({err})") from None
        if not lines:
            raise GenEmotionError(f"{path}: file is empty")
        return EmotionData(ids=[str(i) for i in range(1, len(lines) + 1)], texts=lines, labels=None, source=str(path))
    return read_test(path, columns)


def _run_for_prediction(run_dir: Path, overrides: list[str] | tuple[str, ...], backend: str | None) -> Recipe:
    """The run's recipe with ``generate.*`` overrides (and ``--backend``) applied."""
    recipe = load_run_recipe(run_dir)
    values = recipe.to_dict()
    for override in overrides:
        if not override.startswith("generate."):
            raise GenEmotionError(f"predict takes generate.* overrides only (the model is trained), got {override!r}")
        apply_override(values, override)
    if backend:
        apply_override(values, f"generate.backend={backend}")
    changed = recipe_from_dict(values, where=str(run_dir / "recipe.yaml"))
    if recipe.generate.probabilities and changed.generate.probability_source != recipe.generate.probability_source:
        raise GenEmotionError(
            f"{run_dir}: its thresholds were tuned on {recipe.generate.probability_source} probabilities; "
            "predict keeps generate.probability_source"
        )
    return changed


def run_thresholds(run_dir: Path, task: Task, with_probs: bool, names: tuple[str, ...]) -> np.ndarray | None:
    """The cut a prediction of this run applies to probabilities: the run's tuned thresholds where it chose
    them (a generation run: whenever ``--probs`` asks), 0.5 where it kept the 0.5 cut, ``None`` for greedy."""
    if task.base_decision == "greedy":
        if not with_probs:
            return None
        if not (run_dir / THRESHOLDS).is_file():
            raise GenEmotionError(
                f"{run_dir}: has no {THRESHOLDS}; train it with generate.probabilities=true to use --probs"
            )
        return _read_thresholds(run_dir, names)
    if not (run_dir / METRICS).is_file():
        raise GenEmotionError(f"{run_dir}: the run did not finish (no {METRICS}); run it again to finish it")
    metrics = read_json(run_dir / METRICS, "the run's metrics written by gen-emotion run")
    return _read_thresholds(run_dir, names) if metrics.get("decision") == "thresholds" else np.full(len(names), 0.5)


def _read_thresholds(run_dir: Path, names: tuple[str, ...]) -> np.ndarray:
    values = read_json(run_dir / THRESHOLDS, "one threshold per label")
    try:
        return thresholds_from_dict(values, names)
    except (ValueError, TypeError) as err:
        raise GenEmotionError(f"{run_dir / THRESHOLDS}: damaged ({err}); expected one threshold per label") from None


def predict_file(
    run_dir: Path,
    input_path: Path,
    out_path: Path,
    backend: str | None = None,
    with_probs: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Predict any file with a finished run; where the run has probabilities, also write ``OUT_probs.csv``
    and apply the run's thresholds. Saved shards beside ``out_path`` let an interrupted call resume."""
    task = get_task(load_run_recipe(run_dir).task)
    if task.base_decision != "greedy" and (backend or overrides or with_probs):
        raise GenEmotionError(f"{run_dir}: a classifier run takes no --backend, --probs or overrides")
    recipe = _run_for_prediction(run_dir, overrides, backend)
    if not task.is_fitted(run_dir):
        raise GenEmotionError(f"{run_dir}: not a trained run folder (no finished training in it)")
    names = label_set(recipe).names
    cut = run_thresholds(run_dir, task, with_probs, names)
    setup_logging(None)
    data = read_inputs(input_path, replace(columns(recipe), labels=names))
    shard_root = out_path.parent / f".{out_path.name}.shards" / recipe.generate.backend
    options = {"shard_root": shard_root, "with_probs": with_probs}
    prediction = task.predict(recipe, run_dir, {"predict": data}, **options)["predict"]
    labels = prediction.labels
    if cut is not None and prediction.probs is not None:
        labels = apply_thresholds(prediction.probs, cut)
        write_probabilities(out_path.with_name(f"{out_path.stem}_probs.csv"), data.ids, prediction.probs, names)
    write_predictions(out_path, data.ids, labels, prediction.outputs, names)
    return {"rows": len(data), "seconds": prediction.seconds, "thresholds": cut is not None}
