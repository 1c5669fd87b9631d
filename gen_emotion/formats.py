"""Tables that are not delimited text: JSON Lines, Parquet and local Hugging Face ``datasets`` folders.

Each becomes what a CSV file is to the reader in ``data``: a header (the column names) and rows of string
fields, each with the line (JSON Lines) or row it came from, so that every check and message is the same.
A value becomes its text: ``true``/``false`` become ``1``/``0``, a whole number its digits, ``null`` the
empty string (an unlabelled row's labels may be all empty, or ``NONE``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gen_emotion.errors import GenEmotionError

TABLE_SUFFIXES = (".jsonl", ".parquet")


class FormatError(GenEmotionError):
    """A JSON Lines, Parquet or datasets file that cannot be read as a table."""


def is_table(path: Path) -> bool:
    """Whether ``path`` is read here (rather than as delimited text)."""
    return path.is_dir() or path.suffix.lower() in TABLE_SUFFIXES


def field(value: Any) -> str:
    """A value as the text a CSV cell would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def table_rows(path: Path) -> list[tuple[int, list[str]]]:
    """``(line, fields)`` for the header and then every row of a JSON Lines file, a Parquet file or a
    ``datasets`` folder."""
    if path.is_dir():
        return _from_dicts(path, _dataset_rows(path))
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    if path.suffix.lower() == ".parquet":
        return _from_dicts(path, _parquet_rows(path))
    return _jsonl_rows(path)


def _from_dicts(path: Path, table: tuple[list[str], list[dict[str, Any]]]) -> list[tuple[int, list[str]]]:
    columns, rows = table
    return [(1, list(columns))] + [(i, [field(row.get(c)) for c in columns]) for i, row in enumerate(rows, start=2)]


def _jsonl_rows(path: Path) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise FormatError(f"{path}: line {line}: not valid UTF-8; save the file as UTF-8") from None
    except OSError as err:
        raise FormatError(f"{path}: cannot read the file ({err.strerror})") from None
    columns: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
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


def _parquet_rows(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise FormatError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow's own errors: a damaged or foreign file
        raise FormatError(f"{path}: not a readable Parquet file ({' '.join(str(err).split())[:200]})") from None
    return list(table.column_names), table.to_pylist()


def _dataset_rows(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    if not (path / "dataset_info.json").is_file() and not (path / "dataset_dict.json").is_file():
        raise FormatError(f"{path}: a folder, but not a datasets folder (save_to_disk writes dataset_info.json)")
    try:
        from datasets import Dataset, load_from_disk
    except ImportError:
        raise FormatError(f"{path}: reading a datasets folder needs datasets: pip install datasets") from None
    try:
        dataset = load_from_disk(str(path))
    except Exception as err:  # datasets' own errors
        raise FormatError(f"{path}: not a readable datasets folder ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(dataset, Dataset):
        raise FormatError(f"{path}: holds several splits ({', '.join(dataset)}); point at one of them")
    return list(dataset.column_names), dataset.to_list()
