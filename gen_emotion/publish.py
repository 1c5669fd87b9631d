"""``gen-emotion export-model``: hand a trained run over as a model folder to deploy or share.

The folder holds the LoRA adapter (or, with ``merged``, the weights with the adapter merged in), the tokenizer
as trained (its chat template's date pinned, its EOS the end-of-turn token), ``generation_config.json`` with the
decoding the toolkit uses (greedy, no penalty, stop at the end of turn), ``gen_emotion.json`` (labels, output
grammar, prompt, decision and thresholds, recipe, held-out figures) and a model card (``README.md``). It loads with
plain transformers (peft for an adapter) and with vLLM; ``push_to_hub`` uploads it with ``huggingface_hub``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from gen_emotion.classify import MEAN_POOLING_HEAD
from gen_emotion.errors import GenEmotionError
from gen_emotion.files import make_folder, read_json, write_json, write_text
from gen_emotion.labels import LABELS
from gen_emotion.models import ADAPTER_DIR, load_tokenizer, merged_model_dir, resolve_model
from gen_emotion.prompts import build_messages, load_templates, make_encoder
from gen_emotion.recipes import Recipe, label_set
from gen_emotion.runs import load_run_recipe
from gen_emotion.tasks import get_task

CITATION = (
    'Saif M. Mohammad, Felipe Bravo-Marquez, Mohammad Salameh and Svetlana Kiritchenko (2018). "SemEval-2018 Task 1: '
    'Affect in Tweets". Proceedings of the 12th International Workshop on Semantic Evaluation (SemEval-2018).'
)


NOT_EXPORTED = ("training_args.bin",)
"""Files of a trained folder that a model folder does not need (the trainer's pickled arguments)."""


def _copy(source: Path, target: Path) -> None:
    for item in source.iterdir():
        if item.is_file() and item.name not in NOT_EXPORTED:
            shutil.copy2(item, target / item.name)


def export_model(run_dir: Path, out_dir: Path, merged: bool = False) -> dict[str, Any]:
    """Write the model folder of a finished run; returns its ``gen_emotion.json`` description."""
    recipe = load_run_recipe(run_dir)
    task = get_task(recipe.task)
    if recipe.task == "tfidf":
        raise GenEmotionError(f"{run_dir}: a TF-IDF run is a scikit-learn pickle, not a model to export")
    if not task.is_fitted(run_dir) or not (run_dir / "metrics.json").is_file():
        raise GenEmotionError(f"{run_dir}: the run did not finish (no metrics.json); run it to the end first")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise GenEmotionError(f"--out {out_dir}: the folder is not empty; give a new one")
    make_folder(out_dir, "--out")
    metrics = read_json(run_dir / "metrics.json", "the run's metrics written by gen-emotion run")
    if recipe.task == "classify":
        _copy(run_dir / "model", out_dir)
        description = describe(recipe, metrics, merged=True, generation=None)
    else:
        source = merged_model_dir(resolve_model(recipe.model.name), run_dir / ADAPTER_DIR, recipe) if merged else None
        _copy(source or run_dir / ADAPTER_DIR, out_dir)
        encoder = make_encoder(load_tokenizer(str(run_dir / ADAPTER_DIR), recipe), recipe)
        generation = {
            "do_sample": False,
            "repetition_penalty": 1.0,
            "eos_token_id": encoder.stop_ids,
            "pad_token_id": encoder.tokenizer.pad_token_id,
            "max_new_tokens": label_set(recipe).max_new_tokens(recipe.prompt.target_format),
        }
        write_json(out_dir / "generation_config.json", generation)
        description = describe(recipe, metrics, merged=merged, generation=generation)
        if (run_dir / "thresholds.json").is_file():
            description["thresholds"] = read_json(run_dir / "thresholds.json", "one threshold per label")
    write_json(out_dir / "gen_emotion.json", description)
    write_text(out_dir / "README.md", model_card(description))
    return description


def describe(recipe: Recipe, metrics: dict[str, Any], merged: bool, generation: dict | None) -> dict[str, Any]:
    """What ``gen_emotion.json`` holds: enough to prompt, constrain and decode the model as the run did."""
    held = metrics.get("held_out", {})
    description: dict[str, Any] = {
        "task": recipe.task,
        "base_model": recipe.model.name,
        "weights": "merged" if merged else "LoRA adapter",
        "labels": list(label_set(recipe).names),
        "none_label": recipe.data.none_label,
        "decision": metrics.get("decision"),
        "held_out": {key: held.get(key) for key in ("fold", "folds", "rows", "macro_f1", "micro_f1", "jaccard")},
        "held_out_final_macro_f1": metrics.get("held_out_final_macro_f1"),
        "recipe": recipe.to_dict(),
    }
    if generation is not None:
        templates = load_templates(recipe.prompt.template, label_set(recipe))
        description.update(
            target_format=recipe.prompt.target_format,
            output_regex=label_set(recipe).output_regex(recipe.prompt.target_format),
            chat_template=templates.chat,
            prompt_messages=build_messages("{tweet}", templates),
            template_date=recipe.prompt.template_date,
            generation=generation,
        )
    return description


def model_card(d: dict[str, Any]) -> str:
    """The model card (``README.md``) from a ``gen_emotion.json`` description."""
    held = d["held_out"]
    figures = ", ".join(f"{k} {held[k]:.4f}" for k in ("macro_f1", "micro_f1", "jaccard") if held.get(k) is not None)
    lines = [
        "---",
        f"base_model: {d['base_model']}",
        "library_name: " + ("peft" if d["weights"] == "LoRA adapter" else "transformers"),
        "tags: [gen-emotion, emotion-detection, multilabel, semeval-2018]",
        "---",
        "",
        f"# Emotion detection: {d['base_model']} ({d['weights']})",
        "",
        f"Fine-tuned with gen-emotion (task: {d['task']}) to detect {len(d['labels'])} labels in a short text: "
        f"{', '.join(d['labels'])}. A text can have several or none.",
        "",
        *_data_section(d),
        "## Held-out figures",
        "",
        f"Fold {held.get('fold')} of {held.get('folds')} of the training file ({held.get('rows')} rows), never "
        f"seen in training: {figures}. Decision: {d['decision']}; macro-F1 as submitted "
        f"{d['held_out_final_macro_f1']:.4f}."
        if d.get("held_out_final_macro_f1") is not None
        else "",
        "",
    ]
    if d["task"] == "generate":
        lines += _generation_card(d)
    else:
        lines += _classifier_card(d["recipe"].get("classifier", {}))
    return "\n".join(lines) + "\n"


def _classifier_card(options: dict[str, Any]) -> list[str]:
    """How to use an exported classifier: its own head, or the encoder and the head over the mean of its states."""
    lines = ["## Use", ""]
    if options.get("demojize"):
        lines += [
            "It was trained on texts with emojis written as their names: apply "
            "`emoji.demojize(text, delimiters=(' ', ' ')).replace('_', ' ')` first.",
            "",
        ]
    if options.get("pooling") == "mean":
        return lines + [
            "The encoder, then a linear head with one sigmoid output per label over the mean of its token states:",
            "",
            "```python",
            "from safetensors.torch import load_file",
            "from transformers import AutoModel, AutoTokenizer",
            "encoder, tokenizer = AutoModel.from_pretrained('PATH'), AutoTokenizer.from_pretrained('PATH')",
            f"head = load_file('PATH/{MEAN_POOLING_HEAD}')",
            "batch = tokenizer(['I can not wait!'], return_tensors='pt')",
            "mask = batch['attention_mask'].unsqueeze(-1)",
            "pooled = (encoder(**batch).last_hidden_state * mask).sum(1) / mask.sum(1)",
            "probs = (pooled @ head['weight'].T + head['bias']).sigmoid()",
            "```",
        ]
    return lines + [
        "A sequence classifier with one sigmoid output per label (`problem_type: multi_label_classification`):",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "model = AutoModelForSequenceClassification.from_pretrained('PATH')",
        "tokenizer = AutoTokenizer.from_pretrained('PATH')",
        "probs = model(**tokenizer(['I can not wait!'], return_tensors='pt')).logits.sigmoid()",
        "```",
    ]


def _data_section(d: dict[str, Any]) -> list[str]:
    if tuple(d["labels"]) != LABELS:
        return ["## Data", "", "The user's own labelled texts (the recipe in `gen_emotion.json` says which).", ""]
    return [
        "## Data",
        "",
        'The Kaggle "Emotion Detection Fall 2024" release of SemEval-2018 Task 1 E-c (English tweets): the 11 '
        "emotions of that task. The data is not redistributed here. Cite:",
        "",
        f"> {CITATION}",
        "",
    ]


def _generation_card(d: dict[str, Any]) -> list[str]:
    messages = json.dumps(d["prompt_messages"], indent=2)
    tokens = d["generation"]["max_new_tokens"]
    load = (
        "from peft import AutoPeftModelForCausalLM\nmodel = AutoPeftModelForCausalLM.from_pretrained('PATH')"
        if d["weights"] == "LoRA adapter"
        else "from transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained('PATH')"
    )
    return [
        "## Prompt and output",
        "",
        "The model writes the emotions in label order, separated by `, `, or `none` "
        f"(target format `{d['target_format']}`). The messages it was trained on ({{tweet}} is the text; the chat "
        f"template's date is pinned to {d['template_date']}):",
        "",
        "```json",
        messages,
        "```",
        "",
        "Decode greedily with no repetition penalty, under the output grammar (every output parses):",
        "",
        "```",
        d["output_regex"],
        "```",
        "",
        "## Use with transformers",
        "",
        "```python",
        "from transformers import AutoTokenizer",
        load,
        "tokenizer = AutoTokenizer.from_pretrained('PATH')",
        "messages = " + json.dumps(d["prompt_messages"]).replace('"{tweet}"', '"I can not wait for the weekend!"'),
        "ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors='pt')",
        f"out = model.generate(ids, max_new_tokens={tokens}, do_sample=False)",
        "print(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))",
        "```",
        "",
        "## Use with vLLM (structured outputs)",
        "",
        "```python",
        "from vllm import LLM, SamplingParams",
        "from vllm.sampling_params import StructuredOutputsParams",
        "llm = LLM(model='PATH', generation_config='vllm')"
        + (
            "  # an adapter: serve its base model with enable_lora=True and a LoRARequest"
            if d["weights"] != "merged"
            else ""
        ),
        f"params = SamplingParams(temperature=0, max_tokens={tokens}, "
        "structured_outputs=StructuredOutputsParams(regex=REGEX))",
        "print(llm.chat(messages, params)[0].outputs[0].text)",
        "```",
        "",
        "`REGEX` is the output grammar above, also in `gen_emotion.json` (`output_regex`).",
    ]


def push_to_hub(folder: Path, repo_id: str, private: bool) -> str:
    """Upload ``folder`` to the hub repository ``repo_id`` with the token in ``HF_TOKEN``; returns its URL."""
    token = os.environ.get("HF_TOKEN", "").strip()
    if not token:
        raise GenEmotionError(
            "--push-to-hub needs a write token in HF_TOKEN (huggingface.co/settings/tokens); nothing was uploaded"
        )
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise GenEmotionError("--push-to-hub needs huggingface_hub: pip install huggingface_hub") from None
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="gen-emotion export-model")
    except Exception as err:  # the hub's own errors and the network's: one line, the token never in it
        raise GenEmotionError(f"pushing to {repo_id} failed: {' '.join(str(err).split())[:300]}") from None
    return str(getattr(commit, "repo_url", f"https://huggingface.co/{repo_id}"))
