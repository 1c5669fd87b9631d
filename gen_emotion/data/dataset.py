"""Read and validate labelled and unlabelled text files, and split them into folds.

Reads the Kaggle "Emotion Detection" CSV files (``ID,Tweet,`` + 11 label columns; the test
file's label columns hold ``NONE``), SemEval-2018 Task 1 E-c tab-separated files, and the same
columns as JSON Lines (``.jsonl``, one object a line), Parquet (``.parquet``) or a Hugging Face
``datasets`` split (a ``save_to_disk`` folder, or a split that ``sources`` loaded; ``formats``).
Which columns hold the ID, the text and the labels is a ``Columns`` (the recipe's ``data.id_column``,
``data.text_column``, ``data.labels`` and ``data.label_column``): the labels are one 0/1 column each
(maybe every other column of the header), or one column holding each row's list of labels
(``label_lists``). Without an ID column, a row's ID is its number in its split, from 0. Every
problem is reported as one line naming the file, the row and what is wrong; no row is ever dropped
or reordered, and IDs are always strings.

Header: column names are matched ignoring case and surrounding white space, so ``id``,
`` Tweet `` and ``ANGER`` are the ``ID``, ``Tweet`` and ``anger`` columns. A header that names one
of these columns twice (``joy`` and ``Joy ``) is an error naming both positions; any other
column (a predictions file's ``output``) is ignored. The label columns are all present, or
(for a file to predict) all absent.

Rows: ``row N`` in a message is the record number, not the physical line: the header is row 1
and the first data record row 2, however many lines the quoted tweets before it span (a
``datasets`` split's rows are named by their index, from 0, as ``dataset[N]``). Blank
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
from typing import TYPE_CHECKING, Any

import numpy as np

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS

if TYPE_CHECKING:
    from gen_emotion.data.formats import Table

ID_COLUMN = "ID"
TEXT_COLUMN = "Tweet"
UNLABELLED = "NONE"
NOT_LABELS = ("output",)
"""Columns that are never labels when the labels are read from the header (a predictions file's outputs)."""
ROW_ID = "row"
"""The ID column a submission gets where the data has none (its IDs are row numbers)."""


@dataclass(frozen=True)
class Columns:
    """Which columns of a data file hold the ID, the text and the labels (names matched as the header's are)."""

    id: str | None = ID_COLUMN
    """``None``: the data has no ID column; a row's ID is its number in its split, from 0."""
    text: str = TEXT_COLUMN
    labels: tuple[str, ...] | None = LABELS
    """The labels, in order; ``None``: the data's (every other column of the header, or a list column's names)."""
    label_column: str | None = None
    """A column holding each row's labels as a list (``label_lists``), instead of one 0/1 column per label."""
    none_label: str | None = None
    """The label an empty list of ``label_column`` stands for; without one an empty list is an error."""

    @property
    def id_header(self) -> str:
        """The ID column of what is written for this data (a submission): the data's, or ``row``."""
        return self.id or ROW_ID


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
    fields: list[Any]
    """Strings, but a table's list values (a label list) stay lists."""
    label: str = ""
    """How a message names the record, where not by its row and line (a ``datasets`` row by its index)."""

    @property
    def where(self) -> str:
        """Where the record is, for a message."""
        return self.label or _where(self.row, self.line)


def _where(row: int, line: int) -> str:
    """``row N``, and ``(line L)`` where the record starts on another physical line."""
    return f"row {row}" if line == row else f"row {row} (line {line})"


@dataclass(frozen=True)
class _Layout:
    """Where the known columns are: the header's width, the ID, the text (or None), the labels (or [])."""

    width: int
    id_at: int | None
    text_at: int | None
    label_at: list[int]
    names: tuple[str, ...] | None
    """The label names, in column order (``None``: a list column's, found in its rows)."""
    list_at: int | None = None
    """Where the list column of labels is (``Columns.label_column``)."""


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
    others = {_fold(name) for name in (columns.id, columns.text, *NOT_LABELS) if name is not None}
    return tuple(name.replace("\ufeff", "").strip() for name in header.fields if _fold(name) not in others)


def _layout(source: str, header: _Record, require_labels: bool, require_text: bool, columns: Columns) -> _Layout:
    """Find the known columns in the header (names folded by ``_fold``); a missing or repeated one is an error."""
    listed = columns.label_column is not None
    labels = () if listed else columns.labels if columns.labels is not None else _header_labels(header, columns)
    named = [name for name in (columns.id, columns.text, columns.label_column) if name is not None]
    known = {_fold(name): name for name in (*named, *labels)}
    at: dict[str | None, int] = {}
    for position, name in enumerate(header.fields):
        column = known.get(_fold(name))
        if column in at:
            first = at[column]
            raise DataError(
                f"{source}: {header.where}: column {column!r} appears twice"
                f" (columns {first + 1} {header.fields[first]!r} and {position + 1} {name!r})"
            )
        if column is not None:
            at[column] = position
    shown = ",".join(header.fields)
    for column in (columns.id, columns.text) if require_text else (columns.id,):
        if column is not None and column not in at:
            hint = "; without an ID column, set data.id_column: null (IDs are then row numbers)"
            raise DataError(
                f"{source}: {header.where}: missing column {column!r} (header: {shown!r})"
                + (hint if column == columns.id else "")
            )
    width, id_at, text_at = len(header.fields), at.get(columns.id), at.get(columns.text)
    if listed:
        if require_labels and columns.label_column not in at:
            raise DataError(
                f"{source}: {header.where}: missing label column {columns.label_column!r} (header: {shown!r})"
            )
        return _Layout(width, id_at, text_at, [], columns.labels, at.get(columns.label_column))
    missing = [label for label in labels if label not in at]
    if (missing and (require_labels or len(missing) < len(labels))) or (require_labels and not labels):
        raise DataError(f"{source}: {header.where}: missing label column(s) {', '.join(missing) or '(none found)'}")
    label_at = [] if missing else [at[label] for label in labels]
    return _Layout(width, id_at, text_at, label_at, tuple(labels))


def _check_width(source: str, record: _Record, width: int) -> None:
    """A row has as many fields as the header."""
    if len(record.fields) != width:
        raise DataError(
            f"{source}: {record.where}: expected {width} fields, found {len(record.fields)}"
            " (check the quoting of the tweet)"
        )


def _cell(source: str, record: _Record, at: int, header: _Record) -> str:
    """A field that must be text (a table's list is only read as ``Columns.label_column``)."""
    value = record.fields[at]
    if not isinstance(value, str):
        raise DataError(f"{source}: {record.where}: column {header.fields[at]!r} holds {value!r}, expected a value")
    return value


def _row_id(source: str, record: _Record, row_id: str, first_row: dict[str, str]) -> str:
    """The row's ID, which must be non-empty and new; ``first_row`` maps each ID seen to where its row is."""
    row_id = row_id.strip()
    if not row_id:
        raise DataError(f"{source}: {record.where}: empty ID")
    if row_id in first_row:
        raise DataError(f"{source}: {record.where}: duplicate ID {row_id!r} (first at {first_row[row_id]})")
    first_row[row_id] = record.label or f"row {record.row}"
    return row_id


def _row_labels(
    source: str, record: _Record, header: _Record, layout: _Layout, require_labels: bool
) -> list[int] | None:
    """The row's 0/1 labels, or None for a file without label columns or a row of ``NONE``."""
    values = [_cell(source, record, i, header).strip() for i in layout.label_at]
    if not values or (not require_labels and all(v.upper() in (UNLABELLED, "") for v in values)):
        return None
    for label, value in zip(layout.names or (), values):
        if value not in {"0", "1"}:
            raise DataError(f"{source}: {record.where}: label {label!r} is {value!r}, expected 0 or 1")
    return [int(v) for v in values]


def _check_kind(source: str, record: _Record, labelled: bool, first: _Record, first_labelled: bool) -> None:
    """Every row is labelled (0/1) if the first data row is, and unlabelled (``NONE``) if it is not."""
    if labelled != first_labelled:
        kinds = ("0/1 labels", f"{UNLABELLED!r} labels")
        this, other = kinds if labelled else kinds[::-1]
        raise DataError(
            f"{source}: {record.where}: has {this} but {first.label or f'row {first.row}'} has {other}"
            " (mixed labelled/unlabelled)"
        )


@dataclass(frozen=True)
class _Read:
    """What is read of a table: its header and rows, the ``ClassLabel`` names of its columns, what it must hold."""

    source: str
    records: list[_Record]
    class_names: dict[str, tuple[str, ...]]
    require_labels: bool
    columns: Columns


def _rows(read: _Read, layout: _Layout) -> EmotionData:
    """The data records' IDs, texts and labels (None if unlabelled), in file order."""
    from gen_emotion.data.label_lists import ListColumn, label_rows

    source, header, records = read.source, read.records[0], read.records[1:]
    ids: list[str] = []
    texts: list[str] = []
    vectors: list[list[int] | None] = []
    first_row: dict[str, str] = {}
    for index, record in enumerate(records):
        _check_width(source, record, layout.width)
        at = layout.id_at
        ids.append(str(index) if at is None else _row_id(source, record, _cell(source, record, at, header), first_row))
        texts.append("" if layout.text_at is None else _cell(source, record, layout.text_at, header))
        if layout.list_at is None:
            vectors.append(_row_labels(source, record, header, layout, read.require_labels))
            _check_kind(source, record, vectors[-1] is not None, records[0], vectors[0] is not None)
    if layout.list_at is not None:
        name = header.fields[layout.list_at]
        spec = ListColumn(name, layout.names, read.class_names.get(name), read.columns.none_label)
        values = [(record.where, record.fields[layout.list_at]) for record in records]
        names, labels = label_rows(source, spec, values, read.require_labels)
    else:
        names, labels = layout.names or (), None if vectors[0] is None else np.asarray(vectors, dtype=np.int64)
    return EmotionData(ids=ids, texts=texts, labels=labels, source=source, label_names=names)


def _all_records(path: Path) -> tuple[list[_Record], dict[str, tuple[str, ...]]]:
    """The file's records and its columns' ``ClassLabel`` names: delimited text, or a table (``formats``)."""
    from gen_emotion.data.formats import is_table, table_rows

    if not is_table(path):
        return _parse(path, _read_text(path)), {}
    table = table_rows(path)
    return table_records(table), table.class_names


def table_records(table: Table) -> list[_Record]:
    """A table's header and rows as records: numbered as a file's, or, for a ``datasets`` split, by index."""
    if not table.indexed:
        return [_Record(row, line, fields) for row, (line, fields) in enumerate(table.rows, start=1)]
    header, *rows = (fields for _, fields in table.rows)
    return [_Record(1, 1, header, "its columns")] + [
        _Record(index + 2, index + 2, fields, f"row {index}") for index, fields in enumerate(rows)
    ]


def read_table(source: str, table: Table, columns: Columns = SEMEVAL_COLUMNS, *, test: bool = False) -> EmotionData:
    """Read a table (a ``datasets`` split that ``sources`` loaded) as ``read_train`` reads a training file, or
    with ``test`` as ``read_test`` reads a file to predict; messages name ``source``."""
    if not test:
        return _read(_Read(source, table_records(table), table.class_names, True, columns), True)
    return _to_predict(
        _read(_Read(source, table_records(table), table.class_names, False, unlabelled(columns)), True), columns
    )


def _read(read: _Read, require_text: bool) -> EmotionData:
    if not read.records:
        raise DataError(f"{read.source}: file is empty")
    header = read.records[0]
    layout = _layout(read.source, header, read.require_labels, require_text, read.columns)
    if len(read.records) == 1:
        raise DataError(f"{read.source}: {'has no rows' if header.label else 'file has a header but no rows'}")
    return _rows(read, layout)


def read_emotion_file(
    path: str | Path, *, require_labels: bool = False, require_text: bool = True, columns: Columns = SEMEVAL_COLUMNS
) -> EmotionData:
    """Read a file of texts (CSV, TSV, JSON Lines, Parquet, or a datasets folder).

    With ``require_labels`` every label column must exist and hold 0 or 1 (a list column: a list of labels in
    every row). Otherwise label columns may be absent or hold ``NONE`` (a test file), and the result has
    ``labels=None``. Without ``require_text`` the text column may be absent (a predictions file); texts are
    then empty strings. Header names and row numbers follow the module's rules.
    """
    path = Path(path)
    records, class_names = _all_records(path)
    return _read(_Read(str(path), records, class_names, require_labels, columns), require_text)


def read_train(path: str | Path, columns: Columns = SEMEVAL_COLUMNS) -> EmotionData:
    """Read a labelled training file; every label must be 0 or 1."""
    return read_emotion_file(path, require_labels=True, columns=columns)


def read_test(path: str | Path, columns: Columns = SEMEVAL_COLUMNS) -> EmotionData:
    """Read a file to predict; its labels, if any, are ignored (a list column is not read)."""
    return _to_predict(read_emotion_file(path, require_labels=False, columns=unlabelled(columns)), columns)


def unlabelled(columns: Columns) -> Columns:
    """The columns of rows to predict: a list column of labels is not read."""
    return replace(columns, label_column=None, labels=()) if columns.label_column is not None else columns


def _to_predict(data: EmotionData, columns: Columns) -> EmotionData:
    """Rows read to predict: their labels dropped, their label names the given ones (or the header's)."""
    data.labels, data.label_names = None, columns.labels or data.label_names
    return data


def read_label_file(path: str | Path, columns: Columns = SEMEVAL_COLUMNS) -> EmotionData:
    """Read an ID column and the label columns of 0/1 (predictions or gold labels); the text is optional."""
    return read_emotion_file(path, require_labels=True, require_text=False, columns=columns)


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
