"""The runs page's rows: every run, cv and ensemble folder under RUNS_DIR (nested too), each with its figures as
its own files report them (``runs.folder``'s readers, ``scoring.run_metrics``' classes) and its state: running
(a live process holds its lock, ``runs.locks``), finished (its metrics are written), or failed or stopped (neither;
the last error its ``run.log`` names, if any). A folder that cannot be read is a row with one line saying why.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.logs import LOG_FILE
from gen_emotion.runs.folder import (
    CV_SETTINGS,
    FOLDER_METRICS,
    LOCK_FILE,
    RECIPE_FILE,
    RUN_METRICS,
    load_run_recipe,
    read_folder_metrics,
    read_run_metrics,
)
from gen_emotion.runs.locks import lock_path
from gen_emotion.scoring.run_metrics import CvMetrics, EnsembleMetrics, RunMetrics
from gen_emotion.sweeps.sweep import is_sweep_folder

MARKERS = (RECIPE_FILE, RUN_METRICS, FOLDER_METRICS, CV_SETTINGS, LOG_FILE, LOCK_FILE)
"""A folder holding any of these is a run, cv or ensemble folder (perhaps half-written); others are looked into."""
MAX_DEPTH = 8
LOG_TAIL_BYTES = 65536


@dataclass
class RunRow:
    """One folder of the runs page."""

    path: str
    """Relative to RUNS_DIR, ``/``-separated (``paths.RunsRoot.resolve`` takes it back)."""
    kind: str = "?"
    task: str = ""
    model: str = ""
    data: str = ""
    macro_f1: float | None = None
    """The folder's headline figure: a run's held-out macro-F1 as submitted; a cv's or an ensemble's out-of-fold
    macro-F1 at its tuned thresholds."""
    honest: float | None = None
    """The figure with thresholds tuned on other rows than those scored (cross-validated), where there is one."""
    micro_f1: float | None = None
    jaccard: float | None = None
    seconds: float | None = None
    when: float | None = None
    """When its figures (or, unfinished, its log) were last written: seconds since the epoch."""
    state: str = "?"
    """``finished``, ``running``, ``failed`` or ``unreadable``."""
    note: str = ""
    """One line: why it failed or cannot be read."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def when_text(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.when)) if self.when else ""


def find_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` (``root`` too) that holds a marker (``MARKERS``), not looking inside them (a
    cv's folds are shown on its page), nor into hidden folders; sorted. A sweep folder is looked into: its trials
    are cv (or run) folders."""
    found: list[Path] = []
    for here, dirs, files in os.walk(root, followlinks=False):
        depth = len(Path(here).relative_to(root).parts)
        if any(name in files for name in MARKERS) and not is_sweep_folder(Path(here)):  # a sweep's trials are below
            found.append(Path(here))
            dirs.clear()
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < MAX_DEPTH else []
    return sorted(found)


def holder(folder: Path) -> dict[str, Any] | None:
    """The live process that holds ``folder``'s lock (what its lock file says of it), or None. Read without taking
    the lock: a process on this host is alive when it exists; a lock file left by a killed process is stale."""
    try:
        info = json.loads(lock_path(folder).read_text(encoding="utf-8"))
        pid, host = int(info["pid"]), str(info["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname():
        return info  # another machine's process (a shared disk): trusted while its file is there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return info
    return None if _zombie(pid) else info


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def last_error(folder: Path) -> str:
    """The last ``ERROR`` line of a folder's ``run.log`` (its message only), or ``""``."""
    path = folder / LOG_FILE
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if " ERROR " in line or line.startswith(("ERROR", "gen-emotion: error")):
            return line.split(" ERROR ", 1)[-1].strip()[:300]
    return ""


def folder_kind(folder: Path) -> str:
    """``cv``, ``ensemble`` or ``run`` from the files a folder holds (without reading them)."""
    if (folder / CV_SETTINGS).is_file():
        return "cv"
    if (folder / FOLDER_METRICS).is_file() and not (folder / RECIPE_FILE).is_file():
        return "ensemble"
    return "run"


def read_row(root: Path, folder: Path) -> RunRow:
    """A folder's row; whatever cannot be read is said in ``note``, never raised."""
    row = RunRow(path=folder.relative_to(root).as_posix() if folder != root else "")
    row.kind = folder_kind(folder)
    try:
        if row.kind == "run":
            _run_figures(row, folder)
        else:
            _folder_figures(row, folder)
    except GenEmotionError as err:
        row.state, row.note = "unreadable", str(err).replace(str(root) + "/", "")
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        row.state, row.note = "unreadable", f"{type(err).__name__}: {err}"
    if row.state != "unreadable":
        row.state = _state(row, folder)
    if row.when is None:
        row.when = _mtime(folder / LOG_FILE) or _mtime(folder)
    return row


def _state(row: RunRow, folder: Path) -> str:
    if holder(folder) is not None:
        return "running"
    if row.macro_f1 is not None:
        return "finished"
    error = last_error(folder)
    row.note = row.note or (f"failed: {error}" if error else "stopped before it finished (no metrics written)")
    return "failed"


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _unfinished(row: RunRow, folder: Path) -> None:
    """What an unfinished folder's recipe says (its task and model), where it has one."""
    if (folder / RECIPE_FILE).is_file():
        recipe = load_run_recipe(folder)
        row.task, row.model = recipe.task, recipe.model.name


def _run_figures(row: RunRow, folder: Path) -> None:
    if not (folder / RUN_METRICS).is_file():
        _unfinished(row, folder)
        return
    metrics: RunMetrics = read_run_metrics(folder)
    held = metrics.held_out if isinstance(metrics.held_out, dict) else {}
    row.task, row.model, row.data = metrics.task, metrics.model, metrics.data
    row.macro_f1 = _number(metrics.held_out_final_macro_f1, held.get("macro_f1"))
    probabilities = metrics.probabilities if isinstance(metrics.probabilities, dict) else {}
    cross_validated = probabilities.get("thresholded_macro_f1_cv")
    row.honest = _number(cross_validated) if metrics.decision == "thresholds" else row.macro_f1
    row.micro_f1, row.jaccard = _number(held.get("micro_f1")), _number(held.get("jaccard"))
    timings = metrics.timings if isinstance(metrics.timings, dict) else {}
    parts = [timings.get(key) for key in ("data_s", "fit_s", "predict_s")]
    row.seconds = sum(p for p in parts if isinstance(p, (int, float))) or None
    row.when = _mtime(folder / RUN_METRICS)
    row.extra = {"decision": metrics.decision, "rows": held.get("rows")}
    if row.macro_f1 is None:
        raise GenEmotionError(f"{RUN_METRICS}: holds no held-out macro-F1 (from an older version?)")


def _folder_figures(row: RunRow, folder: Path) -> None:
    if not (folder / FOLDER_METRICS).is_file():
        _unfinished(row, folder)
        return
    metrics: CvMetrics | EnsembleMetrics = read_folder_metrics(folder)
    row.kind = "ensemble" if isinstance(metrics, EnsembleMetrics) else "cv"
    row.macro_f1 = _number(metrics.macro_f1)
    row.honest = _number(metrics.macro_f1_thresholds_cv)
    row.micro_f1, row.jaccard, row.seconds = _number(metrics.micro_f1), _number(metrics.jaccard), metrics.wall_s
    row.when = _mtime(folder / FOLDER_METRICS)
    if isinstance(metrics, CvMetrics):
        row.task, row.model, row.data = metrics.task, metrics.model, metrics.data
        row.extra = {"folds": metrics.folds, "rows": metrics.rows}
    else:
        names = [str(m.get("name", "?")) for m in metrics.members if isinstance(m, dict)]
        row.task, row.model = f"{metrics.mode} of {len(names)}", " + ".join(names)
        row.extra = {"rows": metrics.rows}
    if row.macro_f1 is None:
        raise GenEmotionError(f"{FOLDER_METRICS}: holds no macro_f1")


def _number(*values: Any) -> float | None:
    """The first of ``values`` that is a number."""
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def all_rows(root: Path) -> list[RunRow]:
    return [read_row(root, folder) for folder in find_folders(root)]


SORT_KEYS = (
    "path",
    "kind",
    "task",
    "model",
    "data",
    "macro_f1",
    "honest",
    "micro_f1",
    "jaccard",
    "seconds",
    "when",
    "state",
)


def sort_rows(rows: list[RunRow], key: str, descending: bool) -> list[RunRow]:
    """``rows`` by ``key`` (one of ``SORT_KEYS``), missing values last either way."""
    present = [r for r in rows if getattr(r, key) not in (None, "")]
    missing = [r for r in rows if getattr(r, key) in (None, "")]
    return sorted(present, key=lambda r: getattr(r, key), reverse=descending) + missing


def filter_rows(rows: list[RunRow], text: str, kind: str, state: str) -> list[RunRow]:
    """The rows whose path, task, model or data contain ``text`` (any case), of ``kind`` and ``state`` (``""``:
    any)."""
    needle = text.strip().lower()
    return [
        r
        for r in rows
        if (not kind or r.kind == kind)
        and (not state or r.state == state)
        and (not needle or needle in f"{r.path} {r.task} {r.model} {r.data}".lower())
    ]
