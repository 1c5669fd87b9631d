"""One fold of a task, trained and predicted: the one path that ``run`` and every ``cv`` fold take.

``fit_predict`` trains the recipe's task on a fold's training rows (unless the folder already holds a
finished training), then predicts the fold's held-out rows and the test rows. A task whose steps are
isolated (generation) runs each step in a process of its own, ``python -m gen_emotion.runs.worker`` (with several
GPUs, training runs under ``accelerate launch``): the process rebuilds the same rows from the data source and
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

from gen_emotion.config.recipes import Recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.dataset import EmotionData
from gen_emotion.data.folds import fold_indices
from gen_emotion.data.sources import DataSource, Splits, read_splits
from gen_emotion.models.hardware import accelerate_config_path
from gen_emotion.runs.folder import RECIPE_FILE
from gen_emotion.tasks.base import Prediction, PredictionsNotSaved, Task, get_task

log = logging.getLogger(__name__)

WORKER = "gen_emotion.runs.worker"
STEPS = ("fit", "predict")


@dataclass
class Fold:
    """Fold ``index`` of ``folds`` multilabel-stratified folds of a source's training split (seeded), with its
    test split; or, ``given``, the training split with the source's validation split held out as it is given."""

    source: DataSource
    folds: int
    index: int
    seed: int
    full: EmotionData
    """The training split, followed by the validation split where it is the held-out set (``given``)."""
    test: EmotionData
    train_idx: np.ndarray
    val_idx: np.ndarray
    given: bool = False
    """Whether the held-out rows are the source's validation split (no fold is cut)."""

    @classmethod
    def load(
        cls,
        source: DataSource,
        folds: int,
        index: int,
        seed: int,
        data: Splits | None = None,
        split: tuple[np.ndarray, np.ndarray] | None = None,
        given: bool = False,
    ) -> Fold:
        """The fold, reading the source unless ``data`` is given, and splitting unless ``split`` (train indices,
        held-out indices) is; ``given`` holds out the source's validation split instead."""
        data = data if data is not None else read_splits(source)
        if given:
            return cls.given_validation(source, folds, index, seed, data)
        if not 0 <= index < folds:
            raise GenEmotionError(f"fold must be in 0..{folds - 1}, got {index}")
        train_idx, val_idx = split if split is not None else fold_indices(data.train.labels, folds, seed)[index]
        return cls(source, folds, index, seed, data.train, data.test, train_idx, val_idx)

    @classmethod
    def given_validation(cls, source: DataSource, folds: int, index: int, seed: int, data: Splits) -> Fold:
        """The training split trained on, the validation split held out, as the source gives them."""
        train, held = data.train, data.validation
        if held is None:
            raise GenEmotionError(f"{source.data}: has no validation split to hold out")
        full = EmotionData(
            ids=train.ids + held.ids,
            texts=train.texts + held.texts,
            labels=np.concatenate([train.labels, held.labels]),
            source=train.source,
            label_names=train.label_names,
        )
        rows = np.arange(len(full))
        return cls(source, folds, index, seed, full, data.test, rows[: len(train)], rows[len(train) :], given=True)

    @property
    def train(self) -> EmotionData:
        return self.full.subset(self.train_idx)

    @property
    def held_out(self) -> EmotionData:
        return self.full.subset(self.val_idx)

    def splits(self) -> dict[str, EmotionData]:
        """What a fold predicts: its held-out rows (``val``) and the test split (``test``)."""
        return {"val": self.held_out, "test": self.test}

    def worker_args(self) -> list[str]:
        given = ["--given-validation"] if self.given else []
        return [*self.source.worker_args(), "--folds", str(self.folds), "--fold", str(self.index), *given]


@dataclass(frozen=True)
class Machines:
    """One training over several machines (``run --num-machines``): how many, this one's rank (0: the main machine,
    which predicts and writes the run) and the main machine's address and port, which every machine's training
    processes meet at (accelerate's ``--num_machines``, ``--machine_rank``, ``--main_process_ip``/``_port``)."""

    count: int
    rank: int
    main_ip: str
    port: int = 29500

    def __post_init__(self) -> None:
        if self.count < 2 or not 0 <= self.rank < self.count:
            raise GenEmotionError(f"--machine-rank must be in 0..{self.count - 1} and --num-machines at least 2")
        if not self.main_ip.strip():
            raise GenEmotionError("--num-machines needs --main-process-ip, the main machine's address")

    @classmethod
    def from_flags(cls, count: int | None, rank: int | None, main_ip: str | None, port: int) -> Machines | None:
        """``run --num-machines N --machine-rank R --main-process-ip IP --main-process-port P``; ``None`` without
        ``--num-machines``."""
        if count is None:
            if rank is not None or main_ip:
                raise GenEmotionError("--machine-rank and --main-process-ip go with --num-machines")
            return None
        return cls(count, rank or 0, main_ip or "", port)

    def accelerate_args(self) -> list[str]:
        return [
            "--num_machines",
            str(self.count),
            "--machine_rank",
            str(self.rank),
            "--main_process_ip",
            self.main_ip,
            "--main_process_port",
            str(self.port),
        ]


@dataclass
class Launcher:
    """How the process of an isolated step starts: with ``gpus`` > 1, or over several ``machines``, training runs
    under ``accelerate launch`` (one process per GPU of every machine, ``accelerate_config`` from
    ``recipes/accelerate/``); ``main_process_port`` keeps trainings that run side by side on one machine
    (``cv --parallel-folds``) from meeting at accelerate's one default port."""

    gpus: int = 1
    accelerate_config: str = "ddp"
    machines: Machines | None = None
    main_process_port: int | None = None

    @property
    def processes(self) -> int:
        """Training processes in all: one per GPU of every machine."""
        return self.gpus * (self.machines.count if self.machines else 1)

    def command(self, step: str) -> list[str]:
        if step == "fit" and self.processes > 1:
            config = accelerate_config_path(self.accelerate_config)
            if self.machines is not None:
                where = self.machines.accelerate_args()
            elif self.main_process_port is not None:
                where = ["--main_process_port", str(self.main_process_port)]
            else:
                where = []
            return [
                *accelerate_command(),
                "--config_file",
                str(config),
                "--num_processes",
                str(self.processes),
                *where,
                "-m",
                WORKER,
            ]
        return [sys.executable, "-m", WORKER]

    def environment(self, step: str, env: dict[str, str]) -> dict[str, str]:
        """The step's environment: ``env``, but training on one GPU sees only the first GPU ``env`` shows (with
        several visible, transformers wraps the model in ``nn.DataParallel``, which TRL refuses). Generation sees
        what ``env`` shows: vLLM takes one GPU unless ``generate.tensor_parallel_size`` asks for more."""
        env = dict(env)
        if step == "fit" and self.gpus == 1:
            first = first_gpu(env.get("CUDA_VISIBLE_DEVICES"))
            if first is not None:
                env["CUDA_VISIBLE_DEVICES"] = first
        return env


def first_gpu(visible: str | None) -> str | None:
    """The first device of a ``CUDA_VISIBLE_DEVICES`` value (an index or a UUID; ``0`` when it is not set), or
    ``None`` where it hides every GPU (empty, or a negative index)."""
    if visible is None:
        return "0"
    first = visible.split(",")[0].strip()
    return first if first and not first.startswith("-") else None


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
        env = launcher.environment(step, _child_env(task))
        status = subprocess.run(command, env=env, check=False).returncode
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


class WorkerSession:
    """Fitted models of an isolated task kept loaded in one long-lived process of their own (``python -m
    gen_emotion.runs.worker session``): the models load once, then every ``predict`` is a request to that process.
    The process ends when the session is closed (or when this process ends: its standard input closes)."""

    def __init__(self, task: Task, recipe: Recipe, model_dirs: list[Path]) -> None:
        self.recipe_dir = tempfile.TemporaryDirectory(prefix="gen-emotion-session-")
        (Path(self.recipe_dir.name) / RECIPE_FILE).write_text(recipe.to_yaml(), encoding="utf-8")
        command = [*Launcher().command("session"), "session", "--task", task_reference(task)]
        command += ["--run-dir", self.recipe_dir.name]
        for model_dir in model_dirs:
            command += ["--model-dir", str(model_dir)]
        log.info("starting a prediction process for %d model(s): %s", len(model_dirs), model_dirs[0].parent)
        self.process: subprocess.Popen[str] | None = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_child_env(task), text=True, encoding="utf-8"
        )
        try:
            self._read()  # the models are loaded once the process says it is ready
        except BaseException:
            self.close()
            raise

    def _read(self) -> dict[str, Any]:
        import json

        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            status = self.process.wait()
            self.process = None
            if status in (130, -2):
                raise KeyboardInterrupt
            raise StepFailed(f"the prediction process ended (exit status {status}); its log is above")
        reply = json.loads(line)
        if "error" in reply:
            if "ready" not in reply and self.process.poll() is not None:
                self.process = None
            raise StepFailed(reply["error"])
        return reply

    def predict(self, texts: list[str], with_probs: bool | None = None, first_shard: int = 0) -> list[Prediction]:
        """One prediction per model, of ``texts`` in order (``first_shard``: ``LoadedModel.predict``'s)."""
        import json

        if self.process is None:
            raise GenEmotionError("the model was closed; load it again")
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(
                json.dumps({"texts": list(texts), "with_probs": with_probs, "first_shard": first_shard}) + "\n"
            )
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the process has died: _read reports its exit status
        reply = self._read()
        ids = [str(i) for i in range(len(texts))]
        return [
            Prediction(
                ids=ids,
                labels=np.asarray(p["labels"], dtype=np.int64).reshape(len(texts), -1),
                probs=None if p["probs"] is None else np.asarray(p["probs"], dtype=np.float64).reshape(len(texts), -1),
                outputs=p["outputs"],
            )
            for p in reply["predictions"]
        ]

    def dead(self) -> str | None:
        """Why the process can predict no more (it has ended), or None while it runs."""
        status = None if self.process is None else self.process.poll()
        if self.process is not None and status is None:
            return None
        return "the prediction process has ended" if status is None else f"the prediction process ended ({status})"

    def close(self) -> None:
        """End the process (it frees its models as it exits)."""
        process, self.process = self.process, None
        self.recipe_dir.cleanup()
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        finally:
            if process.stdout is not None:
                process.stdout.close()
