"""A run's training curves (the loss, the validation loss and macro-F1 against the step), read from what the
training already writes; nothing is written for the studio:

- a finished training: its ``train_log.json`` (the Trainer's whole log history, ``training.trainers``);
- a run still training: the ``step N: loss ...`` lines its ``run.log`` gets as the Trainer logs them
  (``trainers.log_callback``);
- a cv fold still training: the log history in its last whole checkpoint's ``trainer_state.json``.

A TF-IDF model or a task without steps has none.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gen_emotion.core.logs import LOG_FILE
from gen_emotion.runs.folder import FOLDS_DIR
from gen_emotion.training.trainers import CHECKPOINT_DIR, TRAIN_LOG

CURVES = ("loss", "eval_loss", "eval_macro_f1")
"""The figures drawn, as the Trainer names them in its log history."""
STEP_LINE = re.compile(r"\bstep (\d+): (.*)$")
FIGURE = re.compile(r"(\w+) (-?[0-9.]+(?:e[-+]?\d+)?)(?:,|$)")
MAX_LOG_BYTES = 8 * 1024 * 1024


def history_points(history: Any, series: str) -> list[dict[str, Any]]:
    """The points ``{series, step, figure, value}`` of a Trainer log history (a list of mappings)."""
    points = []
    for entry in history if isinstance(history, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
            continue
        for figure in CURVES:
            value = entry.get(figure)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                points.append({"series": series, "step": entry["step"], "figure": figure, "value": float(value)})
    return points


def log_points(path: Path, series: str) -> list[dict[str, Any]]:
    """The points of the ``step N: name value, ...`` lines of a ``run.log`` (the last ``MAX_LOG_BYTES``)."""
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            handle.seek(max(0, size - MAX_LOG_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    history = []
    for line in text.splitlines():
        found = STEP_LINE.search(line)
        if found:
            figures = {name: float(value) for name, value in FIGURE.findall(found.group(2))}
            history.append({"step": int(found.group(1)), **figures})
    return history_points(history, series)


def _read_history(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _checkpoint_points(folder: Path, series: str) -> list[dict[str, Any]]:
    """The log history of the newest checkpoint whose ``trainer_state.json`` reads whole."""
    checkpoints = sorted(
        (int(p.name.removeprefix("checkpoint-")), p)
        for p in (folder / CHECKPOINT_DIR).glob("checkpoint-*")
        if p.name.removeprefix("checkpoint-").isdigit()
    )
    for _, path in reversed(checkpoints):
        state = _read_history(path / "trainer_state.json")
        if isinstance(state, dict):
            return history_points(state.get("log_history"), series)
    return []


def training_points(folder: Path, series: str, live_log: bool) -> list[dict[str, Any]]:
    """One training's points: its ``train_log.json``, else (``live_log``) its ``run.log`` lines or its last
    whole checkpoint."""
    if (folder / TRAIN_LOG).is_file():
        return history_points(_read_history(folder / TRAIN_LOG), series)
    points = log_points(folder / LOG_FILE, series) if live_log else []
    return points or _checkpoint_points(folder, series)


def folder_curves(folder: Path) -> list[dict[str, Any]]:
    """Every training's points in a run folder (series ``run``) or a cv folder (series ``fold-K``)."""
    folds = sorted((folder / FOLDS_DIR).glob("fold-*")) if (folder / FOLDS_DIR).is_dir() else []
    if not folds:
        return training_points(folder, "run", live_log=True)
    points: list[dict[str, Any]] = []
    for fold in folds:
        points += training_points(fold, fold.name, live_log=False)
    return points
