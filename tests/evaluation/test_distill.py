"""``gen-emotion distill``: the embedded MiniLM cross-validated on a slice of the Kaggle data (its first 300 training
and 40 test rows, from ``../shared/data``) with a TF-IDF ensemble's out-of-fold probabilities as soft targets (1 epoch
on 120 rows, 2 folds); the folder, its figures against a recomputation, a resume, and the refusals that come before
any training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, first_rows

from gen_emotion.cli.parser import main
from gen_emotion.config.recipes import load_recipe
from gen_emotion.evaluation.cv import run_cv
from gen_emotion.evaluation.ensemble import run_ensemble
from gen_emotion.runs.folder import load_member, load_run_recipe
from gen_emotion.scoring.metrics import macro_f1
from gen_emotion.scoring.prediction_files import read_probabilities
from gen_emotion.scoring.thresholds import cross_validated_predictions

KAGGLE = REPO_ROOT.parent / "shared" / "data"  # the Kaggle data beside the clone (never committed)
STUDENT = ["train.epochs=1", "train.batch_size=16", "classifier.max_length=48", "train.logging_steps=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return first_rows(KAGGLE, tmp_path_factory.mktemp("kaggle") / "slice", 300, 40)


@pytest.fixture(scope="module")
def teacher(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ensemble of two TF-IDF cvs of the whole slice (300 rows, 3 folds): the teacher."""
    root = tmp_path_factory.mktemp("teacher")
    for name, c in (("a", "4.0"), ("b", "0.5")):
        run_cv(load_recipe("tfidf-logreg", [f"classifier.logreg_c={c}"]), data, root / name, folds=3)
    run_ensemble([root / "a", root / "b"], root / "ensemble")
    return root / "ensemble"


@pytest.fixture(scope="module")
def distilled(data: Path, teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("student") / "minilm"
    command = ["distill", str(teacher), "minilm-l6-cpu", *STUDENT, "--alpha", "0.6", "--temperature", "2"]
    command += ["--data", str(data)]
    assert main([*command, "--folds", "2", "--rows", "120", "--out", str(out)]) == 0
    return out, command


def test_the_student_is_a_cv_folder_trained_on_the_teachers_probabilities(distilled, teacher: Path) -> None:
    out, _ = distilled
    recipe = load_run_recipe(out)
    assert recipe.distill.teacher == str((out / "teacher_probs.csv").resolve())
    assert (recipe.distill.alpha, recipe.distill.temperature) == (0.6, 2.0)
    ids, probs = read_probabilities(out / "teacher_probs.csv")
    ensemble = load_member(teacher)
    assert ids == ensemble.ids and np.allclose(probs, ensemble.oof_probs, atol=1e-6)
    log = (out / "run.log").read_text()
    assert log.count("soft targets from") == 2 and "alpha 0.6, temperature 2" in log
    student = load_member(out)  # predict, export, serve and ensemble read it so
    assert len(student.ids) == 120 and student.oof_probs.shape == (120, 11) and len(student.test_ids) == 40


def test_distill_json_says_both_figures_as_recomputed(distilled, teacher: Path) -> None:
    out, _ = distilled
    summary = json.loads((out / "distill.json").read_text())
    student, ensemble = load_member(out), load_member(teacher)
    seed = load_run_recipe(out).data.seed
    position = {row_id: i for i, row_id in enumerate(ensemble.ids)}
    teacher_probs = ensemble.oof_probs[[position[row_id] for row_id in student.ids]]
    y = student.labels
    student_f1 = macro_f1(y, cross_validated_predictions(y, student.oof_probs, seed=seed))
    teacher_f1 = macro_f1(y, cross_validated_predictions(y, teacher_probs, seed=seed))
    assert summary["rows"] == 120
    assert summary["student_honest_macro_f1"] == pytest.approx(student_f1)
    assert summary["teacher_honest_macro_f1"] == pytest.approx(teacher_f1)
    # the student's own cv figure is the same honest figure (same rows, seed and splits)
    oof = json.loads((out / "oof_metrics.json").read_text())
    assert oof["macro_f1_thresholds_cv"] == pytest.approx(student_f1)
    gap = summary["student_minus_teacher"]
    assert gap["diff"] == pytest.approx(student_f1 - teacher_f1) and gap["ci95"][0] <= gap["diff"] <= gap["ci95"][1]


def test_a_rerun_resumes_and_refusals_come_before_training(
    distilled, data: Path, teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, command = distilled
    before = json.loads((out / "distill.json").read_text())
    assert main([*command, "--folds", "2", "--rows", "120", "--out", str(out)]) == 0
    assert "student minus teacher" in capsys.readouterr().out
    after = json.loads((out / "distill.json").read_text())
    assert {k: after[k] for k in before if k != "wall_s"} == {k: before[k] for k in before if k != "wall_s"}
    assert (out / "run.log").read_text().count("saved, skipping") == 2
    # another teacher on the same folder
    other = tmp_path / "other-teacher"
    run_cv(load_recipe("tfidf-logreg"), data, other, folds=2)
    assert main([*command[:1], str(other), *command[2:], "--folds", "2", "--rows", "120", "--out", str(out)]) == 2
    assert "started with another teacher's probabilities" in capsys.readouterr().err
    # a teacher that never scored some of the rows
    small = tmp_path / "small-teacher"
    run_cv(load_recipe("tfidf-logreg"), data, small, folds=2, rows=60)
    refused = ["distill", str(small), "minilm-l6-cpu", "--data", str(data), "--rows", "120"]
    assert main([*refused, "--out", str(tmp_path / "s")]) == 2
    assert "has no out-of-fold probability in" in capsys.readouterr().err
    # a student that is not a classifier, and a teacher that is not a finished folder
    assert main(["distill", str(teacher), "tfidf-logreg", "--data", str(data), "--out", str(tmp_path / "t")]) == 2
    assert "distill trains a classifier on soft targets (task: classify)" in capsys.readouterr().err
    assert main(["distill", str(tmp_path), "minilm-l6-cpu", "--out", str(tmp_path / "u")]) == 2
    assert "no oof_metrics.json" in capsys.readouterr().err
    for folder in ("s", "t", "u"):
        assert not (tmp_path / folder / "recipe.yaml").exists()
