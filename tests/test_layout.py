"""The package's layers, as the Layout section of docs/design.md draws them, against the real imports.

Each folder of ``gen_emotion/`` is one layer. A module imports from its own folder or the folders below it, never
above; there are no import circles, type-only imports (under ``if TYPE_CHECKING:``) included; no module is over
``MAX_LINES`` lines; every module is in a folder (only ``__init__`` and ``__main__`` sit at the top)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "gen_emotion"
DESIGN = REPO_ROOT / "docs" / "design.md"
LAYERS = [  # lowest first, as in docs/design.md
    "core",
    "data",
    "scoring",
    "config",
    "models",
    "generation",
    "training",
    "tasks",
    "runs",
    "evaluation",
    "serving",
    "distributed",
    "sweeps",
    "pods",
    "studio",
    "cli",
    "__main__",
]
MAX_LINES = 450
TRAINING, GENERATION = "training", "generation"


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(relative.parts)


def layer(name: str) -> str:
    return name.split(".")[0]


def imports(path: Path) -> set[str]:
    """The gen_emotion modules a file imports, anywhere in it, type-only imports included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gen_emotion."):
            module = node.module.removeprefix("gen_emotion.")
            # ``from gen_emotion.serving import notebook`` imports the module gen_emotion.serving.notebook
            found |= {
                f"{module}.{a.name}" if (PACKAGE / module / f"{a.name}.py").exists() else module for a in node.names
            }
        elif isinstance(node, ast.ImportFrom) and node.module == "gen_emotion":
            found |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists() or (PACKAGE / a.name).is_dir()}
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("gen_emotion.") for a in node.names if a.name.startswith("gen_emotion.")}
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in modules() if p.name != "__init__.py" or p.parent != PACKAGE}


def rank(name: str) -> int:
    top = layer(name)
    assert top in LAYERS, f"gen_emotion/{top} is in no layer: add it to the Layout of docs/design.md and LAYERS"
    return LAYERS.index(top)


def test_every_module_is_in_a_layer_folder_the_design_notes_list():
    design = DESIGN.read_text()
    layout = design[design.index("## Layout") :]
    assert {p.name for p in PACKAGE.glob("*.py")} == {"__init__.py", "__main__.py"}
    for name in graph():
        rank(name)
        assert name == "__main__" or f"`{layer(name)}/`" in layout, name


def test_imports_go_down_the_layers():
    wrong = [
        f"{name} -> {imported}"
        for name, imported_set in graph().items()
        for imported in imported_set
        if rank(imported) > rank(name)
    ]
    assert wrong == []


def test_generation_imports_nothing_from_training():
    for name, imported in graph().items():
        if layer(name) == GENERATION:
            assert not {layer(i) for i in imported} & {TRAINING}, name


def test_no_import_circles():
    edges = graph()
    seen: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state = seen.get(name)
        if state == 1:
            raise AssertionError("import circle: " + " -> ".join([*path, name]))
        if state == 2:
            return
        seen[name] = 1
        for other in edges.get(name, ()):
            if other in edges and other != name:
                visit(other, [*path, name])
        seen[name] = 2

    for name in edges:
        visit(name, [])


def test_no_module_is_over_the_line_limit():
    long = {module_name(p): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_layers_here_are_the_design_notes():
    design = DESIGN.read_text()
    rows = design[design.index("| layer | folder | modules | hold |") :].split("\n\n")[0].splitlines()[2:]
    drawn = [re.findall(r"`(\w+)/`", row.split("|")[2]) for row in rows]
    assert [[name] for name in reversed(LAYERS[:-1])] == drawn
    for row in rows:
        folder = re.findall(r"`(\w+)/`", row.split("|")[2])[0]
        listed = set(re.findall(r"`(\w+)`", row.split("|")[3]))
        present = {p.stem for p in (PACKAGE / folder).glob("*.py")} - {"__init__"}
        assert listed == present, folder


DATA_STEPS = ["download", "sources", "formats", "records", "label_lists", "folds", "dataset"]
"""The data folder's steps, highest first: where the data is, how a table is read, rows and labels, ``EmotionData``."""


def test_the_data_steps_import_only_the_steps_below_them():
    steps = [f"data.{name}" for name in DATA_STEPS]
    assert {name for name in graph() if layer(name) == "data"} == {*steps, "data.__init__"}
    wrong = [
        f"{name} -> {imported}"
        for name in steps
        for imported in graph()[name]
        if imported in steps and steps.index(imported) <= steps.index(name)
    ]
    assert wrong == []


def test_test_files_have_unique_names():
    """pytest imports each test file by its name (``pythonpath = tests``, no packages): two folders may not hold
    files of the same name (``tests/scoring/test_metrics.py`` and a ``tests/serving/test_metrics.py`` collide)."""
    names = [path.name for path in (REPO_ROOT / "tests").rglob("test_*.py")]
    assert sorted({name for name in names if names.count(name) > 1}) == []
