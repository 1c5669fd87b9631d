"""The package's layers, as the Layout section of docs/design.md draws them, against the real imports: a module
imports from its own layer or below, generation imports nothing from training, and there are no import circles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "gen_emotion"
DESIGN = REPO_ROOT / "docs" / "design.md"
LAYERS = [  # lowest first, as in docs/design.md
    ["labels", "files", "errors", "config", "redaction"],
    [
        "prediction_files",
        "thresholds",
        "metrics",
        "run_metrics",
        "sources",
        "data",
        "formats",
        "label_lists",
        "parsing",
        "branches",
        "download",
    ],
    ["recipes", "prompts", "task_kinds"],
    ["models", "runs", "logs", "locks", "hardware", "tracking"],
    ["sft", "classify", "tfidf", "trainers", "generate", "vllm_backend"],
    ["tasks", "generation_task", "classifier_task", "tfidf_task"],
    ["steps", "worker"],
    [
        "pipeline",
        "cv",
        "ensemble",
        "report",
        "inspection",
        "predictor",
        "notebook",
        "serve",
        "model_export",
        "cards",
        "catalog",
        "pods",
        "cluster",
        "sharded_predict",
        "nodes",
    ],
    ["cli", "commands"],
    ["console", "__main__"],
]
TRAINING = {"sft", "classify", "tfidf", "trainers"}
GENERATION = {"generate", "vllm_backend"}


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(relative.parts)


def top(name: str) -> str:
    return name.split(".")[0]


def imports(path: Path) -> set[str]:
    """The gen_emotion modules a file imports, anywhere in it, except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gen_emotion."):
            found.add(node.module.removeprefix("gen_emotion."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("gen_emotion.") for a in node.names if a.name.startswith("gen_emotion.")}
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}


def layer_of(name: str) -> int:
    for index, layer in enumerate(LAYERS):
        if top(name) in layer:
            return index
    raise AssertionError(f"gen_emotion.{name} is in no layer: add it to the Layout of docs/design.md and LAYERS")


def test_every_module_has_a_layer_and_the_design_notes_list_it():
    design = DESIGN.read_text()
    layout = design[design.index("## Layout") :]
    for name in graph():
        layer_of(name)
        assert f"`{top(name)}`" in layout or f"`{top(name)}/`" in layout, name


def test_imports_go_down_the_layers():
    wrong = [
        (name, imported)
        for name, imported_set in graph().items()
        for imported in imported_set
        if layer_of(imported) > layer_of(name)
    ]
    assert wrong == []


def test_generation_imports_nothing_from_training():
    for name, imported in graph().items():
        if name in GENERATION:
            assert not {top(i) for i in imported} & TRAINING, name


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


def test_the_layers_here_are_the_design_notes():
    design = DESIGN.read_text()
    rows = design[design.index("| layer | modules | hold |") :].split("\n\n")[0].splitlines()[2:]
    drawn = [set(re.findall(r"`(\w+)/?`", row.split("|")[2])) for row in rows]
    pods = {"gpus", "plan", "client", "commands"}  # pods/'s own modules, drawn in its row
    assert [set(layer) for layer in reversed(LAYERS)] == [d - pods if "pods" in d else d for d in drawn]
