"""Chat prompts rendered from sandboxed jinja2 templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import onehot
from jinja2.exceptions import SecurityError

from gen_emotion.config.shipped import template_dir
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS
from gen_emotion.generation.prompts import Encoder, build_messages, load_templates, make_encoder

TWEET = "Can't wait for the weekend! #friday"


def make_template(folder: Path, user: str, system: str | None = None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "user.j2").write_text(user, encoding="utf-8")
    if system is not None:
        (folder / "system.j2").write_text(system, encoding="utf-8")
    return str(folder)


def test_default_template():
    messages = build_messages(TWEET, load_templates("default"))
    assert [m["role"] for m in messages] == ["system", "user"]
    system = messages[0]["content"]
    assert ", ".join(LABELS) in system  # all 11 labels, canonical order
    positions = [system.index(label) for label in LABELS]
    assert positions == sorted(positions)
    assert messages[1]["content"] == TWEET
    assert system == system.strip()


def test_default_is_the_default():
    assert build_messages(TWEET, load_templates()) == build_messages(TWEET, load_templates("default"))


def test_original_template():
    messages = build_messages(TWEET, load_templates("original"))
    assert [m["role"] for m in messages] == ["user"]
    content = messages[0]["content"]
    assert content.startswith("Classify the TEXT by selecting all applicable labels from the following list:")
    assert f"TEXT: {TWEET}" in content
    assert str(list(LABELS)) in content  # the original study wrote the Python list
    assert content.endswith(TWEET)


@pytest.mark.parametrize("name", ["default", "original", "long"])
def test_shipped_templates_mention_every_label(name):
    messages = build_messages("hello", load_templates(name))
    whole = "\n".join(m["content"] for m in messages)
    assert all(label in whole for label in LABELS)
    assert "hello" in messages[-1]["content"]
    assert messages[-1]["role"] == "user"


def test_custom_template_folder(tmp_path):
    folder = make_template(tmp_path / "mine", "Tweet: {{ text }} / {{ labels | length }}", "Labels: {{ labels[0] }}")
    assert template_dir(folder) == Path(folder)
    messages = build_messages("hi", load_templates(folder))
    assert messages == [{"role": "system", "content": "Labels: anger"}, {"role": "user", "content": "Tweet: hi / 11"}]


def test_unknown_template_name():
    with pytest.raises(GenEmotionError, match="no-such-variant"):
        load_templates("no-such-variant")


def test_undefined_variable_is_an_error(tmp_path):
    templates = load_templates(make_template(tmp_path / "bad", "{{ nope }}"))
    with pytest.raises(GenEmotionError, match="nope"):
        build_messages("hi", templates)


def test_undefined_variable_in_system_template(tmp_path):
    templates = load_templates(make_template(tmp_path / "bad", "{{ text }}", "{{ text }}"))  # no text in system
    with pytest.raises(GenEmotionError, match="text"):
        build_messages("hi", templates)


def test_template_syntax_error(tmp_path):
    folder = make_template(tmp_path / "broken", "{{ text ")
    with pytest.raises(GenEmotionError, match="user.j2"):
        load_templates(folder)


@pytest.mark.parametrize(
    "source",
    [
        "{{ text.__class__.__mro__ }}",
        "{{ text.__class__ }}",
        "{{ labels.__len__() }}",
        '{{ text | attr("__class__") }}',
        '{{ "{0.__class__}".format(text) }}',
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_blocks_unsafe_attributes(tmp_path, source):
    # jinja2's SandboxedEnvironment raises SecurityError ("access to attribute ... is unsafe") at render
    # time; a GenEmotionError carrying that message is accepted too.
    templates = load_templates(make_template(tmp_path / "evil", source))
    with pytest.raises((SecurityError, GenEmotionError), match="unsafe"):
        build_messages("hi", templates)


@pytest.mark.parametrize("tweet", ["{{ 7*7 }}", "{% for x in labels %}{{ x }}{% endfor %}", "{{ text }}", "{# c #}"])
def test_tweets_are_not_evaluated(tweet):
    for name in ("default", "original"):
        user = build_messages(tweet, load_templates(name))[-1]["content"]
        assert tweet in user
        assert "49" not in user


def test_tweet_is_not_escaped_or_stripped_inside():
    tweet = "a < b & \"c\" 'd' <3\n\nsecond line"
    assert build_messages(tweet, load_templates("default"))[-1]["content"] == tweet


def test_plain_template_for_base_models_joins_turns_without_a_chat_template(qwen_base_dir):
    from transformers import AutoTokenizer

    from gen_emotion.generation.prompts import plain_prompt
    from gen_emotion.models.loading import wheel_model_dir

    templates = load_templates("plain")
    assert templates.chat is False
    prompt = plain_prompt("the bus is late again", templates)
    assert prompt.endswith("Tweet: the bus is late again\nEmotions:\n")
    assert ", ".join(LABELS) in prompt.split("\n\n")[0]
    tokenizer = AutoTokenizer.from_pretrained(qwen_base_dir)  # the base tokenizer: no chat template
    assert getattr(tokenizer, "chat_template", None) is None
    assert Encoder(tokenizer, templates, 64).prompt_text("the bus is late again") == prompt
    with pytest.raises(GenEmotionError, match="has no chat template"):
        Encoder(tokenizer, load_templates("default"), 64)
    encoder_only = AutoTokenizer.from_pretrained(wheel_model_dir("all-minilm-l6-v2"))  # no EOS: cannot end an answer
    with pytest.raises(GenEmotionError, match="no end-of-turn or EOS token"):
        Encoder(encoder_only, templates, 64)


# --- The real tokenizers and chat templates of every family the recipes use (``conftest.FAMILIES``) ----------


def family_encoder(family: tuple[str, str, str], **overrides: str):
    from gen_emotion.config.recipes import recipe_from_dict
    from gen_emotion.models.loading import load_tokenizer

    name, path, template = family
    values = {"model": {"name": path}, "prompt": {"template": template, **overrides}}
    recipe = recipe_from_dict(values)
    return make_encoder(load_tokenizer(path, recipe.model), recipe.prompt, recipe.data)


def test_prompt_starts_with_one_bos_or_none(family):
    name, _, _ = family
    encoder = family_encoder(family)
    ids = encoder.prompt_ids(TWEET)
    bos = encoder.tokenizer.bos_token_id
    leading = next((i for i, token in enumerate(ids) if token != bos), len(ids))
    # Llama's template writes <|begin_of_text|>; SmolLM2's BOS is <|im_start|>, which opens its first turn
    assert leading == {"llama-3.2-instruct": 1, "smollm2": 1}.get(name, 0)
    # the same text tokenized the way vLLM tokenizes a string prompt would start with two (the fault it avoids)
    doubled = encoder.tokenizer(encoder.prompt_text(TWEET))["input_ids"]
    if name == "llama-3.2-instruct":
        assert doubled[:2] == [bos, bos]


def test_completion_is_the_answer_and_the_end_of_turn(family):
    name, _, _ = family
    encoder = family_encoder(family)
    completion = encoder.completion_ids(np.array(onehot("anger", "joy")))
    decoded = encoder.tokenizer.decode(completion)
    end = {"llama-3.2-instruct": "<|eot_id|>", "qwen2.5-base": "<|endoftext|>"}.get(name, "<|im_end|>")
    assert decoded == f"anger, joy{end}"
    assert completion[-1] == encoder.end_of_turn_id == encoder.tokenizer.convert_tokens_to_ids(end)
    assert encoder.stop_ids[0] == encoder.end_of_turn_id
    # the chat template writes the same end of turn after an assistant answer
    if encoder.templates.chat:
        messages = [*build_messages(TWEET, encoder.templates), {"role": "assistant", "content": "anger, joy"}]
        whole = encoder.tokenizer.apply_chat_template(messages, tokenize=False)
        assert whole.startswith(encoder.prompt_text(TWEET) + "anger, joy" + end)


def test_llama_template_date_is_pinned_and_survives_saving(llama_instruct_dir, tmp_path):
    from datetime import datetime

    from transformers import AutoTokenizer

    family = ("llama-3.2-instruct", str(llama_instruct_dir), "default")
    unpinned = AutoTokenizer.from_pretrained(llama_instruct_dir)
    today = datetime.now().strftime("%d %b %Y")
    assert f"Today Date: {today}" in unpinned.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
    )
    encoder = family_encoder(family, template_date="03 Mar 2025")
    assert "Today Date: 03 Mar 2025\n" in encoder.prompt_text(TWEET)
    assert today not in encoder.prompt_text(TWEET)
    encoder.tokenizer.save_pretrained(tmp_path)  # what training leaves in the adapter folder
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    again = Encoder(reloaded, encoder.templates, 96)
    assert again.prompt_ids(TWEET) == encoder.prompt_ids(TWEET)
    pinned = family_recipe(family, template_date="03 Mar 2025")
    make_encoder(reloaded, pinned.prompt, pinned.data)  # pinning twice changes nothing
    assert reloaded.chat_template.count("gen-emotion: the date is pinned") == 1


def family_recipe(family, **prompt):
    from gen_emotion.config.recipes import recipe_from_dict

    return recipe_from_dict({"model": {"name": family[1]}, "prompt": {"template": family[2], **prompt}})


def test_qwen_default_system_message_is_replaced_by_ours(qwen_instruct_dir):
    family = ("qwen2.5-instruct", str(qwen_instruct_dir), "default")
    text = family_encoder(family).prompt_text(TWEET)
    assert "You are Qwen" not in text
    assert text.startswith("<|im_start|>system\nWhich of these emotions")
    # a prompt variant without a system turn gets Qwen's own (the original study's prompt had none)
    assert "You are Qwen" in family_encoder(("qwen2.5-instruct", str(qwen_instruct_dir), "original")).prompt_text(TWEET)


def test_end_of_turn_becomes_the_eos_the_backends_and_grammar_stop_on(llama_instruct_dir):
    from transformers import AutoTokenizer

    from gen_emotion.generation.prompts import prepare_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama_instruct_dir)
    tokenizer.eos_token = "<|end_of_text|>"  # as a Llama tokenizer whose EOS is not the end of turn
    prepare_tokenizer(tokenizer, load_templates("default"), "26 Jul 2024")
    assert tokenizer.eos_token == "<|eot_id|>"
