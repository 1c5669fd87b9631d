"""``sweep --holdout FRACTION``: a multilabel-stratified share of the training rows that no trial sees, and the one
score of the best recipe on it.

The best of N trials' out-of-fold figure is chosen on the rows that score it, so it is optimistic: the more trials,
the more so. ``split_holdout`` writes the sweep's own data folder ``data/`` once (seeded by the recipe's
``data.seed``): ``train.csv`` the rest of the training rows, ``holdout.csv`` the rows held out, ``test.csv`` the
test rows, each in file order and in the recipe's columns; every trial trains and is scored on ``data/`` only. At
the end ``score_holdout`` trains the best recipe on all of ``train.csv`` and scores it on ``holdout.csv`` once, by
``run``'s own path (``run_recipe`` with ``holdout.csv`` as its validation file): an honest figure beside the
optimistic one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import Recipe, columns, data_source
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.dataset import EmotionData, sample_data_dir
from gen_emotion.data.sources import read_splits
from gen_emotion.scoring.prediction_files import write_table

DATA_DIR = "data"
HOLDOUT_FILE = "holdout.csv"
HOLDOUT_RUN = "holdout-run"


def holdout_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rest, held)`` row indices: ``fraction`` of the rows held out, stratified on every label at once."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    if not 0 < fraction < 1:
        raise GenEmotionError(f"--holdout must be a share between 0 and 1, got {fraction}")
    held_rows = round(len(labels) * fraction)
    if held_rows < 1 or held_rows >= len(labels):
        raise GenEmotionError(f"--holdout {fraction} of {len(labels)} rows leaves no rows on one side")
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    rest, held = next(splitter.split(np.zeros((len(labels), 1)), labels))
    return np.sort(rest), np.sort(held)


def _labelled_rows(data: EmotionData, rows: np.ndarray) -> list[list[Any]]:
    return [[data.ids[i], data.texts[i], *map(int, data.labels[i])] for i in rows]


def split_holdout(recipe: Recipe, data: str | None, fraction: float, sweep_dir: Path) -> Path:
    """The sweep's data folder (module docstring), written once; a rerun finds it whole and keeps it."""
    folder = sweep_dir / DATA_DIR
    files = [folder / "test.csv", folder / HOLDOUT_FILE, folder / "train.csv"]  # train.csv last: it marks it done
    if all(path.is_file() for path in files):
        return folder
    cols = columns(recipe)
    if cols.id is None or cols.label_column is not None:
        raise GenEmotionError(
            "--holdout writes the training rows it keeps as a data folder: it needs data with an ID column and one "
            "0/1 column per label (data.id_column set, no data.label_column)"
        )
    splits = read_splits(data_source(recipe, data or sample_data_dir()))
    train, test = splits.train, splits.test
    rest, held = holdout_indices(train.labels, fraction, recipe.data.seed)
    header = [cols.id, cols.text, *train.label_names]
    write_table(files[0], [cols.id, cols.text], [[i, t] for i, t in zip(test.ids, test.texts)])
    write_table(files[1], header, _labelled_rows(train, held))
    write_table(files[2], header, _labelled_rows(train, rest))
    return folder


def score_holdout(recipe: Recipe, data_dir: Path, sweep_dir: Path) -> dict[str, Any]:
    """Train ``recipe`` on ``data_dir``'s ``train.csv`` and score it once on its ``holdout.csv`` (``run``'s path;
    resumed as a run is)."""
    from gen_emotion.runs.pipeline import run_recipe

    folder = sweep_dir / HOLDOUT_RUN
    metrics = run_recipe(recipe, data_dir, folder, val=data_dir / HOLDOUT_FILE)
    return {
        "folder": HOLDOUT_RUN,
        "rows": metrics.held_out.get("rows"),
        "macro_f1": metrics.honest_macro_f1,
        "decision": metrics.decision,
        "base_macro_f1": metrics.held_out["macro_f1"],
    }
