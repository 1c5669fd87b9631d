"""What the data steps give the rest of the toolkit: ``EmotionData`` (a split's rows in file order: string IDs,
texts and an ``(n, len(label_names))`` 0/1 array or ``None``), ``Columns`` (which columns hold the ID, the text
and the labels: the recipe's ``data.id_column``, ``data.text_column``, ``data.labels`` and ``data.label_column``)
and ``DataError``, the one-line error of data that cannot be read.

The lowest step of the data folder: ``sources`` (where the data is) -> ``formats`` (how a table is read) ->
``records`` (rows and labels) -> this module; none of them imports one above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS

ID_COLUMN = "ID"
TEXT_COLUMN = "Tweet"
ROW_ID = "row"
"""The ID column a submission gets where the data has none (its IDs are row numbers)."""


class DataError(GenEmotionError):
    """A data file is missing, unreadable or malformed."""


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


def label_counts(labels: np.ndarray, names: tuple[str, ...] = LABELS) -> dict[str, int]:
    """The number of positive rows per label."""
    return {label: int(count) for label, count in zip(names, np.asarray(labels).sum(axis=0))}


def sample_data_dir() -> Path:
    """The illustrative labelled sample shipped with the package (not real tweets)."""
    return Path(str(resources.files("gen_emotion") / "sample_data"))
