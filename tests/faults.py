"""The fault harness's moves (#24), shared by the TF-IDF harness (test_locks) and the slow ones (test_classify,
test_pipeline): run a command to its end timing it, SIGKILL a command's whole process group at a moment, and cap
the size of the files a child may write (a full disk without filling one)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start(command: list[str]) -> subprocess.Popen:
    """``command`` in a process group of its own (its step processes are its children), quiet."""
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def timed(command: list[str], writing: Callable[[], bool]) -> tuple[float, float]:
    """Run ``command`` to its end: the first and the last moment (seconds from its start) that ``writing()`` held,
    i.e. the window in which a kill can cut what it writes (its lock file is there from before its first write to
    after its last)."""
    started = time.perf_counter()
    process = start(command)
    seen: list[float] = []
    while process.poll() is None:
        if writing():
            seen.append(time.perf_counter() - started)
        time.sleep(0.002)
    assert process.returncode == 0, f"{' '.join(command)} failed ({process.returncode})"
    assert seen, f"{' '.join(command)}: never seen writing"
    return seen[0], seen[-1]


def kill_after(command: list[str], seconds: float) -> bool:
    """Start ``command`` and SIGKILL its process group ``seconds`` later; False when it had ended by then."""
    process = start(command)
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def kill_when(command: list[str], ready: Callable[[], bool], what: str, limit: float = 900) -> None:
    """Start ``command`` and SIGKILL its process group as soon as ``ready()`` holds."""
    process = start(command)
    deadline = time.time() + limit
    while time.time() < deadline and process.poll() is None and not ready():
        time.sleep(0.02)
    assert process.poll() is None, f"the command ended before {what}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def files_in(folder: Path) -> list[str]:
    """The files under ``folder`` (relative), as a kill left them."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def whole_json(path: Path) -> bool:
    """Whether ``path`` holds a whole JSON document (a file cut mid-write does not)."""
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def limit_file_size(limit: int) -> None:
    """In the child: no file may grow past ``limit`` bytes (a write past it fails with EFBIG, as on a full disk)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
