"""A trained folder loaded once to predict any texts: a ``run``, a ``cv`` or an ``ensemble`` folder, or one that
``export-model`` wrote from them.

Each kind predicts as it decided when it was made, so predicting the data's own test file reproduces the
folder's ``submission.csv`` and ``test_probs.csv``:

- a run: its model's labels (a generation run's greedy outputs, a classifier's probabilities cut at 0.5), or its
  probabilities cut at its tuned thresholds when ``metrics.json`` says ``decision: thresholds``;
- a cv folder: the fold models' probabilities averaged (their 0/1 votes where the task has none), cut at the
  thresholds tuned on the out-of-fold rows (``thresholds.json``);
- an ensemble: its members (cv or ensemble folders) combined as the ensemble was (``mode``: a weighted mean of
  their probabilities, a vote, or the stacked logistic regressions of ``stacker.json``), cut at its thresholds.

Models load once, in this process (TF-IDF, classifiers) or, for a generation task, in one long-lived process of
their own (``steps.WorkerSession``), so a notebook or a script without an ``if __name__ == "__main__":`` guard
can use vLLM, and the second call is as fast as the model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.fields import apply_override
from gen_emotion.config.recipes import Recipe, label_set, recipe_from_dict
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS
from gen_emotion.data.dataset import EmotionData
from gen_emotion.evaluation import ensemble
from gen_emotion.runs.folder import (
    CV_SETTINGS,
    FOLDER_METRICS,
    RECIPE_FILE,
    RUN_METRICS,
    STACKER,
    THRESHOLDS,
    fold_path,
    load_member,
    load_run_recipe,
    read_cv_settings,
    read_folder_metrics,
    read_run_metrics,
    read_stacker,
    read_thresholds,
)
from gen_emotion.runs.steps import WorkerSession
from gen_emotion.scoring.prediction_files import as_written
from gen_emotion.scoring.run_metrics import EnsembleMetrics, FolderMetrics
from gen_emotion.scoring.thresholds import apply_thresholds
from gen_emotion.tasks.base import LoadedModel, Prediction, Task, get_task

log = logging.getLogger(__name__)


@dataclass
class TextPredictions:
    """Predictions for a list of texts, in their order."""

    texts: list[str]
    labels: np.ndarray
    """``(n, len(columns))`` 0/1, one column per label of ``columns``: the folder's own decision."""
    outputs: list[str] | None = None
    """The generated text, for a generation run."""
    probs: np.ndarray | None = None
    """``(n, len(columns))`` probabilities, where the folder has them (and, for a generation run, they were made)."""
    columns: tuple[str, ...] = LABELS
    """The folder's labels, in column order."""

    @property
    def label_names(self) -> list[list[str]]:
        return [[label for label, on in zip(self.columns, row) if on] for row in self.labels]

    def to_frame(self) -> Any:
        """A pandas DataFrame: the text, one 0/1 column per label, the output (pandas must be installed)."""
        import pandas as pd

        frame = pd.DataFrame(self.labels, columns=list(self.columns))
        frame.insert(0, "text", self.texts)
        if self.outputs is not None:
            frame["output"] = self.outputs
        return frame


class Predictor:
    """A loaded folder (``load_predictor``). ``predict`` is not thread-safe: one call at a time."""

    kind = ""
    folder: Path
    names: tuple[str, ...]
    has_probs: bool
    """Whether ``predict`` gives probabilities."""
    generates: bool = False
    """Whether a generation model predicts (seconds per batch rather than milliseconds)."""

    def predict(self, texts: Sequence[str], first_shard: int = 0) -> TextPredictions:
        """The folder's decision for ``texts``, with its probabilities where it has them. ``first_shard``: where a
        longer input is predicted a shard at a time, the index of the shard ``texts`` are (a generation model's
        sampled probabilities are seeded per shard, ``LoadedModel.predict``)."""
        texts = [str(text) for text in texts]
        if not texts:
            empty = np.zeros((0, len(self.names)))
            probs = empty if self.has_probs else None
            return TextPredictions([], empty.astype(np.int64), probs=probs, columns=self.names)
        return self._predict(texts, first_shard)

    def _predict(self, texts: list[str], first_shard: int) -> TextPredictions:
        raise NotImplementedError

    def dead(self) -> str | None:
        """Why the model can predict no more (a generation model's process has ended), or None."""
        return next(filter(None, (m.dead() for m in getattr(self, "members", ()))), None)

    def close(self) -> None:
        """Free the models (and end a generation model's process)."""

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FittedModels:
    """The fitted models of one recipe (a run's one, a cv's folds), loaded once: in this process, or in a
    ``WorkerSession`` where the task isolates its steps (generation)."""

    def __init__(self, recipe: Recipe, task: Task, model_dirs: list[Path]):
        for model_dir in model_dirs:
            if not task.is_fitted(model_dir):
                raise GenEmotionError(f"{model_dir}: holds no finished training (was its model deleted?)")
        self.names = label_set(recipe).names
        self.session: WorkerSession | None = None
        self.models: list[LoadedModel] = []
        if task.isolated(recipe):
            self.session = WorkerSession(task, recipe, model_dirs)
        else:
            try:
                for model_dir in model_dirs:
                    self.models.append(task.load(recipe, model_dir))
            except BaseException:
                self.close()
                raise

    def predict(self, texts: list[str], with_probs: bool | None, first_shard: int) -> list[Prediction]:
        if self.session is not None:
            return self.session.predict(texts, with_probs, first_shard)
        rows = EmotionData(ids=[str(i) for i in range(len(texts))], texts=texts, labels=None, label_names=self.names)
        return [model.predict(rows, with_probs, first_shard) for model in self.models]

    def dead(self) -> str | None:
        return None if self.session is None else self.session.dead()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        for model in self.models:
            model.close()
        self.models = []


class RunPredictor(Predictor):
    """A ``gen-emotion run`` folder."""

    kind = "run"

    def __init__(self, folder: Path, settings: PredictSettings) -> None:
        self.folder = folder
        self.recipe = prediction_recipe(folder, settings)
        self.task = get_task(self.recipe.task)
        with_probs = settings.with_probs
        if not self.task.is_fitted(folder):
            raise GenEmotionError(f"{folder}: the run has no finished training; run it to the end first")
        if not (folder / RUN_METRICS).is_file():
            raise GenEmotionError(f"{folder}: the run did not finish (no {RUN_METRICS}); run it again to finish it")
        self.names = label_set(self.recipe).names
        decision = read_run_metrics(folder).decision
        self.generates = self.task.base_decision == "greedy"
        has_thresholds = (folder / THRESHOLDS).is_file()
        if with_probs and self.generates and not has_thresholds:
            raise GenEmotionError(
                f"{folder}: this generation run has no probabilities; train it with generate.probabilities=true"
            )
        self.cut = read_thresholds(folder, self.names) if decision == "thresholds" else None
        # A generation run makes probabilities where its decision needs them, or when asked; a classifier always.
        self.with_probs = not self.generates or bool(with_probs) or self.cut is not None
        self.has_probs = self.with_probs
        self.models = FittedModels(self.recipe, self.task, [folder])

    def raw(self, texts: list[str], first_shard: int = 0) -> Prediction:
        return self.models.predict(texts, self.with_probs if self.generates else None, first_shard)[0]

    def _predict(self, texts: list[str], first_shard: int) -> TextPredictions:
        prediction = self.raw(texts, first_shard)
        labels = prediction.labels if self.cut is None else apply_thresholds(prediction.probs, self.cut)
        probs = prediction.probs if self.has_probs else None
        return TextPredictions(texts, labels, prediction.outputs, probs, self.names)

    def dead(self) -> str | None:
        return self.models.dead()

    def close(self) -> None:
        self.models.close()


class CVPredictor(Predictor):
    """A ``gen-emotion cv`` folder: every fold's model, averaged."""

    kind = "cv"

    def __init__(self, folder: Path, settings: PredictSettings) -> None:
        self.folder = folder
        self.recipe = prediction_recipe(folder, settings)
        task = get_task(self.recipe.task)
        metrics = _folder_metrics(folder)
        folds = read_cv_settings(folder).get("folds")
        if not isinstance(folds, int) or folds < 2:
            raise GenEmotionError(f"{folder / CV_SETTINGS}: damaged: folds must be a number of at least 2")
        self.names = label_set(self.recipe).names
        self.has_probs = bool(metrics.has_probabilities)
        self.generates = task.base_decision == "greedy"
        self.thresholds = read_thresholds(folder, self.names)
        model_dirs = [fold_path(folder, k) for k in range(folds)]
        self.models = FittedModels(self.recipe, task, model_dirs)

    def scores(self, texts: list[str], first_shard: int = 0) -> np.ndarray:
        """The fold models' mean probabilities (or mean 0/1 votes), each fold's rounded as its files hold them and
        summed in fold order, as ``cv`` does."""
        total = np.zeros((len(texts), len(self.names)))
        predictions = self.models.predict(texts, None, first_shard)
        for prediction in predictions:
            total += as_written(prediction.scores)
        return total / len(predictions)

    def _predict(self, texts: list[str], first_shard: int) -> TextPredictions:
        scores = self.scores(texts, first_shard)
        probs = scores if self.has_probs else None
        return TextPredictions(texts, apply_thresholds(scores, self.thresholds), None, probs, self.names)

    def dead(self) -> str | None:
        return self.models.dead()

    def close(self) -> None:
        self.models.close()


class EnsemblePredictor(Predictor):
    """A ``gen-emotion ensemble`` folder: its members (cv or ensemble folders) combined as it combined them."""

    kind = "ensemble"

    def __init__(self, folder: Path, settings: PredictSettings) -> None:
        self.folder = folder
        metrics = _folder_metrics(folder)
        self.mode = metrics.mode if isinstance(metrics, EnsembleMetrics) else None
        members = metrics.members if isinstance(metrics, EnsembleMetrics) else None
        if self.mode not in ("average", "vote", "stack") or not isinstance(members, list) or len(members) < 2:
            raise GenEmotionError(f"{folder / FOLDER_METRICS}: damaged: expected its mode and two or more members")
        self.weights = np.array([float(m.get("weight", 0.0)) for m in members])
        self.members: list[Predictor] = []
        try:
            for member in members:
                self.members.append(load_predictor(member_folder(folder, member), settings))
            self.names = self.members[0].names
            if any(m.names != self.names for m in self.members):
                raise GenEmotionError(f"{folder}: its members have different labels")
            self.thresholds = read_thresholds(folder, self.names)
            self.stacker = stacker_of(folder, members) if self.mode == "stack" else None
        except BaseException:
            self.close()
            raise
        self.has_probs = self.mode != "vote"
        self.generates = any(m.generates for m in self.members)

    def scores(self, texts: list[str], first_shard: int = 0) -> np.ndarray:
        """The combined scores the thresholds cut, from the members' probabilities rounded as in the files the
        ensemble was made from (``export.as_written``)."""
        found = [m.predict(texts, first_shard) for m in self.members]
        if self.mode == "vote":
            return np.clip(np.tensordot(self.weights, np.stack([f.labels for f in found]).astype(np.float64), 1), 0, 1)
        probs = [as_written(f.probs) for f in found]
        if self.mode == "stack":
            return ensemble.apply_stacker(self.stacker, probs)
        return np.clip(np.tensordot(self.weights, np.stack(probs), axes=1), 0.0, 1.0)

    def _predict(self, texts: list[str], first_shard: int) -> TextPredictions:
        scores = self.scores(texts, first_shard)
        probs = scores if self.has_probs else None
        return TextPredictions(texts, apply_thresholds(scores, self.thresholds), None, probs, self.names)

    def close(self) -> None:
        for member in self.members:
            member.close()


def member_folder(folder: Path, member: dict[str, Any]) -> Path:
    """Where an ensemble member is: ``folder`` (inside an exported ensemble, relative to it) or ``run_dir`` (as
    the ensemble command was given it)."""
    if member.get("folder"):
        return folder / member["folder"]
    if not member.get("run_dir"):
        raise GenEmotionError(f"{folder / FOLDER_METRICS}: damaged: a member has no run_dir")
    return Path(member["run_dir"])


def stacker_of(folder: Path, members: list[dict[str, Any]]) -> dict[str, Any]:
    """The stacked ensemble's fitted meta-model: ``stacker.json``, or, for an ensemble made before it was saved,
    fitted again from the members' out-of-fold files exactly as the ensemble fitted it."""
    if (folder / STACKER).is_file():
        return read_stacker(folder)
    loaded = [load_member(member_folder(folder, m)) for m in members]
    ensemble.align_members(loaded)
    return ensemble.stack(loaded)[2]


def _folder_metrics(folder: Path) -> FolderMetrics:
    if not (folder / FOLDER_METRICS).is_file():
        raise GenEmotionError(f"{folder}: did not finish (no {FOLDER_METRICS}); run it again to finish it")
    return read_folder_metrics(folder)


def folder_kind(folder: Path) -> str:
    """``run``, ``cv`` or ``ensemble``: what a trained folder holds; one line naming what is missing otherwise."""
    if not folder.is_dir():
        raise GenEmotionError(f"{folder}: no such folder")
    if (folder / CV_SETTINGS).is_file():
        return "cv"
    if (folder / FOLDER_METRICS).is_file() and read_folder_metrics(folder).kind == "ensemble":
        return "ensemble"
    if (folder / RECIPE_FILE).is_file():
        return "run"
    raise GenEmotionError(
        f"{folder}: not a trained folder; give a gen-emotion run, cv or ensemble folder (or an export-model of one)"
    )


@dataclass(frozen=True)
class PredictSettings:
    """How a folder predicts, beyond what it decided when it was made."""

    backend: str | None = None
    """``transformers`` or ``vllm``: a generation task's backend (default: its recipe's)."""
    with_probs: bool | None = None
    """A generation run: also make its probabilities (its labels stay its own decision); the other folders give
    theirs whenever they have them."""
    overrides: tuple[str, ...] = ()
    """``generate.*`` recipe overrides (batch size, memory...), for generation tasks."""


def prediction_recipe(folder: Path, settings: PredictSettings) -> Recipe:
    """The folder's recipe with ``generate.*`` overrides and the backend applied; refused for a classifier."""
    recipe = load_run_recipe(folder)
    if not (settings.backend or settings.overrides):
        return recipe
    if get_task(recipe.task).base_decision != "greedy":
        raise GenEmotionError(f"{folder}: a {recipe.task} model takes no --backend or generate.* overrides")
    values = recipe.to_dict()
    for override in settings.overrides:
        if not override.startswith("generate."):
            raise GenEmotionError(f"predict takes generate.* overrides only (the model is trained), got {override!r}")
        apply_override(values, override)
    if settings.backend:
        apply_override(values, f"generate.backend={settings.backend}")
    changed = recipe_from_dict(values, where=str(folder / RECIPE_FILE))
    if recipe.generate.probabilities and changed.generate.probability_source != recipe.generate.probability_source:
        raise GenEmotionError(
            f"{folder}: its thresholds were tuned on {recipe.generate.probability_source} probabilities; "
            "predict keeps generate.probability_source"
        )
    return changed


def load_predictor(folder: str | Path, settings: PredictSettings | None = None) -> Predictor:
    """The trained ``folder`` (a run, cv or ensemble folder) loaded for prediction."""
    folder, settings = Path(folder), settings or PredictSettings()
    kind = folder_kind(folder)
    if kind == "cv":
        return CVPredictor(folder, settings)
    if kind == "ensemble":
        return EnsemblePredictor(folder, settings)
    return RunPredictor(folder, settings)


def folder_recipe(folder: Path) -> Recipe:
    """The recipe whose data columns a folder reads: its own, or an ensemble's first member's."""
    if folder_kind(folder) == "ensemble":
        metrics = _folder_metrics(folder)
        members = (metrics.members if isinstance(metrics, EnsembleMetrics) else None) or [{}]
        return folder_recipe(member_folder(folder, members[0]))
    return load_run_recipe(folder)
