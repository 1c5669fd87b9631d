"""The one table of tasks: every row names a task class the registry loads, recipes accept exactly its names,
the capabilities say what each task is, and no module outside it asks a recipe's task by name."""

from __future__ import annotations

import ast

import pytest
from conftest import REPO_ROOT

from gen_emotion.config.recipes import RecipeError, load_recipe
from gen_emotion.config.task_kinds import TASK_KINDS, task_kind
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.tasks.base import Task, get_task


def test_every_row_names_the_task_class_the_registry_loads() -> None:
    assert list(TASK_KINDS) == ["generate", "classify", "tfidf"]
    for name, kind in TASK_KINDS.items():
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name == kind.name
        assert f"{type(task).__module__}:{type(task).__name__}" == kind.implementation


def test_an_unknown_task_is_one_line_naming_the_known_ones() -> None:
    for lookup in (task_kind, get_task):
        with pytest.raises(GenEmotionError, match=r"^unknown task 'setfit'; tasks are generate, classify, tfidf$"):
            lookup("setfit")
    with pytest.raises(RecipeError, match="task must be one of generate, classify, tfidf, got 'setfit'"):
        load_recipe("tfidf-logreg", ["task=setfit"])


def test_capabilities_say_what_each_task_trains_and_predicts_with() -> None:
    generate, classify, tfidf = (TASK_KINDS[name] for name in ("generate", "classify", "tfidf"))
    assert generate.generates_text and not classify.generates_text and not tfidf.generates_text
    assert generate.transformers_model and classify.transformers_model and not tfidf.transformers_model
    assert classify.soft_targets and not generate.soft_targets and not tfidf.soft_targets  # distill.teacher
    recipe = load_recipe("tfidf-logreg", ["classifier.max_length=77", "train.max_length=333"])
    assert classify.max_length(recipe) == 77 and generate.max_length(recipe) == 333
    assert classify.full_finetune(recipe)
    assert not classify.full_finetune(load_recipe("tfidf-logreg", ["classifier.use_lora=true"]))
    assert not generate.full_finetune(recipe) and not tfidf.full_finetune(recipe)


def test_no_module_but_the_table_compares_a_recipes_task_to_a_name() -> None:
    found = []
    for path in sorted((REPO_ROOT / "gen_emotion").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr == "task" for s in sides) and any(
                isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides
            ):
                found.append(f"{path.name}:{node.lineno}")
    assert found == [], "ask task_kinds.task_kind(recipe.task) what the task is instead"
