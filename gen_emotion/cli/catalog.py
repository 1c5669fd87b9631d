"""The shipped recipes as a catalog: ``gen-emotion recipes`` lists them (task, hardware, time, description),
``gen-emotion recipes cp NAME DEST`` copies one to edit, and ``gen-emotion show`` prints a resolved recipe with
each field's help and allowed values."""

from __future__ import annotations

import dataclasses
import shutil
import typing
from pathlib import Path
from typing import Any

import yaml

from gen_emotion.config.fields import describe_constraints
from gen_emotion.config.recipes import Recipe, find_recipe, load_recipe
from gen_emotion.config.shipped import shipped_folders
from gen_emotion.config.task_kinds import task_kind
from gen_emotion.core.errors import GenEmotionError


def shipped_recipes() -> list[dict[str, str]]:
    """Every shipped recipe: name, task, where it runs (CPU, or the GPU memory its estimate needs), its header's
    ``# time:`` line and its description."""
    from gen_emotion.models.hardware import estimate_memory, model_shape
    from gen_emotion.models.loading import CACHED_MODELS, EMBEDDED_MODELS, WHEEL_MODELS

    folder = next((f for f in shipped_folders() if f.is_dir()), None)
    if folder is None:
        raise GenEmotionError("no shipped recipes found (is the package installed whole?)")
    rows = []
    for path in sorted(folder.glob("*.yaml"), key=lambda p: p.stem):
        recipe = load_recipe(path)
        bundled = recipe.model.name in {**EMBEDDED_MODELS, **WHEEL_MODELS, **CACHED_MODELS}
        local = not task_kind(recipe.task).transformers_model or bundled
        where = "CPU" if local else f"GPU {estimate_memory(recipe, model_shape(recipe.model.name)).need_gb:.0f} GB"
        time = next(
            (
                line[len("# time:") :].strip()
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.startswith("# time:")
            ),
            "-",
        )
        rows.append(
            {"name": recipe.name, "task": recipe.task, "where": where, "time": time, "description": recipe.description}
        )
    return rows


def copy_recipe(name: str, destination: Path) -> Path:
    """Copy shipped recipe ``name`` to ``destination`` (a file, or a folder to put it in); never over a file."""
    source = find_recipe(name)
    target = destination / source.name if destination.is_dir() else destination
    if target.exists():
        raise GenEmotionError(f"{target}: already exists; give another destination")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    except OSError as err:
        raise GenEmotionError(f"{target}: cannot write ({err.strerror})") from None
    return target


def _constraint(meta: typing.Mapping[str, Any]) -> str:
    parts = describe_constraints(meta)
    return f" [{'; '.join(parts)}]" if parts else ""


def describe_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML, each field followed by a comment with its help and constraints."""
    lines: list[str] = []

    def emit(obj: Any, indent: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                lines.append((f"{indent}{f.name}:", f"# {type(value).__doc__.splitlines()[0]}"))
                emit(value, indent + "  ")
                continue
            text = yaml.safe_dump({f.name: value}, default_flow_style=True, width=10**6).strip()[1:-1]
            lines.append((f"{indent}{text}", f"# {f.metadata.get('help', '')}{_constraint(f.metadata)}"))

    emit(recipe, "")
    width = min(max(len(left) for left, _ in lines) + 2, 60)
    return "\n".join(f"{left.ljust(width - 2)}  {comment}".replace("``", "") for left, comment in lines) + "\n"
