"""Chat prompts from jinja2 templates.

A prompt variant is a folder with ``user.j2`` and an optional ``system.j2``, rendered in a
sandboxed jinja2 environment with ``StrictUndefined``. The label list comes from ``labels``;
the assistant turn is the rendered target; the model's own chat template assembles the turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from gen_emotion.errors import GenEmotionError
from gen_emotion.labels import LABELS, render

_SEARCH = (Path(__file__).parent / "_prompts", Path(__file__).parent.parent / "prompts")


@dataclass
class PromptTemplates:
    """The templates of one prompt variant."""

    name: str
    user: jinja2.Template
    system: jinja2.Template | None = None
    chat: bool = True
    """False for base models: the turns are joined as plain text (``template.yaml``: ``chat: false``)."""


def template_dir(name: str) -> Path:
    """The folder of prompt variant ``name``: a path, or a folder name under ``prompts/``."""
    path = Path(name).expanduser()
    if (path / "user.j2").is_file():
        return path
    for root in _SEARCH:
        if (root / name / "user.j2").is_file():
            return root / name
    raise GenEmotionError(
        f"prompt template {name!r}: no folder with a user.j2 (looked in {', '.join(map(str, _SEARCH))})"
    )


def load_templates(name: str = "default") -> PromptTemplates:
    """Load and compile prompt variant ``name``."""
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
    return PromptTemplates(name=name, user=compile_file("user.j2"), system=compile_file("system.j2"), chat=chat)


def _render(template: jinja2.Template, **values: Any) -> str:
    try:
        return template.render(labels=list(LABELS), **values).strip()
    except (jinja2.UndefinedError, SecurityError) as err:
        raise GenEmotionError(f"prompt template {template.name or ''}: {err.message}") from None


def build_messages(text: str, templates: PromptTemplates) -> list[dict[str, str]]:
    """The system (if any) and user messages for one tweet."""
    messages = []
    if templates.system is not None:
        messages.append({"role": "system", "content": _render(templates.system)})
    messages.append({"role": "user", "content": _render(templates.user, text=text)})
    return messages


def plain_prompt(text: str, templates: PromptTemplates) -> str:
    """A base model's prompt: the system text, a blank line, then the user text (no chat template)."""
    return "\n\n".join(message["content"] for message in build_messages(text, templates)) + "\n"


def build_example(
    text: str, vector: np.ndarray, templates: PromptTemplates, target_format: str = "labels"
) -> dict[str, Any]:
    """One prompt-completion training example in TRL's format: conversational for chat models,
    plain strings for base models."""
    if not templates.chat:
        return {"prompt": plain_prompt(text, templates), "completion": render(vector, target_format)}
    return {
        "prompt": build_messages(text, templates),
        "completion": [{"role": "assistant", "content": render(vector, target_format)}],
    }


def truncate_text(tokenizer: Any, text: str, max_tokens: int) -> str:
    """Cut ``text`` to at most ``max_tokens`` tokens (a long tweet is shortened, never dropped)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def render_prompts(tokenizer: Any, texts: list[str], templates: PromptTemplates, max_text_tokens: int) -> list[str]:
    """Prompt strings for generation: each tweet's messages through the model's chat template
    (or, for a plain template, the plain-text prompt)."""
    if not templates.chat:
        return [plain_prompt(truncate_text(tokenizer, text, max_text_tokens), templates) for text in texts]
    if getattr(tokenizer, "chat_template", None) is None:
        raise GenEmotionError(
            f"{getattr(tokenizer, 'name_or_path', 'the tokenizer')} has no chat template; use an instruct model"
        )
    return [
        tokenizer.apply_chat_template(
            build_messages(truncate_text(tokenizer, text, max_text_tokens), templates),
            tokenize=False,
            add_generation_prompt=True,
        )
        for text in texts
    ]
