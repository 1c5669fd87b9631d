"""Labels held as one list per row, as GoEmotions holds them: class ids (``[17, 2]``, a ``datasets``
``ClassLabel`` sequence) or label names (``["joy", "anger"]``), turned into the 0/1 rows the rest of the
toolkit reads (``data`` reads the column named by ``data.label_column``).

The label names are the recipe's (``data.labels``), else the data's: the ``ClassLabel`` feature's names, in
its order, or the names the lists hold, sorted (with the none label). A class id indexes the ``ClassLabel``
names, or the recipe's labels where the column has no such feature; a ``ClassLabel`` column of one id a row
(a single-label dataset) is read as lists of one. An empty list is the none label's (``data.none_label``).
Every problem is one line naming the file or split, the row and the value: an unknown label name, a class id
out of range, an empty list where there is no none label, a value that is not a list of ids or names, ids and
names mixed in one list or in the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gen_emotion.core.errors import GenEmotionError

IDS, NAMES = "class ids", "label names"


class LabelListError(GenEmotionError):
    """A list of labels that cannot be read (one line naming the file or split, the row and the value)."""


@dataclass(frozen=True)
class ListColumn:
    """A column of label lists and what reading it needs."""

    column: str
    names: tuple[str, ...] | None
    """The recipe's labels, in order; ``None``: the data's."""
    class_names: tuple[str, ...] | None = None
    """The column's ``ClassLabel`` names (what its ids index), where it has that feature."""
    none_label: str | None = None


def _kind(source: str, where: str, items: list[Any]) -> str | None:
    """``IDS``, ``NAMES``, or ``None`` for an empty list; anything else is an error."""
    kinds = {
        IDS if isinstance(item, int) and not isinstance(item, bool) else NAMES if isinstance(item, str) else ""
        for item in items
    }
    if "" in kinds:
        bad = next(item for item in items if not isinstance(item, (int, str)) or isinstance(item, bool))
        raise LabelListError(f"{source}: {where}: the label list {items!r} holds {bad!r}; expected class ids or names")
    if len(kinds) > 1:
        raise LabelListError(f"{source}: {where}: the label list {items!r} mixes class ids and names")
    return kinds.pop() if kinds else None


def _as_list(source: str, spec: ListColumn, where: str, value: Any) -> list[Any]:
    """A row's value as a list: a list as it is; one class id of a ``ClassLabel`` column as a list of one."""
    if isinstance(value, list):
        return value
    if spec.class_names is not None and isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if _missing(value):
        raise LabelListError(
            f"{source}: {where}: column {spec.column!r} is empty (null), expected a list of class ids or label names"
        )
    hint = "; a CSV cell holds no list: use JSON Lines, Parquet or a datasets folder" if isinstance(value, str) else ""
    raise LabelListError(
        f"{source}: {where}: column {spec.column!r} holds {value!r}, expected a list of class ids or label names{hint}"
    )


def _missing(value: Any) -> bool:
    """A null (a table's null is read as the empty string, as a CSV cell's)."""
    return value is None or value == ""


def _data_names(spec: ListColumn, lists: list[list[Any]]) -> tuple[str, ...]:
    """The labels where the recipe names none: the ``ClassLabel`` names, or every name the lists hold, sorted."""
    if spec.class_names is not None:
        return spec.class_names
    found = sorted({item for items in lists for item in items if isinstance(item, str)})
    if spec.none_label is not None and spec.none_label not in found:
        found.append(spec.none_label)
    return tuple(found)


def _names_of(source: str, spec: ListColumn, where: str, items: list[Any], kind: str | None) -> list[str]:
    """The label names a row's list holds (class ids looked up in the ``ClassLabel`` names or the labels)."""
    if kind != IDS:
        return list(items)
    vocabulary = spec.class_names if spec.class_names is not None else spec.names
    if vocabulary is None:
        raise LabelListError(
            f"{source}: {where}: class ids {items!r}, but column {spec.column!r} has no ClassLabel names; "
            "give the labels in data.labels (id 0 is the first)"
        )
    for item in items:
        if not 0 <= item < len(vocabulary):
            raise LabelListError(
                f"{source}: {where}: class id {item} is out of range (0..{len(vocabulary) - 1}, "
                f"{len(vocabulary)} labels)"
            )
    return [vocabulary[item] for item in items]


def _vector(source: str, where: str, chosen: list[str], names: tuple[str, ...], none_label: str | None) -> list[int]:
    index = {name: i for i, name in enumerate(names)}
    vector = [0] * len(names)
    for name in chosen:
        if name not in index:
            shown = ", ".join(names) if len(names) <= 30 else ", ".join(names[:30]) + ", ..."
            raise LabelListError(
                f"{source}: {where}: unknown label {name!r} (labels: {shown}; data.labels: from_data takes the "
                "data's own)"
            )
        vector[index[name]] = 1
    if not chosen:
        if none_label is None or none_label not in index:
            raise LabelListError(f"{source}: {where}: an empty label list, and no data.none_label stands for no label")
        vector[index[none_label]] = 1
    return vector


def label_rows(
    source: str, spec: ListColumn, values: Sequence[tuple[str, Any]], require_labels: bool = True
) -> tuple[tuple[str, ...], np.ndarray | None]:
    """The label names and the ``(n, len(names))`` 0/1 rows of ``values``, one ``(where, value)`` a row. Without
    ``require_labels``, a column of nothing but nulls is no labels (``None``)."""
    if not require_labels and all(_missing(value) for _, value in values):
        return spec.names or spec.class_names or (), None
    lists = [_as_list(source, spec, where, value) for where, value in values]
    kinds = [_kind(source, where, items) for (where, _), items in zip(values, lists)]
    first = next((i for i, kind in enumerate(kinds) if kind is not None), None)
    for i, kind in enumerate(kinds):
        if kind is not None and first is not None and kind != kinds[first]:
            raise LabelListError(
                f"{source}: {values[i][0]}: {kind} {lists[i]!r}, but {values[first][0]} holds "
                f"{kinds[first]} {lists[first]!r} (mixed types in column {spec.column!r})"
            )
    names = spec.names if spec.names is not None else _data_names(spec, lists)
    rows = [
        _vector(source, where, _names_of(source, spec, where, items, kind), names, spec.none_label)
        for (where, _), items, kind in zip(values, lists, kinds)
    ]
    return names, np.asarray(rows, dtype=np.int64).reshape(len(rows), len(names))
