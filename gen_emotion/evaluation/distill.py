"""Distillation: one model of a classifier recipe trained on an ensemble's out-of-fold probabilities, as a cv.

``gen-emotion distill TEACHER RECIPE`` writes the teacher's out-of-fold probabilities into the new cv folder
(``teacher_probs.csv``), points the recipe's ``distill.teacher`` at them and runs the ordinary ``cv``: every fold
trains on its rows' gold labels and soft targets (``training.distillation``), so the folder is a cv folder like any
other (predict, export, serve, ensemble, report) and its honest out-of-fold figure is comparable. At the end
``distill.json`` puts the student's honest macro-F1 beside the teacher's on the same rows, with thresholds tuned on
the same splits for both and a paired bootstrap interval of the difference (``metrics.paired_bootstrap``).

Said plainly: a teacher's out-of-fold probability for a training row comes from a fold model that was trained on
other rows, the student's held-out rows among them; through the soft targets the student learns a little of those
rows' labels. Its out-of-fold figure is therefore not as clean as a plain cv's. ``docs/evaluation.md`` (Distillation)
says what was measured.
"""

from __future__ import annotations

import filecmp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import data_source, load_recipe
from gen_emotion.config.task_kinds import task_kind
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import make_folder, write_json
from gen_emotion.data.dataset import sample_data_dir
from gen_emotion.data.sources import read_splits
from gen_emotion.evaluation.cv import run_cv
from gen_emotion.runs.folder import DISTILL_FILE, OOF_PROBS, TEACHER_PROBS, Member, load_member
from gen_emotion.scoring.metrics import macro_f1, paired_bootstrap
from gen_emotion.scoring.prediction_files import reindex, write_probabilities
from gen_emotion.scoring.run_metrics import CvMetrics
from gen_emotion.scoring.thresholds import cross_validated_predictions


def load_teacher(teacher_dir: Path) -> Member:
    """A finished cv or ensemble folder with out-of-fold probabilities; error naming what it lacks."""
    teacher = load_member(teacher_dir)
    if teacher.oof_probs is None:
        raise GenEmotionError(
            f"{teacher_dir}: no {OOF_PROBS} (its runs gave 0/1 predictions, a vote): distillation needs the "
            "teacher's probabilities"
        )
    return teacher


def write_teacher(teacher: Member, out: Path, restart: bool) -> Path:
    """``out/teacher_probs.csv``: the teacher's out-of-fold probabilities. A resumed distillation must have the same
    teacher (``--restart`` replaces it)."""
    make_folder(out)
    target = out / TEACHER_PROBS
    staged = out / f".{TEACHER_PROBS}.new"
    write_probabilities(staged, teacher.ids, teacher.oof_probs, teacher.label_names)
    if target.is_file() and not restart and not filecmp.cmp(staged, target, shallow=False):
        staged.unlink()
        raise GenEmotionError(
            f"{out} was started with another teacher's probabilities; use a new --out, or --restart to start it over"
        )
    os.replace(staged, target)
    return target


def check_teacher_covers(teacher: Member, recipe: Any, data: str | Path | None, rows: int | None) -> None:
    """Every training row of the data has a teacher probability with the same gold labels; error naming the
    first row that does not (another data set, or other labels)."""
    source = data_source(recipe, data or sample_data_dir(), None, rows)
    train = read_splits(source).train
    if tuple(train.label_names) != tuple(teacher.label_names):
        raise GenEmotionError(
            f"{teacher.run_dir} has the labels {', '.join(teacher.label_names)}; the data has "
            f"{', '.join(train.label_names)}"
        )
    position = {row_id: i for i, row_id in enumerate(teacher.ids)}
    for i, row_id in enumerate(train.ids):
        if row_id not in position:
            raise GenEmotionError(
                f"{train.source}: ID {row_id!r} has no out-of-fold probability in {teacher.run_dir}: "
                "distil on the data the teacher was cross-validated on"
            )
        if not np.array_equal(train.labels[i], teacher.labels[position[row_id]]):
            raise GenEmotionError(
                f"{train.source}: ID {row_id!r} has other gold labels than in {teacher.run_dir}: "
                "distil on the data the teacher was cross-validated on"
            )


def compare_with_teacher(student_dir: Path, teacher: Member, seed: int) -> dict[str, Any]:
    """The student's and the teacher's honest macro-F1 on the student's rows (thresholds tuned on the same
    splits for both), and a paired bootstrap of the difference (student minus teacher)."""
    student = load_member(student_dir)
    teacher_probs = reindex(teacher.oof_probs, teacher.ids, student.ids)
    student_pred = cross_validated_predictions(student.labels, student.oof_probs, seed=seed)
    teacher_pred = cross_validated_predictions(student.labels, teacher_probs, seed=seed)
    return {
        "rows": len(student.ids),
        "student_honest_macro_f1": macro_f1(student.labels, student_pred),
        "teacher_honest_macro_f1": macro_f1(student.labels, teacher_pred),
        "student_minus_teacher": paired_bootstrap(student.labels, student_pred, teacher_pred),
    }


def run_distill(
    teacher_dir: Path,
    recipe_path: str,
    overrides: list[str],
    out: Path,
    *,
    data: str | Path | None = None,
    folds: int = 5,
    rows: int | None = None,
    alpha: float | None = None,
    temperature: float | None = None,
    restart: bool = False,
    keep_models: bool = True,
) -> tuple[CvMetrics, dict[str, Any]]:
    """Cross-validate ``recipe_path`` (a classify recipe) with the teacher's out-of-fold probabilities as soft
    targets into ``out`` (module docstring); returns the cv's metrics and what ``distill.json`` holds."""
    started = time.perf_counter()
    teacher = load_teacher(teacher_dir)
    recipe = load_recipe(recipe_path, overrides)  # checked before anything is written
    if not task_kind(recipe.task).soft_targets:
        raise GenEmotionError(
            f"distill trains a classifier on soft targets (task: classify); {recipe_path} has task {recipe.task!r}"
        )
    check_teacher_covers(teacher, recipe, data, rows)
    target = write_teacher(teacher, out, restart)
    settings = [f"distill.teacher={target.resolve()}"]
    settings += [] if alpha is None else [f"distill.alpha={alpha}"]
    settings += [] if temperature is None else [f"distill.temperature={temperature}"]
    recipe = load_recipe(recipe_path, [*overrides, *settings])
    metrics = run_cv(recipe, data, out, folds=folds, rows=rows, keep_models=keep_models, restart=restart)
    summary = {
        "teacher": str(Path(teacher_dir).resolve()),
        "teacher_name": teacher.name,
        "alpha": recipe.distill.alpha,
        "temperature": recipe.distill.temperature,
        "recipe": recipe.name,
        **compare_with_teacher(out, teacher, recipe.data.seed),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_json(out / DISTILL_FILE, summary)
    return metrics, summary
