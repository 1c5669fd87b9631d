"""The one gate between a request and the disk: every folder or file the studio reads or serves is a path given
relative to RUNS_DIR and resolved here (``RunsRoot.resolve``), so that nothing outside RUNS_DIR is ever read.

Refused: an absolute path, a ``..`` part, a NUL or a backslash, a part that starts with ``.`` (the lock, the
temporaries, the studio's own ``.studio/``), and any path whose real location (symbolic links followed) is not
inside RUNS_DIR's real location. Percent-encoded slashes arrive decoded (the server decodes the path before the
routes see it), so they meet the same checks.
"""

from __future__ import annotations

import os
from pathlib import Path

from gen_emotion.core.errors import GenEmotionError


class PathRefused(GenEmotionError):
    """A path that is not a folder or file inside RUNS_DIR (answered 404, saying why)."""


class RunsRoot:
    """RUNS_DIR, resolved once."""

    def __init__(self, folder: Path) -> None:
        self.given = Path(folder)
        if not self.given.is_dir():
            raise GenEmotionError(f"{folder}: no such folder (give the folder that holds your run folders)")
        self.real = self.given.resolve()

    def resolve(self, relative: str, *, want: str = "folder") -> Path:
        """``relative`` (a path inside RUNS_DIR, ``/``-separated, ``""`` for RUNS_DIR itself) as a real path inside
        RUNS_DIR that exists as a ``want`` (``folder`` or ``file``); ``PathRefused`` otherwise."""
        text = str(relative)
        if "\x00" in text or "\\" in text:
            raise PathRefused(f"{text!r}: not a path inside the runs folder")
        parts = [part for part in text.split("/") if part]
        if text.startswith("/") or any(part.startswith(".") for part in parts):  # "..", ".", hidden files
            raise PathRefused(f"{text!r}: not a path inside the runs folder")
        real = Path(os.path.realpath(self.real.joinpath(*parts)))
        if real != self.real and self.real not in real.parents:
            raise PathRefused(f"{text!r}: leads outside the runs folder")
        if want == "folder" and not real.is_dir():
            raise PathRefused(f"{text or '.'}: no such folder in the runs folder")
        if want == "file" and not real.is_file():
            raise PathRefused(f"{text}: no such file in the runs folder")
        return real

    def relative(self, path: Path) -> str:
        """The ``/``-separated path of ``path`` (inside RUNS_DIR) that ``resolve`` takes back."""
        return Path(os.path.realpath(path)).relative_to(self.real).as_posix().removeprefix(".")

    def contains(self, path: Path) -> bool:
        """Whether ``path`` (symbolic links followed) is inside RUNS_DIR."""
        real = Path(os.path.realpath(path))
        return real == self.real or self.real in real.parents
