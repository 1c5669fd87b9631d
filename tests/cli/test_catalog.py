"""The recipe catalog: ``gen-emotion recipes``, ``recipes cp`` and ``show``."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT

from gen_emotion.cli.catalog import copy_recipe, describe_recipe, shipped_recipes
from gen_emotion.cli.parser import main
from gen_emotion.config.recipes import load_recipe
from gen_emotion.core.errors import GenEmotionError


def test_recipes_lists_every_shipped_recipe_with_hardware_and_time(capsys):
    shipped = sorted(p.stem for p in (REPO_ROOT / "recipes").glob("*.yaml"))
    rows = shipped_recipes()
    assert [row["name"] for row in rows] == shipped
    where = {row["name"]: row["where"] for row in rows}
    assert where["smollm2-135m-cpu"] == "CPU" and where["tfidf-logreg"] == "CPU"
    assert where["qwen2.5-14b-instruct-qlora"].startswith("GPU ")
    assert all(row["time"] != "-" for row in rows)
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in shipped) and "time: about 6 min for run on the Kaggle data" in out


def test_recipes_cp_copies_to_a_folder_or_file_never_over_one(tmp_path, capsys):
    target = copy_recipe("tfidf-logreg", tmp_path)
    assert target == tmp_path / "tfidf-logreg.yaml"
    assert target.read_text() == (REPO_ROOT / "recipes" / "tfidf-logreg.yaml").read_text()
    assert load_recipe(target).task == "tfidf"
    with pytest.raises(GenEmotionError, match="already exists"):
        copy_recipe("tfidf-logreg", target)
    assert main(["recipes", "cp", "smollm2-135m-cpu", str(tmp_path / "mine.yaml")]) == 0
    assert main(["recipes", "cp", "nope", str(tmp_path / "x.yaml")]) == 2
    assert "no such recipe" in capsys.readouterr().err


def test_show_describes_every_field():
    text = describe_recipe(load_recipe("smollm2-135m-cpu"))
    assert "template_date: 26 Jul 2024" in text and "# the date chat templates" in text
    assert text.count("\n") > 60 and "``" not in text
