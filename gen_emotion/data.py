"""Read and validate labelled and unlabelled text files, and split them into folds.

Reads the Kaggle "Emotion Detection" CSV files (``ID,Tweet,`` + 11 label columns; the test
file's label columns hold ``NONE``), SemEval-2018 Task 1 E-c tab-separated files, and the same
columns as JSON Lines (``.jsonl``, one object a line), Parquet (``.parquet``) or a local Hugging
Face ``datasets`` folder (``save_to_disk``; ``formats``). Which columns hold the ID, the text and
the labels is a ``Columns`` (the recipe's ``data.id_column``, ``data.text_column`` and
``data.labels``; the labels may be every other column of the header). Every problem is reported as
one line naming the file, the row and what is wrong; no row is ever dropped or reordered, and IDs
are always strings.

Header: column names are matched ignoring case and surrounding white space, so ``id``,
`` Tweet `` and ``ANGER`` are the ``ID``, ``Tweet`` and ``anger`` columns. A header that names one
of these columns twice (``joy`` and ``Joy ``) is an error naming both positions; any other
column (a predictions file's ``output``) is ignored. The label columns are all present, or
(for a file to predict) all absent.

Rows: ``row N`` in a message is the record number, not the physical line: the header is row 1
and the first data record row 2, however many lines the quoted tweets before it span. Blank
lines are not records. Where a record starts on another line, the message names it too:
``row 5 (line 9)``. A tweet may be of any length: the csv module's 128 KiB field limit is
lifted while a file is read (and restored afterwards).
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from gen_emotion.errors import GenEmotionError
from gen_emotion.labels import LABELS

ID_COLUMN = "ID"
TEXT_COLUMN = "Tweet"
UNLABELLED = "NONE"
NOT_LABELS = ("output",)
"""Columns that are never labels when the labels are read from the header (a predictions file's outputs)."""


@dataclass(frozen=True)
class Columns:
    """Which columns of a data file hold the ID, the text and the labels (names matched as the header's are)."""

    id: str = ID_COLUMN
    text: str = TEXT_COLUMN
    labels: tuple[str, ...] | None = LABELS
    """The label columns, in order; ``None``: every other column of the header, in its order."""


SEMEVAL_COLUMNS = Columns()

_MAX_FIELD = 2**31 - 1
"""The largest field limit the csv module takes everywhere (it is a C ``long``: 32 bits on Windows)."""
_FIELD_LIMIT_LOCK = threading.Lock()
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
"""A byte that is not UTF-8, as ``surrogateescape`` decoding keeps it."""
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""The line ends the csv reader splits on."""


def _fold(name: str) -> str:
    """A header name as it is compared: without case, surrounding white space or byte-order marks."""
    return name.replace("\ufeff", "").strip().casefold()


class DataError(GenEmotionError):
    """A data file is missing, unreadable or malformed."""


@dataclass
class EmotionData:
    """Texts in file order: string IDs, texts, and an ``(n, len(label_names))`` 0/1 array or ``None``."""

    ids: list[str]
    texts: list[str]
    labels: np.ndarray | None
    source: str = ""
    label_names: tuple[str, ...] = LABELS

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
            label_names=self.label_names,
        )


@dataclass(frozen=True)
class _Record:
    """One record of the file: its number (the header is 1), the line it starts on, its fields."""

    row: int
    line: int
    fields: list[str]

    @property
    def where(self) -> str:
        """Where the record is, for a message."""
        return _where(self.row, self.line)


def _where(row: int, line: int) -> str:
    """``row N``, and ``(line L)`` where the record starts on another physical line."""
    return f"row {row}" if line == row else f"row {row} (line {line})"


@dataclass(frozen=True)
class _Layout:
    """Where the known columns are: the header's width, the ID, the text (or None), the labels (or [])."""

    width: int
    id_at: int
    text_at: int | None
    label_at: list[int]
    names: tuple[str, ...]
    """The label names, in column order."""


def _read_text(path: Path) -> str:
    """The file's text; a byte that is not UTF-8 is kept as a lone surrogate, reported by ``_parse``."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None
    return raw.decode("utf-8-sig", errors="surrogateescape")


def _delimiter(path: Path, text: str) -> str:
    """A tab for ``.tsv``/``.txt`` files or a tab-separated header, else a comma."""
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    if path.suffix.lower() in {".tsv", ".txt"} or ("\t" in header_line and "," not in header_line):
        return "\t"
    return ","


@contextmanager
def _field_limit(size: int) -> Iterator[None]:
    """Let the csv module read fields of up to ``size`` characters, then restore its limit.

    The limit is process-wide, so it is only ever raised, under a lock, and always put back.
    """
    with _FIELD_LIMIT_LOCK:
        previous = csv.field_size_limit()
        csv.field_size_limit(min(max(previous, size), _MAX_FIELD))
        try:
            yield
        finally:
            csv.field_size_limit(previous)


def _is_blank(fields: list[str]) -> bool:
    """A blank line: no field, or one field of white space."""
    return not fields or (len(fields) == 1 and not fields[0].strip())


def _records(path: Path, text: str, delimiter: str) -> Iterator[_Record]:
    """The non-blank records of ``text``, numbered; a csv error becomes a ``DataError`` naming the record."""
    # SemEval's tab-separated files are raw text: a tweet may start with a quote character.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    row = 0
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataError(
                f"{path}: {_where(row + 1, start)}: cannot read the record ({err}); check the quoting of the tweet"
            ) from None
        if not _is_blank(fields):
            row += 1
            yield _Record(row, start, fields)


def _encoding_error(path: Path, text: str, bad: re.Match[str], record: _Record) -> DataError:
    """The error for ``bad``, the first byte of ``text`` that is not UTF-8, found in ``record``."""
    line = len(_LINE_BREAK.findall(text, 0, bad.start())) + 1
    byte = ord(bad.group()) - 0xDC00
    return DataError(
        f"{path}: {record.where}: not valid UTF-8 (byte {byte:#04x} on line {line}); save the file as UTF-8"
    )


def _parse(path: Path, text: str) -> list[_Record]:
    """Every non-blank record of the file, read with tweets of any length; the text must be UTF-8."""
    records: list[_Record] = []
    bad = _ESCAPED_BYTE.search(text)
    with _field_limit(len(text) + 1):
        for record in _records(path, text, _delimiter(path, text)):
            # The first record holding an escaped byte holds the first one: every character is in some field.
            if bad and any(_ESCAPED_BYTE.search(field) for field in record.fields):
                raise _encoding_error(path, text, bad, record)
            records.append(record)
    return records


def _header_labels(header: _Record, columns: Columns) -> tuple[str, ...]:
    """The label columns when they come from the header: every column but the ID, the text and ``NOT_LABELS``."""
    others = {_fold(columns.id), _fold(columns.text), *(_fold(name) for name in NOT_LABELS)}
    return tuple(name.replace("\ufeff", "").strip() for name in header.fields if _fold(name) not in others)


def _layout(path: Path, header: _Record, require_labels: bool, require_text: bool, columns: Columns) -> _Layout:
    """Find the known columns in the header (names folded by ``_fold``); a missing or repeated one is an error."""
    labels = columns.labels if columns.labels is not None else _header_labels(header, columns)
    known = {_fold(name): name for name in (columns.id, columns.text, *labels)}
    at: dict[str, int] = {}
    for position, name in enumerate(header.fields):
        column = known.get(_fold(name))
        if column in at:
            first = at[column]
            raise DataError(
                f"{path}: {header.where}: column {column!r} appears twice"
                f" (columns {first + 1} {header.fields[first]!r} and {position + 1} {name!r})"
            )
        if column is not None:
            at[column] = position
    for column in (columns.id, columns.text) if require_text else (columns.id,):
        if column not in at:
            raise DataError(f"{path}: {header.where}: missing column {column!r} (header: {','.join(header.fields)!r})")
    missing = [label for label in labels if label not in at]
    if (missing and (require_labels or len(missing) < len(labels))) or (require_labels and not labels):
        raise DataError(f"{path}: {header.where}: missing label column(s) {', '.join(missing) or '(none found)'}")
    label_at = [] if missing else [at[label] for label in labels]
    return _Layout(len(header.fields), at[columns.id], at.get(columns.text), label_at, tuple(labels))


def _check_width(path: Path, record: _Record, width: int) -> None:
    """A row has as many fields as the header."""
    if len(record.fields) != width:
        raise DataError(
            f"{path}: {record.where}: expected {width} fields, found {len(record.fields)}"
            " (check the quoting of the tweet)"
        )


def _row_id(path: Path, record: _Record, id_at: int, first_row: dict[str, int]) -> str:
    """The row's ID, which must be non-empty and new; ``first_row`` maps each ID seen to its row."""
    row_id = record.fields[id_at].strip()
    if not row_id:
        raise DataError(f"{path}: {record.where}: empty ID")
    if row_id in first_row:
        raise DataError(f"{path}: {record.where}: duplicate ID {row_id!r} (first at row {first_row[row_id]})")
    first_row[row_id] = record.row
    return row_id


def _row_labels(path: Path, record: _Record, layout: _Layout, require_labels: bool) -> list[int] | None:
    """The row's 0/1 labels, or None for a file without label columns or a row of ``NONE``."""
    values = [record.fields[i].strip() for i in layout.label_at]
    if not values or (not require_labels and all(v.upper() in (UNLABELLED, "") for v in values)):
        return None
    for label, value in zip(layout.names, values):
        if value not in {"0", "1"}:
            raise DataError(f"{path}: {record.where}: label {label!r} is {value!r}, expected 0 or 1")
    return [int(v) for v in values]


def _check_kind(path: Path, record: _Record, labelled: bool, first: _Record, first_labelled: bool) -> None:
    """Every row is labelled (0/1) if the first data row is, and unlabelled (``NONE``) if it is not."""
    if labelled != first_labelled:
        kinds = ("0/1 labels", f"{UNLABELLED!r} labels")
        this, other = kinds if labelled else kinds[::-1]
        raise DataError(
            f"{path}: {record.where}: has {this} but row {first.row} has {other} (mixed labelled/unlabelled)"
        )


def _rows(
    path: Path, records: list[_Record], layout: _Layout, require_labels: bool
) -> tuple[list[str], list[str], np.ndarray | None]:
    """The data records' IDs, texts and labels (None if unlabelled), in file order."""
    ids: list[str] = []
    texts: list[str] = []
    vectors: list[list[int] | None] = []
    first_row: dict[str, int] = {}
    for record in records:
        _check_width(path, record, layout.width)
        ids.append(_row_id(path, record, layout.id_at, first_row))
        texts.append("" if layout.text_at is None else record.fields[layout.text_at])
        vectors.append(_row_labels(path, record, layout, require_labels))
        _check_kind(path, record, vectors[-1] is not None, records[0], vectors[0] is not None)
    labels = None if vectors[0] is None else np.asarray(vectors, dtype=np.int64)
    return ids, texts, labels


def _all_records(path: Path) -> list[_Record]:
    """The file's records: delimited text, or a JSON Lines, Parquet or datasets table (``formats``)."""
    from gen_emotion.formats import is_table, table_rows

    if not is_table(path):
        return _parse(path, _read_text(path))
    return [_Record(row, line, fields) for row, (line, fields) in enumerate(table_rows(path), start=1)]


def read_emotion_file(
    path: str | Path, *, require_labels: bool = False, require_text: bool = True, columns: Columns = SEMEVAL_COLUMNS
) -> EmotionData:
    """Read a file of texts (CSV, TSV, JSON Lines, Parquet, or a datasets folder).

    With ``require_labels`` every label column must exist and hold 0 or 1. Otherwise label
    columns may be absent or hold ``NONE`` (a test file), and the result has ``labels=None``.
    Without ``require_text`` the text column may be absent (a predictions file); texts are
    then empty strings. Header names and row numbers follow the module's rules.
    """
    path = Path(path)
    records = _all_records(path)
    if not records:
        raise DataError(f"{path}: file is empty")
    layout = _layout(path, records[0], require_labels, require_text, columns)
    if len(records) == 1:
        raise DataError(f"{path}: file has a header but no rows")
    ids, texts, labels = _rows(path, records[1:], layout, require_labels)
    return EmotionData(ids=ids, texts=texts, labels=labels, source=str(path), label_names=layout.names)


def read_train(path: str | Path, columns: Columns = SEMEVAL_COLUMNS) -> EmotionData:
    """Read a labelled training file; every label must be 0 or 1."""
    return read_emotion_file(path, require_labels=True, columns=columns)


def read_test(path: str | Path, columns: Columns = SEMEVAL_COLUMNS) -> EmotionData:
    """Read a file to predict; its labels, if any, are ignored."""
    data = read_emotion_file(path, require_labels=False, columns=columns)
    data.labels = None
    return data


def read_label_file(path: str | Path, columns: Columns = SEMEVAL_COLUMNS) -> EmotionData:
    """Read an ID column and the label columns of 0/1 (predictions or gold labels); the text is optional."""
    return read_emotion_file(path, require_labels=True, require_text=False, columns=columns)


def data_file(data_dir: Path, split: str) -> Path:
    """The ``split`` (``train`` or ``test``) file of a data folder: ``SPLIT.csv``, ``.tsv``, ``.jsonl``,
    ``.parquet``, or a ``datasets`` folder ``SPLIT/``; exactly one of them."""
    from gen_emotion.formats import TABLE_SUFFIXES

    candidates = [data_dir / f"{split}{suffix}" for suffix in (".csv", ".tsv", *TABLE_SUFFIXES)]
    found = [path for path in candidates if path.is_file()]
    if (data_dir / split).is_dir():
        found.append(data_dir / split)
    if not found:
        raise DataError(
            f"{data_dir}: no {split} file in this folder ({split}.csv, .tsv, .jsonl, .parquet or a datasets folder)"
        )
    if len(found) > 1:
        raise DataError(f"{data_dir}: holds {' and '.join(p.name for p in found)}; keep one {split} file")
    return found[0]


def label_counts(labels: np.ndarray, names: tuple[str, ...] = LABELS) -> dict[str, int]:
    """The number of positive rows per label."""
    return {label: int(count) for label, count in zip(names, np.asarray(labels).sum(axis=0))}


def fold_indices(labels: np.ndarray, n_splits: int = 10, seed: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """Multilabel-stratified K-fold split: a list of ``(train_idx, val_idx)``, deterministic in ``seed``."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    labels = np.asarray(labels)
    if n_splits < 2:
        raise GenEmotionError(f"folds must be at least 2, got {n_splits}")
    if len(labels) < n_splits:
        raise GenEmotionError(f"cannot split {len(labels)} rows into {n_splits} folds")
    # Stratified on every label at once (iterative stratification, Sechidis et al. 2011): a plain KFold can leave a
    # rare label (surprise, trust) with a few positives in one held-out fold and many in another, and macro-F1
    # weighs that label's noisy F1 as much as joy's. A row's labels go to one fold together, so the balance is
    # close, not exact. The splitter reads only X's length: a placeholder. Sorted indices keep file order.
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


def sample_data_dir() -> Path:
    """The illustrative labelled sample shipped with the package (not real tweets)."""
    return Path(str(resources.files("gen_emotion") / "sample_data"))


def read_data(
    data_dir: Path, rows: int | None = None, columns: Columns = SEMEVAL_COLUMNS
) -> tuple[EmotionData, EmotionData]:
    """The ``train`` and ``test`` files of ``data_dir`` (``data_file``: CSV, TSV, JSON Lines, Parquet or a
    datasets folder), cut to their first ``rows`` rows when given; the test file's label columns, if any, are
    the training file's."""
    full = read_train(data_file(data_dir, "train"), columns)
    test = read_test(data_file(data_dir, "test"), replace(columns, labels=full.label_names))
    if rows is not None:
        if rows < 2:
            raise GenEmotionError(f"--rows must be at least 2, got {rows}")
        full, test = full.subset(np.arange(min(rows, len(full)))), test.subset(np.arange(min(rows, len(test))))
    return full, test
