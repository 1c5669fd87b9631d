"""The classifier task (``task: classify``): a sequence classifier with one sigmoid output per label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gen_emotion.config.recipes import Recipe
from gen_emotion.data.dataset import EmotionData
from gen_emotion.tasks.base import LoadedModel, ProbabilityModel, Task, release_gpu_memory


class ClassifyTask(Task):
    """A sequence classifier with 11 sigmoid outputs (``classify``), fine-tuned in full or with LoRA."""

    name = "classify"
    model_files = ("model",)
    export_files = ("model", "training.json")

    def is_fitted(self, out_dir: Path) -> bool:
        from gen_emotion.training.classify import MODEL_DIR
        from gen_emotion.training.trainers import TRAINING_SUMMARY

        return (out_dir / MODEL_DIR).is_dir() and (out_dir / TRAINING_SUMMARY).is_file()

    def fit(self, recipe: Recipe, rows: EmotionData, out_dir: Path) -> dict[str, Any]:
        from gen_emotion.training.classify import train_classifier
        from gen_emotion.training.trainers import split_train_eval

        train_idx, eval_idx = split_train_eval(len(rows), recipe.data, recipe.train.seed)
        eval_data = rows.subset(eval_idx) if len(eval_idx) else None
        return train_classifier(recipe, rows.subset(train_idx), eval_data, out_dir)

    def load(self, recipe: Recipe, out_dir: Path, **options: Any) -> LoadedModel:
        from gen_emotion.training.classify import MODEL_DIR, length_batches, load_trained, predict_with

        held = list(load_trained(out_dir / MODEL_DIR, recipe))

        def release() -> None:
            held.clear()
            release_gpu_memory()

        return ProbabilityModel(
            lambda texts: predict_with(*held, texts, recipe),
            release,
            batches=lambda texts: length_batches(held[1], texts, recipe),
        )
