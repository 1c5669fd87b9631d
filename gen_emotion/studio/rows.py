"""What the errors page shows of a folder: its held-out rows (a cv's or an ensemble's out-of-fold rows), each with
its text, gold and predicted labels, each label's probability and, for a generation run, the generated text.

The predictions, probabilities and (for a cv or an ensemble) gold labels are the folder's own files. The texts
(and a run's gold labels) are in the data it was trained on, which ``data.json`` names: that one file is read
only when it is a regular file of the size and SHA-256 that ``data.json`` recorded (``sources.file_fingerprint``),
so a folder can point the studio at no other file; otherwise the rows are shown without texts, saying why.
"""

from __future__ import annotations

import csv
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gen_emotion.config.recipes import columns
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import read_json
from gen_emotion.data.dataset import Columns, EmotionData
from gen_emotion.data.formats import read_label_file, read_train
from gen_emotion.data.sources import FILES, SOURCE_KEY, TRAIN, VALIDATION, file_fingerprint
from gen_emotion.runs.folder import (
    DATA_FILE,
    FOLDER_METRICS,
    OOF_LABELS,
    OOF_PREDICTIONS,
    OOF_PROBS,
    THRESHOLDS,
    VAL_PREDICTIONS,
    VAL_PROBS,
    load_run_recipe,
    read_folder_metrics,
    threshold_values,
)
from gen_emotion.scoring.prediction_files import read_probabilities
from gen_emotion.scoring.run_metrics import EnsembleMetrics
from gen_emotion.studio.paths import RunsRoot

CACHED = 8
"""Folders whose rows are kept in memory (the last ones opened)."""


@dataclass
class HeldOutRows:
    """A folder's held-out (or out-of-fold) rows, as arrays the errors page filters and pages."""

    ids: list[str]
    names: tuple[str, ...]
    predicted: np.ndarray
    gold: np.ndarray | None
    probs: np.ndarray | None
    texts: list[str] | None
    outputs: list[str] | None
    thresholds: dict[str, float]
    note: str
    """Why texts or gold labels are missing, or ``""``."""

    def __post_init__(self) -> None:
        self.search = [f"{i}\n{t}".lower() for i, t in zip(self.ids, self.texts or [""] * len(self.ids))]


_cache: OrderedDict[tuple, HeldOutRows] = OrderedDict()
_data_cache: OrderedDict[tuple, EmotionData] = OrderedDict()


def held_out_rows(root: RunsRoot, folder: Path) -> HeldOutRows:
    """``folder``'s rows, read once and kept while its prediction files do not change."""
    files = [folder / name for name in (VAL_PREDICTIONS, OOF_PREDICTIONS, VAL_PROBS, OOF_PROBS, OOF_LABELS)]
    key = (str(folder), *(p.stat().st_mtime_ns if p.is_file() else 0 for p in files))
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    rows = read_held_out(root, folder)
    _cache[key] = rows
    while len(_cache) > CACHED:
        _cache.popitem(last=False)
    return rows


def read_held_out(root: RunsRoot, folder: Path) -> HeldOutRows:
    """Read a run's ``val_*`` files or a cv's or an ensemble's ``oof_*`` files (one line naming what is missing)."""
    is_run = (folder / VAL_PREDICTIONS).is_file()
    path = folder / (VAL_PREDICTIONS if is_run else OOF_PREDICTIONS)
    if not path.is_file():
        raise GenEmotionError(f"{root.relative(folder) or '.'}: no held-out predictions yet (unfinished?)")
    names, has_output = _header(path)
    found = read_label_file(path, Columns(text="output", labels=names) if has_output else Columns(labels=names))
    ids, predicted = found.ids, found.labels
    outputs = list(found.texts) if has_output else None
    probs_path = folder / (VAL_PROBS if is_run else OOF_PROBS)
    probs = _aligned_probs(probs_path, names, ids) if probs_path.is_file() else None
    thresholds = threshold_values(folder) if (folder / THRESHOLDS).is_file() else {}
    gold = None
    if not is_run and (folder / OOF_LABELS).is_file():
        labels = read_label_file(folder / OOF_LABELS, Columns(labels=names))
        if labels.ids != ids:
            raise GenEmotionError(f"{OOF_LABELS} and {OOF_PREDICTIONS} list different IDs")
        gold = labels.labels
    texts, note = None, ""
    try:
        data = training_data(root, folder, is_run)
        by_id = {row_id: i for i, row_id in enumerate(data.ids)}
        missing = [row_id for row_id in ids if row_id not in by_id]
        if missing:
            raise GenEmotionError(f"the data has no row {missing[0]!r} of the predictions")
        order = [by_id[row_id] for row_id in ids]
        texts = [data.texts[i] for i in order]
        if gold is None and data.labels is not None:
            gold = _columns_of(data, names)[order]
    except GenEmotionError as err:
        note = f"texts{'' if gold is not None else ' and gold labels'} not shown: {err}"
    return HeldOutRows(ids, names, predicted, gold, probs, texts, outputs, thresholds, note)


def _header(path: Path) -> tuple[tuple[str, ...], bool]:
    with path.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), [])
    has_output = bool(header) and header[-1] == "output"
    names = tuple(header[1:-1] if has_output else header[1:])
    if not names:
        raise GenEmotionError(f"{path.name}: no label columns")
    return names, has_output


def _aligned_probs(path: Path, names: tuple[str, ...], ids: list[str]) -> np.ndarray:
    prob_ids, probs = read_probabilities(path, names)
    if prob_ids != ids:
        raise GenEmotionError(f"{path.name} lists other IDs than the predictions")
    return probs


def _columns_of(data: EmotionData, names: tuple[str, ...]) -> np.ndarray:
    index = {name: i for i, name in enumerate(data.label_names)}
    if any(name not in index for name in names):
        raise GenEmotionError("the data's labels are not the predictions' labels")
    return data.labels[:, [index[name] for name in names]]


def data_folder(root: RunsRoot, folder: Path) -> Path:
    """The folder whose ``data.json`` and recipe describe ``folder``'s data: itself, or an ensemble's first member
    (which must be inside RUNS_DIR)."""
    if (folder / DATA_FILE).is_file():
        return folder
    if (folder / FOLDER_METRICS).is_file():
        metrics = read_folder_metrics(folder)
        if isinstance(metrics, EnsembleMetrics) and metrics.members:
            member = member_path(root, folder, metrics.members[0])
            if member is not None:
                return data_folder(root, member)
    raise GenEmotionError(f"no {DATA_FILE} (the folder does not say what data it was trained on)")


def member_path(root: RunsRoot, folder: Path, member: dict) -> Path | None:
    """Where an ensemble member is, if inside RUNS_DIR: ``folder`` (relative to the ensemble) or ``run_dir`` (as
    the ensemble command was given it: absolute, or relative to where it ran, tried against RUNS_DIR and its
    parent too)."""
    if not isinstance(member, dict):
        return None
    if member.get("folder"):
        candidates = [folder / str(member["folder"])]
    elif member.get("run_dir"):
        given = Path(str(member["run_dir"]))
        candidates = (
            [given] if given.is_absolute() else [Path.cwd() / given, root.real / given, root.real.parent / given]
        )
    else:
        return None
    for candidate in candidates:
        if root.contains(candidate) and candidate.is_dir():
            return candidate.resolve()
    return None


def training_data(root: RunsRoot, folder: Path, is_run: bool) -> EmotionData:
    """The rows of the split ``folder`` held out (a run: its validation split where the data gave one, else the
    training split; a cv: the training split), read once its fingerprint matches ``data.json``'s."""
    where = data_folder(root, folder)
    record = read_json(where / DATA_FILE, "the data's fingerprint")
    source = record.get(SOURCE_KEY)
    if not isinstance(source, dict) or source.get("kind") != FILES:
        raise GenEmotionError("its data is a dataset, not files (texts are shown for data read from files)")
    splits = source.get("splits") if isinstance(source.get("splits"), dict) else {}
    split = VALIDATION if is_run and VALIDATION in splits else TRAIN
    expected = record.get(split)
    if split not in splits or not isinstance(expected, dict):
        raise GenEmotionError(f"{DATA_FILE} names no {split} file")
    path = Path(str(source.get("data", ""))).expanduser() / str(splits[split])
    if not path.is_file() or path.stat().st_size != expected.get("bytes"):
        raise GenEmotionError(f"{path} is gone or changed since the run")
    key = (str(path), expected.get("sha256"))
    if key not in _data_cache:
        if file_fingerprint(path).get("sha256") != expected.get("sha256"):
            raise GenEmotionError(f"{path} changed since the run (its SHA-256 differs from {DATA_FILE}'s)")
        _data_cache[key] = read_train(path, replace(columns(load_run_recipe(where)), labels=None))
        while len(_data_cache) > CACHED:
            _data_cache.popitem(last=False)
    return _data_cache[key]
