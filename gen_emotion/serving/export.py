"""``gen-emotion export-model``: hand a trained run, cv or ensemble folder over as a model folder to deploy or share.

A run's folder holds its model: a generation run's LoRA adapter (or, with ``merged``, the weights with the adapter
merged in), with the tokenizer as trained (its chat template's date pinned, its EOS the end-of-turn token) and
``generation_config.json`` with the decoding the toolkit uses; a classifier's weights (a LoRA classifier's adapter,
or with ``merged`` the merged model); a TF-IDF run's pickle. A cv or ensemble folder is exported as a folder that
gen-emotion loads (``EmotionModel.load``, ``predict``, ``serve``) on another machine: the recipe, the fold models
(an ensemble: its members, each exported the same way, under ``members/``), thresholds and combiner, and the
out-of-fold figures; no training data, predictions or checkpoints. Every export has ``gen_emotion.json`` (labels,
decision, figures, recipe) and a model card (``README.md``, ``cards``); ``push_to_hub`` uploads it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from gen_emotion.config.recipes import Recipe, label_set
from gen_emotion.config.task_kinds import task_kind
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import make_folder, read_json, write_json, write_text
from gen_emotion.generation.prompts import build_messages, load_templates, make_encoder
from gen_emotion.models.hardware import vllm_lora_rank
from gen_emotion.models.loading import ADAPTER_DIR, load_tokenizer, merged_model_dir, resolve_model
from gen_emotion.runs.folder import (
    CV_SETTINGS,
    FOLDER_METRICS,
    RECIPE_FILE,
    RUN_METRICS,
    STACKER,
    THRESHOLDS,
    fold_path,
    load_run_recipe,
    read_cv_settings,
    read_folder_metrics,
    read_run_metrics,
    threshold_values,
    write_folder_metrics,
)
from gen_emotion.runs.locks import writing_file
from gen_emotion.scoring.run_metrics import EnsembleMetrics, FolderMetrics, RunMetrics
from gen_emotion.serving.cards import model_card
from gen_emotion.serving.predictor import folder_kind, member_folder, stacker_of
from gen_emotion.tasks.base import Task, get_task
from gen_emotion.training.classify import MEAN_POOLING_HEAD

NOT_EXPORTED = ("training_args.bin",)
"""Files of a trained folder that a model folder does not need (the trainer's pickled arguments)."""
DESCRIPTION = "gen_emotion.json"
MEMBERS_DIR = "members"


def _copy(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file() and item.name not in NOT_EXPORTED:
            shutil.copy2(item, target / item.name)


def export_model(folder: Path, out_dir: Path, merged: bool = False) -> dict[str, Any]:
    """Write the model folder of a finished run, cv or ensemble folder; returns its ``gen_emotion.json``.

    The folder is made beside ``out_dir`` (``.NAME.partial``) and renamed into place once whole, so an
    interrupted export leaves no half-made model folder, and the next one starts over."""
    kind = folder_kind(folder)
    if merged and kind != "run":
        raise GenEmotionError(f"{folder}: --merged is for one run's model; a {kind} folder is exported as it is")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise GenEmotionError(f"--out {out_dir}: the folder is not empty; give a new one")
    with writing_file(out_dir):  # one export into out_dir at a time
        staging = out_dir.with_name(f".{out_dir.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)  # what an interrupted export left
        make_folder(staging, "--out")
        try:
            if kind == "run":
                description = _export_run(folder, staging, merged)
            else:
                description = _export_cv(folder, staging) if kind == "cv" else _export_ensemble(folder, staging)
            write_json(staging / DESCRIPTION, description)
            write_text(staging / "README.md", model_card(description))
            if out_dir.exists():
                out_dir.rmdir()  # empty, checked above
            os.replace(staging, out_dir)
        except BaseException:  # a refusal or an interruption leaves no half-made model folder
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return description


def _export_run(run_dir: Path, out_dir: Path, merged: bool) -> dict[str, Any]:
    recipe = load_run_recipe(run_dir)
    if not get_task(recipe.task).is_fitted(run_dir) or not (run_dir / RUN_METRICS).is_file():
        raise GenEmotionError(f"{run_dir}: the run did not finish (no {RUN_METRICS}); run it to the end first")
    metrics = read_run_metrics(run_dir)
    kind = task_kind(recipe.task)
    if not kind.transformers_model:
        if merged:
            raise GenEmotionError(f"{run_dir}: a TF-IDF run has no weights to merge; drop --merged")
        from gen_emotion.training.tfidf import MODEL_FILE

        shutil.copy2(run_dir / MODEL_FILE, out_dir / MODEL_FILE)
        return {**describe(recipe, metrics, "pickle"), "model_file": MODEL_FILE}
    if not kind.generates_text:
        return _export_classifier(run_dir, out_dir, recipe, metrics, merged)
    source = (
        merged_model_dir(resolve_model(recipe.model.name), run_dir / ADAPTER_DIR, recipe.model, recipe.generate.dtype)
        if merged
        else None
    )
    _copy(source or run_dir / ADAPTER_DIR, out_dir)
    encoder = make_encoder(load_tokenizer(str(run_dir / ADAPTER_DIR), recipe.model), recipe.prompt, recipe.data)
    generation = {
        "do_sample": False,
        "repetition_penalty": 1.0,
        "eos_token_id": encoder.stop_ids,
        "pad_token_id": encoder.tokenizer.pad_token_id,
        "max_new_tokens": label_set(recipe).max_new_tokens(recipe.prompt.target_format),
    }
    write_json(out_dir / "generation_config.json", generation)
    description = describe(recipe, metrics, "merged" if merged else "LoRA adapter", generation)
    if not merged:
        adapter = read_json(run_dir / ADAPTER_DIR / "adapter_config.json", "the adapter's peft config")
        description["serve_base"] = adapter.get("base_model_name_or_path") or recipe.model.name
        description["max_lora_rank"] = vllm_lora_rank(recipe.lora.r)
    if (run_dir / THRESHOLDS).is_file():
        description["thresholds"] = threshold_values(run_dir)
    return description


def _export_classifier(
    run_dir: Path, out_dir: Path, recipe: Recipe, metrics: RunMetrics, merged: bool
) -> dict[str, Any]:
    """A classifier's folder as trained, or a LoRA classifier merged into its base model (``merged``)."""
    from gen_emotion.training.classify import MODEL_DIR, load_trained

    model_dir = run_dir / MODEL_DIR
    adapter = (model_dir / "adapter_config.json").is_file()
    if merged and not adapter:
        raise GenEmotionError(f"{run_dir}: this classifier was fine-tuned in full, its weights are merged already")
    if merged and recipe.model.load_in_4bit:
        raise GenEmotionError(f"{run_dir}: a 4-bit base cannot take the adapter merged in; export it without --merged")
    if merged:
        model, tokenizer = load_trained(model_dir, recipe)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    else:
        _copy(model_dir, out_dir)
    weights = "LoRA adapter" if adapter and not merged else "merged" if adapter else "full fine-tune"
    return {**describe(recipe, metrics, weights), "mean_pooling_head": MEAN_POOLING_HEAD}


def describe(recipe: Recipe, metrics: RunMetrics, weights: str, generation: dict | None = None) -> dict[str, Any]:
    """What a run's ``gen_emotion.json`` holds: enough to prompt, constrain and decode the model as the run did."""
    held, task = metrics.held_out, get_task(recipe.task)
    what = ("split",) if "split" in held else ("fold", "folds")  # the given validation split, or a fold
    description: dict[str, Any] = {
        "kind": "run",
        "task": recipe.task,
        "base_model": task.describe_model(recipe),
        "title": f"{task.model_title(recipe)} ({weights})",
        "weights": weights,
        "labels": list(label_set(recipe).names),
        "none_label": recipe.data.none_label,
        "decision": metrics.decision,
        "held_out": {key: held.get(key) for key in (*what, "rows", "macro_f1", "micro_f1", "jaccard")},
        "held_out_final_macro_f1": metrics.held_out_final_macro_f1,
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


def _out_of_fold(metrics: FolderMetrics) -> dict[str, Any]:
    keys = ("rows", "macro_f1", "macro_f1_thresholds_cv", "micro_f1", "jaccard", "per_label")
    return {key: getattr(metrics, key) for key in keys}


def _export_cv(cv_dir: Path, out_dir: Path) -> dict[str, Any]:
    """A cv folder's recipe, settings, thresholds and figures, and each fold's model files (``Task.export_files``)."""
    recipe = load_run_recipe(cv_dir)
    task: Task = get_task(recipe.task)
    metrics = read_folder_metrics(cv_dir, f"the {FOLDER_METRICS} of gen-emotion cv")
    settings = read_cv_settings(cv_dir)
    folds = int(settings.get("folds") or 0)
    for k in range(folds):
        fold = fold_path(cv_dir, k)
        if not task.is_fitted(fold):
            raise GenEmotionError(f"{fold}: holds no model (cv --drop-models deletes them); nothing was exported")
    for name in (RECIPE_FILE, CV_SETTINGS, THRESHOLDS, FOLDER_METRICS):
        shutil.copy2(cv_dir / name, out_dir / name)
    for k in range(folds):
        source, target = fold_path(cv_dir, k), fold_path(out_dir, k)
        target.mkdir(parents=True)
        for name in task.export_files:
            if (source / name).is_dir():
                shutil.copytree(source / name, target / name, ignore=shutil.ignore_patterns(*NOT_EXPORTED))
            else:
                shutil.copy2(source / name, target / name)
    return {
        "kind": "cv",
        "task": recipe.task,
        "base_model": task.describe_model(recipe),
        "title": f"{recipe.name}, {folds}-fold cv",
        "weights": "folder",
        "labels": list(label_set(recipe).names),
        "folds": folds,
        "has_probabilities": bool(metrics.has_probabilities),
        "decision": "thresholds",
        "thresholds": threshold_values(cv_dir),
        "out_of_fold": _out_of_fold(metrics),
        "recipe": recipe.to_dict(),
    }


def _export_ensemble(folder: Path, out_dir: Path) -> dict[str, Any]:
    """An ensemble's combiner, thresholds and figures, and each member exported under ``members/K-NAME``."""
    metrics = read_folder_metrics(folder, f"the {FOLDER_METRICS} of gen-emotion ensemble")
    assert isinstance(metrics, EnsembleMetrics)  # folder_kind read its kind
    members, descriptions = [], []
    for k, member in enumerate(metrics.members):
        relative = f"{MEMBERS_DIR}/{k}-{Path(member_folder(folder, member)).name}"
        source = member_folder(folder, member)
        (out_dir / relative).mkdir(parents=True)
        kind = folder_kind(source)
        if kind not in ("cv", "ensemble"):
            raise GenEmotionError(f"{source}: an ensemble member must be a cv or ensemble folder")
        export = _export_cv if kind == "cv" else _export_ensemble
        exported = export(source, out_dir / relative)
        write_json(out_dir / relative / DESCRIPTION, exported)
        descriptions.append(exported)
        members.append({**{key: value for key, value in member.items() if key != "run_dir"}, "folder": relative})
    shutil.copy2(folder / THRESHOLDS, out_dir / THRESHOLDS)
    if metrics.mode == "stack":
        write_json(out_dir / STACKER, stacker_of(folder, metrics.members))
    write_folder_metrics(out_dir, replace(metrics, members=members, candidates=None))  # no search candidates
    first = descriptions[0]
    return {
        "kind": "ensemble",
        "task": first["task"] if len({d["task"] for d in descriptions}) == 1 else "mixed",
        "base_model": ", ".join(dict.fromkeys(d["base_model"] for d in descriptions)),
        "title": metrics.name or "ensemble",
        "weights": "folder",
        "labels": first["labels"],
        "mode": metrics.mode,
        "members": [m.get("name") or m["folder"] for m in members],
        "decision": "thresholds",
        "thresholds": threshold_values(folder),
        "out_of_fold": _out_of_fold(metrics),
    }


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
