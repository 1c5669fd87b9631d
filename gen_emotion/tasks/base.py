"""The task registry: what a recipe's ``task`` trains and how it predicts.

A task (``generate``, ``classify``, ``tfidf``) is one object that trains on rows and saves itself in a
folder (``fit``), tells whether a folder holds a finished training (``is_fitted``), and predicts rows from
that folder (``predict``: per-label probabilities where the task has them, 0/1 labels, and the generated
text where there is some). It also says which of its steps run in a process of their own (``isolated``):
a generation task trains in one process and generates in another, so the trainer, its optimizer state and
PyTorch's cache never hold GPU memory that the generation engine needs. ``run``, ``cv``, ``predict``, the
pod entry and ``launch`` all go through this registry (``get_task``; ``steps.fit_predict`` runs a fold).

This module holds what every task shares; each task is a module of its own in this folder (``generate``,
``classify``, ``tfidf``) registered by one row of ``task_kinds.TASK_KINDS``, which names its class
and says what it is to the modules below this one.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import Recipe
from gen_emotion.config.task_kinds import task_kind
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.dataset import EmotionData


@dataclass
class Prediction:
    """A task's predictions for the rows of one file, in file order."""

    ids: list[str]
    labels: np.ndarray
    """0/1 labels before any tuned threshold: the greedy outputs parsed, or the probabilities cut at 0.5."""
    probs: np.ndarray | None = None
    """Per-label probabilities, when the task has them."""
    outputs: list[str] | None = None
    """The generated text (generation tasks)."""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def scores(self) -> np.ndarray:
        """The probabilities, or the 0/1 labels as floats where there are none."""
        return self.probs if self.probs is not None else self.labels.astype(np.float64)


def cut_at_half(ids: list[str], probs: np.ndarray, seconds: dict[str, float]) -> Prediction:
    """A prediction from probabilities: labels are ``probs >= 0.5``."""
    return Prediction(ids=list(ids), labels=(probs >= 0.5).astype(np.int64), probs=probs, seconds=seconds)


class Task:
    """What every task offers (see the module docstring); subclasses fill in the four methods."""

    name = ""
    base_decision = "0.5"
    """What ``labels`` of a prediction are: ``greedy`` outputs, or probabilities cut at ``0.5``."""
    model_files: tuple[str, ...] = ()
    """Files and folders (glob patterns) of a fitted folder that ``cv --drop-models`` deletes."""
    export_files: tuple[str, ...] = ()
    """What a fitted folder must keep to predict (``export-model`` of a cv folder copies these)."""
    pod_command: str | None = "cv"
    """What ``launch`` runs on a pod by default; ``None``: the task needs no GPU and is not launched."""
    multi_gpu = False
    """Whether its training can run under ``accelerate launch`` over several GPUs."""

    def isolated(self, recipe: Recipe) -> bool:
        """Whether ``fit`` and ``predict`` each run in a process of their own."""
        return False

    def describe_model(self, recipe: Recipe) -> str:
        return recipe.model.name

    def model_title(self, recipe: Recipe) -> str:
        """The model as a title names it (an exported model's card)."""
        return self.describe_model(recipe)

    def probability_method(self, recipe: Recipe) -> str:
        """How the task's probabilities are made (for ``metrics.json``)."""
        return "sigmoid outputs of the model"

    def is_fitted(self, out_dir: Path) -> bool:
        raise NotImplementedError

    def training_summary(self, out_dir: Path) -> dict[str, Any]:
        from gen_emotion.training.trainers import read_summary

        return read_summary(out_dir)

    def fit(self, recipe: Recipe, rows: EmotionData, out_dir: Path) -> dict[str, Any]:
        raise NotImplementedError

    def load(self, recipe: Recipe, out_dir: Path, **options: Any) -> LoadedModel:
        """The fitted model of ``out_dir``, loaded once to predict any rows until it is closed."""
        raise NotImplementedError

    def predict(
        self, recipe: Recipe, out_dir: Path, splits: dict[str, EmotionData], **options: Any
    ) -> dict[str, Prediction]:
        """Predict each split with the model loaded once."""
        with self.load(recipe, out_dir) as model:
            return {name: model.predict(data) for name, data in splits.items()}


class LoadedModel:
    """A fitted folder's model in memory (``Task.load``): ``predict`` rows until ``close``.

    ``first_shard`` is the index of the rows' first shard (``generate.shard_size`` rows) in a longer input that is
    predicted a shard at a time: a generation model samples each shard with the seed ``train.seed`` + its index,
    so such an input predicts as it would in one call. Other models ignore it."""

    def predict(self, data: EmotionData, with_probs: bool | None = None, first_shard: int = 0) -> Prediction:
        raise NotImplementedError

    def batches(self, texts: list[str]) -> list[np.ndarray] | None:
        """The groups of rows (indices into ``texts``, in the order predicted) whose numbers depend on one another,
        as ``predict`` of all ``texts`` forms them (a classifier's padded batches); ``None``: each row stands alone.
        Predicting whole groups apart, each in this order, gives the numbers of one call (``sharded_predict``)."""
        return None

    def close(self) -> None:
        """Free the model (and the GPU memory it holds)."""

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProbabilityModel(LoadedModel):
    """A model whose prediction is per-label probabilities (``probs(texts)``), cut at 0.5."""

    def __init__(
        self,
        probs: Callable[[list[str]], np.ndarray],
        release: Callable[[], None] | None = None,
        batches: Callable[[list[str]], list[np.ndarray]] | None = None,
    ):
        self.probs = probs
        self.release = release
        self.grouped = batches

    def batches(self, texts: list[str]) -> list[np.ndarray] | None:
        return self.grouped(texts) if self.grouped is not None else None

    def predict(self, data: EmotionData, with_probs: bool | None = None, first_shard: int = 0) -> Prediction:
        started = time.perf_counter()
        probs = self.probs(data.texts)
        return cut_at_half(data.ids, probs, {"predict_s": round(time.perf_counter() - started, 2)})

    def close(self) -> None:
        if self.release is not None:
            self.release()
            self.release = None


class PredictionsNotSaved(GenEmotionError):
    """A prediction that may not load a model found generations missing from its shards."""


def release_gpu_memory() -> None:
    """Give cached GPU memory back after a model is dropped (nothing to do without CUDA)."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class _Registry(dict[str, type[Task]]):
    """The task classes by name, each imported on first use from the module its ``task_kinds`` row names
    (a test may put another class in)."""

    def __missing__(self, name: str) -> type[Task]:
        module, _, cls = task_kind(name).implementation.partition(":")
        self[name] = getattr(importlib.import_module(module), cls)
        return self[name]


TASKS: dict[str, type[Task]] = _Registry()


def get_task(name: str) -> Task:
    """The task a recipe's ``task`` names."""
    return TASKS[name]()
