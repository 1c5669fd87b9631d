"""Prediction, probability and submission files: the one place that writes (and reads back) them.

A predictions file is ``ID`` + the 11 label columns (0/1), optionally followed by the raw
generation in an ``output`` column. A probabilities file is ``ID`` + 11 probabilities (6 decimals).
A submission is ``ID`` + the 11 integer columns, in the test file's row order, with exactly one
row per test ID. Every file is written whole or not at all (``files.open_output``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import open_output
from gen_emotion.core.labels import LABELS
from gen_emotion.data.dataset import SEMEVAL_COLUMNS, Columns, EmotionData
from gen_emotion.data.formats import read_label_file, read_test
from gen_emotion.scoring.metrics import check_label_matrix
from gen_emotion.scoring.thresholds import check_probabilities

PROBABILITY_DECIMALS = 6


def write_table(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a CSV file (``header`` then ``rows``) whole, through ``open_output``."""
    with open_output(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_predictions(
    path: str | Path,
    ids: Sequence[str],
    labels: np.ndarray,
    outputs: Sequence[str] | None = None,
    names: Sequence[str] = LABELS,
    id_column: str = "ID",
) -> None:
    """Write ``ID`` + one 0/1 column per label of ``names`` (+ ``output`` with the raw generations, if given)."""
    labels = check_label_matrix(labels, "labels", len(names))
    if len(ids) != len(labels) or (outputs is not None and len(outputs) != len(ids)):
        raise ValueError("ids, labels and outputs must have the same length")
    header = [id_column, *names] + (["output"] if outputs is not None else [])
    rows = [
        [row_id, *map(int, vector)] + ([outputs[i]] if outputs is not None else [])
        for i, (row_id, vector) in enumerate(zip(ids, labels))
    ]
    write_table(path, header, rows)


def write_probabilities(path: str | Path, ids: Sequence[str], probs: np.ndarray, names: Sequence[str] = LABELS) -> None:
    """``ID`` + one probability in [0, 1] per label of ``names``, with ``PROBABILITY_DECIMALS`` decimals."""
    probs = check_probabilities(probs, width=len(names))
    if len(ids) != len(probs):
        raise ValueError(f"{len(ids)} ids but {len(probs)} rows of probabilities")
    rows = ([row_id, *(f"{value:.{PROBABILITY_DECIMALS}f}" for value in row)] for row_id, row in zip(ids, probs))
    write_table(path, ["ID", *names], rows)


def as_written(probs: np.ndarray) -> np.ndarray:
    """The probabilities as ``read_probabilities`` gives them back after ``write_probabilities``."""
    probs = np.asarray(probs, dtype=np.float64)
    return np.array([float(f"{value:.{PROBABILITY_DECIMALS}f}") for value in probs.ravel()]).reshape(probs.shape)


def read_probabilities(path: str | Path, names: Sequence[str] = LABELS) -> tuple[list[str], np.ndarray]:
    """IDs and the ``(n, len(names))`` probabilities of a file written by ``write_probabilities``."""
    path = Path(path)
    if not path.is_file():
        raise GenEmotionError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != ["ID", *names]:
            raise GenEmotionError(f"{path}: row 1: expected the header ID,{','.join(names)}")
        ids, rows = [], []
        for number, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise GenEmotionError(f"{path}: row {number}: expected {len(header)} fields, found {len(row)}")
            ids.append(row[0])
            try:
                rows.append([float(v) for v in row[1:]])
            except ValueError:
                raise GenEmotionError(f"{path}: row {number}: a probability is not a number") from None
    try:
        return ids, check_probabilities(np.asarray(rows, dtype=np.float64).reshape(-1, len(names)), width=len(names))
    except ValueError as err:
        raise GenEmotionError(f"{path}: {err}") from None


def reindex(values: np.ndarray, ids: Sequence[str], order: Sequence[str]) -> np.ndarray:
    """The rows of ``values`` (one per ID of ``ids``) in the order of ``order``, whose IDs the caller has checked are
    all among ``ids``."""
    position = {row_id: i for i, row_id in enumerate(ids)}
    return values[[position[row_id] for row_id in order]]


def align(reference_ids: Sequence[str], predictions: EmotionData, what: str = "test") -> np.ndarray:
    """The prediction rows in ``reference_ids`` order; error on a missing, extra or repeated ID."""
    if predictions.labels is None:
        raise GenEmotionError(f"{predictions.source}: has no label columns")
    known = set(predictions.ids)
    missing = [row_id for row_id in reference_ids if row_id not in known]
    if missing:
        raise GenEmotionError(
            f"{predictions.source}: {len(missing)} {what} ID(s) have no prediction, first {missing[0]!r}"
        )
    reference = set(reference_ids)
    extra = [row_id for row_id in predictions.ids if row_id not in reference]
    if extra:
        raise GenEmotionError(
            f"{predictions.source}: {len(extra)} ID(s) are not in the {what} file, first {extra[0]!r}"
        )
    if len(reference) != len(reference_ids):
        raise GenEmotionError(f"the {what} file repeats an ID")
    return reindex(predictions.labels, predictions.ids, reference_ids)


def write_submission(
    path: str | Path,
    ids: Sequence[str],
    labels: np.ndarray,
    names: Sequence[str] = LABELS,
    id_column: str = "ID",
) -> None:
    """Write a submission: the test file's ID column + one integer column per label, one row per ID, in the
    given order (Kaggle's: ``ID`` + the 11 SemEval labels)."""
    if len(set(ids)) != len(ids):
        raise GenEmotionError("a submission needs exactly one row per ID; the IDs repeat")
    write_predictions(path, ids, labels, names=names, id_column=id_column)


def export_submission(
    predictions_path: str | Path, test_path: str | Path, out_path: str | Path, columns: Columns = SEMEVAL_COLUMNS
) -> int:
    """Check predictions against the test file's IDs and write them as a submission in test order; the label
    columns are the predictions file's (in its order), the ID column the test file's (``columns.id``).

    Returns the number of rows written.
    """
    predictions = read_label_file(predictions_path, Columns(labels=columns.labels))
    test = read_test(test_path, replace(columns, labels=predictions.label_names))
    labels = align(test.ids, predictions)
    write_submission(out_path, test.ids, labels, predictions.label_names, columns.id_header)
    return len(test.ids)
