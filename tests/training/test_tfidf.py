"""The TF-IDF + logistic regression baseline on the shipped sample (seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gen_emotion.config.recipes import load_recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import NUM_LABELS
from gen_emotion.data.dataset import EmotionData
from gen_emotion.data.formats import read_test, read_train
from gen_emotion.scoring.metrics import macro_f1
from gen_emotion.scoring.thresholds import apply_thresholds, tune_thresholds
from gen_emotion.training.tfidf import MODEL_FILE, build_model, load_tfidf, tfidf_probabilities, train_tfidf


@pytest.fixture
def recipe():
    return load_recipe("recipes/tfidf-logreg.yaml")


def test_fits_saves_and_predicts_probabilities(recipe, sample_dir: Path, tmp_path: Path) -> None:
    train, test = read_train(sample_dir / "train.csv"), read_test(sample_dir / "test.csv")
    summary = train_tfidf(recipe.classifier, train, tmp_path)
    assert (tmp_path / MODEL_FILE).is_file() and (tmp_path / "training.json").is_file()
    assert summary["train_rows"] == len(train) and summary["features"] > 0
    probs = tfidf_probabilities(tmp_path, test)
    assert probs.shape == (len(test), NUM_LABELS)
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    assert probs.std(axis=0).min() > 0  # every label's probability varies across tweets


def test_learns_the_training_rows(recipe, sample_dir: Path, tmp_path: Path) -> None:
    train = read_train(sample_dir / "train.csv")
    train_tfidf(recipe.classifier, train, tmp_path)
    probs = tfidf_probabilities(tmp_path, train)
    assert macro_f1(train.labels, apply_thresholds(probs, tune_thresholds(train.labels, probs))) > 0.8


def test_char_ngrams_switch(recipe, sample_dir: Path) -> None:
    texts = read_train(sample_dir / "train.csv").texts
    recipe.classifier.char_ngrams = False
    assert [name for name, _ in build_model(recipe.classifier)[0].transformer_list] == ["word"]
    recipe.classifier.char_ngrams = True
    union = build_model(recipe.classifier)[0].fit(texts)
    assert [name for name, _ in union.transformer_list] == ["word", "char"]


def test_absent_label_and_empty_tweet(recipe, tmp_path: Path) -> None:
    labels = np.zeros((6, NUM_LABELS), dtype=np.int64)
    labels[[0, 2, 4], 0] = 1  # only anger ever occurs
    texts = ["so angry", "lovely day", "furious again", "nice walk", "rage", ""]
    data = EmotionData(ids=[str(i) for i in range(6)], texts=texts, labels=labels)
    train_tfidf(recipe.classifier, data, tmp_path)
    probs = tfidf_probabilities(tmp_path, data)
    assert probs.shape == (6, NUM_LABELS)
    assert np.allclose(probs[:, 1:], 0.0)  # a label never seen is never predicted
    assert probs[0, 0] > probs[1, 0]


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GenEmotionError, match=MODEL_FILE):
        load_tfidf(tmp_path)
