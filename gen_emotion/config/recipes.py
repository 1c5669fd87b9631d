"""Recipes: one YAML file per model setup, declared here once as typed dataclasses.

Every field is declared with ``arg`` (``config``, the typed-config engine): its default, its help, and its
range or choices. ``load_recipe`` reads a YAML file (UTF-8, no key given twice), applies ``section.key=value``
overrides, and checks the whole recipe (``recipe_from_dict``: types, ranges, choices, then ``check_recipe`` for
what ties fields together, a named prompt template included: ``template_dir``) before anything is written or
rented; no recipe holds a secret (``redaction.SECRET_NAMES``). ``catalog`` lists the shipped recipes and shows
a resolved one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gen_emotion.config.choices import BEST_MODEL_METRICS, LR_SCHEDULERS, OPTIMIZERS, TRACKERS
from gen_emotion.config.fields import ConfigError, apply_override, arg, build, read_yaml
from gen_emotion.config.shipped import shipped_folders, shipped_templates, template_dir
from gen_emotion.config.task_kinds import TASK_KINDS, task_kind
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LabelSet
from gen_emotion.core.redaction import SECRET_NAMES
from gen_emotion.data.dataset import Columns
from gen_emotion.data.sources import DataSource

FROM_DATA = "from_data"
FROM_HEADER = "from_header"
"""The older name of ``from_data``: both take the labels from the data."""
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class RecipeError(GenEmotionError):
    """A recipe file or override is invalid."""


@contextmanager
def _recipe_errors() -> Iterator[None]:
    """The config engine's errors (``ConfigError``) in a recipe, as ``RecipeError``s with the same message."""
    try:
        yield
    except ConfigError as err:
        raise RecipeError(str(err)) from None


@dataclass
class ModelArgs:
    """Which model to tune and how to load it."""

    name: str = arg("smollm2-135m-instruct", "a hub id, a local model folder, or an embedded model")
    revision: str | None = arg(None, "hub revision (branch, tag or commit) to pin")
    trust_remote_code: bool = arg(False, "run the model's own Python code from the hub; only for models you trust")
    load_in_4bit: bool = arg(False, "QLoRA: the base model in 4-bit nf4 with double quantisation (CUDA only)")
    dtype: str = arg(
        "auto", "weights: auto (bf16 on CUDA, fp32 on CPU)", choices=("auto", "bfloat16", "float16", "float32")
    )
    attn_implementation: str | None = arg(
        None,
        "attention kernels; None lets transformers choose",
        choices=("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention"),
    )


@dataclass
class PromptArgs:
    """How a tweet becomes chat messages and how the labels are written."""

    template: str = arg("default", f"a folder under prompts/ ({', '.join(shipped_templates())}) or a path to one")
    target_format: str = arg(
        "labels",
        "labels ('anger, joy' / 'none') or python_list (original notebooks)",
        choices=("labels", "python_list"),
    )
    max_text_tokens: int = arg(128, "tweets longer than this many tokens are cut (never dropped)", low=1)
    template_date: str = arg(
        "26 Jul 2024",
        "the date chat templates that print today's date (Llama 3.x) are given, pinned for train and predict",
    )


@dataclass
class DataArgs:
    """Which columns of the data hold what, and how the training split is split."""

    folds: int = arg(
        10, "multilabel-stratified folds of the training split (unused by run with a validation split)", low=2
    )
    fold: int = arg(0, "the fold held out for scoring (0 .. folds-1), where no validation split is given", low=0)
    seed: int = arg(42, "seed of the fold split", low=0)
    max_train_rows: int | None = arg(None, "train on at most this many rows (a seeded subset); None for all", low=1)
    eval_rows: int = arg(200, "training rows kept aside for validation loss and checkpoint choice (0: none)", low=0)
    labels: str | list[Any] | None = arg(
        None,
        "the labels in order: names, or {name, aliases, description} entries; from_data: the data's own (the "
        "ClassLabel names, every 0/1 column but the ID and text ones, or the names a label_column holds, sorted; "
        "from_header is the same); None: the 11 SemEval-2018 E-c labels",
    )
    none_label: str | None = arg(
        None,
        "a label meaning no other label (GoEmotions' neutral): what the model writes for none, and what an empty "
        "label_column list stands for",
    )
    id_column: str | None = arg(
        "ID", "the ID column of the data; None: the data has none, IDs are row numbers (from 0 in each split)"
    )
    text_column: str = arg("Tweet", "the text column of the data")
    label_column: str | None = arg(
        None,
        "a column holding each row's labels as a list (ClassLabel ids or label names, GoEmotions' labels) "
        "instead of one 0/1 column per label",
    )
    dataset_config: str | None = arg(
        None, "the config of a dataset --data loads with datasets.load_dataset (GoEmotions' simplified)"
    )


@dataclass
class LoraArgs:
    """The peft ``LoraConfig``."""

    r: int = arg(16, "LoRA rank", low=1)
    alpha: int = arg(32, "LoRA scaling numerator (scale = alpha / r)", low=1)
    dropout: float = arg(0.05, "dropout on the LoRA inputs (0 is fastest)", low=0, high=0.9)
    target_modules: list[str] = arg(
        help="module names that get adapters",
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )


@dataclass
class TrainArgs:
    """Settings passed to TRL's ``SFTConfig`` (or transformers' ``TrainingArguments`` for classifiers)."""

    learning_rate: float = arg(2e-4, "peak learning rate", above=0, high=1)
    epochs: float = arg(1.0, "passes over the training rows", above=0)
    max_steps: int = arg(-1, "stop after this many optimiser steps (-1: run the epochs)", low=-1)
    batch_size: int = arg(8, "sequences per device and step", low=1)
    grad_accum: int = arg(1, "micro-batches per optimiser step", low=1)
    max_length: int = arg(256, "token cap of a whole example (prompt + target); longer is an error", low=8)
    warmup_steps: int = arg(0, "linear warm-up steps", low=0)
    weight_decay: float = arg(0.0, "AdamW weight decay", low=0, high=1)
    lr_scheduler: str = arg("linear", "learning-rate schedule", choices=LR_SCHEDULERS)
    optim: str = arg("adamw_torch", "optimizer (transformers' name)", choices=OPTIMIZERS)
    bf16: bool = arg(
        True, "bf16 autocast on CUDA (the weights bf16 too) and CPUs with AMX or AVX512-BF16; fp32 on other CPUs"
    )
    gradient_checkpointing: bool = arg(False, "trade compute for memory; only where activations do not fit")
    completion_positions_only: bool = arg(True, "CPU: only the target positions go through the LM head")
    padding_free: bool = arg(False, "a batch as one row without padding (position_ids restart per example)")
    group_by_length: bool = arg(True, "batches of similar length (less padding); unused with padding_free")
    liger_kernel: bool = arg(False, "CUDA: Liger's Triton kernels (liger-kernel); ignored on CPU")
    eval_steps: int = arg(50, "steps between validations (on data.eval_rows)", low=1)
    save_steps: int = arg(50, "steps between checkpoints (a multiple of eval_steps when validating)", low=1)
    logging_steps: int = arg(10, "steps between log lines", low=1)
    save_total_limit: int = arg(2, "checkpoints kept while training", low=1)
    best_model_metric: str = arg(
        "loss",
        "with validation (data.eval_rows): the figure that chooses the checkpoint kept, and that early stopping "
        "watches: loss, or macro_f1 (task: classify; the validation rows' macro-F1 at 0.5)",
        choices=BEST_MODEL_METRICS,
    )
    early_stopping_patience: int | None = arg(
        None,
        "stop training after this many validations without a better best_model_metric (needs data.eval_rows); "
        "None: never stop early",
        low=1,
    )
    report_to: list[str] = arg(
        help="none, or the trackers that get the training loss and the held-out figures (docs/tracking.md); "
        'each needs the track extra (pip install "gen-emotion[track]") where it trains',
        factory=lambda: ["none"],
        choices=TRACKERS,
    )
    seed: int = arg(42, "seed of training (row order, LoRA init, dropout)", low=0)


@dataclass
class GenerateArgs:
    """How predictions are generated."""

    backend: str = arg("transformers", "generation backend", choices=("transformers", "vllm"))
    batch_size: int = arg(32, "prompts per batch (transformers backend)", low=1)
    max_new_tokens: int | None = arg(None, "None: just enough for the longest string of the output grammar", low=1)
    constrained: bool = arg(True, "constrain outputs to the output grammar (every output parses)")
    dtype: str = arg(
        "bfloat16",
        "dtype of the merged model at generation time (bfloat16: float32 on CPUs without bf16)",
        choices=("bfloat16", "float16", "float32"),
    )
    tensor_parallel_size: int = arg(1, "vLLM: GPUs a model is split over", low=1, high=8)
    gpu_memory_utilization: float = arg(
        0.9, "vLLM on a GPU: share of its memory for weights and KV cache", above=0, high=1
    )
    probabilities: bool = arg(False, "also estimate per-label probabilities and tune thresholds on them")
    probability_source: str = arg(
        "branches",
        "samples: the share of num_samples sampled outputs naming a label; branches: a label's probability at its "
        "place in the greedy output (top-k log-probabilities of the greedy pass, no extra decoding)",
        choices=("samples", "branches"),
    )
    branch_top_k: int = arg(20, "branches: likeliest tokens kept per greedy step", low=2, high=100)
    num_samples: int = arg(8, "sampled outputs per tweet for the probabilities", low=1)
    temperature: float = arg(1.0, "sampling temperature for the probabilities", above=0)
    shard_size: int = arg(256, "rows per saved shard of predictions (a resumed run restarts at the last one)", low=1)
    vllm_lora: bool = arg(False, "vLLM: serve the adapter with LoRARequest instead of a merged copy")
    quantized_base: bool = arg(
        False,
        "QLoRA (model.load_in_4bit): serve the adapter on the 4-bit nf4 base it was trained against (vLLM: "
        "bitsandbytes with generate.vllm_lora; transformers: the adapter unmerged) instead of on the bf16 base; CUDA",
    )
    vllm_max_num_seqs: int | None = arg(None, "vLLM: cap on sequences per engine step (None: vLLM's default)", low=1)
    vllm_compile: bool = arg(
        True,
        "vLLM: torch.compile the model (and capture CUDA graphs on a GPU): faster steps after a slower start; false "
        "runs eager (enforce_eager), which starts sooner, for short jobs",
    )


@dataclass
class ClassifierArgs:
    """The classification-head path (``task: classify``) and the TF-IDF baseline (``task: tfidf``)."""

    pos_weight_power: float = arg(0.5, "per-label pos_weight = (negatives / positives) ** power (0: none)", low=0)
    pos_weight_cap: float | None = arg(10.0, "upper bound on a label's pos_weight (None: no cap)", above=0)
    use_lora: bool = arg(False, "LoRA (SEQ_CLS, the head trained in full) instead of full fine-tuning")
    max_length: int = arg(128, "token cap of a tweet", low=1)
    predict_batch_size: int = arg(64, "tweets per forward pass when predicting", low=1)
    group_by_length: bool = arg(True, "batch tweets of similar length together")
    logreg_c: float = arg(4.0, "TF-IDF baseline: inverse regularisation C of each label's regression", above=0)
    char_ngrams: bool = arg(True, "TF-IDF baseline: add character 2-5-grams to the word 1-2-grams")
    demojize: bool = arg(False, "emojis as their names (😂 -> face with tears of joy) for tokenizers without them")
    pooling: str = arg(
        "model",
        "model: the architecture's own classification head (the [CLS] pooler of BERT, the last token of a decoder); "
        "mean: a linear head over the mean of the token states, what sentence-transformers checkpoints are trained "
        "for (full fine-tuning only)",
        choices=("model", "mean"),
    )


@dataclass
class DistillArgs:
    """Soft targets for a classifier: a teacher's probabilities beside the labels (``distill`` sets them)."""

    teacher: str | None = arg(
        None,
        "a probabilities CSV (as a cv or ensemble folder's oof_probs.csv) with a soft target for every training row",
    )
    alpha: float = arg(0.5, "the soft targets' share of the loss (0: the labels only, 1: the teacher's)", low=0, high=1)
    temperature: float = arg(1.0, "both logits are divided by it in the soft term, scaled by its square", above=0)


@dataclass
class Recipe:
    """One model setup, end to end."""

    name: str = arg("recipe", "the recipe's name (its file name); names run folders")
    description: str = arg("", "one line on what the recipe is for")
    task: str = arg("generate", "generate (SFT to write the labels), classify or tfidf", choices=tuple(TASK_KINDS))
    model: ModelArgs = arg(factory=ModelArgs)
    prompt: PromptArgs = arg(factory=PromptArgs)
    data: DataArgs = arg(factory=DataArgs)
    lora: LoraArgs = arg(factory=LoraArgs)
    train: TrainArgs = arg(factory=TrainArgs)
    generate: GenerateArgs = arg(factory=GenerateArgs)
    classifier: ClassifierArgs = arg(factory=ClassifierArgs)
    distill: DistillArgs = arg(factory=DistillArgs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --- Checking ------------------------------------------------------------------------------------------------


def check_recipe(recipe: Recipe, where: str) -> None:
    """What ties fields together, checked once for every recipe before anything runs."""
    if not _SAFE_NAME.fullmatch(recipe.name):
        raise RecipeError(f"{where}: name {recipe.name!r} must be letters, digits, '.', '_' or '-' (it names folders)")
    d, t, m = recipe.data, recipe.train, recipe.model
    if d.fold >= d.folds:
        raise RecipeError(f"{where}: data.fold must be in 0..{d.folds - 1} (data.folds={d.folds}), got {d.fold}")
    kind = task_kind(recipe.task)
    if d.eval_rows > 0 and kind.transformers_model and t.save_steps % t.eval_steps:
        raise RecipeError(
            f"{where}: train.save_steps ({t.save_steps}) must be a multiple of train.eval_steps ({t.eval_steps}) "
            "to keep the checkpoint with the best validation figure"
        )
    _check_training_choices(recipe, where)
    if m.load_in_4bit and m.dtype == "float32":
        raise RecipeError(f"{where}: model.load_in_4bit needs a 16-bit model.dtype (auto or bfloat16)")
    if m.load_in_4bit and kind.full_finetune(recipe):
        raise RecipeError(
            f"{where}: model.load_in_4bit needs classifier.use_lora: true (4-bit weights cannot be fine-tuned in full)"
        )
    if recipe.classifier.pooling == "mean" and recipe.classifier.use_lora:
        raise RecipeError(f"{where}: classifier.pooling: mean needs classifier.use_lora: false (full fine-tuning)")
    if recipe.distill.teacher is not None and not kind.soft_targets:
        raise RecipeError(f"{where}: distill.teacher trains on soft targets, which task {recipe.task!r} cannot use")
    _check_labels(recipe, where)
    g = recipe.generate
    if g.probabilities and g.probability_source == "samples" and g.num_samples < 2:
        raise RecipeError(f"{where}: generate.probabilities needs generate.num_samples of at least 2")
    if g.probabilities and g.probability_source == "branches" and recipe.prompt.target_format != "labels":
        raise RecipeError(f"{where}: generate.probability_source: branches needs prompt.target_format: labels")
    _check_quantized_base(recipe, where)
    if kind.transformers_model:
        _check_template(recipe, where)


def _check_training_choices(recipe: Recipe, where: str) -> None:
    """``train.report_to`` names ``none`` alone; macro-F1 validation is the classifier's; early stopping needs
    validation rows and a Trainer."""
    t, kind = recipe.train, task_kind(recipe.task)
    if "none" in t.report_to and len(t.report_to) > 1:
        raise RecipeError(f"{where}: train.report_to names none and a tracker; name one or the other")
    if t.best_model_metric == "macro_f1" and (not kind.transformers_model or kind.generates_text):
        raise RecipeError(
            f"{where}: train.best_model_metric: macro_f1 is for task: classify (a {recipe.task} task validates by loss)"
        )
    if t.early_stopping_patience is not None and (recipe.data.eval_rows == 0 or not kind.transformers_model):
        raise RecipeError(
            f"{where}: train.early_stopping_patience needs validation rows (data.eval_rows above 0) and a task that "
            "trains a transformers model"
        )


def _check_quantized_base(recipe: Recipe, where: str) -> None:
    """``generate.quantized_base`` serves a QLoRA adapter on its 4-bit base, which takes no merged adapter."""
    if not recipe.generate.quantized_base:
        return
    if not task_kind(recipe.task).generates_text or not recipe.model.load_in_4bit:
        raise RecipeError(
            f"{where}: generate.quantized_base serves a QLoRA adapter on its 4-bit base: it needs task: generate "
            "and model.load_in_4bit: true"
        )
    if recipe.generate.backend == "vllm" and not recipe.generate.vllm_lora:
        raise RecipeError(
            f"{where}: generate.quantized_base with the vllm backend needs generate.vllm_lora: true "
            "(an adapter is not merged into 4-bit weights)"
        )


def _check_labels(recipe: Recipe, where: str) -> None:
    spec = recipe.data.labels
    if isinstance(spec, str):
        if spec not in (FROM_DATA, FROM_HEADER):
            raise RecipeError(f"{where}: data.labels must be a list of labels or {FROM_DATA}, got {spec!r}")
        return
    try:
        LabelSet.from_spec(spec, recipe.data.none_label)
    except ValueError as err:
        raise RecipeError(f"{where}: data.labels: {err}") from None


def from_data(recipe: Recipe) -> bool:
    """Whether the recipe takes its labels from the data (``data.labels: from_data``)."""
    return recipe.data.labels in (FROM_DATA, FROM_HEADER)


def label_set(recipe: Recipe) -> LabelSet:
    """The recipe's labels (its ``from_data`` resolved first: ``with_header_labels``)."""
    if from_data(recipe):
        raise ValueError(f"data.labels is {recipe.data.labels}: resolve it from the data first (with_header_labels)")
    return LabelSet.from_spec(recipe.data.labels, recipe.data.none_label)


def columns(recipe: Recipe) -> Columns:
    """Which columns of the recipe's data hold the ID, the text and the labels."""
    d = recipe.data
    names = None if from_data(recipe) else LabelSet.from_spec(d.labels, None).names
    return Columns(d.id_column, d.text_column, names, d.label_column, d.none_label)


def data_source(recipe: Recipe, data: str | Path, val: Path | None = None, rows: int | None = None) -> DataSource:
    """What ``--data`` (a folder or a dataset id), ``--val`` and ``--rows`` read, with the recipe's columns."""
    return DataSource(str(data), columns(recipe), recipe.data.dataset_config, val, rows)


def with_header_labels(recipe: Recipe, names: Sequence[str]) -> Recipe:
    """The recipe with ``data.labels: from_data`` replaced by the training data's labels (checked)."""
    if not from_data(recipe):
        return recipe
    values = recipe.to_dict()
    values["data"]["labels"] = list(names)
    return recipe_from_dict(values, where=f"recipe {recipe.name!r} with the labels of its data")


def _check_template(recipe: Recipe, where: str) -> None:
    try:
        template_dir(recipe.prompt.template)
    except GenEmotionError as err:
        raise RecipeError(f"{where}: prompt.template: {err}") from None


def recipe_from_dict(values: dict[str, Any], where: str = "recipe") -> Recipe:
    """Validate a recipe dict (as read from YAML) into a ``Recipe``."""
    with _recipe_errors():
        recipe = build(Recipe, values, where, whole="the recipe")
    check_recipe(recipe, where)
    return recipe


# --- Files and overrides ----------------------------------------------------------------------------------------


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe path as given, or the name of a recipe shipped with the toolkit (``smollm2-135m-cpu``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name.removesuffix(".yaml")
    for folder in shipped_folders():
        candidate = folder / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    raise RecipeError(f"{name_or_path}: no such recipe file")


def load_recipe(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a YAML recipe, apply ``key=value`` overrides, and validate it."""
    path = find_recipe(name_or_path)
    with _recipe_errors():
        values = read_yaml(path)
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections")
    values.setdefault("name", path.stem)
    with _recipe_errors():
        for override in overrides:
            apply_override(values, override)
    text = yaml.safe_dump(values)
    for secret in SECRET_NAMES:
        if secret.lower() in text.lower():
            raise RecipeError(f"{path}: recipes must not hold {secret}; set it in the environment instead")
    return recipe_from_dict(values, where=str(path))
