"""How a table is read: a data file (CSV, TSV, JSON Lines, Parquet, a local Hugging Face ``datasets`` folder) or a
``datasets`` split that ``sources`` loaded, read into a ``Table`` (``records``) of string fields, each record with
the row and line it came from, so that every check and message is the same whatever the format; and the readers
of one file (``read_train``, ``read_test``, ``read_label_file``), which give its rows (``records``).

Delimited text: the Kaggle "Emotion Detection" CSV files (``ID,Tweet,`` + 11 label columns; the test file's label
columns hold ``NONE``) and SemEval-2018 Task 1 E-c tab-separated files (a tab for ``.tsv``/``.txt`` files or a
tab-separated header, else a comma). Blank lines are not records. The text must be UTF-8 (a byte that is not is
one line naming its record and line). A tweet may be of any length: the csv module's 128 KiB field limit is
lifted while a file is read (and restored afterwards).

Other tables: a value becomes its text: ``true``/``false`` become ``1``/``0``, a whole number its digits, ``null``
the empty string (an unlabelled row's labels may be all empty, or ``NONE``); a list stays a list (a column of
label lists, ``label_lists``), and a column's ``ClassLabel`` names (a ``datasets`` feature, also kept in a Parquet
file that ``datasets`` wrote) come with the table. A ``datasets`` split's rows are named by their index.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.dataset import SEMEVAL_COLUMNS, Columns, DataError, EmotionData
from gen_emotion.data.records import Record, Table, read_records, to_predict, unlabelled, where

TABLE_SUFFIXES = (".jsonl", ".parquet")

_MAX_FIELD = 2**31 - 1
"""The largest field limit the csv module takes everywhere (it is a C ``long``: 32 bits on Windows)."""
_FIELD_LIMIT_LOCK = threading.Lock()
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
"""A byte that is not UTF-8, as ``surrogateescape`` decoding keeps it."""
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""The line ends the csv reader splits on."""


class FormatError(GenEmotionError):
    """A JSON Lines, Parquet or datasets file that cannot be read as a table."""


def read_emotion_file(
    path: str | Path, *, require_labels: bool = False, require_text: bool = True, columns: Columns = SEMEVAL_COLUMNS
) -> EmotionData:
    """Read a file of texts (CSV, TSV, JSON Lines, Parquet, or a datasets folder): ``records.read_records``."""
    path = Path(path)
    return read_records(str(path), file_table(path), columns, require_labels=require_labels, require_text=require_text)


def read_train(path: str | Path, columns: Columns = SEMEVAL_COLUMNS) -> EmotionData:
    """Read a labelled training file; every label must be 0 or 1."""
    return read_emotion_file(path, require_labels=True, columns=columns)


def read_test(path: str | Path, columns: Columns = SEMEVAL_COLUMNS, *, keep_labels: bool = False) -> EmotionData:
    """Read a file to predict; its labels, if any, are ignored (a list column is not read), unless
    ``keep_labels`` (a test split whose gold labels a run scores: ``NONE`` or absent labels are still none)."""
    read_as = columns if keep_labels else unlabelled(columns)
    return to_predict(read_emotion_file(path, columns=read_as), columns, keep_labels=keep_labels)


def read_label_file(path: str | Path, columns: Columns = SEMEVAL_COLUMNS) -> EmotionData:
    """Read an ID column and the label columns of 0/1 (predictions or gold labels); the text is optional."""
    return read_emotion_file(path, require_labels=True, require_text=False, columns=columns)


def file_table(path: Path) -> Table:
    """A file's table: delimited text, or a JSON Lines file, a Parquet file or a ``datasets`` folder."""
    if not is_table(path):
        return _delimited_table(path, _read_text(path))
    if path.is_dir():
        return dataset_table(_load_split(path))
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    if path.suffix.lower() == ".parquet":
        return _parquet_table(path)
    return _jsonl_table(path)


def is_table(path: Path) -> bool:
    """Whether ``path`` is read as a table other than delimited text."""
    return path.is_dir() or path.suffix.lower() in TABLE_SUFFIXES


# Delimited text.


def _read_text(path: Path) -> str:
    """The file's text; a byte that is not UTF-8 is kept as a lone surrogate, reported by ``_delimited_table``."""
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


def _csv_records(path: Path, text: str, delimiter: str) -> Iterator[Record]:
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
                f"{path}: {where(row + 1, start)}: cannot read the record ({err}); check the quoting of the tweet"
            ) from None
        if not _is_blank(fields):
            row += 1
            yield Record(row, start, fields)


def _encoding_error(path: Path, text: str, bad: re.Match[str], record: Record) -> DataError:
    """The error for ``bad``, the first byte of ``text`` that is not UTF-8, found in ``record``."""
    line = len(_LINE_BREAK.findall(text, 0, bad.start())) + 1
    byte = ord(bad.group()) - 0xDC00
    return DataError(
        f"{path}: {record.where}: not valid UTF-8 (byte {byte:#04x} on line {line}); save the file as UTF-8"
    )


def _delimited_table(path: Path, text: str) -> Table:
    """Every non-blank record of the file, read with tweets of any length; the text must be UTF-8."""
    records: list[Record] = []
    bad = _ESCAPED_BYTE.search(text)
    with _field_limit(len(text) + 1):
        for record in _csv_records(path, text, _delimiter(path, text)):
            # The first record holding an escaped byte holds the first one: every character is in some field.
            if bad and any(_ESCAPED_BYTE.search(field) for field in record.fields):
                raise _encoding_error(path, text, bad, record)
            records.append(record)
    return Table(records)


# JSON Lines, Parquet, datasets.


def field(value: Any) -> Any:
    """A value as the text a CSV cell would hold; a list stays a list."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def _from_dicts(columns: list[str], rows: list[dict[str, Any]]) -> list[Record]:
    """A header and rows numbered as a file's (the header is row 1)."""
    return [Record(1, 1, list(columns))] + [
        Record(i, i, [field(row.get(c)) for c in columns]) for i, row in enumerate(rows, start=2)
    ]


def class_names(features: Any) -> dict[str, tuple[str, ...]]:
    """The ``ClassLabel`` names of each column of ``features`` (a ``datasets.Features``) that has them."""
    from datasets import ClassLabel

    found = {}
    for column, feature in features.items():
        inner = getattr(feature, "feature", feature)  # a List (Sequence) of ClassLabel
        if isinstance(inner, ClassLabel):
            found[column] = tuple(inner.names)
    return found


def dataset_table(dataset: Any) -> Table:
    """A ``datasets.Dataset`` (one split) as a table, its rows named by their index (``row 0`` is the first)."""
    columns = list(dataset.column_names)
    header = Record(1, 1, columns, "its columns")
    rows = [
        Record(index + 2, index + 2, [field(row.get(c)) for c in columns], f"row {index}")
        for index, row in enumerate(dataset.to_list())
    ]
    return Table([header, *rows], class_names(dataset.features))


def _jsonl_table(path: Path) -> Table:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise FormatError(f"{path}: line {line}: not valid UTF-8; save the file as UTF-8") from None
    except OSError as err:
        raise FormatError(f"{path}: cannot read the file ({err.strerror})") from None
    columns: list[str] | None = None
    records: list[Record] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise FormatError(f"{path}: line {line_number}: not valid JSON ({err.msg})") from None
        if not isinstance(item, dict):
            raise FormatError(f"{path}: line {line_number}: expected a JSON object, found {type(item).__name__}")
        if columns is None:
            columns = list(item)
            records.append(Record(1, line_number, columns))
        elif set(item) != set(columns):
            raise FormatError(
                f"{path}: line {line_number}: its keys differ from the first object's ({', '.join(columns)})"
            )
        records.append(Record(len(records) + 1, line_number, [field(item[c]) for c in columns]))
    return Table(records)


def _parquet_table(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise FormatError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow's own errors: a damaged or foreign file
        raise FormatError(f"{path}: not a readable Parquet file ({' '.join(str(err).split())[:200]})") from None
    return Table(_from_dicts(list(table.column_names), table.to_pylist()), _parquet_class_names(table.schema))


def _parquet_class_names(schema: Any) -> dict[str, tuple[str, ...]]:
    """The ``ClassLabel`` names a Parquet file written by ``datasets`` keeps in its schema's metadata."""
    if b"huggingface" not in (schema.metadata or {}):
        return {}
    try:
        from datasets import Features

        return class_names(Features.from_arrow_schema(schema))
    except Exception:  # no datasets, or metadata it does not read: the ids then need data.labels
        return {}


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` is a folder that ``save_to_disk`` wrote (one split, or a ``DatasetDict`` of several)."""
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()


def load_saved(path: Path) -> Any:
    """A folder that ``save_to_disk`` wrote: a ``datasets.Dataset`` or a ``DatasetDict``."""
    if not is_saved_dataset(path):
        raise FormatError(f"{path}: a folder, but not a datasets folder (save_to_disk writes dataset_info.json)")
    try:
        from datasets import load_from_disk
    except ImportError:
        raise FormatError(f"{path}: reading a datasets folder needs datasets: pip install datasets") from None
    try:
        return load_from_disk(str(path))
    except Exception as err:  # datasets' own errors
        raise FormatError(f"{path}: not a readable datasets folder ({' '.join(str(err).split())[:200]})") from None


def _load_split(path: Path) -> Any:
    from datasets import Dataset

    dataset = load_saved(path)
    if not isinstance(dataset, Dataset):
        raise FormatError(f"{path}: holds several splits ({', '.join(dataset)}); point at one of them")
    return dataset
