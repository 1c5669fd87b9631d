"""Chat prompts rendered from sandboxed jinja2 templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import onehot
from jinja2.exceptions import SecurityError

from gen_emotion.errors import GenEmotionError
from gen_emotion.labels import LABELS
from gen_emotion.prompts import build_example, build_messages, load_templates, template_dir

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


def test_build_example_is_trl_prompt_completion():
    templates = load_templates("default")
    vector = np.array(onehot("anger", "disgust"))
    example = build_example(TWEET, vector, templates)
    assert set(example) == {"prompt", "completion"}
    assert example["prompt"] == build_messages(TWEET, templates)
    assert example["completion"] == [{"role": "assistant", "content": "anger, disgust"}]
    for message in example["prompt"] + example["completion"]:
        assert set(message) == {"role", "content"}
        assert isinstance(message["content"], str)


def test_build_example_formats():
    templates = load_templates("original")
    assert build_example("x", onehot(), templates)["completion"][0]["content"] == "none"
    listed = build_example("x", onehot("joy", "trust"), templates, target_format="python_list")
    assert listed["completion"] == [{"role": "assistant", "content": "['joy', 'trust']"}]
    assert build_example("x", onehot(), templates, "python_list")["completion"][0]["content"] == "[]"


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


def test_plain_template_for_base_models_joins_turns_without_a_chat_template():
    from gen_emotion.prompts import build_example, load_templates, plain_prompt, render_prompts

    templates = load_templates("plain")
    assert templates.chat is False
    prompt = plain_prompt("the bus is late again", templates)
    assert prompt.endswith("Tweet: the bus is late again\nEmotions:\n")
    assert ", ".join(LABELS) in prompt.split("\n\n")[0]
    example = build_example("the bus is late again", [1] + [0] * 10, templates)
    assert example == {"prompt": prompt, "completion": "anger"}

    from transformers import AutoTokenizer

    from gen_emotion.models import wheel_model_dir

    tokenizer = AutoTokenizer.from_pretrained(wheel_model_dir("all-minilm-l6-v2"))  # a real tokenizer, no chat template
    assert getattr(tokenizer, "chat_template", None) is None
    assert render_prompts(tokenizer, ["the bus is late again"], templates, 64) == [prompt]
