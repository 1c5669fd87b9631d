"""K-fold cross-validation with the TF-IDF task on the shipped sample (seconds): out-of-fold coverage,
thresholds, averaged test probabilities, the submission, resuming fold by fold, and the command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from gen_emotion.cli.parser import main
from gen_emotion.config.recipes import load_recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS
from gen_emotion.data.folds import fold_indices
from gen_emotion.data.formats import read_label_file, read_test, read_train
from gen_emotion.evaluation.cv import run_cv
from gen_emotion.scoring.prediction_files import read_probabilities as read_probs
from gen_emotion.scoring.prediction_files import write_probabilities as write_probs
from gen_emotion.scoring.thresholds import apply_thresholds, thresholds_from_dict

RUN_FILES = (
    "recipe.yaml",
    "cv.json",
    "oof_probs.csv",
    "oof_predictions.csv",
    "oof_labels.csv",
    "thresholds.json",
    "test_probs.csv",
    "test_predictions.csv",
    "submission.csv",
    "oof_metrics.json",
)


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("cv") / "tfidf"
    metrics = run_cv(load_recipe("recipes/tfidf-logreg.yaml"), None, run_dir, folds=5)
    return run_dir, metrics


def test_writes_a_complete_cv_folder(cv_run) -> None:
    run_dir, metrics = cv_run
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    for k in range(5):
        fold = run_dir / "folds" / f"fold-{k}"
        assert {"fold.json", "val_probs.csv", "test_probs.csv", "tfidf_logreg.pkl"} <= {p.name for p in fold.iterdir()}
    assert json.loads((run_dir / "oof_metrics.json").read_text()) == metrics.to_dict()


def test_every_training_row_is_predicted_exactly_once(cv_run, sample_dir: Path) -> None:
    run_dir, _ = cv_run
    train = read_train(sample_dir / "train.csv")
    seen: list[str] = []
    for k in range(5):
        ids, _ = read_probs(run_dir / "folds" / f"fold-{k}" / "val_probs.csv")
        seen += ids
    assert sorted(seen) == sorted(train.ids) and len(seen) == len(set(seen))
    # the folds are data.fold_indices' multilabel-stratified split
    expected = fold_indices(train.labels, 5, 42)
    first, _ = read_probs(run_dir / "folds" / "fold-0" / "val_probs.csv")
    assert first == [train.ids[i] for i in expected[0][1]]
    oof_ids, oof = read_probs(run_dir / "oof_probs.csv")
    assert oof_ids == train.ids and oof.shape == (len(train), len(LABELS))
    assert read_label_file(run_dir / "oof_predictions.csv").ids == train.ids
    gold = read_label_file(run_dir / "oof_labels.csv")
    assert gold.ids == train.ids and np.array_equal(gold.labels, train.labels)


def test_thresholds_and_averaged_test_probabilities(cv_run, sample_dir: Path) -> None:
    run_dir, metrics = cv_run
    thresholds = thresholds_from_dict(json.loads((run_dir / "thresholds.json").read_text()))
    _, oof = read_probs(run_dir / "oof_probs.csv")
    assert np.array_equal(read_label_file(run_dir / "oof_predictions.csv").labels, apply_thresholds(oof, thresholds))
    folds = [read_probs(run_dir / "folds" / f"fold-{k}" / "test_probs.csv")[1] for k in range(5)]
    test_ids, test_probs = read_probs(run_dir / "test_probs.csv")
    assert np.allclose(test_probs, np.mean(folds, axis=0), atol=2e-6)
    test = read_test(sample_dir / "test.csv")
    submission = read_label_file(run_dir / "submission.csv")
    assert submission.ids == test.ids == test_ids
    assert np.array_equal(submission.labels, apply_thresholds(test_probs, thresholds))
    assert metrics.rows == 300 and metrics.test_rows == len(test)


def test_metrics_hold_per_fold_scores_time_and_memory(cv_run) -> None:
    _, metrics = cv_run
    assert 0 < metrics.macro_f1 <= 1 and 0 < metrics.micro_f1 <= 1 and 0 < metrics.jaccard <= 1
    assert metrics.macro_f1 >= metrics.macro_f1_thresholds_cv - 1e-9  # in-sample tuning is optimistic
    assert [f["fold"] for f in metrics.per_fold] == list(range(5))
    assert sum(f["rows"] for f in metrics.per_fold) == 300
    scores = [f["macro_f1"] for f in metrics.per_fold]
    assert metrics.per_fold_macro_f1_std == pytest.approx(float(np.std(scores)))
    assert metrics.wall_s > 0 and metrics.peak_rss_mib > 50
    assert set(metrics.per_label) == set(LABELS) and metrics.has_probabilities is True


def test_resumes_fold_by_fold(sample_dir: Path, tmp_path: Path) -> None:
    recipe = load_recipe("recipes/tfidf-logreg.yaml")
    first = run_cv(recipe, sample_dir, tmp_path / "run", folds=3)
    kept = tmp_path / "run" / "folds" / "fold-0" / "val_probs.csv"
    os.utime(kept, (1, 1))
    (tmp_path / "run" / "folds" / "fold-2" / "fold.json").unlink()  # as if killed during fold 2
    (tmp_path / "run" / "oof_metrics.json").unlink()
    second = run_cv(recipe, sample_dir, tmp_path / "run", folds=3)
    assert kept.stat().st_mtime == 1  # fold 0 was read back, not trained again
    assert (tmp_path / "run" / "folds" / "fold-2" / "fold.json").is_file()
    assert second.macro_f1 == pytest.approx(first.macro_f1)


def test_refuses_to_resume_with_other_settings(sample_dir: Path, tmp_path: Path) -> None:
    recipe = load_recipe("recipes/tfidf-logreg.yaml")
    run_cv(recipe, sample_dir, tmp_path / "run", folds=2, rows=60)
    with pytest.raises(GenEmotionError, match="folds"):
        run_cv(recipe, sample_dir, tmp_path / "run", folds=3, rows=60)
    with pytest.raises(GenEmotionError, match="different recipe"):
        run_cv(load_recipe("recipes/tfidf-logreg.yaml", ["classifier.logreg_c=1"]), sample_dir, tmp_path / "run", 2, 60)


def test_a_resume_on_changed_data_is_refused_until_restarted(sample_dir: Path, tmp_path: Path, capsys) -> None:
    import shutil

    data, out = tmp_path / "data", tmp_path / "cv"
    shutil.copytree(sample_dir, data)
    args = ["cv", "tfidf-logreg", "--folds", "2", "--data", str(data), "--out", str(out)]
    assert main(args) == 0
    fingerprint = json.loads((out / "data.json").read_text())
    assert fingerprint["train"]["file"] == "train.csv" and len(fingerprint["test"]["sha256"]) == 64
    lines = (data / "train.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (data / "train.csv").write_text("".join(lines[:-1]), encoding="utf-8")  # one row fewer
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "was started on other data (train changed since: train.csv was" in err
    assert "--restart" in err
    assert main([*args, "--restart"]) == 0
    assert json.loads((out / "oof_metrics.json").read_text())["rows"] == len(lines) - 2  # header, the cut row
    assert json.loads((out / "data.json").read_text())["train"] != fingerprint["train"]
    assert main(args) == 0  # the same data again: resumes


def test_rows_cut_both_files(sample_dir: Path, tmp_path: Path) -> None:
    metrics = run_cv(load_recipe("recipes/tfidf-logreg.yaml"), sample_dir, tmp_path / "run", folds=2, rows=50)
    assert metrics.rows == 50 and metrics.test_rows == 50
    assert len(read_label_file(tmp_path / "run" / "submission.csv").ids) == 50


def test_probability_files_round_trip_and_errors(tmp_path: Path) -> None:
    probs = np.random.default_rng(0).random((4, len(LABELS)))
    write_probs(tmp_path / "p.csv", ["a", "b", "c", "d"], probs)
    ids, back = read_probs(tmp_path / "p.csv")
    assert ids == ["a", "b", "c", "d"] and np.allclose(back, probs, atol=1e-6)
    (tmp_path / "bad.csv").write_text("ID,anger\nx,0.5\n")
    with pytest.raises(GenEmotionError, match="header"):
        read_probs(tmp_path / "bad.csv")
    with pytest.raises(ValueError):
        write_probs(tmp_path / "q.csv", ["a"], np.full((1, len(LABELS)), 1.5))


def test_command(sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["cv", "tfidf-logreg", "--folds", "2", "--rows", "60", "--out", str(out), "--drop-models"]) == 0
    printed = capsys.readouterr().out
    assert "out-of-fold macro-F1" in printed and str(out) in printed
    assert not (out / "folds" / "fold-0" / "tfidf_logreg.pkl").exists()
    assert main(["cv", "tfidf-logreg", "--data", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["cv", "tfidf-logreg", "train.nope=1", "--out", str(tmp_path / "x")]) == 2
    assert main(["cv", "tfidf-logreg", "task=banana", "--out", str(tmp_path / "y")]) == 2


def test_run_command_trains_a_tfidf_recipe_on_one_held_out_fold(sample_dir: Path, tmp_path: Path) -> None:
    """``gen-emotion run`` on a classify/tfidf recipe writes the run folder a generative run writes."""
    from gen_emotion.cli.parser import main as cli_main
    from gen_emotion.data.folds import split_fold

    out = tmp_path / "run"
    assert cli_main(["run", "recipes/tfidf-logreg.yaml", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    _, held = split_fold(read_train(sample_dir / "train.csv"), 0, 10, 42)
    assert metrics["held_out"]["rows"] == len(held) and metrics["decision"] in ("thresholds", "0.5")
    assert read_label_file(out / "val_predictions.csv").ids == held.ids
    test = read_test(sample_dir / "test.csv")
    submission = read_label_file(out / "submission.csv")
    assert submission.ids == test.ids
    probs_ids, probs = read_probs(out / "test_probs.csv")
    cut = thresholds_from_dict(json.loads((out / "thresholds.json").read_text()))
    expected = apply_thresholds(probs, cut if metrics["decision"] == "thresholds" else np.full(len(LABELS), 0.5))
    assert probs_ids == test.ids and np.array_equal(submission.labels, expected)
    first = (out / "submission.csv").read_bytes()
    predicted = tmp_path / "pred.csv"
    assert cli_main(["predict", str(out), "--input", str(sample_dir / "test.csv"), "--out", str(predicted)]) == 0
    assert np.array_equal(read_label_file(predicted).labels, submission.labels)
    assert read_probs(tmp_path / "pred_probs.csv")[0] == test.ids
    assert cli_main(["run", "recipes/tfidf-logreg.yaml", "--out", str(out)]) == 0  # resumes: same files
    assert (out / "submission.csv").read_bytes() == first


def test_run_command_refuses_a_backend_for_a_classifier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gen_emotion.cli.parser import main as cli_main

    assert cli_main(["run", "recipes/tfidf-logreg.yaml", "--backend", "vllm", "--out", str(tmp_path / "r")]) == 2
    assert "--backend is for generative recipes" in capsys.readouterr().err
    assert cli_main(["run", "recipes/tfidf-logreg.yaml", "data.fold=10", "--out", str(tmp_path / "s")]) == 2
