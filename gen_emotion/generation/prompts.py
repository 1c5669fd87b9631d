"""Prompts from jinja2 templates, and the one tokenization of every prompt.

A prompt variant is a folder with ``user.j2`` and an optional ``system.j2``, rendered in a
sandboxed jinja2 environment with ``StrictUndefined``. The label list comes from ``labels``;
the assistant turn is the rendered target; the model's own chat template assembles the turns.

``Encoder`` turns a tweet into token ids once, for training and for both generation backends: the
prompt is the chat template's rendering up to the assistant's answer (with its own BOS, if it writes
one, and nothing added), the completion is the target's tokens and the end-of-turn token. A chat
template that prints today's date (Llama 3.x) is given the recipe's fixed ``prompt.template_date``,
written into the template saved with the adapter, so training and every later prediction see one prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2
import numpy as np
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from gen_emotion.config.recipes import DataArgs, PromptArgs
from gen_emotion.config.shipped import template_dir
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import SEMEVAL, LabelSet


@dataclass
class PromptTemplates:
    """The templates of one prompt variant."""

    name: str
    user: jinja2.Template
    system: jinja2.Template | None = None
    chat: bool = True
    """False for base models: the turns are joined as plain text (``template.yaml``: ``chat: false``)."""
    labels: LabelSet = SEMEVAL
    """The labels the templates list (``labels``, ``descriptions``, ``none``) and the targets name."""


def load_templates(name: str = "default", labels: LabelSet = SEMEVAL) -> PromptTemplates:
    """Load and compile prompt variant ``name`` for ``labels``."""
    folder = template_dir(name)
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)

    def compile_file(filename: str) -> jinja2.Template | None:
        path = folder / filename
        if not path.is_file():
            return None
        try:
            return env.from_string(path.read_text(encoding="utf-8"))
        except jinja2.TemplateSyntaxError as err:
            raise GenEmotionError(f"{path}: line {err.lineno}: {err.message}") from None

    chat = True
    if (folder / "template.yaml").is_file():
        import yaml

        chat = bool((yaml.safe_load((folder / "template.yaml").read_text(encoding="utf-8")) or {}).get("chat", True))
    user, system = compile_file("user.j2"), compile_file("system.j2")
    return PromptTemplates(name=name, user=user, system=system, chat=chat, labels=labels)


def _render(template: jinja2.Template, labels: LabelSet, **values: Any) -> str:
    """A template rendered with ``labels`` (the target labels, in order), ``descriptions`` (label to its
    description, empty where none), ``none_text`` (what the model writes for no label) and ``values``."""
    descriptions = {name: labels.description(name) for name in labels.names}
    try:
        return template.render(
            labels=list(labels.targets), descriptions=descriptions, none_text=labels.none_text, **values
        ).strip()
    except (jinja2.UndefinedError, SecurityError) as err:
        raise GenEmotionError(f"prompt template {template.name or ''}: {err.message}") from None


def build_messages(text: str, templates: PromptTemplates) -> list[dict[str, str]]:
    """The system (if any) and user messages for one text."""
    messages = []
    if templates.system is not None:
        messages.append({"role": "system", "content": _render(templates.system, templates.labels)})
    messages.append({"role": "user", "content": _render(templates.user, templates.labels, text=text)})
    return messages


def plain_prompt(text: str, templates: PromptTemplates) -> str:
    """A base model's prompt: the system text, a blank line, then the user text (no chat template)."""
    return "\n\n".join(message["content"] for message in build_messages(text, templates)) + "\n"


DATE_PIN = "{#- gen-emotion: the date is pinned (prompt.template_date) #}"


def pin_template_date(tokenizer: Any, date: str) -> None:
    """Give a chat template that prints today's date (``strftime_now``/``date_string``) a fixed date instead."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or DATE_PIN in template:
        return
    if "strftime_now" in template or "date_string" in template:
        tokenizer.chat_template = f"{{%- set date_string = {date!r} %}}{DATE_PIN}\n{template}"


def end_of_turn_token(tokenizer: Any, templates: PromptTemplates) -> str | None:
    """The token the chat template writes after the assistant's answer (``<|eot_id|>``, ``<|im_end|>``...); for a
    plain prompt, or a template that writes none, the tokenizer's EOS."""
    if not templates.chat or getattr(tokenizer, "chat_template", None) is None:
        return tokenizer.eos_token
    answer = "anger"
    messages = [*build_messages("text", templates), {"role": "assistant", "content": answer}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    tail = rendered[rendered.rfind(answer) + len(answer) :]
    special = set(tokenizer.all_special_tokens) | {t.content for t in tokenizer.added_tokens_decoder.values()}
    for token_id in tokenizer(tail, add_special_tokens=False)["input_ids"]:
        token = tokenizer.convert_ids_to_tokens(token_id)
        if token in special:
            return token
    return tokenizer.eos_token


def prepare_tokenizer(tokenizer: Any, templates: PromptTemplates, template_date: str) -> Any:
    """Pin the template's date and make the end-of-turn token the tokenizer's EOS (what both backends and the
    output grammar stop on); done before training, so the adapter's saved tokenizer carries both."""
    pin_template_date(tokenizer, template_date)
    end = end_of_turn_token(tokenizer, templates)
    if end is not None and end != tokenizer.eos_token:
        tokenizer.eos_token = end
    return tokenizer


@dataclass
class Encoder:
    """Token ids of prompts and targets, the same for training and for generation."""

    tokenizer: Any
    templates: PromptTemplates
    max_text_tokens: int
    target_format: str = "labels"
    end_of_turn_id: int = field(init=False)

    def __post_init__(self) -> None:
        if self.templates.chat and getattr(self.tokenizer, "chat_template", None) is None:
            name = getattr(self.tokenizer, "name_or_path", "the tokenizer")
            raise GenEmotionError(f"{name} has no chat template; use an instruct model or prompt.template=plain")
        end = end_of_turn_token(self.tokenizer, self.templates)
        if end is None:
            name = getattr(self.tokenizer, "name_or_path", "the tokenizer")
            raise GenEmotionError(f"{name} has no end-of-turn or EOS token: a model cannot end its answer")
        self.end_of_turn_id = self.tokenizer.convert_tokens_to_ids(end)

    @property
    def stop_ids(self) -> list[int]:
        """What generation stops on: the end of turn, and the EOS."""
        return list(dict.fromkeys([self.end_of_turn_id, self.tokenizer.eos_token_id]))

    def prompt_text(self, text: str) -> str:
        """The prompt as the model sees it, up to where its answer starts."""
        text = truncate_text(self.tokenizer, text, self.max_text_tokens)
        if not self.templates.chat:
            return plain_prompt(text, self.templates)
        messages = build_messages(text, self.templates)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def prompt_ids(self, text: str) -> list[int]:
        """The prompt's token ids: the chat template's rendering as it is (its BOS included, nothing added); a
        plain prompt gets the tokenizer's own special tokens (a base model's BOS)."""
        return self.tokenizer(self.prompt_text(text), add_special_tokens=not self.templates.chat)["input_ids"]

    def completion_ids(self, vector: np.ndarray) -> list[int]:
        """The target's token ids and the end-of-turn token: what the loss is on."""
        target = self.templates.labels.render(vector, self.target_format)
        return [*self.tokenizer(target, add_special_tokens=False)["input_ids"], self.end_of_turn_id]


def make_encoder(tokenizer: Any, prompt: PromptArgs, data: DataArgs) -> Encoder:
    """The encoder of a recipe's ``prompt`` section, for the labels of its ``data`` section, over ``tokenizer``,
    which it prepares first (``prepare_tokenizer``)."""
    labels = LabelSet.from_spec(data.labels, data.none_label)
    templates = load_templates(prompt.template, labels)
    prepare_tokenizer(tokenizer, templates, prompt.template_date)
    return Encoder(tokenizer, templates, prompt.max_text_tokens, prompt.target_format)


def truncate_text(tokenizer: Any, text: str, max_tokens: int) -> str:
    """Cut ``text`` to at most ``max_tokens`` tokens (a long tweet is shortened, never dropped)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)
