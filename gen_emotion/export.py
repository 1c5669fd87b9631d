"""Prediction files and the Kaggle submission.

A predictions file is ``ID`` + the 11 label columns (0/1), optionally followed by the raw
generation in an ``output`` column. A submission is ``ID`` + the 11 integer columns, in the
test file's row order, with exactly one row per test ID.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gen_emotion.data import EmotionData, read_label_file, read_test
from gen_emotion.errors import GenEmotionError
from gen_emotion.labels import LABELS
from gen_emotion.metrics import check_label_matrix


def _write_csv_atomic(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def write_predictions(
    path: str | Path, ids: Sequence[str], labels: np.ndarray, outputs: Sequence[str] | None = None
) -> None:
    """Write ``ID`` + 11 label columns (+ ``output`` with the raw generations, if given)."""
    labels = check_label_matrix(labels, "labels")
    if len(ids) != len(labels) or (outputs is not None and len(outputs) != len(ids)):
        raise ValueError("ids, labels and outputs must have the same length")
    header = ["ID", *LABELS] + (["output"] if outputs is not None else [])
    rows = [
        [row_id, *map(int, vector)] + ([outputs[i]] if outputs is not None else [])
        for i, (row_id, vector) in enumerate(zip(ids, labels))
    ]
    _write_csv_atomic(Path(path), header, rows)


def align(reference_ids: Sequence[str], predictions: EmotionData, what: str = "test") -> np.ndarray:
    """The prediction rows in ``reference_ids`` order; error on a missing, extra or repeated ID."""
    if predictions.labels is None:
        raise GenEmotionError(f"{predictions.source}: has no label columns")
    position = {row_id: i for i, row_id in enumerate(predictions.ids)}
    missing = [row_id for row_id in reference_ids if row_id not in position]
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
    return predictions.labels[[position[row_id] for row_id in reference_ids]]


def write_submission(path: str | Path, ids: Sequence[str], labels: np.ndarray) -> None:
    """Write a Kaggle submission: ``ID`` + 11 integer columns, one row per ID, in the given order."""
    if len(set(ids)) != len(ids):
        raise GenEmotionError("a submission needs exactly one row per ID; the IDs repeat")
    write_predictions(path, ids, labels)


def export_submission(predictions_path: str | Path, test_path: str | Path, out_path: str | Path) -> int:
    """Check predictions against the test file's IDs and write them as a submission in test order.

    Returns the number of rows written.
    """
    test = read_test(test_path)
    predictions = read_label_file(predictions_path)
    labels = align(test.ids, predictions)
    write_submission(out_path, test.ids, labels)
    return len(test.ids)
