"""Launch (``studio --allow-launch``): ``gen-emotion run`` or ``cv`` started from the studio as a subprocess with an
argument list (never a shell string), in a process group of its own, so that stop ends it and every process it
started. Each job is a JSON file and its output a log file under ``RUNS_DIR/.studio/jobs/`` (written with
``core.files``), so a job outlives a browser reload and a studio restart. One job per run folder: the command
itself holds the folder's lock (``runs.locks``), and a folder whose lock a live process holds is refused here
before anything starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gen_emotion.config.shipped import shipped_folders
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import make_folder, read_json, write_json
from gen_emotion.studio.folders import holder
from gen_emotion.studio.paths import PathRefused, RunsRoot

JOBS_DIR = ".studio/jobs"
OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=[^\n\r]*$")
"""A recipe override, as the command line takes it (``section.field=value``)."""
OUT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")
JOB_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
TAIL_BYTES = 16384


@dataclass
class Job:
    """One launched command, as its file under ``.studio/jobs/`` keeps it."""

    id: str
    command: str
    recipe: str
    out: str
    """The run folder, relative to RUNS_DIR."""
    argv: list[str]
    pid: int = 0
    started: float = 0.0
    ended: float | None = None
    returncode: int | None = None
    stopped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def shipped_recipes() -> list[str]:
    """The names of the recipes shipped with the toolkit."""
    names = {path.stem for folder in shipped_folders() if folder.is_dir() for path in folder.glob("*.yaml")}
    return sorted(names)


class Jobs:
    """The launched jobs of one RUNS_DIR."""

    def __init__(self, root: RunsRoot) -> None:
        self.root = root
        self.folder = root.real / JOBS_DIR
        self.children: dict[str, subprocess.Popen] = {}

    def _file(self, job_id: str, suffix: str) -> Path:
        if not JOB_ID.fullmatch(job_id):
            raise PathRefused(f"{job_id!r}: not a job id")
        return self.folder / f"{job_id}{suffix}"

    def _save(self, job: Job) -> None:
        write_json(self._file(job.id, ".json"), asdict(job))

    def get(self, job_id: str) -> Job:
        path = self._file(job_id, ".json")
        if not path.is_file():
            raise PathRefused(f"{job_id}: no such job")
        job = Job(**read_json(path, "a studio job"))
        self._update(job)
        return job

    def all(self) -> list[Job]:
        if not self.folder.is_dir():
            return []
        ids = sorted((p.stem for p in self.folder.glob("*.json") if JOB_ID.fullmatch(p.stem)), reverse=True)
        return [self.get(job_id) for job_id in ids]

    def running(self, job: Job) -> bool:
        return job.ended is None

    def _update(self, job: Job) -> None:
        """Mark a job that has ended: this studio's child (its exit status), or an earlier studio's (gone)."""
        if job.ended is not None:
            return
        child = self.children.get(job.id)
        if child is not None:
            if child.poll() is None:
                return
            job.returncode = child.returncode
        elif _alive(job.pid, job.argv):
            return
        job.ended = time.time()
        self._save(job)

    def launch(self, command: str, recipe: str, out: str, data: str, folds: str, overrides: str) -> Job:
        """Start ``gen-emotion COMMAND RECIPE --out RUNS_DIR/OUT [--data DATA] [--folds N] [OVERRIDES]``."""
        if command not in ("run", "cv"):
            raise GenEmotionError("command: run or cv")
        recipe_arg = self._recipe(recipe)
        out_path = self._out(out)
        argv = [sys.executable, "-m", "gen_emotion", command, recipe_arg, "--out", str(out_path)]
        if data.strip():
            if data.strip().startswith("-"):
                raise GenEmotionError("data: a folder or a dataset id (not an option)")
            argv += ["--data", data.strip()]
        if folds.strip():
            if command != "cv" or not folds.strip().isdigit() or not 2 <= int(folds) <= 20:
                raise GenEmotionError("folds: a cv's number of folds, 2 to 20")
            argv += ["--folds", folds.strip()]
        for line in overrides.splitlines():
            if line.strip():
                if not OVERRIDE.fullmatch(line.strip()):
                    raise GenEmotionError(f"override {line.strip()!r}: expected section.field=value")
                argv.append(line.strip())
        busy = [j for j in self.all() if j.out == self.root.relative(out_path) and self.running(j)]
        if busy or holder(out_path) is not None:
            raise GenEmotionError(f"{out}: a job is already writing this folder; stop it or choose another")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        job = Job(f"{stamp}-{secrets.token_hex(3)}", command, recipe, self.root.relative(out_path), argv)
        make_folder(self.folder)
        with self._file(job.id, ".log").open("ab") as log:
            child = subprocess.Popen(  # an argument list: no shell ever reads it
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root.real,
                start_new_session=True,  # its own process group: stop ends it and its children
            )
        job.pid, job.started = child.pid, time.time()
        self.children[job.id] = child
        self._save(job)
        return job

    def _recipe(self, recipe: str) -> str:
        """A shipped recipe's name, or a ``.yaml`` file inside RUNS_DIR (its real path)."""
        recipe = recipe.strip()
        if recipe in shipped_recipes():
            return recipe
        if not recipe.endswith((".yaml", ".yml")):
            raise GenEmotionError(f"recipe {recipe!r}: a shipped recipe's name, or a .yaml file in the runs folder")
        return str(self.root.resolve(recipe, want="file"))

    def _out(self, out: str) -> Path:
        """The run folder to write: a new or existing folder inside RUNS_DIR (its deepest existing folder is
        checked like any path a request names, so a link out is refused; the rest is made by the command)."""
        out = out.strip().strip("/")
        if not OUT_NAME.fullmatch(out):
            raise GenEmotionError(f"out {out!r}: a folder name inside the runs folder (letters, digits, _ . - /)")
        parts = out.split("/")
        existing = 0
        while existing < len(parts) and (self.root.real.joinpath(*parts[: existing + 1])).exists():
            existing += 1
        base = self.root.resolve("/".join(parts[:existing]))
        return base.joinpath(*parts[existing:])

    def stop(self, job_id: str) -> Job:
        """End a running job's process group (SIGTERM; the command's Ctrl-C path leaves it resumable)."""
        job = self.get(job_id)
        if job.ended is None and (job.id in self.children or _alive(job.pid, job.argv)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGTERM)
            job.stopped = True
            self._save(job)
        return job

    def tail(self, job_id: str) -> str:
        """The end of a job's output, each line as a terminal shows it (progress bars' last state)."""
        path = self._file(job_id, ".log")
        try:
            with path.open("rb") as handle:
                handle.seek(max(0, path.stat().st_size - TAIL_BYTES))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line for line in text.split("\n"))

    def close(self) -> None:
        """Reap the children that have ended (the running ones go on without the studio)."""
        for child in self.children.values():
            child.poll()


def _alive(pid: int, argv: list[str]) -> bool:
    """Whether process ``pid`` runs and is the job (its command line is ``argv``), not a reused id."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        stat = ""
    return stat != "Z" and [part.decode(errors="replace") for part in cmdline] == argv
