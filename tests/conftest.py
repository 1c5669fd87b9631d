"""Shared helpers for the unit tests: tiny CSV files built in ``tmp_path`` and the shipped sample."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from gen_emotion.labels import LABELS

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "gen_emotion" / "sample_data"
TRAIN_HEADER = ["ID", "Tweet", *LABELS]
LABEL_HEADER = ["ID", *LABELS]


def write_rows(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]], delimiter: str = ",") -> Path:
    """Write ``header`` and ``rows`` with the csv module (proper quoting) and return ``path``."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def sample_dir() -> Path:
    """The illustrative sample shipped with the package (300 train rows, 80 test rows)."""
    assert SAMPLE_DIR.is_dir(), SAMPLE_DIR
    return SAMPLE_DIR


@pytest.fixture
def train_csv(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``train_csv(rows, name="train.csv", header=TRAIN_HEADER)`` writes a tiny Kaggle train file."""

    def make(rows: Sequence[Sequence[object]], name: str = "train.csv", header: Sequence[str] = TRAIN_HEADER) -> Path:
        return write_rows(tmp_path / name, header, rows)

    return make


def onehot(*names: str) -> list[int]:
    """The 0/1 list with a one for each label name."""
    return [int(label in names) for label in LABELS]
