"""Read and validate labelled and unlabelled tweet files, and split them into folds.

Reads the Kaggle "Emotion Detection" CSV files (``ID,Tweet,`` + 11 label columns; the test
file's label columns hold ``NONE``) and SemEval-2018 Task 1 E-c tab-separated files. Every
problem is reported as one line naming the file, the row and what is wrong; no row is ever
dropped or reordered, and IDs are always strings.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gen_emotion.errors import GenEmotionError
from gen_emotion.labels import LABELS, NUM_LABELS

ID_COLUMN = "ID"
TEXT_COLUMN = "Tweet"
UNLABELLED = "NONE"


class DataError(GenEmotionError):
    """A data file is missing, unreadable or malformed."""


@dataclass
class EmotionData:
    """Tweets in file order: string IDs, texts, and an ``(n, 11)`` 0/1 array or ``None``."""

    ids: list[str]
    texts: list[str]
    labels: np.ndarray | None
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices: np.ndarray | list[int]) -> EmotionData:
        """The rows at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        labels = None if self.labels is None else self.labels[idx]
        return EmotionData(
            ids=[self.ids[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            labels=labels,
            source=self.source,
        )


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line}: not valid UTF-8 (byte {raw[err.start]:#04x}); save the file as UTF-8"
        ) from None


def _delimiter(path: Path, header_line: str) -> str:
    if path.suffix.lower() in {".tsv", ".txt"} or ("\t" in header_line and "," not in header_line):
        return "\t"
    return ","


def read_emotion_file(path: str | Path, *, require_labels: bool = False, require_text: bool = True) -> EmotionData:
    """Read a Kaggle CSV or SemEval TSV file of tweets.

    With ``require_labels`` every label column must exist and hold 0 or 1. Otherwise label
    columns may be absent or hold ``NONE`` (a test file), and the result has ``labels=None``.
    Without ``require_text`` the ``Tweet`` column may be absent (a predictions file); texts are
    then empty strings.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    text = _decode(path, path.read_bytes())
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    delimiter = _delimiter(path, text.splitlines()[0])
    # SemEval's tab-separated files are raw text: a tweet may start with a quote character.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    header = [name.strip() for name in next(reader)]
    for column in (ID_COLUMN, TEXT_COLUMN) if require_text else (ID_COLUMN,):
        if column not in header:
            raise DataError(f"{path}: row 1: missing column {column!r} (header: {','.join(header)})")
    missing = [label for label in LABELS if label not in header]
    if require_labels and missing:
        raise DataError(f"{path}: row 1: missing label column(s) {', '.join(missing)}")
    if missing and len(missing) < NUM_LABELS:
        raise DataError(f"{path}: row 1: missing label column(s) {', '.join(missing)}")
    has_label_columns = not missing
    id_at = header.index(ID_COLUMN)
    text_at = header.index(TEXT_COLUMN) if TEXT_COLUMN in header else None
    label_at = [header.index(label) for label in LABELS] if has_label_columns else []

    ids: list[str] = []
    texts: list[str] = []
    rows: list[list[int]] = []
    unlabelled_rows = 0
    first_seen: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # a blank line is not a row
        if len(record) != len(header):
            raise DataError(
                f"{path}: row {line}: expected {len(header)} fields, found {len(record)}"
                " (check the quoting of the tweet)"
            )
        row_id = record[id_at].strip()
        if not row_id:
            raise DataError(f"{path}: row {line}: empty ID")
        if row_id in first_seen:
            raise DataError(f"{path}: row {line}: duplicate ID {row_id!r} (first at row {first_seen[row_id]})")
        first_seen[row_id] = line
        values = [record[i].strip() for i in label_at]
        if values and all(v.upper() == UNLABELLED for v in values) and not require_labels:
            unlabelled_rows += 1
        elif values:
            bad = [(LABELS[k], v) for k, v in enumerate(values) if v not in {"0", "1"}]
            if bad:
                name, value = bad[0]
                raise DataError(f"{path}: row {line}: label {name!r} is {value!r}, expected 0 or 1")
            rows.append([int(v) for v in values])
        ids.append(row_id)
        texts.append(record[text_at] if text_at is not None else "")
    if not ids:
        raise DataError(f"{path}: file has a header but no rows")
    if rows and unlabelled_rows:
        raise DataError(f"{path}: mixes labelled rows and rows whose labels are {UNLABELLED!r}")
    labels = np.asarray(rows, dtype=np.int64) if rows else None
    return EmotionData(ids=ids, texts=texts, labels=labels, source=str(path))


def read_train(path: str | Path) -> EmotionData:
    """Read a labelled training file; every label must be 0 or 1."""
    return read_emotion_file(path, require_labels=True)


def read_test(path: str | Path) -> EmotionData:
    """Read a file to predict; its labels, if any, are ignored."""
    data = read_emotion_file(path, require_labels=False)
    data.labels = None
    return data


def read_label_file(path: str | Path) -> EmotionData:
    """Read ``ID`` + 11 label columns of 0/1 (predictions or gold labels); ``Tweet`` is optional."""
    return read_emotion_file(path, require_labels=True, require_text=False)


def label_counts(labels: np.ndarray) -> dict[str, int]:
    """The number of positive rows per label."""
    return {label: int(count) for label, count in zip(LABELS, np.asarray(labels).sum(axis=0))}


def fold_indices(labels: np.ndarray, n_splits: int = 10, seed: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """Multilabel-stratified K-fold split: a list of ``(train_idx, val_idx)``, deterministic in ``seed``."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    labels = np.asarray(labels)
    if n_splits < 2:
        raise GenEmotionError(f"folds must be at least 2, got {n_splits}")
    if len(labels) < n_splits:
        raise GenEmotionError(f"cannot split {len(labels)} rows into {n_splits} folds")
    splitter = MultilabelStratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    placeholder = np.zeros((len(labels), 1))
    return [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(placeholder, labels)]


def split_fold(data: EmotionData, fold: int, n_splits: int = 10, seed: int = 42) -> tuple[EmotionData, EmotionData]:
    """Hold out fold ``fold`` of ``data``: returns ``(train, held_out)``, each in file order."""
    if data.labels is None:
        raise GenEmotionError(f"{data.source}: cannot split a file without labels")
    if not 0 <= fold < n_splits:
        raise GenEmotionError(f"fold must be in 0..{n_splits - 1}, got {fold}")
    train_idx, val_idx = fold_indices(data.labels, n_splits, seed)[fold]
    return data.subset(train_idx), data.subset(val_idx)
