"""Model cards (``README.md`` of an ``export-model`` folder), from the folder's ``gen_emotion.json`` description.

Every code block of every card is executed as written by ``tests/serving/test_export.py`` (``PATH`` replaced by the
folder), so a card never shows code that fails: a generation model's adapter and merged copy (transformers and
vLLM), each classifier kind (its own head, the mean-pooled head, a LoRA adapter), TF-IDF, cv and ensemble folders.
"""

from __future__ import annotations

import json
from typing import Any

from gen_emotion.config.task_kinds import task_kind
from gen_emotion.core.labels import LABELS

CITATION = (
    'Saif M. Mohammad, Felipe Bravo-Marquez, Mohammad Salameh and Svetlana Kiritchenko (2018). "SemEval-2018 Task 1: '
    'Affect in Tweets". Proceedings of the 12th International Workshop on Semantic Evaluation (SemEval-2018).'
)
EXAMPLE = "I can not wait!"


def model_card(d: dict[str, Any]) -> str:
    """The card of an exported folder from its description."""
    if d.get("kind") in ("cv", "ensemble"):
        body = _folder_card(d)
    elif task_kind(d["task"]).generates_text:
        body = [*_held_out(d), *_generation_card(d)]
    elif not task_kind(d["task"]).transformers_model:
        body = [*_held_out(d), *_tfidf_card(d)]
    else:
        body = [*_held_out(d), *_classifier_card(d)]
    libraries = {"LoRA adapter": "peft", "folder": "gen-emotion", "pickle": "sklearn"}
    library = libraries.get(d["weights"], "transformers")
    lines = [
        "---",
        f"base_model: {d['base_model']}",
        f"library_name: {library}",
        "tags: [gen-emotion, emotion-detection, multilabel, semeval-2018]",
        "---",
        "",
        f"# Emotion detection: {d['title']}",
        "",
        f"Trained with gen-emotion (task: {d['task']}) to detect {len(d['labels'])} labels in a short text: "
        f"{', '.join(d['labels'])}. A text can have several or none.",
        "",
        *_data_section(d),
        *body,
    ]
    return "\n".join(lines) + "\n"


def _held_out(d: dict[str, Any]) -> list[str]:
    held = d["held_out"]
    figures = ", ".join(f"{k} {held[k]:.4f}" for k in ("macro_f1", "micro_f1", "jaccard") if held.get(k) is not None)
    if d.get("held_out_final_macro_f1") is None:
        return []
    return [
        "## Held-out figures",
        "",
        f"{_held_out_rows(held)} ({held.get('rows')} rows), never "
        f"seen in training: {figures}. Decision: {d['decision']}; macro-F1 as submitted "
        f"{d['held_out_final_macro_f1']:.4f}.",
        "",
    ]


def _held_out_rows(held: dict[str, Any]) -> str:
    """What was held out: the data's validation split, or a fold of the training file."""
    if held.get("split"):
        return f"The data's {held['split']} split"
    return f"Fold {held.get('fold')} of {held.get('folds')} of the training file"


def _python(*code: str) -> list[str]:
    return ["```python", *code, "```"]


def _classifier_card(d: dict[str, Any]) -> list[str]:
    """How to use an exported classifier: its own head, the encoder and the head over the mean of its states, or
    a LoRA adapter on its base model."""
    options = d["recipe"].get("classifier", {})
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
            *_python(
                "from safetensors.torch import load_file",
                "from transformers import AutoModel, AutoTokenizer",
                "encoder, tokenizer = AutoModel.from_pretrained('PATH'), AutoTokenizer.from_pretrained('PATH')",
                f"head = load_file('PATH/{d['mean_pooling_head']}')",
                f"batch = tokenizer([{EXAMPLE!r}], return_tensors='pt')",
                "mask = batch['attention_mask'].unsqueeze(-1)",
                "pooled = (encoder(**batch).last_hidden_state * mask).sum(1) / mask.sum(1)",
                "probs = (pooled @ head['weight'].T + head['bias']).sigmoid()",
            ),
        ]
    if d["weights"] == "LoRA adapter":
        return lines + [
            f"A LoRA adapter and a trained score head for {d['base_model']} (peft loads the base model the adapter "
            "names), one sigmoid output per label:",
            "",
            *_python(
                "from peft import AutoPeftModelForSequenceClassification",
                "from transformers import AutoTokenizer",
                "model = AutoPeftModelForSequenceClassification.from_pretrained(",
                f"    'PATH', num_labels={len(d['labels'])}, problem_type='multi_label_classification'",
                ")",
                "tokenizer = AutoTokenizer.from_pretrained('PATH')",
                f"probs = model(**tokenizer([{EXAMPLE!r}], return_tensors='pt')).logits.sigmoid()",
            ),
        ]
    return lines + [
        "A sequence classifier with one sigmoid output per label (`problem_type: multi_label_classification`):",
        "",
        *_python(
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "model = AutoModelForSequenceClassification.from_pretrained('PATH')",
            "tokenizer = AutoTokenizer.from_pretrained('PATH')",
            f"probs = model(**tokenizer([{EXAMPLE!r}], return_tensors='pt')).logits.sigmoid()",
        ),
    ]


def _tfidf_card(d: dict[str, Any]) -> list[str]:
    return [
        "## Use",
        "",
        "A scikit-learn pipeline (TF-IDF features, one logistic regression per label), pickled: load it only from "
        "a source you trust. Its columns are the labels above, in that order.",
        "",
        *_python(
            "import pickle",
            f"with open('PATH/{d['model_file']}', 'rb') as handle:",
            "    model = pickle.load(handle)",
            f"probs = model.predict_proba([{EXAMPLE!r}])",
        ),
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
    filled = json.dumps(d["prompt_messages"]).replace('"{tweet}"', json.dumps(EXAMPLE))
    adapter = d["weights"] == "LoRA adapter"
    load = (
        ["from peft import AutoPeftModelForCausalLM", "model = AutoPeftModelForCausalLM.from_pretrained('PATH')"]
        if adapter
        else ["from transformers import AutoModelForCausalLM", "model = AutoModelForCausalLM.from_pretrained('PATH')"]
    )
    engine = (
        [
            "    from vllm.lora.request import LoRARequest",
            f"    llm = LLM(model={d['serve_base']!r}, enable_lora=True, max_lora_rank={d['max_lora_rank']}, "
            "generation_config='vllm')",
            "    lora = LoRARequest('emotions', 1, 'PATH')",
        ]
        if adapter
        else ["    llm = LLM(model='PATH', generation_config='vllm')", "    lora = None"]
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
        *_python(
            "from transformers import AutoTokenizer",
            *load,
            "tokenizer = AutoTokenizer.from_pretrained('PATH')",
            f"messages = {filled}",
            "inputs = tokenizer.apply_chat_template(",
            "    messages, add_generation_prompt=True, return_tensors='pt', return_dict=True",
            ")",
            f"out = model.generate(**inputs, max_new_tokens={tokens}, do_sample=False)",
            "print(tokenizer.decode(out[0, inputs['input_ids'].shape[1]:], skip_special_tokens=True))",
        ),
        "",
        "This decodes without the grammar; the vLLM lines below apply it (`output_regex` in `gen_emotion.json`).",
        "",
        "## Use with vLLM (structured outputs)",
        "",
        *_python(
            "import json",
            "from vllm import LLM, SamplingParams",
            "from vllm.sampling_params import StructuredOutputsParams",
            "",
            "if __name__ == '__main__':  # vLLM starts processes that import this script again",
            "    with open('PATH/gen_emotion.json') as handle:",
            "        regex = json.load(handle)['output_regex']",
            *engine,
            f"    params = SamplingParams(temperature=0, max_tokens={tokens}, "
            "structured_outputs=StructuredOutputsParams(regex=regex))",
            f"    messages = {filled}",
            "    print(llm.chat(messages, params, lora_request=lora)[0].outputs[0].text)",
        ),
    ]


def _folder_card(d: dict[str, Any]) -> list[str]:
    """A cv or ensemble folder: what it holds, its out-of-fold figures, and how gen-emotion predicts with it."""
    oof = d["out_of_fold"]
    per_label = oof.get("per_label") or {}
    if d["kind"] == "cv":
        holds = (
            f"the {d['folds']} fold models of one {d['task']} recipe ({d['base_model']}), each trained on all "
            "but one fold of the training file; their probabilities are averaged"
            if d["has_probabilities"]
            else f"the {d['folds']} fold models of one recipe; their 0/1 outputs are put to a majority vote"
        )
    else:
        how = {"average": "a weighted mean of their probabilities", "vote": "a weighted vote", "stack": "stacking"}
        holds = f"an ensemble of {len(d['members'])} folders ({', '.join(d['members'])}), combined by {how[d['mode']]}"
    lines = [
        "## What it holds",
        "",
        f"{holds[0].upper()}{holds[1:]}, then cut at per-label thresholds tuned on out-of-fold rows "
        "(`thresholds.json`). No training data is included.",
        "",
        "## Out-of-fold figures",
        "",
        f"Every training row predicted by a model that never saw it ({oof.get('rows')} rows): macro-F1 "
        f"{oof['macro_f1']:.4f} with thresholds tuned on the same rows"
        + (
            f", {oof['macro_f1_thresholds_cv']:.4f} with thresholds tuned on other rows (honest)"
            if oof.get("macro_f1_thresholds_cv") is not None
            else ""
        )
        + f"; micro-F1 {oof['micro_f1']:.4f}, Jaccard {oof['jaccard']:.4f}.",
        "",
    ]
    if per_label:
        lines += ["| label | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| {label} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
            for label, v in per_label.items()
        ]
        lines.append("")
    return lines + [
        "## Use",
        "",
        "With gen-emotion installed, in Python:",
        "",
        *_python(
            "from gen_emotion import EmotionModel",
            "with EmotionModel.load('PATH') as model:",
            f"    result = model.predict([{EXAMPLE!r}])",
            "print(result.label_names, result.probs)",
        ),
        "",
        'From the shell: `gen-emotion predict PATH --text "..."`, `gen-emotion predict PATH --input texts.csv --out '
        "predictions.csv`, or an HTTP server: `gen-emotion serve PATH`.",
    ]
