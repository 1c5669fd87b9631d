"""Recipes: YAML files validated against typed dataclasses, with key=value overrides."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO_ROOT

from gen_emotion.config.recipes import (
    Recipe,
    RecipeError,
    find_recipe,
    load_recipe,
    recipe_from_dict,
)
from gen_emotion.config.shipped import template_dir
from gen_emotion.core.errors import GenEmotionError

RECIPES = sorted((REPO_ROOT / "recipes").glob("*.yaml"))
CPU_RECIPE = REPO_ROOT / "recipes" / "smollm2-135m-cpu.yaml"


def test_there_are_recipes():
    assert CPU_RECIPE in RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_key_a_shipped_recipe_sets_is_applied(path):
    """Not silently replaced by a default: what the file says is what the recipe holds."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    as_dict = load_recipe(path).to_dict()
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                got = as_dict[section][key]
                assert got == value or (isinstance(got, float) and got == pytest.approx(float(value))), (section, key)
        else:
            assert as_dict[section] == values, section


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_says_how_to_run_it(path):
    header = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert any(f"recipes/{path.name}" in line and "gen-emotion " in line for line in header), path.name


def test_yaml_numbers_become_the_declared_types(tmp_path):
    path = tmp_path / "numbers.yaml"
    path.write_text("train:\n  epochs: 1\n  learning_rate: 5e-5\n  warmup_steps: 0\n", encoding="utf-8")
    recipe = load_recipe(path)
    assert recipe.train.epochs == 1.0 and isinstance(recipe.train.epochs, float)
    assert recipe.train.learning_rate == pytest.approx(5e-5) and isinstance(recipe.train.learning_rate, float)
    with pytest.raises(RecipeError, match="train.warmup_steps must be int"):
        load_recipe(path, ["train.warmup_steps=1.5"])


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(RecipeError) as err:
        load_recipe(CPU_RECIPE, ["train.learnig_rate=1e-4"])
    message = str(err.value)
    assert "train.learnig_rate" in message
    assert "train.learning_rate" in message
    assert str(CPU_RECIPE) in message
    assert "\n" not in message


def test_unknown_key_in_a_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("lora:\n  rank: 8\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"lora\.rank") as err:
        load_recipe(path)
    assert str(path) in str(err.value)


def test_unknown_section():
    with pytest.raises(RecipeError, match="trian"):
        load_recipe(CPU_RECIPE, ["trian.max_steps=5"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.batch_size=abc", "train.batch_size"),
        ("train.batch_size=1.5", "train.batch_size"),
        ("train.max_steps=true", "train.max_steps"),
        ("train.learning_rate=fast", "train.learning_rate"),
        ("train.bf16=maybe", "train.bf16"),
        ("lora.r=[1,2]", "lora.r"),
        ("model.name=[a, b]", "model.name"),
        ("data.max_train_rows=lots", "data.max_train_rows"),
    ],
)
def test_wrong_type_names_the_key(override, key):
    with pytest.raises(RecipeError) as err:
        load_recipe(CPU_RECIPE, [override])
    assert key in str(err.value)


def test_overrides_apply():
    recipe = load_recipe(
        "smollm2-135m-cpu",
        [
            "train.max_steps=20",
            "lora.target_modules=[q_proj,v_proj]",
            "train.learning_rate=1e-4",
            "data.max_train_rows=null",
            "generate.backend=vllm",
            "description=hello world",
        ],
    )
    assert recipe.train.max_steps == 20
    assert recipe.lora.target_modules == ["q_proj", "v_proj"]
    assert recipe.train.learning_rate == pytest.approx(1e-4)  # YAML reads 1e-4 as a string
    assert recipe.data.max_train_rows is None
    assert recipe.generate.backend == "vllm"
    assert recipe.description == "hello world"
    # untouched keys keep the file's values
    assert recipe.train.batch_size == 16


def test_a_bad_override_is_a_recipe_error():
    with pytest.raises(RecipeError, match="section.key=value"):
        load_recipe(CPU_RECIPE, ["train.max_steps"])
    with pytest.raises(RecipeError, match="not a section"):
        load_recipe(CPU_RECIPE, ["train.epochs.x=1"])


def test_a_prompt_template_is_a_shipped_name_or_a_folder(tmp_path):
    assert (template_dir("default") / "user.j2").is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "user.j2").write_text("{{ text }}", encoding="utf-8")
    assert template_dir(str(tmp_path / "mine")) == tmp_path / "mine"
    assert recipe_from_dict({"prompt": {"template": str(tmp_path / "mine")}}).prompt.template == str(tmp_path / "mine")
    with pytest.raises(RecipeError, match="prompt.template: prompt template 'nope': no folder with a user.j2"):
        recipe_from_dict({"prompt": {"template": "nope"}}, where="r.yaml")


@pytest.mark.parametrize(
    "override",
    ["generate.backend=foo", "prompt.target_format=json", "model.dtype=int8", "generate.dtype=auto"],
)
def test_choices_are_enforced(override):
    key = override.split("=")[0]
    with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
        load_recipe(CPU_RECIPE, [override])


@pytest.mark.parametrize(
    "text",
    [
        "description: push with HF_TOKEN=hf_abc\n",
        "model:\n  name: x\nenv:\n  hf_token: hf_abc\n",
        "train:\n  report_to: [wandb]\nWANDB_API_KEY: abc\n",
    ],
)
def test_secrets_are_rejected(tmp_path, text):
    path = tmp_path / "secret.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError, match="must not hold") as err:
        load_recipe(path)
    assert str(path) in str(err.value)
    assert "hf_abc" not in str(err.value)


def test_secret_in_an_override_is_rejected():
    with pytest.raises(RecipeError, match="HF_TOKEN"):
        load_recipe(CPU_RECIPE, ["description=HF_TOKEN"])


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name: x\n  dtype: [unclosed\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="not valid YAML") as err:
        load_recipe(path)
    assert str(path) in str(err.value)
    assert "line" in str(err.value)


def test_recipe_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="train"):
        recipe_from_dict({"train": 5})


def test_empty_recipe_gets_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    recipe = load_recipe(path)
    assert recipe.name == "empty"
    assert recipe.train == Recipe().train


def test_4bit_needs_16_bit_dtype():
    with pytest.raises(RecipeError, match="load_in_4bit"):
        recipe_from_dict({"model": {"load_in_4bit": True, "dtype": "float32"}})
    assert recipe_from_dict({"model": {"load_in_4bit": True, "dtype": "bfloat16"}}).model.load_in_4bit


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_to_yaml_round_trips(path):
    recipe = load_recipe(path, ["train.max_steps=20", "lora.target_modules=[q_proj,v_proj]"])
    again = recipe_from_dict(yaml.safe_load(recipe.to_yaml()))
    assert again == recipe


def test_default_recipe_round_trips():
    recipe = Recipe()
    assert recipe_from_dict(yaml.safe_load(recipe.to_yaml())) == recipe
    assert recipe_from_dict({}) == recipe


def test_find_recipe_by_bare_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not found relative to the working directory by accident
    found = find_recipe("smollm2-135m-cpu")
    assert found.is_file()
    assert found.name == "smollm2-135m-cpu.yaml"
    assert found.read_text(encoding="utf-8") == CPU_RECIPE.read_text(encoding="utf-8")
    assert find_recipe("smollm2-135m-cpu.yaml").read_bytes() == CPU_RECIPE.read_bytes()
    assert load_recipe("smollm2-135m-cpu").name == "smollm2-135m-cpu"


def test_find_recipe_prefers_an_existing_path(tmp_path):
    path = tmp_path / "smollm2-135m-cpu.yaml"
    path.write_text("description: local copy\n", encoding="utf-8")
    assert find_recipe(path) == path
    assert load_recipe(path).description == "local copy"


def test_find_recipe_unknown_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError, match="no-such-recipe"):
        find_recipe("no-such-recipe")


def test_recipe_error_is_a_gen_emotion_error():
    assert issubclass(RecipeError, GenEmotionError)


def test_optimizer_choices_are_names_transformers_knows():
    from transformers.training_args import OptimizerNames

    from gen_emotion.config.choices import OPTIMIZERS

    assert set(OPTIMIZERS) <= {option.value for option in OptimizerNames}
