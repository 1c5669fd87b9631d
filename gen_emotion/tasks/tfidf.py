"""The TF-IDF task (``task: tfidf``): TF-IDF features and one logistic regression per label, on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import Recipe, label_set
from gen_emotion.data.dataset import EmotionData
from gen_emotion.tasks.base import LoadedModel, ProbabilityModel, Task


class TfidfTask(Task):
    """TF-IDF features and one logistic regression per label (``baseline``): the floor, on CPU."""

    name = "tfidf"
    model_files = ("tfidf_logreg.pkl",)
    export_files = ("tfidf_logreg.pkl", "training.json")
    pod_command = None

    def describe_model(self, recipe: Recipe) -> str:
        return "tfidf + logistic regression"

    def model_title(self, recipe: Recipe) -> str:
        return "TF-IDF + logistic regression"

    def is_fitted(self, out_dir: Path) -> bool:
        from gen_emotion.training.tfidf import MODEL_FILE
        from gen_emotion.training.trainers import TRAINING_SUMMARY

        return (out_dir / MODEL_FILE).is_file() and (out_dir / TRAINING_SUMMARY).is_file()

    def fit(self, recipe: Recipe, rows: EmotionData, out_dir: Path) -> dict[str, Any]:
        from gen_emotion.training.tfidf import train_tfidf

        return train_tfidf(recipe.classifier, rows, out_dir)

    def load(self, recipe: Recipe, out_dir: Path, **options: Any) -> LoadedModel:
        from gen_emotion.training.tfidf import load_tfidf, tfidf_probabilities

        model, names = load_tfidf(out_dir), label_set(recipe).names

        def probs(texts: list[str]) -> np.ndarray:
            rows = EmotionData(ids=[""] * len(texts), texts=texts, labels=None, label_names=names)
            return tfidf_probabilities(out_dir, rows, model)

        return ProbabilityModel(probs)
