"""Trackers (``train.report_to``): TensorBoard, Weights & Biases and MLflow get a run's training loss and, when
it finishes, its held-out figures and its resolved recipe, all in one tracker run named after the run folder.

A run (or a cv fold, or a cv's out-of-fold figures) is one ``TrackerRun``. It is opened before training
(``open_run``, ``open_fold``, ``open_cv``): the ids of its W&B and MLflow runs are kept in the folder's
``tracking.json``, so a resumed run goes on in the same tracker run, and ``--restart`` starts a new one.
While the task trains, ``TrackerRun.training`` puts the tracker run in the environment (``TENSORBOARD_LOGGING_DIR``,
``WANDB_RUN_ID``, ``MLFLOW_RUN_ID``...), where the Trainer's own callbacks, in this process or in a step's own
process, find it and log the loss there. ``TrackerRun.finish`` logs the figures (``run_figures``,
``fold_figures``, ``cv_figures``) and the recipe once the thresholds are chosen. A cv's folds are grouped under
it: a W&B group, an MLflow parent run, TensorBoard subfolders (``tensorboard/fold-K``, ``tensorboard/out-of-fold``).

The tracker packages are imported only where a recipe names them (``pip install "gen-emotion[track]"`` brings
them). Where the tracker runs are stored is the trackers' own environment: ``MLFLOW_TRACKING_URI`` and
``MLFLOW_EXPERIMENT_NAME``, ``WANDB_MODE``, ``WANDB_PROJECT``, ``WANDB_DIR`` and ``WANDB_API_KEY``.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen_emotion.config.recipes import Recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import read_json, write_json
from gen_emotion.core.redaction import mask_url
from gen_emotion.scoring.run_metrics import CvMetrics, RunMetrics

TRACKING_FILE = "tracking.json"
"""The ids of a folder's W&B and MLflow runs."""
TENSORBOARD_DIR = "tensorboard"
OUT_OF_FOLD = "out-of-fold"
"""The TensorBoard subfolder of a cv's out-of-fold figures (its folds': ``fold-K``)."""
PROJECT = "gen-emotion"
"""The W&B project and the MLflow experiment, unless ``WANDB_PROJECT`` or ``MLFLOW_EXPERIMENT_NAME`` name another."""
TRACKER_SETTINGS = (
    "WANDB_PROJECT",
    "WANDB_ENTITY",
    "WANDB_MODE",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_EXPERIMENT_NAME",
)
"""Where the trackers keep their runs (their keys are secrets, ``redaction``): ``launch`` copies these to a pod."""
_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. /]")


@dataclass
class TrackerRun:
    """One tracker run: a run's, a cv fold's or a cv's out-of-fold figures (``trackers`` empty: reports nowhere)."""

    trackers: tuple[str, ...]
    folder: Path
    """The folder whose ``tracking.json`` holds the ids (the run's, the fold's or the cv's)."""
    name: str
    tensorboard_dir: Path
    group: str | None = None
    """The cv a fold belongs to (a W&B group)."""
    job: str = "run"
    """``run``, ``fold`` or ``cv`` (a W&B job type)."""
    wandb_id: str | None = None
    mlflow_run_id: str | None = None

    def environment(self) -> dict[str, str]:
        """Where the Trainer's callbacks find this tracker run (in this process or a step's own)."""
        env: dict[str, str] = {}
        if "tensorboard" in self.trackers:
            env["TENSORBOARD_LOGGING_DIR"] = str(self.tensorboard_dir)
        if "wandb" in self.trackers and self.wandb_id:
            env.update(WANDB_RUN_ID=self.wandb_id, WANDB_RESUME="allow", WANDB_NAME=self.name, WANDB_JOB_TYPE=self.job)
            env.update(WANDB_PROJECT=_project("WANDB_PROJECT"), WANDB_DIR=_wandb_dir(self.folder))
            if self.group:
                env["WANDB_RUN_GROUP"] = self.group
        if "mlflow" in self.trackers and self.mlflow_run_id:
            env.update(MLFLOW_RUN_ID=self.mlflow_run_id, MLFLOW_TRACKING_URI=_mlflow_client().tracking_uri)
        return env

    @contextmanager
    def training(self) -> Iterator[None]:
        """This tracker run in the environment while the task trains (restored afterwards)."""
        env = self.environment()
        before = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        if "wandb" in self.trackers:
            _forget_wandb_settings()
        try:
            yield
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def finish(self, figures: Mapping[str, float], recipe: Recipe, notes: Mapping[str, str], step: int = 0) -> None:
        """Log ``figures`` (at ``step``: the training's last), the recipe as the run's config, and ``notes`` (the
        decision), to every tracker; the tracker run ends."""
        for tracker in self.trackers:
            {"tensorboard": _finish_tensorboard, "wandb": _finish_wandb, "mlflow": _finish_mlflow}[tracker](
                self, dict(figures), recipe, dict(notes), step
            )


# --- Opening -----------------------------------------------------------------------------------------------------


def open_run(recipe: Recipe, run_dir: Path) -> TrackerRun:
    """The tracker run of ``run``'s folder (created, or the one a resumed run started)."""
    return _open(recipe, run_dir, run_dir.name, run_dir / TENSORBOARD_DIR, None, "run", None)


def open_cv(recipe: Recipe, cv_dir: Path) -> TrackerRun:
    """The tracker run of a cv's out-of-fold figures: its folds' group, their MLflow parent run."""
    return _open(recipe, cv_dir, cv_dir.name, cv_dir / TENSORBOARD_DIR / OUT_OF_FOLD, cv_dir.name, "cv", None)


def open_fold(recipe: Recipe, cv_dir: Path, fold_dir: Path) -> TrackerRun:
    """The tracker run of a cv's fold (``open_cv`` first: its MLflow run is the fold's parent)."""
    parent = _read_ids(cv_dir).get("mlflow") if recipe.train.report_to != ["none"] else None
    name, tensorboard = f"{cv_dir.name}-{fold_dir.name}", cv_dir / TENSORBOARD_DIR / fold_dir.name
    return _open(recipe, fold_dir, name, tensorboard, cv_dir.name, "fold", parent)


def _open(
    recipe: Recipe, folder: Path, name: str, tensorboard: Path, group: str | None, job: str, parent: str | None
) -> TrackerRun:
    trackers = tuple(t for t in recipe.train.report_to if t != "none")
    run = TrackerRun(trackers, folder, name, tensorboard, group, job)
    if not trackers:
        return run
    ids = _read_ids(folder)
    if "wandb" in trackers:
        run.wandb_id = ids.get("wandb") or secrets.token_hex(6)
    if "mlflow" in trackers:
        run.mlflow_run_id = _mlflow_run(ids.get("mlflow"), run, parent)
    wanted = {key: value for key, value in (("wandb", run.wandb_id), ("mlflow", run.mlflow_run_id)) if value}
    if wanted != ids:
        write_json(folder / TRACKING_FILE, wanted)
    return run


def _read_ids(folder: Path) -> dict[str, str]:
    path = folder / TRACKING_FILE
    return read_json(path, "the tracker run ids written by gen-emotion") if path.is_file() else {}


def _project(variable: str) -> str:
    return os.environ.get(variable) or PROJECT


def _wandb_dir(folder: Path) -> str:
    """Where W&B keeps its local files: ``WANDB_DIR``, else the folder (its ``wandb/``)."""
    return os.environ.get("WANDB_DIR") or str(folder)


def _safe_key(key: str) -> str:
    """A figure's name as every tracker takes it (a label's odd characters as ``_``)."""
    return _UNSAFE.sub("_", key)


# --- The figures ---------------------------------------------------------------------------------------------------


def _scores(prefix: str, scores: Mapping[str, Any]) -> dict[str, float]:
    """``macro_f1``, ``micro_f1``, ``jaccard`` and each label's F1 of a ``metrics.score`` mapping, under ``prefix``."""
    figures = {
        f"{prefix}/{key}": float(scores[key])
        for key in ("macro_f1", "micro_f1", "jaccard")
        if scores.get(key) is not None
    }
    figures.update({f"{prefix}/f1/{label}": float(row["f1"]) for label, row in scores["per_label"].items()})
    return figures


def run_figures(metrics: RunMetrics) -> dict[str, float]:
    """A run's held-out figures (``metrics.json``): the task's own decision scored, the macro-F1 as submitted, and
    the tuned thresholds where there are some."""
    figures = _scores("held_out", metrics.held_out)
    if metrics.held_out_final_macro_f1 is not None:
        figures["held_out/final_macro_f1"] = float(metrics.held_out_final_macro_f1)
    probabilities = metrics.probabilities or {}
    if probabilities.get("thresholded_macro_f1_cv") is not None:
        figures["held_out/thresholded_macro_f1_cv"] = float(probabilities["thresholded_macro_f1_cv"])
    figures.update({f"thresholds/{label}": float(v) for label, v in probabilities.get("thresholds", {}).items()})
    return figures


def fold_figures(scores: Mapping[str, Any]) -> dict[str, float]:
    """A cv fold's held-out figures: ``metrics.score`` of its own decision (probabilities cut at 0.5, or greedy)."""
    return _scores("held_out", scores)


def cv_figures(metrics: CvMetrics) -> dict[str, float]:
    """A cv's out-of-fold figures (``oof_metrics.json``) at its tuned thresholds, each fold's macro-F1 among them."""
    figures = _scores("out_of_fold", metrics.to_dict())
    for key in ("macro_f1_at_0_5", "macro_f1_thresholds_cv", "per_fold_macro_f1_mean", "per_fold_macro_f1_std"):
        value = getattr(metrics, key)
        if value is not None:
            figures[f"out_of_fold/{key}"] = float(value)
    figures.update({f"out_of_fold/fold-{f['fold']}/macro_f1": float(f["macro_f1"]) for f in metrics.per_fold})
    figures.update({f"thresholds/{label}": float(v) for label, v in metrics.thresholds.items()})
    return figures


def training_steps(training: Mapping[str, Any]) -> int:
    """The step a run's figures are logged at: its training's last (``training.json``; 0 for a task without steps)."""
    return int(training.get("steps") or 0)


def flat_config(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested recipe as ``section.key: value`` strings (MLflow's parameters)."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


# --- TensorBoard -------------------------------------------------------------------------------------------------


def _finish_tensorboard(run: TrackerRun, figures: dict, recipe: Recipe, notes: dict, step: int) -> None:
    """Scalars and text summaries in an event file of the run's TensorBoard folder (beside the Trainer's)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    text_metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)])

    def text(tag: str, body: str) -> Any:
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[body.encode()], tensor_shape=shape)
        return summary_pb2.Summary.Value(tag=tag, metadata=text_metadata, tensor=tensor)

    values = [summary_pb2.Summary.Value(tag=_safe_key(k), simple_value=v) for k, v in figures.items()]
    values += [text(f"{key}/text_summary", value) for key, value in notes.items()]
    values.append(text("recipe/text_summary", "```yaml\n" + recipe.to_yaml() + "```"))
    writer = EventFileWriter(str(run.tensorboard_dir))
    try:
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)))
    finally:
        writer.close()


# --- Weights & Biases --------------------------------------------------------------------------------------------


def _finish_wandb(run: TrackerRun, figures: dict, recipe: Recipe, notes: dict, step: int) -> None:
    """The figures as the W&B run's summary and the recipe as its config: the Trainer's run where it is still open
    in this process, else the same run resumed (``WANDB_MODE=offline`` keeps it in ``WANDB_DIR``'s ``wandb/``)."""
    import wandb

    config = {"recipe": recipe.to_dict()}
    current = wandb.run
    if current is not None and current.id != run.wandb_id:
        current.finish()
        current = None
    try:
        if current is None:
            current = wandb.init(
                id=run.wandb_id,
                resume="allow",
                name=run.name,
                group=run.group,
                job_type=run.job,
                project=_project("WANDB_PROJECT"),
                dir=_wandb_dir(run.folder),
                config=config,
            )
        else:
            current.config.update(config, allow_val_change=True)
        current.summary.update({**{_safe_key(k): v for k, v in figures.items()}, **notes})
        current.finish()
        _forget_wandb_settings()
    except (wandb.errors.Error, OSError) as err:
        raise GenEmotionError(
            f"{run.folder}: W&B run {run.wandb_id} took no figures ({str(err).splitlines()[0]}); set WANDB_API_KEY "
            "(or WANDB_MODE=offline) and rerun the same command: the finished run logs them again"
        ) from None


def _forget_wandb_settings() -> None:
    """W&B reads its environment (``WANDB_RUN_ID``...) once a process, at its first run: end its session in this
    process (``wandb.teardown``), so that the next run (a cv's next fold, trained here) reads the environment anew."""
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        wandb.teardown()


# --- MLflow --------------------------------------------------------------------------------------------------------


def _mlflow_client() -> Any:
    """An ``MlflowClient`` of ``MLFLOW_TRACKING_URI`` (else MLflow's default store); a store it cannot open is one
    line."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient()
    except (MlflowException, ImportError) as err:
        from mlflow import get_tracking_uri

        raise GenEmotionError(
            f"MLflow cannot open its tracking store {mask_url(get_tracking_uri())} ({str(err).splitlines()[0]}); "
            "set MLFLOW_TRACKING_URI to a tracking server (http://...) or a store this MLflow opens"
        ) from None


def _mlflow_run(run_id: str | None, run: TrackerRun, parent: str | None) -> str:
    """The MLflow run of ``run``: ``run_id`` (a resumed run's, which must be in the store), else a new one in the
    experiment (a cv fold's under its cv's ``parent`` run)."""
    from mlflow.exceptions import MlflowException

    client = _mlflow_client()
    if run_id is not None:
        try:
            client.get_run(run_id)
        except MlflowException:
            raise GenEmotionError(
                f"{run.folder / TRACKING_FILE}: MLflow run {run_id} is not in the tracking store "
                f"{mask_url(client.tracking_uri)}; set MLFLOW_TRACKING_URI as when the run started, or --restart"
            ) from None
        return run_id
    name = _project("MLFLOW_EXPERIMENT_NAME")
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
    tags = {"gen_emotion.folder": str(run.folder.resolve()), "gen_emotion.job": run.job}
    if parent is not None:
        tags["mlflow.parentRunId"] = parent
    return client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id


def _finish_mlflow(run: TrackerRun, figures: dict, recipe: Recipe, notes: dict, step: int) -> None:
    """The figures as metrics, the recipe as parameters (``section.key``) and the notes as tags of the run's MLflow
    run, which ends ``FINISHED``."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

    client, stamp = _mlflow_client(), int(time.time() * 1000)
    metrics = [Metric(_safe_key(k), v, stamp, step) for k, v in figures.items()]
    params = [Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in flat_config(recipe.to_dict(), "recipe.").items()]
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run.mlflow_run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])
    for start in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run.mlflow_run_id, params=params[start : start + MAX_PARAMS_TAGS_PER_BATCH])
    client.log_batch(run.mlflow_run_id, tags=[RunTag(f"gen_emotion.{k}", v) for k, v in notes.items()])
    client.set_terminated(run.mlflow_run_id, "FINISHED")
