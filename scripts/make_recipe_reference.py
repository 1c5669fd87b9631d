"""Print the recipe-field reference (docs/recipe-fields.md) as Markdown, from the ``arg(...)`` declarations.

Walks the ``Recipe`` dataclass tree: one section per sub-config (``model``, ``prompt``, ...), one table row per
field with its type, default, help and constraints. Regenerate after changing a field:

    .venv/bin/python scripts/make_recipe_reference.py > docs/recipe-fields.md

``tests/test_docs.py`` fails when the committed file differs from what this prints.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Any

import yaml

from gen_emotion.config.fields import describe_constraints
from gen_emotion.config.recipes import Recipe  # the one import to change if Recipe moves

COMMAND = ".venv/bin/python scripts/make_recipe_reference.py > docs/recipe-fields.md"
HEADER = f"""# Recipe fields

Every field a recipe may set, generated from the field declarations (`arg(default, help, ...)` on the `Recipe`
dataclasses). Do not edit by hand: after changing a field, run

    {COMMAND}

(`tests/test_docs.py` checks that this file is current). How recipes are written, checked and overridden:
[recipes.md](recipes.md). `gen-emotion show RECIPE` prints one recipe resolved, each field with this help.
"""


def type_name(tp: Any) -> str:
    """``str | None``, ``list[str]``, ``int``: a field's annotation as a reader writes it."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(arg) for arg in typing.get_args(tp))}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def default_text(f: dataclasses.Field) -> str:
    """The default as it would be written in a recipe's YAML (flow style, one line)."""
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    elif f.default is not dataclasses.MISSING:
        value = f.default
    else:
        return "(required)"
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def constraints(meta: typing.Mapping[str, Any]) -> str:
    return "; ".join(describe_constraints(meta, name="`{}`".format))


def cell(text: str) -> str:
    return text.replace("``", "`").replace("|", "\\|").replace("\n", " ")


TABLE_HEAD = ["| field | type | default | help | constraints |", "| --- | --- | --- | --- | --- |"]


def section(cls: type, path: str) -> tuple[list[str], list[tuple[type, str]]]:
    """One dataclass's plain fields as Markdown, and its nested dataclasses (type, dotted path) to follow."""
    hints = typing.get_type_hints(cls)
    title = f"`{path}`" if path else f"`{cls.__name__}` (top level)"
    doc = (cls.__doc__ or "").strip().splitlines()[0]
    lines = [f"## {title}", "", cell(doc), "", *TABLE_HEAD]
    nested = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            nested.append((tp, f"{path}.{f.name}" if path else f.name))
            continue
        row = [f"`{f.name}`", f"`{cell(type_name(tp))}`", f"`{cell(default_text(f))}`"]
        row += [cell(f.metadata.get("help", "")), constraints(f.metadata)]
        lines.append("| " + " | ".join(row) + " |")
    return lines, nested


def render() -> str:
    """The whole reference: the top-level fields, then each sub-config in declaration order (depth first)."""
    out = [HEADER]
    queue: list[tuple[type, str]] = [(Recipe, "")]
    while queue:
        cls, path = queue.pop(0)
        lines, nested = section(cls, path)
        out.append("\n".join(lines) + "\n")
        queue = nested + queue
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
