"""Where the data comes from (``--data``), and its splits: ``train``, an optional ``validation``, ``test``.

``--data`` is, in this order:

- a folder holding a ``train`` file (``find_data_file``: CSV, TSV, JSON Lines, Parquet or a one-split
  ``datasets`` folder): its ``test`` file, and its ``validation`` file where it has one (or ``--val FILE``);
- a folder that ``save_to_disk`` wrote of a ``DatasetDict``: its ``train``, ``test`` and ``validation`` splits;
- a folder of a dataset's files as the hub keeps them (``HUB_LAYOUT``), or a name that is no local path
  (``go_emotions``, ``owner/name``): what ``datasets.load_dataset(data, data.dataset_config)`` gives, so the
  user's datasets cache and offline mode (``HF_DATASETS_OFFLINE=1``) work as they do in any ``datasets`` code; an
  id of ``KNOWN_CONFIGS`` (SemEval-2018 Task 1 on the hub) gets its config where ``data.dataset_config`` names none.

The splits are used as given: a validation split is the held-out set of ``run`` (no fold is cut), the test split
is what the submission covers (its gold labels kept where it has them, for ``run`` and ``cv`` to score).
``Splits.record`` is what a run folder's ``data.json`` keeps: each split's fingerprint (a file's size and SHA-256,
a saved folder's files hashed, a loaded split's rows hashed as read with its ``datasets`` fingerprint, which
follows a hub dataset's revision) and where the data came from, so a resume on other data is refused
(``folder.prepare_run_dir``). The step above ``formats`` (how a table is read) in the data folder's one direction.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.data.dataset import SEMEVAL_COLUMNS, Columns, DataError, EmotionData
from gen_emotion.data.formats import (
    TABLE_SUFFIXES,
    dataset_table,
    is_saved_dataset,
    load_saved,
    read_test,
    read_train,
)
from gen_emotion.data.records import Table, read_records, to_predict

TRAIN, VALIDATION, TEST = "train", "validation", "test"
FILES, SAVED, LOADED = "files", "datasets folder", "load_dataset"
"""The kinds of source: a folder of files, a saved ``DatasetDict``, what ``datasets.load_dataset`` loads."""
KNOWN_CONFIGS = {"SemEvalWorkshop/sem_eval_2018_task_1": "subtask5.english"}
"""The config a dataset id loads where ``data.dataset_config`` names none: SemEval-2018 Task 1's E-c task in English
(``ID``, ``Tweet``, the 11 labels as booleans; train, validation and a test split with gold labels)."""
DATASET_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
"""What a dataset id on the hub looks like (``name`` or ``owner/name``)."""
ROW_NUMBERS = "row numbers"
SOURCE_KEY = "source"
"""The key of ``data.json`` (``Splits.record``) that says where the data came from; the others are the splits'."""
HUB_LAYOUT = ("README.md", "data")
"""What marks a folder as a dataset's files as the hub keeps them (read by ``load_dataset``): its card, which
names its configs and their files, or a ``data/`` folder of ``SPLIT-*`` files."""


def find_data_file(data_dir: Path, split: str) -> Path | None:
    """The ``split`` (``train``, ``validation`` or ``test``) file of a data folder, or ``None``: ``SPLIT.csv``,
    ``.tsv``, ``.jsonl``, ``.parquet``, or a ``datasets`` folder ``SPLIT/``; two of them are an error."""
    candidates = [data_dir / f"{split}{suffix}" for suffix in (".csv", ".tsv", *TABLE_SUFFIXES)]
    found = [path for path in candidates if path.is_file()]
    if (data_dir / split).is_dir():
        found.append(data_dir / split)
    if len(found) > 1:
        raise DataError(f"{data_dir}: holds {' and '.join(p.name for p in found)}; keep one {split} file")
    return found[0] if found else None


def data_file(data_dir: Path, split: str) -> Path:
    """The ``split`` file of a data folder (``find_data_file``), which must be there."""
    found = find_data_file(data_dir, split)
    if found is None:
        raise DataError(
            f"{data_dir}: no {split} file in this folder ({split}.csv, .tsv, .jsonl, .parquet or a datasets folder)"
        )
    return found


@dataclass(frozen=True)
class DataSource:
    """What to read: ``--data`` as given (a folder or a dataset id), its columns, the ``load_dataset`` config,
    ``--val FILE`` and ``--rows``."""

    data: str
    columns: Columns = SEMEVAL_COLUMNS
    config: str | None = None
    val: Path | None = None
    rows: int | None = None
    """Keep only the first rows of each split."""

    def worker_args(self) -> list[str]:
        """The arguments a step's process rebuilds this source from (with its run's recipe)."""
        val = ["--val", str(self.val)] if self.val is not None else []
        rows = ["--rows", str(self.rows)] if self.rows is not None else []
        return ["--data", self.data, *val, *rows]


@dataclass
class Splits:
    """A source's rows, split as given, with each split's fingerprint and where it came from."""

    source: DataSource
    kind: str
    train: EmotionData
    test: EmotionData
    validation: EmotionData | None
    fingerprints: dict[str, dict[str, Any]]
    origins: dict[str, str]
    """Each split's file, or its name in the dataset."""

    @property
    def row_ids(self) -> bool:
        """Whether the IDs are row numbers (the data has no ID column)."""
        return self.source.columns.id is None

    def record(self, used: tuple[str, ...]) -> dict[str, Any]:
        """What ``data.json`` keeps: the fingerprint of each split ``used``, and where the data came from."""
        source = {
            "data": self.source.data,
            "kind": self.kind,
            "config": self.source.config if self.kind == LOADED else None,
            "splits": {split: self.origins[split] for split in used},
            "ids": ROW_NUMBERS if self.row_ids else self.source.columns.id,
        }
        return {**{split: self.fingerprints[split] for split in used}, SOURCE_KEY: source}

    @property
    def shown(self) -> str:
        """``--data`` as a log names it: with the config ``load_dataset`` read."""
        config = self.source.config if self.kind == LOADED else None
        return self.source.data + (f" ({config})" if config else "")

    def id_note(self) -> str | None:
        """The line a run's log gets where the IDs are row numbers."""
        if not self.row_ids:
            return None
        return "no ID column (data.id_column: null): IDs are row numbers, from 0 in each split, in the submission too"


def source_kind(data: str) -> str:
    """``FILES``, ``SAVED`` or ``LOADED`` for ``--data`` as given (the module's order)."""
    path = Path(data).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            return SAVED
        if is_saved_dataset(path):
            raise DataError(
                f"--data {data}: a datasets folder of one split; give a DatasetDict saved with save_to_disk "
                "(train and test splits), or a folder holding it as train/ beside a test file"
            )
        if find_data_file(path, TRAIN) is not None:
            return FILES
        if any((path / name).exists() for name in HUB_LAYOUT):
            return LOADED
        raise DataError(
            f"{path}: no train file in this folder (train.csv, .tsv, .jsonl, .parquet or a datasets folder), nor a "
            "dataset's files as the hub keeps them (a README.md naming its configs, or data/)"
        )
    if path.exists():
        raise DataError(f"--data {data}: not a folder (give the folder that holds the train and test files)")
    if not DATASET_ID.fullmatch(data):
        raise DataError(
            f"--data {data}: not a folder (give the folder that holds the train and test files), nor a dataset id"
        )
    return LOADED


def read_splits(source: DataSource) -> Splits:
    """Every split of ``source``, read and checked (the module's rules), cut to ``source.rows``."""
    if source.rows is not None and source.rows < 2:
        raise DataError(f"--rows must be at least 2, got {source.rows}")
    kind = source_kind(source.data)  # data.dataset_config is load_dataset's: unused by the other kinds
    if kind == LOADED:
        source = with_known_config(source)
    splits = _file_splits(source) if kind == FILES else _dataset_splits(source, kind)
    if source.rows is not None:
        for name in (TRAIN, VALIDATION, TEST):
            data = getattr(splits, name)
            if data is not None:
                setattr(splits, name, data.subset(np.arange(min(source.rows, len(data)))))
    return splits


def with_known_config(source: DataSource) -> DataSource:
    """``source`` with its dataset's config (``KNOWN_CONFIGS``) where ``data.dataset_config`` names none."""
    known = KNOWN_CONFIGS.get(source.data.rstrip("/"))
    return replace(source, config=known) if source.config is None and known else source


def _file_splits(source: DataSource) -> Splits:
    folder = Path(source.data).expanduser()
    paths = {TRAIN: data_file(folder, TRAIN), TEST: data_file(folder, TEST)}
    beside = find_data_file(folder, VALIDATION)
    if source.val is not None and beside is not None:
        raise DataError(f"--val {source.val}: {folder} holds {beside.name} too; keep one validation file")
    if source.val is not None or beside is not None:
        paths[VALIDATION] = source.val or beside
    train = read_train(paths[TRAIN], source.columns)
    columns = replace(source.columns, labels=train.label_names)
    validation = read_train(paths[VALIDATION], columns) if VALIDATION in paths else None
    test = read_test(paths[TEST], columns, keep_labels=True)
    fingerprints = {split: file_fingerprint(path) for split, path in paths.items()}
    origins = {split: path.name for split, path in paths.items()}
    if source.val is not None:
        origins[VALIDATION] = str(source.val)
    return Splits(source, FILES, train, test, validation, fingerprints, origins)


def _dataset_splits(source: DataSource, kind: str) -> Splits:
    """The splits of a saved ``DatasetDict`` or of what ``load_dataset`` gives."""
    folder = Path(source.data).expanduser()
    if kind == SAVED:
        where, dataset = str(folder), load_saved(folder)
    else:
        where = source.data + (f" ({source.config})" if source.config else "")
        dataset = load_dataset(source.data, source.config)
    for split in (TRAIN, TEST):
        if split not in dataset:
            raise DataError(
                f"{where}: no {split} split (it has {', '.join(dataset) or 'none'}); the data needs a train and a "
                f"test split{', and a validation split if it has one' if split == TRAIN else ''}"
            )
    if source.val is not None and VALIDATION in dataset:
        raise DataError(f"--val {source.val}: {where} has a validation split of its own; keep one")
    used = [split for split in (TRAIN, VALIDATION, TEST) if split in dataset]
    tables = {split: dataset_table(dataset[split]) for split in used}
    train = read_records(f"{where}, {TRAIN} split", tables[TRAIN], source.columns, require_labels=True)
    columns = replace(source.columns, labels=train.label_names)
    validation = None
    if VALIDATION in tables:
        validation = read_records(f"{where}, {VALIDATION} split", tables[VALIDATION], columns, require_labels=True)
    elif source.val is not None:
        validation = read_train(source.val, columns)
    test = to_predict(read_records(f"{where}, {TEST} split", tables[TEST], columns), columns, keep_labels=True)
    if kind == SAVED:  # its files, as a data folder's
        fingerprints = {split: file_fingerprint(folder / split) for split in used}
    else:  # the rows as read, and the datasets fingerprint (which follows a hub dataset's revision)
        fingerprints = {split: table_fingerprint(split, tables[split], dataset[split]) for split in used}
    origins = {split: split for split in used}
    if source.val is not None:
        fingerprints[VALIDATION], origins[VALIDATION] = file_fingerprint(source.val), str(source.val)
    return Splits(source, kind, train, test, validation, fingerprints, origins)


def table_fingerprint(split: str, table: Table, dataset: Any) -> dict[str, Any]:
    """A loaded split's rows, SHA-256 of its columns, their ``ClassLabel`` names and every row as read, and its
    ``datasets`` fingerprint."""
    digest = hashlib.sha256(json.dumps(table.class_names, sort_keys=True).encode("utf-8"))
    for record in table.records:
        digest.update(json.dumps(record.fields, ensure_ascii=False, default=str).encode("utf-8") + b"\n")
    rows = len(table.records) - 1
    return {
        "split": split,
        "rows": rows,
        "sha256": digest.hexdigest(),
        "fingerprint": getattr(dataset, "_fingerprint", None),
    }


def load_dataset(data: str, config: str | None) -> Any:
    """``datasets.load_dataset(data, config)`` (every split), its errors one line naming ``data``."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"--data {data}: reading a hub dataset needs datasets: pip install datasets") from None
    named = f"--data {data}" + (f" (data.dataset_config {config})" if config else "")
    # A local folder's files may change under the same names, which the datasets cache does not always see (a
    # README's configs): it is read afresh. A hub dataset's cache follows its revision.
    fresh = {"download_mode": "force_redownload", "verification_mode": "no_checks"} if Path(data).is_dir() else {}
    try:
        return datasets.load_dataset(data, config, **fresh)
    except ConnectionError as err:
        why = "offline mode: HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set" if _offline() else _short(err)
        raise DataError(
            f"{named}: not in the datasets cache, and the hub cannot be reached ({why}); load it once online, or "
            "check the id (or the path, for a local folder)"
        ) from None
    except FileNotFoundError as err:
        raise DataError(f"{named}: no such dataset ({_short(err)})") from None
    except Exception as err:  # datasets' own errors: an unknown config, unreadable files
        hint = "; name one with data.dataset_config=NAME" if config is None and "config" in str(err).lower() else ""
        raise DataError(f"{named}: datasets.load_dataset failed ({_short(err)}){hint}") from None


def _offline() -> bool:
    import datasets

    return bool(getattr(datasets.config, "HF_HUB_OFFLINE", False))


def _short(err: BaseException) -> str:
    return " ".join(str(err).split())[:300] or type(err).__name__


def file_fingerprint(path: Path) -> dict[str, Any]:
    """A file's (or a folder's: every file in it, in name order) name, size and SHA-256."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest, size = hashlib.sha256(), 0
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode("utf-8") + b"\0")
        try:
            with file.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
                    size += len(block)
        except OSError as err:
            raise DataError(f"{file}: cannot read the file ({err.strerror or err})") from None
    return {"file": path.name, "bytes": size, "sha256": digest.hexdigest()}


def describe_change(split: str, before: dict[str, Any] | None, now: dict[str, Any] | None) -> str:
    """How a split's fingerprint changed since a run started, for its one-line refusal."""
    if not before:
        return f"{_name(split, now)} is new"
    if not now:
        return f"{_name(split, before)} is gone"
    if before.get("file") != now.get("file"):
        return f"{_name(split, before)} is now {_name(split, now)}"
    return f"{_name(split, now)} was {_figures(before)}, now {_figures(now)}"


def _name(split: str, entry: dict[str, Any] | None) -> str:
    return str((entry or {}).get("file") or f"the {split} split")


def _figures(entry: dict[str, Any]) -> str:
    if "bytes" in entry:
        return f"{entry.get('bytes')} bytes, sha256 {str(entry.get('sha256'))[:12]}"
    return f"{entry.get('rows')} rows, sha256 {str(entry.get('sha256'))[:12]}, fingerprint {entry.get('fingerprint')}"
