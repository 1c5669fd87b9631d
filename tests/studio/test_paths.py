"""``RunsRoot.resolve``: the one check every path a request names goes through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gen_emotion.studio.paths import PathRefused, RunsRoot


def test_only_folders_inside_the_root_resolve(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "metrics.json").write_text("{}")
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "out")
    os.symlink(root / "a", root / "inner")
    runs = RunsRoot(root)
    assert runs.resolve("a/b") == (root / "a" / "b").resolve()
    assert runs.resolve("") == root.resolve()
    assert runs.resolve("inner") == (root / "a").resolve()  # a link that stays inside is the folder it leads to
    assert runs.resolve("a/metrics.json", want="file").name == "metrics.json"
    for bad in (
        "..",
        "a/../..",
        "/etc",
        "out",
        "out/x",
        "a/./b",
        "./a",
        ".studio",
        "a\\..\\..",
        "a\x00",
        "a/metrics.json",
    ):
        with pytest.raises(PathRefused):
            runs.resolve(bad)
    assert runs.relative(root / "a" / "b") == "a/b"
