"""One writer per folder: a command that writes a run, cv, ensemble or export folder (or a prediction file) holds
its lock while it writes, and a second command on it is refused in one line that names the first.

The lock is an advisory ``flock`` on a small file (``FOLDER/.gen-emotion.lock``), so the kernel releases it when
its process ends, however it ends: a lock left by a killed process is taken over by the next command (and the log
says so). The file holds the holder's process id, host, command line (secrets masked) and start time, for the
refusal. Where ``fcntl`` does not exist (Windows), folders are not locked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import make_folder, output_target
from gen_emotion.core.redaction import redact
from gen_emotion.runs.folder import LOCK_FILE

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


def lock_path(folder: Path) -> Path:
    """The lock of a folder that a command writes."""
    return folder / LOCK_FILE


def file_lock_path(path: Path) -> Path:
    """The lock of a single output file (``predict --out``): beside it, so other files in its folder stay free."""
    return path.parent / f".{path.name}.lock"


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(info["started"])))
        return f"process {int(info['pid'])} on {info['host']}, `{info['command']}`, since {started}"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _describe_self() -> str:
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": redact(" ".join(["gen-emotion", *sys.argv[1:]]) if sys.argv else "gen-emotion"),
            "started": time.time(),
        }
    )


def _try_lock(path: Path) -> tuple[int | None, str]:
    """Open and lock ``path``: the descriptor, or ``None`` and what the file says of its holder."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with os.fdopen(fd, encoding="utf-8", errors="replace") as handle:
                return None, handle.read()
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
        os.close(fd)  # its holder removed the file as we locked it: lock the new one


def _remove_stale(temporaries: Iterator[Path]) -> None:
    """Remove the temporary files (``files.open_output``'s ``.NAME.PID.tmp``) that a killed writer left."""
    for path in temporaries:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def holding(path: Path, what: str, stale: Callable[[], Iterator[Path]] | None = None) -> Iterator[None]:
    """Hold the lock file ``path`` while the block writes ``what`` (a folder or a file, for messages); a live holder
    is a one-line ``GenEmotionError`` naming it. Once held, the files ``stale()`` lists, a killed writer's
    temporaries, are removed."""
    if fcntl is None:
        yield
        return
    make_folder(path.parent)
    try:
        fd, before = _try_lock(path)
    except OSError as err:
        raise GenEmotionError(f"{path}: cannot lock ({err.strerror or err})") from None
    if fd is None:
        raise GenEmotionError(
            f"{what}: another gen-emotion command is writing it ({_holder(before)}); wait for it to end or stop it"
        )
    if before.strip():
        log.warning("%s: taking over the lock of %s, which has ended", what, _holder(before))
    try:
        if stale is not None:
            _remove_stale(stale())
        os.ftruncate(fd, 0)
        os.pwrite(fd, _describe_self().encode("utf-8"), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def writing_folder(folder: Path) -> contextlib.AbstractContextManager[None]:
    """Hold ``folder``'s lock while a command writes it."""
    return holding(lock_path(folder), str(folder), lambda: folder.rglob(".*.tmp"))


def writing_file(path: Path) -> contextlib.AbstractContextManager[None]:
    """Hold a single output file's (or export folder's) lock while a command writes it; a special file that
    exists (``/dev/stdout``, a pipe) is not locked."""
    target = output_target(path) if not path.is_dir() else path
    if target.exists() and not (target.is_file() or target.is_dir()):
        return contextlib.nullcontext()
    return holding(file_lock_path(target), str(path), lambda: target.parent.glob(f".{target.name}.*.tmp"))
