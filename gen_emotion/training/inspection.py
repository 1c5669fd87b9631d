"""``gen-emotion inspect``: what a generation recipe feeds the model, in training and at inference.

For the first rows of a training file it shows the example as the model sees it, which tokens carry the
loss, and the prompt ids each backend would send at inference (built by the backends' own functions,
``generate.batch_inputs`` and ``vllm_backend.engine_inputs``), and flags any difference from the training
prompt, and any prompt that starts with more than one BOS.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gen_emotion.config.recipes import Recipe, data_source, with_header_labels
from gen_emotion.config.task_kinds import task_kind
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.dataset import EmotionData
from gen_emotion.data.sources import read_splits
from gen_emotion.generation.generate import batch_inputs
from gen_emotion.generation.prompts import make_encoder
from gen_emotion.generation.vllm_backend import engine_inputs
from gen_emotion.models.loading import load_tokenizer, resolve_model
from gen_emotion.training.sft import encode_rows


@dataclass
class RowView:
    """One row: the training example's ids and each backend's inference prompt ids."""

    id: str
    text: str
    train_prompt_ids: list[int]
    target_ids: list[int]
    transformers_prompt_ids: list[int]
    vllm_prompt_ids: list[int]
    leading_bos: int
    """BOS tokens at the start of the prompt: one where the template writes one (Llama), none for Qwen; two is
    the double-BOS fault (a templated string tokenized with special tokens added)."""
    rendered: str
    """The whole example decoded, special tokens kept, the loss tokens between ⟦ and ⟧."""

    @property
    def problems(self) -> list[str]:
        found = []
        if self.transformers_prompt_ids != self.train_prompt_ids:
            found.append("the transformers backend's prompt ids differ from training's")
        if self.vllm_prompt_ids != self.train_prompt_ids:
            found.append("the vLLM backend's prompt ids differ from training's")
        if self.leading_bos > 1:
            found.append(f"{self.leading_bos} BOS tokens at the start")
        return found


def inspect_rows(recipe: Recipe, data: EmotionData) -> list[RowView]:
    """The views of every row of ``data`` under ``recipe``'s model tokenizer and prompt."""
    if not task_kind(recipe.task).generates_text:
        raise GenEmotionError(f"inspect shows generation prompts; recipe {recipe.name!r} has task {recipe.task}")
    tokenizer = load_tokenizer(resolve_model(recipe.model.name), recipe.model)
    encoder = make_encoder(tokenizer, recipe.prompt, recipe.data)
    rows = encode_rows(data, encoder)
    prompts = [row["input_ids"][: row["completion_mask"].index(1)] for row in rows]
    batch = batch_inputs(tokenizer, prompts)
    mask = batch["attention_mask"].tolist()
    sent_by_transformers = [[t for t, m in zip(ids, keep) if m] for ids, keep in zip(batch["input_ids"].tolist(), mask)]
    sent_by_vllm = [item["prompt_token_ids"] for item in engine_inputs(prompts)]
    bos = tokenizer.bos_token_id
    views = []
    for i, row in enumerate(rows):
        prompt, target = prompts[i], row["input_ids"][len(prompts[i]) :]
        rendered = tokenizer.decode(prompt, skip_special_tokens=False) + "⟦" + tokenizer.decode(target) + "⟧"
        views.append(
            RowView(
                id=data.ids[i],
                text=data.texts[i],
                train_prompt_ids=prompt,
                target_ids=target,
                transformers_prompt_ids=sent_by_transformers[i],
                vllm_prompt_ids=sent_by_vllm[i],
                leading_bos=leading_count(prompt, bos),
                rendered=rendered,
            )
        )
    return views


def leading_count(ids: list[int], token: int | None) -> int:
    """How many times ``token`` repeats at the start of ``ids``."""
    count = 0
    while token is not None and count < len(ids) and ids[count] == token:
        count += 1
    return count


def describe(views: list[RowView], tokenizer_name: str) -> str:
    """The human-readable report: each row rendered, its loss tokens, and the comparison."""
    lines = [f"tokenizer: {tokenizer_name}; the loss is on the tokens between ⟦ and ⟧"]
    for view in views:
        lines += [
            f"--- row {view.id}: {len(view.train_prompt_ids)} prompt tokens + {len(view.target_ids)} target tokens",
            view.rendered,
            f"target ids (loss): {view.target_ids}",
        ]
        problems = view.problems
        same = "identical" if not problems else "DIFFERENT: " + "; ".join(problems)
        lines.append(f"inference prompt ids (transformers, vLLM) vs training: {same}; leading BOS: {view.leading_bos}")
    bad = sum(1 for view in views if view.problems)
    lines.append(f"{len(views) - bad} of {len(views)} rows: training and inference prompt ids identical")
    return "\n".join(lines)


def run_inspect(recipe: Recipe, data_dir: Path | str, rows: int, as_json: bool) -> tuple[str, bool]:
    """The report for the first ``rows`` rows of the data's training split (a folder or a dataset id:
    ``sources``), and whether every row is consistent."""
    if rows < 1:
        raise GenEmotionError(f"--rows must be at least 1, got {rows}")
    data = read_splits(data_source(recipe, data_dir)).train
    recipe = with_header_labels(recipe, data.label_names)
    data = data.subset(list(range(min(rows, len(data)))))
    views = inspect_rows(recipe, data)
    consistent = not any(view.problems for view in views)
    if as_json:
        text = "\n".join(json.dumps(_as_record(view), ensure_ascii=False) for view in views)
    else:
        text = describe(views, recipe.model.name)
    return text, consistent


def _as_record(view: RowView) -> dict[str, Any]:
    record = asdict(view)
    record["problems"] = view.problems
    return record
