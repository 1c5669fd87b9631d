"""Every file the toolkit writes goes through ``open_output``; every JSON file it reads back, through ``read_json``.

``open_output(path)`` writes a regular file whole or not at all: the text goes to a temporary file in the
same folder, which replaces ``path`` only once it is complete, so an interrupted or failed write never leaves
half a file (nor the temporary one). A symbolic link is followed (its target is replaced, the link stays); a
special file that already exists (``/dev/stdout``, a named pipe) is written in place, so a full device or a
closed pipe is an error rather than a file silently put in its place. A folder, a path under a file, a place
the user cannot write and a full disk are one-line ``GenEmotionError``s naming the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from gen_emotion.core.errors import GenEmotionError


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def output_target(path: str | Path) -> Path:
    """Where writing ``path`` puts the bytes: the target of a symbolic link, else ``path``; a folder is refused."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.is_dir():
        raise GenEmotionError(f"{path}: is a folder; give the name of a file to write")
    return target


def make_folder(folder: str | Path, what: str = "") -> Path:
    """Create ``folder`` (and its parents) unless it exists; a file in the way or a place the user cannot
    write is a one-line error (``what`` names the path's role, e.g. ``--out``)."""
    folder = Path(folder)
    shown = f"{what} {folder}" if what else str(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise GenEmotionError(f"{shown}: cannot create the folder: a file is in the way") from None
    except OSError as err:
        raise GenEmotionError(f"{shown}: cannot create the folder ({_reason(err)})") from None
    return folder


def _make_parent(path: Path, shown: Path) -> None:
    if not path.parent.is_dir():
        make_folder(path.parent, f"{shown}:")


def _open(path: Path, binary: bool, newline: str | None) -> IO[Any]:
    return path.open("wb") if binary else path.open("w", encoding="utf-8", newline=newline)


@contextlib.contextmanager
def _in_place(target: Path, shown: Path, newline: str | None, binary: bool) -> Iterator[IO[Any]]:
    """A special file (device, pipe) that exists: written directly, errors reported."""
    try:
        with _open(target, binary, newline) as handle:
            yield handle
    except OSError as err:
        raise GenEmotionError(f"{shown}: cannot write ({_reason(err)})") from None


@contextlib.contextmanager
def open_output(path: str | Path, *, newline: str | None = None, binary: bool = False) -> Iterator[IO[Any]]:
    """Open ``path`` for writing UTF-8 text (or bytes); the file appears, whole, when the block ends without an
    error."""
    shown = Path(path)
    target = output_target(shown)
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        with _in_place(target, shown, newline, binary) as handle:
            yield handle
        return
    _make_parent(target, shown)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with _open(tmp, binary, newline) as handle:
            yield handle
        if target.is_file():
            shutil.copymode(target, tmp)
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise GenEmotionError(f"{shown}: cannot write ({_reason(err)})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` whole (``open_output``)."""
    with open_output(path) as handle:
        handle.write(text)


def write_json(path: str | Path, value: Any) -> None:
    """Write ``value`` as indented JSON (``open_output``)."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def read_json(path: str | Path, expected: str = "a JSON object", kind: type = dict) -> Any:
    """A JSON file the toolkit wrote; a missing, unreadable or damaged one is a one-line error saying what was
    expected (``expected``, checked with ``isinstance(value, kind)``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GenEmotionError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise GenEmotionError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise GenEmotionError(
            f"{path}: damaged, not valid JSON (line {err.lineno}: {err.msg}); expected {expected}"
        ) from None
    if not isinstance(value, kind):
        raise GenEmotionError(f"{path}: damaged, holds {type(value).__name__}; expected {expected}")
    return value
