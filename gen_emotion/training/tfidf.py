"""The TF-IDF + logistic regression baseline (``task: tfidf``).

Word 1-2-grams (and, by default, character 2-5-grams inside word boundaries), sublinear TF-IDF, and
one logistic regression per label with balanced class weights, so rare labels are not ignored.
Its probabilities go through the same per-label thresholds as every other model.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import ClassifierArgs
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import open_output, write_json
from gen_emotion.data.dataset import EmotionData
from gen_emotion.training.trainers import TRAINING_SUMMARY

MODEL_FILE = "tfidf_logreg.pkl"


def build_model(settings: ClassifierArgs, n_rows: int = 1000) -> Any:
    """An unfitted scikit-learn pipeline: TF-IDF features -> one-vs-rest logistic regression (n-grams
    seen in fewer than 2 rows are dropped, except on a slice of under 200 rows)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import FeatureUnion, make_pipeline

    min_df = 2 if n_rows >= 200 else 1
    features = [("word", TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True))]
    if settings.char_ngrams:
        features.append(
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=min_df, sublinear_tf=True))
        )
    classifier = LogisticRegression(C=settings.logreg_c, class_weight="balanced", max_iter=2000, solver="liblinear")
    return make_pipeline(FeatureUnion(features), OneVsRestClassifier(classifier))


def train_tfidf(settings: ClassifierArgs, train_data: EmotionData, out_dir: Path) -> dict[str, Any]:
    """Fit the baseline on ``train_data`` and save it as ``out_dir/tfidf_logreg.pkl``; return figures."""
    import warnings

    if train_data.labels is None:
        raise GenEmotionError(f"{train_data.source}: training needs labels")
    started = time.perf_counter()
    model = build_model(settings, len(train_data))
    with warnings.catch_warnings():  # a label absent from a tiny slice is predicted constant, by design
        warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
        warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
        model.fit(_texts(train_data), train_data.labels)
    with open_output(out_dir / MODEL_FILE, binary=True) as handle:  # whole or not at all: it marks the fit done
        pickle.dump(model, handle)
    summary = {
        "model_dir": str(out_dir),
        "train_rows": len(train_data),
        "features": int(sum(len(t.vocabulary_) for _, t in model[0].transformer_list)),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json(out_dir / TRAINING_SUMMARY, summary)
    return summary


def _texts(data: EmotionData) -> list[str]:
    return [text if text.strip() else " " for text in data.texts]


def load_tfidf(model_dir: Path) -> Any:
    """The fitted pipeline saved by ``train_tfidf`` (a pickle the toolkit wrote itself)."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise GenEmotionError(f"{model_dir}: no {MODEL_FILE}; train it with a task: tfidf recipe")
    with path.open("rb") as handle:
        return pickle.load(handle)  # noqa: S301 - our own file


def tfidf_probabilities(model_dir: Path, data: EmotionData, model: Any = None) -> np.ndarray:
    """Per-label probabilities ``(len(data), 11)`` (``model``: the pipeline already loaded from ``model_dir``)."""
    model = model if model is not None else load_tfidf(model_dir)
    probs = np.asarray(model.predict_proba(_texts(data)), dtype=np.float64)
    width = len(data.label_names)
    if probs.shape != (len(data), width):
        raise GenEmotionError(f"{model_dir}: the model gave shape {probs.shape}, expected ({len(data)}, {width})")
    return np.clip(probs, 0.0, 1.0)
