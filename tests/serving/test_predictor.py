"""A trained folder loaded once (``gen_emotion.serving.predictor``): run, cv and ensemble folders (and their exports)
predict the data's test file exactly as the folder's own ``submission.csv`` and ``test_probs.csv`` say; a
generation task's models stay loaded in one process of their own. TF-IDF and the fake generation task here (fast);
MiniLM, a LoRA classifier and SmolLM2 with branch probabilities in ``test_classify`` and ``test_pipeline`` (slow)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE_DIR
from fake_tasks import FakeGenerateTask

from gen_emotion.cli.parser import main
from gen_emotion.config.recipes import load_recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS
from gen_emotion.data.formats import read_label_file, read_test
from gen_emotion.evaluation.cv import run_cv
from gen_emotion.scoring.prediction_files import read_probabilities
from gen_emotion.serving.notebook import EmotionModel
from gen_emotion.serving.predict_file import predict_file
from gen_emotion.serving.predictor import load_predictor
from gen_emotion.tasks.base import TASKS

TEST_CSV = SAMPLE_DIR / "test.csv"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A TF-IDF run, two 3-fold cvs (C 1 and 2), and their ensembles: averaged, weighted, stacked."""
    root = tmp_path_factory.mktemp("predictor")
    made = {name: root / name for name in ("run", "cv", "cv2", "average", "weighted", "stack")}
    assert main(["run", "tfidf-logreg", "--out", str(made["run"])]) == 0
    assert main(["cv", "tfidf-logreg", "--folds", "3", "--out", str(made["cv"])]) == 0
    assert main(["cv", "tfidf-logreg", "classifier.logreg_c=2", "--folds", "3", "--out", str(made["cv2"])]) == 0
    members = [str(made["cv"]), str(made["cv2"])]
    assert main(["ensemble", *members, "--out", str(made["average"])]) == 0
    assert main(["ensemble", *members, "--out", str(made["weighted"]), "--weighted"]) == 0
    assert main(["ensemble", *members, "--out", str(made["stack"]), "--stack"]) == 0
    return made


def assert_reproduces(folder: Path, predicted: Path) -> None:
    """``predicted`` (written by predict for the data's test file) holds the folder's own submission exactly and
    its test probabilities within 1e-5."""
    submission = read_label_file(folder / "submission.csv")
    again = read_label_file(predicted)
    assert again.ids == submission.ids and np.array_equal(again.labels, submission.labels)
    _, expected = read_probabilities(folder / "test_probs.csv")
    _, probs = read_probabilities(predicted.with_name(f"{predicted.stem}_probs.csv"))
    assert np.abs(probs - expected).max() <= 1e-5


@pytest.mark.parametrize("name", ["run", "cv", "average", "weighted", "stack"])
def test_predicting_the_test_file_reproduces_the_folders_submission(folders, name, tmp_path):
    out = tmp_path / "predicted.csv"
    assert main(["predict", str(folders[name]), "--input", str(TEST_CSV), "--out", str(out)]) == 0
    assert_reproduces(folders[name], out)
    texts = read_test(TEST_CSV).texts[:7]
    with EmotionModel.load(folders[name]) as model:
        result = model.predict(texts)
        assert np.array_equal(result.labels, read_label_file(out).labels[:7])
        assert result.probs is not None and model.predict_proba(texts).shape == (7, 11)


def test_a_stacked_ensemble_made_before_its_stacker_was_saved_fits_it_again(folders, tmp_path):
    old = tmp_path / "old-stack"
    shutil.copytree(folders["stack"], old)
    (old / "stacker.json").unlink()
    out = tmp_path / "predicted.csv"
    predict_file(old, TEST_CSV, out)
    assert_reproduces(folders["stack"], out)


def test_exported_cv_and_ensemble_folders_stand_alone(folders, tmp_path):
    """export-model writes models and combiner, no data; the copy predicts the same after the originals are gone."""
    exported = {}
    for name in ("cv", "stack"):
        exported[name] = tmp_path / f"model-{name}"
        assert main(["export-model", str(folders[name]), "--out", str(exported[name])]) == 0
    files = {p.name for p in exported["stack"].rglob("*") if p.is_file()}
    assert "oof_probs.csv" not in files and "oof_labels.csv" not in files and "submission.csv" not in files
    assert {"stacker.json", "thresholds.json", "README.md", "gen_emotion.json", "tfidf_logreg.pkl"} <= files
    card = (exported["stack"] / "README.md").read_text()
    assert "honest" in card and "stacking" in card
    moved = tmp_path / "elsewhere"
    shutil.copytree(exported["stack"], moved)
    saved = {name: (folders[name] / "submission.csv").read_bytes() for name in ("stack", "cv", "cv2")}
    for name in ("cv", "cv2"):  # the members' own folders are gone on "another machine"
        shutil.move(folders[name], tmp_path / f"away-{name}")
    try:
        out = tmp_path / "predicted.csv"
        assert main(["predict", str(moved), "--input", str(TEST_CSV), "--out", str(out)]) == 0
        assert (
            read_label_file(out).labels.tolist() == read_label_file(folders["stack"] / "submission.csv").labels.tolist()
        )
        description = json.loads((moved / "gen_emotion.json").read_text())
        assert description["kind"] == "ensemble" and description["mode"] == "stack"
    finally:
        for name in ("cv", "cv2"):
            shutil.move(tmp_path / f"away-{name}", folders[name])
    assert saved["stack"] == (folders["stack"] / "submission.csv").read_bytes()


def test_what_is_not_a_trained_folder_is_one_line(folders, tmp_path, capsys):
    def one_line(argv: list[str], match: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and match in err, err

    predict = ["--input", str(TEST_CSV), "--out", str(tmp_path / "p.csv")]
    one_line(["predict", str(tmp_path), *predict], "not a trained folder")
    one_line(["predict", str(tmp_path / "nowhere"), *predict], "no such folder")
    dropped = tmp_path / "dropped"
    shutil.copytree(folders["cv"], dropped)
    (dropped / "folds" / "fold-1" / "tfidf_logreg.pkl").unlink()
    one_line(["predict", str(dropped), *predict], "fold-1: holds no finished training")
    one_line(["export-model", str(dropped), "--out", str(tmp_path / "m")], "fold-1: holds no model")
    damaged = tmp_path / "damaged"
    shutil.copytree(folders["cv"], damaged)
    (damaged / "thresholds.json").write_text('{"anger": 0.5}')
    one_line(["predict", str(damaged), *predict], "thresholds.json: damaged")
    one_line(["export-model", str(folders["cv"]), "--merged", "--out", str(tmp_path / "m2")], "--merged")
    assert not (tmp_path / "p.csv").exists()


@pytest.fixture
def fake_generation(monkeypatch):
    """The registry's generation task is the fake one (its session process imports it by file)."""
    monkeypatch.setitem(TASKS, "generate", FakeGenerateTask)


def loads(fold_dir: Path) -> list[int]:
    """The process ids that loaded this fold's (fake) generator."""
    lines = (fold_dir / "steps.jsonl").read_text().splitlines()
    return [record["pid"] for record in map(json.loads, lines) if record["step"] == "generator loaded"]


def test_a_generation_cv_keeps_its_fold_models_loaded_in_one_process(fake_generation, tmp_path):
    recipe = load_recipe("smollm2-135m-cpu", ["generate.probabilities=true"])  # branch probabilities
    cv_dir = tmp_path / "cv"
    run_cv(recipe, SAMPLE_DIR, cv_dir, folds=3, task=FakeGenerateTask())
    before = {k: loads(cv_dir / "folds" / f"fold-{k}") for k in range(3)}
    test = read_test(TEST_CSV)
    with EmotionModel.load(cv_dir) as model:
        first = model.predict(test.texts)
        second = model.predict(test.texts[:5])
        pid = model.predictor.models.session.process.pid
    after = {k: loads(cv_dir / "folds" / f"fold-{k}") for k in range(3)}
    for k in range(3):  # each fold's generator loaded once more, in the session's one process
        assert after[k][: len(before[k])] == before[k] and after[k][len(before[k]) :] == [pid]
    assert np.array_equal(first.labels, read_label_file(cv_dir / "submission.csv").labels)
    assert np.abs(first.probs - read_probabilities(cv_dir / "test_probs.csv")[1]).max() <= 1e-5
    assert np.array_equal(second.labels, first.labels[:5])
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)  # closed: the process is gone


def test_a_generation_run_predicts_its_decision_and_resumes_from_shards(fake_generation, tmp_path):
    from gen_emotion.runs.pipeline import run_recipe

    recipe = load_recipe("smollm2-135m-cpu", ["generate.probabilities=true", "generate.shard_size=16"])
    run_dir = tmp_path / "run"
    run_recipe(recipe, SAMPLE_DIR, run_dir, task=FakeGenerateTask())
    out = tmp_path / "p.csv"
    result = predict_file(run_dir, TEST_CSV, out)
    decision = json.loads((run_dir / "metrics.json").read_text())["decision"]
    assert result["probs"] == (decision == "thresholds")
    assert read_label_file(out).labels.tolist() == read_label_file(run_dir / "submission.csv").labels.tolist()
    assert not (tmp_path / ".p.csv.shards").exists()  # the shards go once the files are written
    with load_predictor(run_dir) as predictor:
        assert predictor.generates and predictor.predict(["so happy", ""]).outputs == ["joy", "none"]
    with pytest.raises(GenEmotionError, match="generate.\\* overrides only"):
        from gen_emotion.serving.predictor import PredictSettings

        load_predictor(run_dir, PredictSettings(overrides=("train.epochs=2",)))


def test_sampled_probabilities_predicted_a_shard_at_a_time_are_the_runs_own(fake_generation, tmp_path):
    """Each shard of a file samples with the seed the run gave that shard (``train.seed`` + its index), so predict
    reproduces a run's sampled probabilities beyond its first shard."""
    from gen_emotion.runs.pipeline import run_recipe
    from gen_emotion.serving.predictor import PredictSettings

    overrides = ["generate.probabilities=true", "generate.probability_source=samples", "generate.shard_size=16"]
    run_dir = tmp_path / "run"
    run_recipe(load_recipe("smollm2-135m-cpu", overrides), SAMPLE_DIR, run_dir, task=FakeGenerateTask())
    assert len(read_test(TEST_CSV)) > 2 * 16  # three shards or more
    out = tmp_path / "p.csv"
    predict_file(run_dir, TEST_CSV, out, PredictSettings(with_probs=True))
    assert_reproduces(run_dir, out)


def test_empty_and_single_text_calls(folders):
    with EmotionModel.load(folders["weighted"]) as model:
        assert model.predict([]).labels.shape == (0, len(LABELS))
        with pytest.raises(GenEmotionError, match="list of texts"):
            model.predict("one text")
