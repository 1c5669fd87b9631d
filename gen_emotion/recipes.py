"""Recipes: one YAML file per model setup, validated against typed dataclasses.

A recipe has the sections ``model``, ``prompt``, ``data``, ``lora``, ``train`` and ``generate``.
Unknown keys and values of the wrong type are errors that name the key; ``key=value`` overrides
(``train.learning_rate=1e-4``) are applied before validation.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gen_emotion.errors import GenEmotionError

SECRET_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "RUNPOD_API_KEY", "WANDB_API_KEY")
"""Environment variables that hold secrets: they never belong in a recipe."""


class RecipeError(GenEmotionError):
    """A recipe file or override is invalid."""


@dataclass
class ModelArgs:
    """Which model to tune and how to load it."""

    name: str = "smollm2-135m-instruct"
    """A hub id, a local model folder, or an embedded model (``smollm2-135m-instruct``)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin."""
    trust_remote_code: bool = False
    """Run the model's own Python code from the hub; opt in only for models you trust."""
    load_in_4bit: bool = False
    """QLoRA: load the base model in 4-bit nf4 with double quantisation (bitsandbytes, CUDA only)."""
    dtype: str = "auto"
    """Weights dtype: ``auto`` (bf16 on CUDA, fp32 on CPU), ``bfloat16``, ``float16`` or ``float32``."""
    attn_implementation: str | None = None
    """e.g. ``sdpa`` or ``flash_attention_2``; ``None`` lets transformers choose."""


@dataclass
class PromptArgs:
    """How a tweet becomes chat messages and how the labels are written."""

    template: str = "default"
    """A folder under ``prompts/`` (``default``, ``original``) or a path to one."""
    target_format: str = "labels"
    """``labels`` (``anger, joy`` / ``none``) or ``python_list`` (``['anger', 'joy']``, the original study's)."""
    max_text_tokens: int = 128
    """Tweets longer than this many tokens are truncated (never dropped)."""


@dataclass
class DataArgs:
    """How the training file is split."""

    folds: int = 10
    """Number of multilabel-stratified folds."""
    fold: int = 0
    """The fold held out for scoring."""
    seed: int = 42
    """Seed of the fold split."""
    max_train_rows: int | None = None
    """Train on at most this many rows of the training folds (a seeded random subset); ``None`` for all."""
    eval_rows: int = 200
    """Rows of the training folds kept aside for validation loss and checkpoint selection (0: none)."""


@dataclass
class LoraArgs:
    """The peft ``LoraConfig``."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class TrainArgs:
    """Settings passed to TRL's ``SFTConfig``."""

    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1
    """Stop after this many optimiser steps (``-1``: run ``epochs``)."""
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256
    """Token cap of a whole example (prompt + target)."""
    warmup_steps: int = 0
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    optim: str = "adamw_torch"
    bf16: bool = True
    """bf16 autocast (CPU with AMX, CUDA); on CUDA the weights are loaded in bf16 too."""
    gradient_checkpointing: bool = False
    """Trade compute for memory; only worth it when activations do not fit."""
    completion_positions_only: bool = True
    """On CPU, put only the target positions through the LM head (TRL does so itself on CUDA)."""
    padding_free: bool = False
    """Concatenate a batch's examples into one row with no padding: ``position_ids`` restart at each
    example, so attention stays inside it (block-diagonal mask) and the loss stays on the targets."""
    group_by_length: bool = True
    """Draw batches of similar length (less padding; batches still come in random order); unused
    with ``padding_free``."""
    liger_kernel: bool = False
    """CUDA only: Liger's Triton kernels (RMSNorm, RoPE, SwiGLU) via ``liger-kernel``; ignored on CPU."""
    eval_steps: int = 50
    save_steps: int = 50
    logging_steps: int = 10
    save_total_limit: int = 2
    report_to: list[str] = field(default_factory=lambda: ["none"])
    """``none``, ``wandb``, ``tensorboard``... (credentials come from the environment)."""
    seed: int = 42


@dataclass
class GenerateArgs:
    """How predictions are generated."""

    backend: str = "transformers"
    """``transformers`` or ``vllm``."""
    batch_size: int = 32
    max_new_tokens: int | None = None
    """``None``: just enough for the longest string of the output grammar."""
    constrained: bool = True
    """Constrain outputs to the output grammar (every output parses)."""
    dtype: str = "bfloat16"
    """dtype of the merged model at generation time."""
    tensor_parallel_size: int = 1
    """vLLM: GPUs a model is split over."""
    gpu_memory_utilization: float = 0.9
    """vLLM on a GPU: share of device memory for weights and KV cache (on CPU 0.3 is used)."""
    probabilities: bool = False
    """Also estimate per-label probabilities from ``num_samples`` sampled outputs and tune thresholds."""
    num_samples: int = 8
    """Sampled outputs per tweet for the probabilities."""
    temperature: float = 1.0
    """Sampling temperature for the probabilities."""
    shard_size: int = 256
    """Rows per saved shard of predictions (an interrupted run resumes at the last shard)."""
    vllm_lora: bool = False
    """vLLM: serve the adapter with ``LoRARequest`` instead of a merged copy of the model."""
    vllm_max_num_seqs: int | None = None
    """vLLM: cap on sequences per engine step (``None``: vLLM's default)."""


@dataclass
class ClassifierArgs:
    """The classification-head path (``task: classify``) and the TF-IDF baseline (``task: tfidf``)."""

    pos_weight_power: float = 0.5
    """Per-label ``pos_weight = (negatives / positives) ** power`` from the training fold (0: none)."""
    pos_weight_cap: float | None = 10.0
    """Upper bound on a label's ``pos_weight`` (``None``: no cap)."""
    use_lora: bool = False
    """LoRA (``task_type=SEQ_CLS``, the score head trainable) instead of full fine-tuning (decoders)."""
    max_length: int = 128
    """Token cap of a tweet."""
    predict_batch_size: int = 64
    """Tweets per forward pass when predicting probabilities."""
    group_by_length: bool = True
    """Batch tweets of similar length together (less padding, faster steps; batches stay shuffled)."""
    logreg_c: float = 4.0
    """TF-IDF baseline: inverse regularisation strength ``C`` of each label's logistic regression."""
    char_ngrams: bool = True
    """TF-IDF baseline: add character 2-5-grams (inside word boundaries) to the word 1-2-grams."""


@dataclass
class Recipe:
    """One model setup, end to end."""

    name: str = "recipe"
    description: str = ""
    task: str = "generate"
    """``generate`` (SFT to write the labels), ``classify`` (a classification head) or ``tfidf`` (baseline)."""
    model: ModelArgs = field(default_factory=ModelArgs)
    prompt: PromptArgs = field(default_factory=PromptArgs)
    data: DataArgs = field(default_factory=DataArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    generate: GenerateArgs = field(default_factory=GenerateArgs)
    classifier: ClassifierArgs = field(default_factory=ClassifierArgs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_CHOICES = {
    "task": ("generate", "classify", "tfidf"),
    "prompt.target_format": ("labels", "python_list"),
    "generate.backend": ("transformers", "vllm"),
    "model.dtype": ("auto", "bfloat16", "float16", "float32"),
    "generate.dtype": ("bfloat16", "float16", "float32"),
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, where)
            except RecipeError as err:
                errors.append(str(err))
        raise RecipeError(errors[0])
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise RecipeError(f"{where}: {key} must be a list, got {value!r}")
        return [_coerce(item, item_type, key, where) for item in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 5e-5 as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str and isinstance(value, str):
        return value
    raise RecipeError(f"{where}: {key} must be {_type_name(tp)}, got {value!r}")


def _build(cls: type, values: Any, prefix: str, where: str) -> Any:
    if not isinstance(values, dict):
        raise RecipeError(f"{where}: {prefix or 'the recipe'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(names)}"
            raise RecipeError(f"{where}: unknown key {full!r}{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value if value is not None else {}, f"{full}.", where)
        else:
            kwargs[key] = _coerce(value, tp, full, where)
            if full in _CHOICES and kwargs[key] not in _CHOICES[full]:
                raise RecipeError(f"{where}: {full} must be one of {', '.join(_CHOICES[full])}, got {value!r}")
    return cls(**kwargs)


def apply_override(values: dict[str, Any], override: str) -> None:
    """Apply one ``section.key=value`` override (the value is read as YAML) to a recipe dict."""
    if "=" not in override:
        raise RecipeError(f"override {override!r} must look like section.key=value")
    dotted, raw = override.split("=", 1)
    parts = [p for p in dotted.strip().split(".") if p]
    if not parts:
        raise RecipeError(f"override {override!r} has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = values
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"override {override!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def recipe_from_dict(values: dict[str, Any], where: str = "recipe") -> Recipe:
    """Validate a recipe dict (as read from YAML) into a ``Recipe``."""
    recipe = _build(Recipe, values, "", where)
    if recipe.model.load_in_4bit and recipe.model.dtype == "float32":
        raise RecipeError(f"{where}: model.load_in_4bit needs a 16-bit model.dtype (auto or bfloat16)")
    return recipe


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe path as given, or the name of a recipe shipped with the toolkit (``smollm2-135m-cpu``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name.removesuffix(".yaml")
    for folder in (Path(__file__).parent / "_recipes", Path(__file__).parent.parent / "recipes"):
        candidate = folder / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    raise RecipeError(f"{name_or_path}: no such recipe file")


def load_recipe(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a YAML recipe, apply ``key=value`` overrides, and validate it."""
    path = find_recipe(name_or_path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise RecipeError(f"{path}:{line} not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections")
    values.setdefault("name", path.stem)
    for override in overrides:
        apply_override(values, override)
    text = yaml.safe_dump(values)
    for secret in SECRET_NAMES:
        if secret.lower() in text.lower():
            raise RecipeError(f"{path}: recipes must not hold {secret}; set it in the environment instead")
    return recipe_from_dict(values, where=str(path))
