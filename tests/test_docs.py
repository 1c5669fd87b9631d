"""The documentation: the recipe-field reference is what the field declarations say, every relative link (and
its #section) in README.md, docs/ and bench/README.md leads somewhere, and README.md stays a landing page."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from conftest import REPO_ROOT

GENERATOR = REPO_ROOT / "scripts" / "make_recipe_reference.py"
REFERENCE = REPO_ROOT / "docs" / "recipe-fields.md"
README = REPO_ROOT / "README.md"
DOCS = [README, REPO_ROOT / "bench" / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def generator():
    spec = importlib.util.spec_from_file_location("make_recipe_reference", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def anchors(path: Path) -> set[str]:
    """The #fragments GitHub gives a Markdown file's headings."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def relative_links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_the_recipe_reference_is_current():
    module = generator()
    assert REFERENCE.read_text(encoding="utf-8") == module.render(), (
        f"docs/recipe-fields.md is stale: run `{module.COMMAND}` and commit it"
    )


def test_the_recipe_reference_lists_every_field():
    from gen_emotion.config.recipes import Recipe

    text = REFERENCE.read_text(encoding="utf-8")
    recipe = Recipe()
    for section in ("model", "prompt", "data", "lora", "train", "generate", "classifier"):
        assert f"## `{section}`" in text
        for name in vars(getattr(recipe, section)):
            assert f"| `{name}` |" in text.split(f"## `{section}`")[1].split("\n## ")[0], f"{section}.{name}"


def test_every_relative_link_leads_to_a_file_and_section():
    assert len(DOCS) > 5
    broken = []
    for doc in DOCS:
        for target in relative_links(doc):
            file_part, _, fragment = target.partition("#")
            linked = (doc.parent / file_part).resolve() if file_part else doc
            if not linked.exists():
                broken.append(f"{doc.relative_to(REPO_ROOT)}: {target} (no such file)")
            elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
                broken.append(f"{doc.relative_to(REPO_ROOT)}: {target} (no such section)")
    assert broken == []


def test_the_readme_is_a_landing_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) < 16 * 1024, f"README.md is {len(text.encode())} bytes: move detail to docs/"
    # .ci/run runs the second command exactly as the Quick start prints it
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "./setup.sh && .venv/bin/python -m pytest -q" in ci and "./setup.sh && .venv/bin/python -m pytest -q" in text
    for doc in DOCS[2:]:
        assert f"({doc.relative_to(REPO_ROOT).as_posix()})" in text, f"README's Where things are lacks {doc.name}"


def test_the_file_map_lists_every_module_and_only_files_that_exist():
    design = (REPO_ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    block = design[design.index("## File map") :].split("```text\n")[1].split("```")[0]
    listed = {line.split()[0] for line in block.splitlines() if line.strip()}
    package = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "gen_emotion").rglob("*.py")}
    assert sorted(package - listed) == [], "add these to the file map in docs/design.md"
    assert sorted(listed - package) == [], "these are in the file map of docs/design.md but not in gen_emotion/"


def test_where_to_make_a_change_names_files_that_exist_and_names_they_hold():
    """Each file named in design.md's "Where to make a change" exists, and holds each name given beside it in
    ``(`name`, ...)``, so the table follows the tree when modules move or are renamed."""
    design = (REPO_ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    table = design[design.index("## Where to make a change") :]
    paths = re.findall(r"`((?:gen_emotion|tests)/[\w/]+(?:\.py)?/?)`", table)
    assert len(paths) > 20
    missing = [path for path in paths if not (REPO_ROOT / path).exists()]
    assert missing == []
    unheld = []
    for path, names in re.findall(r"`(gen_emotion/[\w/]+\.py)` \(([^()]*(?:\([^()]*\)[^()]*)*)\)", table):
        source = (REPO_ROOT / path).read_text(encoding="utf-8")
        for name in re.findall(r"`([A-Za-z_][\w]*)`", names):
            if not re.search(rf"\b{name}\b", source):
                unheld.append(f"{path}: {name}")
    assert unheld == []
