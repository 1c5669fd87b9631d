"""Where the shipped recipes and prompt templates are: in an installed wheel (``gen_emotion/_recipes``,
``gen_emotion/_prompts``) or beside the package in a checkout (``recipes/``, ``prompts/``)."""

from __future__ import annotations

from pathlib import Path

from gen_emotion.core.errors import GenEmotionError

_PACKAGE = Path(__file__).parents[1]
"""``gen_emotion/``: an installed wheel holds ``_prompts`` and ``_recipes`` in it, a checkout has them beside it."""
_TEMPLATE_FOLDERS = (_PACKAGE / "_prompts", _PACKAGE.parent / "prompts")
"""Where a prompt variant named by ``prompt.template`` is looked for (``template_dir``)."""


def shipped_folders() -> tuple[Path, ...]:
    return (_PACKAGE / "_recipes", _PACKAGE.parent / "recipes")


def shipped_templates() -> tuple[str, ...]:
    """The prompt variants shipped with the toolkit: the folders of ``prompts/`` that hold a ``user.j2``."""
    return tuple(sorted({path.parent.name for root in _TEMPLATE_FOLDERS for path in root.glob("*/user.j2")}))


def template_dir(name: str) -> Path:
    """The folder of prompt variant ``name``: a path, or a folder name under ``prompts/``."""
    path = Path(name).expanduser()
    if (path / "user.j2").is_file():
        return path
    for root in _TEMPLATE_FOLDERS:
        if (root / name / "user.j2").is_file():
            return root / name
    raise GenEmotionError(
        f"prompt template {name!r}: no folder with a user.j2 (looked in {', '.join(map(str, _TEMPLATE_FOLDERS))})"
    )
