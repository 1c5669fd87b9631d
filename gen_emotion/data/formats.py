"""Tables that are not delimited text: JSON Lines, Parquet, local Hugging Face ``datasets`` folders and the
``datasets`` splits that ``sources`` loads.

Each becomes what a CSV file is to the reader in ``data`` (a ``Table``): a header (the column names) and rows
of string fields, each with the line (JSON Lines) or row it came from, so that every check and message is the
same. A value becomes its text: ``true``/``false`` become ``1``/``0``, a whole number its digits, ``null`` the
empty string (an unlabelled row's labels may be all empty, or ``NONE``); a list stays a list (a column of label
lists, ``label_lists``), and a column's ``ClassLabel`` names (a ``datasets`` feature, also kept in a Parquet
file that ``datasets`` wrote) come with the table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

from gen_emotion.core.errors import GenEmotionError

TABLE_SUFFIXES = (".jsonl", ".parquet")


class FormatError(GenEmotionError):
    """A JSON Lines, Parquet or datasets file that cannot be read as a table."""


@dataclass
class Table:
    """A header and rows, each ``(line, fields)``: the header first (its fields the column names)."""

    rows: list[tuple[int, list[Any]]]
    class_names: dict[str, tuple[str, ...]] = dataclass_field(default_factory=dict)
    """The ``ClassLabel`` names of the columns that have that feature (or a list of it)."""
    indexed: bool = False
    """A ``datasets`` split: its rows are named by their index, from 0."""


def is_table(path: Path) -> bool:
    """Whether ``path`` is read here (rather than as delimited text)."""
    return path.is_dir() or path.suffix.lower() in TABLE_SUFFIXES


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


def table_rows(path: Path) -> Table:
    """The header and then every row of a JSON Lines file, a Parquet file or a ``datasets`` folder."""
    if path.is_dir():
        return dataset_table(_load_split(path))
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    if path.suffix.lower() == ".parquet":
        return _parquet_table(path)
    return Table(_jsonl_rows(path))


def _from_dicts(columns: list[str], rows: list[dict[str, Any]]) -> list[tuple[int, list[Any]]]:
    return [(1, list(columns))] + [(i, [field(row.get(c)) for c in columns]) for i, row in enumerate(rows, start=2)]


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
    """A ``datasets.Dataset`` (one split) as a table, its rows named by their index."""
    columns = list(dataset.column_names)
    return Table(_from_dicts(columns, dataset.to_list()), class_names(dataset.features), indexed=True)


def _jsonl_rows(path: Path) -> list[tuple[int, list[Any]]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise FormatError(f"{path}: line {line}: not valid UTF-8; save the file as UTF-8") from None
    except OSError as err:
        raise FormatError(f"{path}: cannot read the file ({err.strerror})") from None
    columns: list[str] | None = None
    rows: list[tuple[int, list[Any]]] = []
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
            rows.append((line_number, columns))
        elif set(item) != set(columns):
            raise FormatError(
                f"{path}: line {line_number}: its keys differ from the first object's ({', '.join(columns)})"
            )
        rows.append((line_number, [field(item[c]) for c in columns]))
    return rows


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
