"""Rows and labels: a table (``Table``: a header and numbered records, what ``formats`` reads every format into)
turned into ``EmotionData`` by the ``Columns`` that say which columns hold the ID, the text and the labels.

The labels are one 0/1 column each (maybe every other column of the header), or one column holding each row's
list of labels (``label_lists``). Without an ID column, a row's ID is its number in its split, from 0. Every
problem is reported as one line naming the file, the row and what is wrong; no row is ever dropped or reordered,
and IDs are always strings.

Header: column names are matched ignoring case and surrounding white space, so ``id``, `` Tweet `` and ``ANGER``
are the ``ID``, ``Tweet`` and ``anger`` columns. A header that names one of these columns twice (``joy`` and
``Joy ``) is an error naming both positions; any other column (a predictions file's ``output``) is ignored. The
label columns are all present, or (for a file to predict) all absent; a label column holds 0 or 1 (a ``datasets``
boolean is read as 1 or 0), or ``NONE`` (or nothing) in every row of a file to predict.

Rows: ``row N`` in a message is the record number, not the physical line: the header is row 1 and the first data
record row 2, however many lines the quoted tweets before it span (a ``datasets`` split's rows are named by their
index, from 0, as ``dataset[N]``). Where a record starts on another line, the message names it too: ``row 5
(line 9)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from typing import Any

import numpy as np

from gen_emotion.data.dataset import SEMEVAL_COLUMNS, Columns, DataError, EmotionData
from gen_emotion.data.label_lists import ListColumn, label_rows

UNLABELLED = "NONE"
NOT_LABELS = ("output",)
"""Columns that are never labels when the labels are read from the header (a predictions file's outputs)."""


def where(row: int, line: int) -> str:
    """``row N``, and ``(line L)`` where the record starts on another physical line."""
    return f"row {row}" if line == row else f"row {row} (line {line})"


@dataclass(frozen=True)
class Record:
    """One record of a table: its number (the header is 1), the line it starts on, its fields."""

    row: int
    line: int
    fields: list[Any]
    """Strings, but a table's list values (a label list) stay lists."""
    label: str = ""
    """How a message names the record, where not by its row and line (a ``datasets`` row by its index)."""

    @property
    def where(self) -> str:
        """Where the record is, for a message."""
        return self.label or where(self.row, self.line)


@dataclass
class Table:
    """A header and rows, each a ``Record``: the header first (its fields the column names)."""

    records: list[Record]
    class_names: dict[str, tuple[str, ...]] = dataclass_field(default_factory=dict)
    """The ``ClassLabel`` names of the columns that have that feature (or a list of it)."""


def _fold(name: str) -> str:
    """A header name as it is compared: without case, surrounding white space or byte-order marks."""
    return name.replace("\ufeff", "").strip().casefold()


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


def _header_labels(header: Record, columns: Columns) -> tuple[str, ...]:
    """The label columns when they come from the header: every column but the ID, the text and ``NOT_LABELS``."""
    others = {_fold(name) for name in (columns.id, columns.text, *NOT_LABELS) if name is not None}
    return tuple(name.replace("\ufeff", "").strip() for name in header.fields if _fold(name) not in others)


def _layout(source: str, header: Record, require_labels: bool, require_text: bool, columns: Columns) -> _Layout:
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


def _check_width(source: str, record: Record, width: int) -> None:
    """A row has as many fields as the header."""
    if len(record.fields) != width:
        raise DataError(
            f"{source}: {record.where}: expected {width} fields, found {len(record.fields)}"
            " (check the quoting of the tweet)"
        )


def _cell(source: str, record: Record, at: int, header: Record) -> str:
    """A field that must be text (a table's list is only read as ``Columns.label_column``)."""
    value = record.fields[at]
    if not isinstance(value, str):
        raise DataError(f"{source}: {record.where}: column {header.fields[at]!r} holds {value!r}, expected a value")
    return value


def _row_id(source: str, record: Record, row_id: str, first_row: dict[str, str]) -> str:
    """The row's ID, which must be non-empty and new; ``first_row`` maps each ID seen to where its row is."""
    row_id = row_id.strip()
    if not row_id:
        raise DataError(f"{source}: {record.where}: empty ID")
    if row_id in first_row:
        raise DataError(f"{source}: {record.where}: duplicate ID {row_id!r} (first at {first_row[row_id]})")
    first_row[row_id] = record.label or f"row {record.row}"
    return row_id


def _row_labels(source: str, record: Record, header: Record, layout: _Layout, require_labels: bool) -> list[int] | None:
    """The row's 0/1 labels, or None for a file without label columns or a row of ``NONE``."""
    values = [_cell(source, record, i, header).strip() for i in layout.label_at]
    if not values or (not require_labels and all(v.upper() in (UNLABELLED, "") for v in values)):
        return None
    for label, value in zip(layout.names or (), values):
        if value not in {"0", "1"}:
            raise DataError(f"{source}: {record.where}: label {label!r} is {value!r}, expected 0 or 1")
    return [int(v) for v in values]


def _check_kind(source: str, record: Record, labelled: bool, first: Record, first_labelled: bool) -> None:
    """Every row is labelled (0/1) if the first data row is, and unlabelled (``NONE``) if it is not."""
    if labelled != first_labelled:
        kinds = ("0/1 labels", f"{UNLABELLED!r} labels")
        this, other = kinds if labelled else kinds[::-1]
        raise DataError(
            f"{source}: {record.where}: has {this} but {first.label or f'row {first.row}'} has {other}"
            " (mixed labelled/unlabelled)"
        )


def _rows(source: str, table: Table, layout: _Layout, require_labels: bool, columns: Columns) -> EmotionData:
    """The data records' IDs, texts and labels (None if unlabelled), in file order."""
    header, records = table.records[0], table.records[1:]
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
            vectors.append(_row_labels(source, record, header, layout, require_labels))
            _check_kind(source, record, vectors[-1] is not None, records[0], vectors[0] is not None)
    if layout.list_at is not None:
        name = header.fields[layout.list_at]
        spec = ListColumn(name, layout.names, table.class_names.get(name), columns.none_label)
        values = [(record.where, record.fields[layout.list_at]) for record in records]
        names, labels = label_rows(source, spec, values, require_labels)
    else:
        names, labels = layout.names or (), None if vectors[0] is None else np.asarray(vectors, dtype=np.int64)
    return EmotionData(ids=ids, texts=texts, labels=labels, source=source, label_names=names)


def read_records(
    source: str,
    table: Table,
    columns: Columns = SEMEVAL_COLUMNS,
    *,
    require_labels: bool = False,
    require_text: bool = True,
) -> EmotionData:
    """A table's rows, checked (the module's rules); messages name ``source``.

    With ``require_labels`` every label column must exist and hold 0 or 1 (a list column: a list of labels in
    every row). Otherwise label columns may be absent or hold ``NONE``, and the result has ``labels=None``.
    Without ``require_text`` the text column may be absent (a predictions file); texts are then empty strings.
    """
    if not table.records:
        raise DataError(f"{source}: file is empty")
    header = table.records[0]
    layout = _layout(source, header, require_labels, require_text, columns)
    if len(table.records) == 1:
        raise DataError(f"{source}: {'has no rows' if header.label else 'file has a header but no rows'}")
    return _rows(source, table, layout, require_labels, columns)


def unlabelled(columns: Columns) -> Columns:
    """The columns of rows to predict: a list column of labels is not read."""
    return replace(columns, label_column=None, labels=()) if columns.label_column is not None else columns


def to_predict(data: EmotionData, columns: Columns, *, keep_labels: bool = False) -> EmotionData:
    """Rows read to predict: their label names the given ones (or the header's), their labels dropped unless
    ``keep_labels`` (a test split with gold labels, which a run scores)."""
    if not keep_labels:
        data.labels = None
    data.label_names = columns.labels or data.label_names
    return data
