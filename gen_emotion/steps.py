"""One fold of a task, trained and predicted: the one path that ``run`` and every ``cv`` fold take.

``fit_predict`` trains the recipe's task on a fold's training rows (unless the folder already holds a
finished training), then predicts the fold's held-out rows and the test rows. A task whose steps are
isolated (generation) runs each step in a process of its own, ``python -m gen_emotion.worker`` (with several
GPUs, training runs under ``accelerate launch``): the process rebuilds the same rows from the data folder and
the run's ``recipe.yaml``, leaves its results in the fold's folder, and exits before the next step starts, so
the trainer never shares a process (nor GPU memory) with the generation engine.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.data import SEMEVAL_COLUMNS, Columns, EmotionData, fold_indices
from gen_emotion.errors import GenEmotionError
from gen_emotion.hardware import accelerate_config_path
from gen_emotion.recipes import Recipe
from gen_emotion.runs import read_data
from gen_emotion.tasks import Prediction, PredictionsNotSaved, Task, get_task

log = logging.getLogger(__name__)

WORKER = "gen_emotion.worker"
STEPS = ("fit", "predict")


@dataclass
class Fold:
    """Fold ``index`` of ``folds`` multilabel-stratified folds of a data folder's ``train.csv`` (seeded), with
    the data folder's ``test.csv``; ``rows`` keeps only the first rows of both files."""

    data_dir: Path
    rows: int | None
    folds: int
    index: int
    seed: int
    full: EmotionData
    test: EmotionData
    train_idx: np.ndarray
    val_idx: np.ndarray

    @classmethod
    def load(
        cls,
        data_dir: Path,
        rows: int | None,
        folds: int,
        index: int,
        seed: int,
        data: tuple[EmotionData, EmotionData] | None = None,
        split: tuple[np.ndarray, np.ndarray] | None = None,
        columns: Columns = SEMEVAL_COLUMNS,
    ) -> Fold:
        """The fold, reading the data folder (its ``columns``) unless ``data`` (train, test) is given, and
        splitting unless ``split`` (train indices, held-out indices) is."""
        full, test = data if data is not None else read_data(data_dir, rows, columns)
        if not 0 <= index < folds:
            raise GenEmotionError(f"fold must be in 0..{folds - 1}, got {index}")
        train_idx, val_idx = split if split is not None else fold_indices(full.labels, folds, seed)[index]
        return cls(Path(data_dir), rows, folds, index, seed, full, test, train_idx, val_idx)

    @property
    def train(self) -> EmotionData:
        return self.full.subset(self.train_idx)

    @property
    def held_out(self) -> EmotionData:
        return self.full.subset(self.val_idx)

    def splits(self) -> dict[str, EmotionData]:
        """What a fold predicts: its held-out rows (``val``) and the test file (``test``)."""
        return {"val": self.held_out, "test": self.test}

    def worker_args(self) -> list[str]:
        rows = ["--rows", str(self.rows)] if self.rows is not None else []
        return ["--data", str(self.data_dir), "--folds", str(self.folds), "--fold", str(self.index), *rows]


@dataclass
class Launcher:
    """How the process of an isolated step starts: with ``gpus`` > 1, training runs under ``accelerate
    launch`` (one process per GPU, ``accelerate_config`` from ``recipes/accelerate/``)."""

    gpus: int = 1
    accelerate_config: str = "ddp"

    def command(self, step: str) -> list[str]:
        if step == "fit" and self.gpus > 1:
            config = accelerate_config_path(self.accelerate_config)
            return [
                *accelerate_command(),
                "--config_file",
                str(config),
                "--num_processes",
                str(self.gpus),
                "-m",
                WORKER,
            ]
        return [sys.executable, "-m", WORKER]


def accelerate_command() -> list[str]:
    """``accelerate launch``, from this Python's environment."""
    beside = Path(sys.executable).with_name("accelerate")
    if beside.is_file():
        return [str(beside), "launch"]
    if shutil.which("accelerate"):
        return ["accelerate", "launch"]
    return [sys.executable, "-m", "accelerate.commands.launch"]


@dataclass
class FoldResult:
    """A fold's predictions of its held-out rows and of the test rows, and its training figures."""

    val: Prediction
    test: Prediction
    training: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


class StepFailed(GenEmotionError):
    """A step's own process failed; its one-line message is this error's."""


def task_reference(task: Task) -> str:
    """``module:Class`` of a task, for the step's process to import."""
    return f"{type(task).__module__}:{type(task).__qualname__}"


def import_task(reference: str) -> Task:
    """The task a ``module:Class`` reference names."""
    module, _, name = reference.partition(":")
    try:
        return getattr(importlib.import_module(module), name)()
    except (ImportError, AttributeError) as err:
        raise GenEmotionError(f"cannot load the task {reference!r} ({err})") from None


def _child_env(task: Task) -> dict[str, str]:
    """The environment of a step's process: ours, plus the folder of a task defined outside the package."""
    env = dict(os.environ)
    module = sys.modules[type(task).__module__]
    if not type(task).__module__.startswith("gen_emotion.") and getattr(module, "__file__", None):
        folder = str(Path(module.__file__).resolve().parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (folder, env.get("PYTHONPATH", "")) if p)
    return env


def run_isolated(step: str, task: Task, fold: Fold, out_dir: Path, run_dir: Path, launcher: Launcher) -> None:
    """Run ``step`` of ``task`` for ``fold`` in a process of its own and wait for it to end."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gen-emotion-step-") as tmp:
        error_file = Path(tmp) / "error"
        command = [
            *launcher.command(step),
            step,
            "--task",
            task_reference(task),
            "--run-dir",
            str(run_dir),
            "--out",
            str(out_dir),
            "--error-file",
            str(error_file),
            *fold.worker_args(),
        ]
        log.info("%s step: starting its own process", step)
        status = subprocess.run(command, env=_child_env(task), check=False).returncode
        if status in (130, -2):
            raise KeyboardInterrupt
        if status != 0:
            message = error_file.read_text(encoding="utf-8").strip() if error_file.is_file() else ""
            raise StepFailed(message or f"the {step} step failed (exit status {status}); its log is above")


def fit_predict(
    recipe: Recipe,
    fold: Fold,
    out_dir: Path,
    run_dir: Path,
    *,
    task: Task | None = None,
    launcher: Launcher | None = None,
) -> FoldResult:
    """Train the recipe's task on ``fold``'s training rows into ``out_dir`` (or find the finished training
    there) and predict the fold's held-out rows and its test rows."""
    task = task or get_task(recipe.task)
    launcher = launcher or Launcher()
    isolated = task.isolated(recipe)
    started = time.perf_counter()
    if task.is_fitted(out_dir):
        log.info("%s holds a finished training: not training again", out_dir)
        training = task.training_summary(out_dir)
    elif isolated:
        run_isolated("fit", task, fold, out_dir, run_dir, launcher)
        training = task.training_summary(out_dir)
    else:
        training = task.fit(recipe, fold.train, out_dir)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    if isolated:
        predictions = _saved_predictions(task, recipe, fold, out_dir)
        if predictions is None:
            run_isolated("predict", task, fold, out_dir, run_dir, launcher)
            predictions = task.predict(recipe, out_dir, fold.splits(), allow_load=False)
    else:
        predictions = task.predict(recipe, out_dir, fold.splits())
    seconds = {"fit_s": round(fit_s, 2), "predict_s": round(time.perf_counter() - started, 2)}
    return FoldResult(predictions["val"], predictions["test"], training, seconds)


def _saved_predictions(task: Task, recipe: Recipe, fold: Fold, out_dir: Path) -> dict[str, Prediction] | None:
    """The predictions an earlier predict step left complete, else ``None``."""
    try:
        return task.predict(recipe, out_dir, fold.splits(), allow_load=False)
    except PredictionsNotSaved:
        return None
