"""Run folders: where they go, the name of every file in them, and reading and writing those files.

Every command that trains (``run``, ``cv``) writes one run folder: ``recipe.yaml`` (the resolved recipe, so a
resumed run can be checked against it), ``data.json`` (the data's fingerprint) and ``run.log`` (this process's and
its step processes' log, secrets redacted), beside what the command itself writes: a run its predictions and
``metrics.json`` (``pipeline``); a cv its folds and the out-of-fold layout, which an ensemble folder has too
(``write_out_of_fold``: the predictions, thresholds and ``oof_metrics.json``), so either can be reported or
ensembled again (``load_member``). The figures are typed (``run_metrics``).
"""

from __future__ import annotations

import csv
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import Recipe, recipe_from_dict
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import make_folder, read_json, write_json, write_text
from gen_emotion.core.labels import LABELS
from gen_emotion.data.dataset import Columns
from gen_emotion.data.formats import read_label_file
from gen_emotion.data.sources import SOURCE_KEY, describe_change
from gen_emotion.scoring.metrics import macro_f1, score
from gen_emotion.scoring.prediction_files import (
    read_probabilities,
    write_predictions,
    write_probabilities,
    write_submission,
)
from gen_emotion.scoring.run_metrics import FolderMetrics, RunMetrics, check_folder_metrics, folder_metrics
from gen_emotion.scoring.thresholds import (
    apply_thresholds,
    cross_validated_macro_f1,
    thresholds_from_dict,
    thresholds_to_dict,
)

log = logging.getLogger(__name__)

RECIPE_FILE = "recipe.yaml"
DATA_FILE = "data.json"
LOCK_FILE = ".gen-emotion.lock"  # gen_emotion.runs.locks: the folder's writer holds it
TEACHER_PROBS = "teacher_probs.csv"
"""A distilled cv's soft targets: its teacher's out-of-fold probabilities (``distill``), written before it trains."""
DISTILL_FILE = "distill.json"
"""A distilled cv's teacher, alpha and temperature, and its honest figure beside the teacher's (``distill``)."""
KEPT_ON_RESTART = (LOCK_FILE, TEACHER_PROBS)
# what a run, a cv and an ensemble folder hold (a run: its one fold's val_*; a cv and an ensemble: oof_*)
RUN_METRICS = "metrics.json"
FOLDER_METRICS = "oof_metrics.json"
THRESHOLDS = "thresholds.json"
SUBMISSION = "submission.csv"
VAL_PROBS, TEST_PROBS, OOF_PROBS = "val_probs.csv", "test_probs.csv", "oof_probs.csv"
VAL_PREDICTIONS, TEST_PREDICTIONS = "val_predictions.csv", "test_predictions.csv"
OOF_PREDICTIONS, OOF_LABELS = "oof_predictions.csv", "oof_labels.csv"
CV_SETTINGS = "cv.json"
FOLDS_DIR = "folds"
FOLD_DONE = "fold.json"  # a cv fold's figures, written last
STACKER = "stacker.json"
"""A stacked ensemble's fitted logistic regressions (``ensemble.apply_stacker``)."""
TRIAL_FILE = "trial.json"
"""A sweep's trial folder (a run or cv): the trial's state, settings, objective and reason (``sweeps.trial``)."""
RUN, CV, FOLD, ENSEMBLE = "run", "cv", "fold", "ensemble"
"""The folders files live in: a run folder, a cv folder, a cv fold's ``folds/fold-N/``, an ensemble folder."""


def folder_files() -> dict[str, tuple[str, ...]]:
    """Every file (a folder: ``NAME/``) a run, cv or ensemble folder may hold, and in which folders: the one list,
    which docs/commands.md's table follows (``tests/test_doc_facts.py``). Names the tasks and trainers declare are
    taken from them (imported here, not at start, as they bring the training code)."""
    from gen_emotion.core.logs import LOG_FILE
    from gen_emotion.models.loading import ADAPTER_DIR, MERGED_DIR
    from gen_emotion.tasks.generate import SHARD_DIR
    from gen_emotion.training.classify import MODEL_DIR
    from gen_emotion.training.tfidf import MODEL_FILE
    from gen_emotion.training.tracking import TENSORBOARD_DIR, TRACKING_FILE
    from gen_emotion.training.trainers import CHECKPOINT_DIR, TRAIN_LOG, TRAINING_SUMMARY

    trained = (RUN, FOLD)
    results = (RUN, CV, ENSEMBLE)
    return {
        RECIPE_FILE: (RUN, CV),
        DATA_FILE: (RUN, CV),
        CV_SETTINGS: (CV,),
        f"{FOLDS_DIR}/": (CV,),
        LOG_FILE: (RUN, CV),
        f"{ADAPTER_DIR}/": trained,
        f"{MODEL_DIR}/": trained,
        MODEL_FILE: trained,
        f"{MERGED_DIR}-DTYPE/": trained,
        f"{SHARD_DIR}/": trained,
        f"{CHECKPOINT_DIR}/": trained,
        TRAINING_SUMMARY: trained,
        TRAIN_LOG: trained,
        VAL_PREDICTIONS: (RUN,),
        TEST_PREDICTIONS: results,
        VAL_PROBS: trained,
        TEST_PROBS: (RUN, FOLD, CV, ENSEMBLE),
        THRESHOLDS: results,
        SUBMISSION: results,
        RUN_METRICS: (RUN,),
        FOLD_DONE: (FOLD,),
        OOF_PROBS: (CV, ENSEMBLE),
        OOF_PREDICTIONS: (CV, ENSEMBLE),
        OOF_LABELS: (CV, ENSEMBLE),
        FOLDER_METRICS: (CV, ENSEMBLE),
        STACKER: (ENSEMBLE,),
        TRIAL_FILE: (RUN, CV),
        TEACHER_PROBS: (CV,),
        DISTILL_FILE: (CV,),
        TRACKING_FILE: (RUN, CV, FOLD),
        "wandb/": (RUN, CV, FOLD),  # W&B's own name for its local files
        f"{TENSORBOARD_DIR}/": (RUN, CV),
    }


def default_run_dir(recipe: Recipe, prefix: str = "") -> Path:
    """``runs/[PREFIX]RECIPE-TIME``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{prefix}{recipe.name}-{stamp}"


def load_run_recipe(run_dir: Path) -> Recipe:
    """The resolved recipe a run folder was started with."""
    import yaml

    path = run_dir / RECIPE_FILE
    if not path.is_file():
        raise GenEmotionError(f"{run_dir}: not a run folder (no {RECIPE_FILE})")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise GenEmotionError(f"{path}: damaged, not readable YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise GenEmotionError(f"{path}: damaged, holds {type(values).__name__}; expected a mapping of sections")
    generate = values.get("generate")
    if isinstance(generate, dict) and generate.get("probabilities") and "probability_source" not in generate:
        generate["probability_source"] = "samples"  # a run from before branches: its probabilities were sampled
    return recipe_from_dict(values, where=str(path))


def prepare_run_dir(recipe: Recipe, run_dir: Path, data: dict[str, Any] | None = None, restart: bool = False) -> None:
    """Create the run folder and write the resolved recipe and ``data``, what it runs on (``data.json``:
    ``sources.Splits.record``); a resumed run must use the same recipe and the same data (each split's
    fingerprint; where it came from may move), unless ``restart`` empties the folder first."""
    if restart and (run_dir / RECIPE_FILE).is_file():
        log.info("%s: --restart: removing what the earlier run wrote", run_dir)
        for path in run_dir.iterdir():
            if path.name not in KEPT_ON_RESTART:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    make_folder(run_dir)
    if (run_dir / RECIPE_FILE).is_file():
        if load_run_recipe(run_dir) != recipe:
            raise GenEmotionError(
                f"{run_dir} holds a run of a different recipe; resume with the same recipe, use a new --out, "
                "or --restart to start this folder over"
            )
        before = read_json(run_dir / DATA_FILE, "the data's fingerprint") if (run_dir / DATA_FILE).is_file() else None
        if data is not None and before is not None:
            _check_same_data(run_dir, before, data)
    else:
        write_text(run_dir / RECIPE_FILE, recipe.to_yaml())
    if data is not None and not (run_dir / DATA_FILE).is_file():
        write_json(run_dir / DATA_FILE, data)


def _check_same_data(run_dir: Path, before: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse a resume whose splits' fingerprints differ from those ``data.json`` kept (not where they are)."""
    splits = [key for key in {**before, **now} if key != SOURCE_KEY]
    changed = [split for split in splits if before.get(split) != now.get(split)]
    if changed:
        raise GenEmotionError(
            f"{run_dir} was started on other data ({', '.join(changed)} changed since: "
            + "; ".join(describe_change(split, before.get(split), now.get(split)) for split in changed)
            + "); resume with the same data, use a new --out, or --restart to start this folder over"
        )


def fold_path(run_dir: Path, k: int) -> Path:
    """Where a cv keeps its fold ``k`` (its model, predictions and ``fold.json``)."""
    return run_dir / FOLDS_DIR / f"fold-{k}"


def write_run_metrics(run_dir: Path, metrics: RunMetrics) -> None:
    write_json(run_dir / RUN_METRICS, metrics.to_dict())


def read_run_metrics(run_dir: Path) -> RunMetrics:
    """A finished run's ``metrics.json``."""
    return RunMetrics.from_dict(read_json(run_dir / RUN_METRICS, "the run's metrics written by gen-emotion run"))


def write_folder_metrics(folder: Path, metrics: FolderMetrics) -> None:
    """A cv's or an ensemble's ``oof_metrics.json``, written last: the folder is finished once it exists."""
    write_json(folder / FOLDER_METRICS, metrics.to_dict())


def read_folder_metrics(
    folder: Path, expected: str = f"the {FOLDER_METRICS} of gen-emotion cv or ensemble"
) -> FolderMetrics:
    """A cv's or an ensemble's ``oof_metrics.json`` (``CvMetrics`` or ``EnsembleMetrics``, by its ``kind``)."""
    return folder_metrics(read_json(folder / FOLDER_METRICS, expected))


def read_cv_settings(folder: Path) -> dict[str, Any]:
    """A cv folder's ``cv.json``: its ``folds``, ``seed``, ``rows``, ``test_rows`` and ``data``."""
    return read_json(folder / CV_SETTINGS, "the cv settings written by gen-emotion cv")


def read_stacker(folder: Path) -> dict[str, Any]:
    """A stacked ensemble's ``stacker.json``."""
    return read_json(folder / STACKER, "the stacked ensemble's logistic regressions")


def write_thresholds(folder: Path, thresholds: np.ndarray, names: tuple[str, ...]) -> None:
    write_json(folder / THRESHOLDS, thresholds_to_dict(thresholds, names))


def threshold_values(folder: Path) -> dict[str, float]:
    """A folder's ``thresholds.json`` as written: one threshold per label."""
    return read_json(folder / THRESHOLDS, "one threshold per label")


def read_thresholds(folder: Path, names: tuple[str, ...]) -> np.ndarray:
    """A folder's thresholds, in the order of ``names``."""
    try:
        return thresholds_from_dict(threshold_values(folder), names)
    except (ValueError, TypeError) as err:
        raise GenEmotionError(f"{folder / THRESHOLDS}: damaged ({err}); expected one threshold per label") from None


@dataclass
class OutOfFold:
    """What a cv or an ensemble decided for every training row (out of fold) and every test row: what the layout
    they share holds (``write_out_of_fold``)."""

    ids: list[str]
    labels: np.ndarray
    """The gold labels of ``ids``."""
    scores: np.ndarray
    """The out-of-fold scores the thresholds cut: probabilities, or the share of 0/1 votes."""
    test_ids: list[str]
    test_scores: np.ndarray
    thresholds: np.ndarray
    label_names: tuple[str, ...]
    id_column: str
    """The submission's ID column (the data's)."""
    probabilities: bool
    """Whether the scores are probabilities (then written as ``oof_probs.csv`` and ``test_probs.csv``)."""
    tuned: bool
    """Whether the thresholds were tuned on these rows; only then is there an honest figure (a cv of 0/1 votes cuts
    at 0.5)."""
    seed: int
    """The seed of the honest figure's splits: the recipe's ``data.seed`` for a cv; an ensemble's first member's."""

    @property
    def predictions(self) -> np.ndarray:
        return apply_thresholds(self.scores, self.thresholds)

    @property
    def test_predictions(self) -> np.ndarray:
        return apply_thresholds(self.test_scores, self.thresholds)


def write_out_of_fold(folder: Path, oof: OutOfFold) -> dict[str, Any]:
    """Write the layout of a cv and an ensemble folder (the probabilities where ``oof`` has them, the out-of-fold
    predictions and labels, the test predictions, the submission, the thresholds); return the figures their
    ``oof_metrics.json`` share (``macro_f1`` ... ``thresholds``: fields of ``CvMetrics`` and ``EnsembleMetrics``)."""
    y, names, predictions, test_predictions = oof.labels, oof.label_names, oof.predictions, oof.test_predictions
    if oof.probabilities:
        write_probabilities(folder / OOF_PROBS, oof.ids, oof.scores, names)
        write_probabilities(folder / TEST_PROBS, oof.test_ids, oof.test_scores, names)
    write_predictions(folder / OOF_PREDICTIONS, oof.ids, predictions, names=names)
    write_predictions(folder / OOF_LABELS, oof.ids, y, names=names)
    write_predictions(folder / TEST_PREDICTIONS, oof.test_ids, test_predictions, names=names)
    write_submission(folder / SUBMISSION, oof.test_ids, test_predictions, names, oof.id_column)
    write_thresholds(folder, oof.thresholds, names)
    scores = score(y, predictions, names)
    return {
        **{key: scores[key] for key in ("macro_f1", "micro_f1", "jaccard", "rows")},
        "macro_f1_at_0_5": macro_f1(y, apply_thresholds(oof.scores, np.full(len(names), 0.5))),
        "macro_f1_thresholds_cv": cross_validated_macro_f1(y, oof.scores, seed=oof.seed) if oof.tuned else None,
        "per_label": scores["per_label"],
        "thresholds": thresholds_to_dict(oof.thresholds, names),
    }


@dataclass
class Member:
    """A finished cv or ensemble folder (``load_member``): its out-of-fold and test predictions, and
    probabilities when it has them."""

    run_dir: Path
    name: str
    metrics: FolderMetrics
    ids: list[str]
    labels: np.ndarray
    oof_pred: np.ndarray
    test_ids: list[str]
    test_pred: np.ndarray
    oof_probs: np.ndarray | None = None
    test_probs: np.ndarray | None = None
    label_names: tuple[str, ...] = LABELS
    id_column: str = "ID"
    """The ID column of its submission (the data's)."""

    @property
    def has_probs(self) -> bool:
        return self.oof_probs is not None and self.test_probs is not None


def _labels(path: Path) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    data = read_label_file(path, Columns(labels=None))  # the label columns as the file has them
    return data.ids, data.labels, data.label_names


def load_member(run_dir: Path) -> Member:
    """A finished cv (or ensemble) run folder; error naming the missing file otherwise."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / FOLDER_METRICS
    if not metrics_path.is_file():
        raise GenEmotionError(f"{run_dir}: no {FOLDER_METRICS}; pass finished gen-emotion cv or ensemble folders")
    values = read_json(metrics_path, f"the {FOLDER_METRICS} of a gen-emotion cv or ensemble run")
    ids, labels, names = _labels(run_dir / OOF_LABELS)
    metrics = folder_metrics(check_folder_metrics(values, metrics_path, names))
    pred_ids, oof_pred, pred_names = _labels(run_dir / OOF_PREDICTIONS)
    test_ids, test_pred, test_names = _labels(run_dir / TEST_PREDICTIONS)
    if pred_ids != ids:
        raise GenEmotionError(f"{run_dir}: {OOF_PREDICTIONS} and {OOF_LABELS} list different IDs")
    if pred_names != names or test_names != names:
        raise GenEmotionError(f"{run_dir}: its prediction files have other label columns than {OOF_LABELS}")
    member = Member(run_dir, metrics.name or run_dir.name, metrics, ids, labels, oof_pred, test_ids, test_pred)
    member.label_names = names
    member.id_column = _submission_id_column(run_dir / SUBMISSION)
    if metrics.has_probabilities and (run_dir / OOF_PROBS).is_file():
        prob_ids, member.oof_probs = read_probabilities(run_dir / OOF_PROBS, names)
        test_prob_ids, member.test_probs = read_probabilities(run_dir / TEST_PROBS, names)
        if prob_ids != ids or test_prob_ids != test_ids:
            raise GenEmotionError(f"{run_dir}: the probability files list other IDs than the prediction files")
    return member


def _submission_id_column(path: Path) -> str:
    """The first column of a run's submission (its data's ID column), ``ID`` where there is none."""
    if not path.is_file():
        return "ID"
    with path.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), None)
    return header[0] if header else "ID"


def unique_names(members: list[Member]) -> list[str]:
    """The members' names, each made unique by its folder's name where two share one."""
    names = [m.name for m in members]
    return [f"{m.name} ({m.run_dir.name})" if names.count(m.name) > 1 else m.name for m in members]
