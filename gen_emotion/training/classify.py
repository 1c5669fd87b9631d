"""The classification-head path (``task: classify``): a sequence classifier with 11 sigmoid outputs.

Encoders (BERT, RoBERTa, MiniLM...) are fully fine-tuned; decoders (Llama, Gemma, Qwen...) get LoRA
adapters (``task_type=SEQ_CLS``) with the score head trained in full, and QLoRA on CUDA when the
recipe sets ``model.load_in_4bit``. The loss is ``BCEWithLogitsLoss`` with a per-label ``pos_weight``
from the training rows, so rare labels (surprise, trust) are not drowned by negatives. Thresholds
are tuned elsewhere on held-out probabilities (``gen_emotion.scoring.thresholds``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import ClassifierArgs, DistillArgs, ModelArgs, Recipe, TrainArgs, label_set
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.dataset import EmotionData
from gen_emotion.models.loading import (
    bf16_autocast,
    cuda_available,
    load_kwargs,
    load_tokenizer,
    remote_code_errors,
    resolve_any_model,
    torch_dtype,
)
from gen_emotion.scoring.metrics import macro_f1
from gen_emotion.training.distillation import distillation_loss, soft_targets
from gen_emotion.training.trainers import CHECKPOINT_DIR, train_and_save, trainer_arguments, training_callbacks

log = logging.getLogger(__name__)

MODEL_DIR = "model"
HEAD_NAMES = ("score", "classifier")
"""Attribute names of the classification head in transformers' ``*ForSequenceClassification`` models."""
MEAN_POOLING_HEAD = "mean_pooling_head.safetensors"
"""The linear head (``weight``, ``bias``) over the mean of the token states, beside the encoder's own
``config.json`` and ``model.safetensors`` (which plain ``AutoModel.from_pretrained`` loads)."""


def pos_weight(labels: np.ndarray, power: float = 0.5, cap: float | None = 10.0) -> np.ndarray:
    """Per-label ``(negatives / positives) ** power``, at most ``cap``; a label with no positive row
    counts as one positive. ``power=0`` gives all ones (plain BCE)."""
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] < 1:
        raise ValueError(f"labels must have shape (n, labels), got {y.shape}")
    positives = y.sum(axis=0)
    negatives = len(y) - positives
    weights = (negatives / np.maximum(positives, 1.0)) ** power
    if cap is not None:
        weights = np.minimum(weights, cap)
    return weights


def _weights_dtype(model: ModelArgs, settings: ClassifierArgs, on_cuda: bool) -> Any:
    """fp32 weights for full fine-tuning under ``auto`` (bf16 autocast does the fast part), else the recipe's."""
    import torch

    if not settings.use_lora and model.dtype == "auto":
        return torch.float32
    return torch_dtype(model.dtype, for_cuda=on_cuda)


def mean_pooling_classifier(encoder: Any) -> Any:
    """A linear head over the mean of ``encoder``'s token states (padding excluded), with the encoder's dropout;
    the head's width is ``encoder.config.num_labels``. Returns logits like a ``*ForSequenceClassification``."""
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    class MeanPoolingClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            config = encoder.config
            self.config = config
            self.encoder = encoder
            dropout = getattr(config, "classifier_dropout", None)
            self.dropout = torch.nn.Dropout(
                dropout if dropout is not None else getattr(config, "hidden_dropout_prob", 0.1)
            )
            weight = next(encoder.parameters())
            self.classifier = torch.nn.Linear(
                config.hidden_size, config.num_labels, device=weight.device, dtype=weight.dtype
            )

        def forward(self, input_ids: Any, attention_mask: Any, **_: Any) -> Any:
            states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled)))

        def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
            self.encoder.gradient_checkpointing_enable(**kwargs)

    return MeanPoolingClassifier()


def load_base_classifier(model_path: str, recipe: Recipe, tokenizer: Any) -> Any:
    """``AutoModelForSequenceClassification`` with one sigmoid output per label, a pad token id, and 4-bit
    weights when the recipe asks for QLoRA; with ``classifier.pooling: mean``, the encoder under a
    ``mean_pooling_classifier`` head."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    names = label_set(recipe).names
    common = {"revision": recipe.model.revision, "trust_remote_code": recipe.model.trust_remote_code}
    with remote_code_errors(recipe.model):
        config = AutoConfig.from_pretrained(
            model_path,
            num_labels=len(names),
            problem_type="multi_label_classification",
            id2label=dict(enumerate(names)),
            label2id={label: i for i, label in enumerate(names)},
            **common,
        )
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = tokenizer.pad_token_id
        dtype = _weights_dtype(recipe.model, recipe.classifier, cuda_available())
        kwargs = {**load_kwargs(recipe.model), "config": config, "dtype": dtype}
        if recipe.classifier.pooling == "mean":
            return mean_pooling_classifier(AutoModel.from_pretrained(model_path, **kwargs))
        model = AutoModelForSequenceClassification.from_pretrained(model_path, **kwargs)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def head_name(model: Any) -> str:
    """The attribute that holds the classification head (``score`` in decoders, ``classifier`` in encoders)."""
    import torch

    for name in HEAD_NAMES:
        if isinstance(getattr(model, name, None), torch.nn.Module):
            return name
    raise GenEmotionError(f"{type(model).__name__}: found no classification head named {' or '.join(HEAD_NAMES)}")


def add_lora(model: Any, recipe: Recipe) -> Any:
    """Wrap ``model`` in LoRA adapters (``SEQ_CLS``) with the classification head trained in full."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if recipe.model.load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=recipe.train.gradient_checkpointing)
    config = LoraConfig(
        r=recipe.lora.r,
        lora_alpha=recipe.lora.alpha,
        lora_dropout=recipe.lora.dropout,
        target_modules=recipe.lora.target_modules,
        task_type="SEQ_CLS",
        modules_to_save=[head_name(model)],
    )
    model = get_peft_model(model, config)
    if bf16_autocast(
        recipe.train.bf16
    ):  # autocast does the bf16 matmuls; keep trainable weights in fp32 (the head too)
        for param in model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
    return model


def demojize(text: str) -> str:
    """Emojis as their names (``😂`` -> ``face with tears of joy``): an encoder whose vocabulary lacks them (MiniLM's
    maps them to ``[UNK]``) reads them as words."""
    import emoji

    return emoji.demojize(text, delimiters=(" ", " ")).replace("_", " ")


def encode(tokenizer: Any, texts: list[str], settings: ClassifierArgs) -> list[list[int]]:
    """Token ids of each text (emojis named when ``classifier.demojize``), truncated to ``classifier.max_length``;
    an empty text gets one pad token (never dropped)."""
    if settings.demojize:
        texts = [demojize(text) for text in texts]
    encoded = tokenizer(list(texts), truncation=True, max_length=settings.max_length)["input_ids"]
    return [ids if ids else [tokenizer.pad_token_id] for ids in encoded]


def build_rows(
    tokenizer: Any, data: EmotionData, settings: ClassifierArgs, soft: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Training rows: token ids, the labels as floats, and the teacher's soft targets where given (``distillation``)."""
    if data.labels is None:
        raise GenEmotionError(f"{data.source}: training needs labels")
    ids = encode(tokenizer, data.texts, settings)
    rows = [{"input_ids": row, "labels": [float(v) for v in vector]} for row, vector in zip(ids, data.labels)]
    for row, targets in zip(rows, soft if soft is not None else []):
        row["soft"] = targets.tolist()
    return rows


def make_collator(tokenizer: Any) -> Any:
    """Pad token ids on the right, build the attention mask, stack the float labels (and soft targets)."""
    import torch

    def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = tokenizer.pad([{"input_ids": r["input_ids"]} for r in rows], padding=True, return_tensors="pt")
        for key in ("labels", "soft"):
            if key in rows[0]:
                batch[key] = torch.tensor([r[key] for r in rows], dtype=torch.float32)
        return dict(batch)

    return collate


def _weighted_bce_trainer() -> type:
    """``Trainer`` whose loss is ``BCEWithLogitsLoss`` with the per-label ``pos_weight`` of the training rows, mixed
    with a teacher's soft targets where the rows carry them (``distillation.distillation_loss``)."""
    from transformers import Trainer

    class WeightedBCETrainer(Trainer):
        loss_is_scaled_for_ga = False  # a mean per micro-batch: let Trainer divide by grad_accum

        def __init__(self, *args: Any, pos_weight: Any, distill: DistillArgs, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.pos_weight = pos_weight
            self.distill = distill

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels, soft = inputs.pop("labels"), inputs.pop("soft", None)
            outputs = model(**inputs)
            logits = outputs.logits.float()
            weight = self.pos_weight.to(device=logits.device)
            loss = distillation_loss(logits, labels, soft, weight, self.distill)
            return (loss, outputs) if return_outputs else loss

    return WeightedBCETrainer


def validation_metrics(prediction: Any) -> dict[str, float]:
    """The Trainer's ``compute_metrics``: the validation rows' macro-F1 with the probabilities cut at 0.5 (a logit
    of 0), logged as ``eval_macro_f1`` beside the validation loss (``train.best_model_metric: macro_f1``)."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    labels = np.asarray(prediction.label_ids)
    return {"macro_f1": macro_f1(labels.round().astype(np.int64), (np.asarray(logits) >= 0).astype(np.int64))}


def training_arguments(train: TrainArgs, settings: ClassifierArgs, output_dir: Path, has_eval: bool) -> Any:
    """transformers' ``TrainingArguments`` from the recipe's ``train`` and ``classifier`` sections."""
    from transformers import TrainingArguments

    checkpointing = train.gradient_checkpointing
    return TrainingArguments(
        **{
            **trainer_arguments(train, output_dir, has_eval),
            "per_device_eval_batch_size": settings.predict_batch_size,
            "gradient_checkpointing_kwargs": {"use_reentrant": False} if checkpointing else None,
            "label_names": ["labels"],
            "remove_unused_columns": False,
            "train_sampling_strategy": "group_by_length" if settings.group_by_length else "random",
        }
    )


def train_classifier(
    recipe: Recipe,
    train_data: EmotionData,
    eval_data: EmotionData | None,
    out_dir: Path,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune the recipe's model as an 11-way multilabel classifier on ``train_data``.

    With ``eval_data`` each validation gives its loss and macro-F1, and the checkpoint with the best
    ``train.best_model_metric`` is kept (early stopping too where the recipe asks). The model (or LoRA
    adapter with the head) and tokenizer land in ``out_dir/model``; an interrupted call resumes from
    the last checkpoint in ``out_dir/checkpoints``. ``callbacks`` are more ``TrainerCallback``s (a benchmark's).
    Returns training figures.
    """
    import torch
    from transformers import set_seed

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = resolve_any_model(recipe.model.name)
    tokenizer = load_tokenizer(model_path, recipe.model, padding_side="right")
    # The head (and a LoRA adapter) start from random weights drawn here, before the Trainer seeds anything:
    # seeded, two runs of one recipe train the same model, and a resumed run ends where an uninterrupted one does.
    set_seed(recipe.train.seed)
    model = load_base_classifier(model_path, recipe, tokenizer)
    if recipe.classifier.use_lora:
        model = add_lora(model, recipe)
    settings = recipe.classifier
    weights = pos_weight(train_data.labels, settings.pos_weight_power, settings.pos_weight_cap)
    soft = soft_targets(recipe.distill, train_data)
    train_rows = build_rows(tokenizer, train_data, settings, soft)
    eval_rows = build_rows(tokenizer, eval_data, settings) if eval_data is not None and len(eval_data) else None
    log.info(
        "classifier %s: training on %d rows%s%s; pos_weight %s",
        recipe.model.name,
        len(train_rows),
        f", validation (loss, macro-F1) on {len(eval_rows)}" if eval_rows else "",
        ""
        if soft is None
        else f", soft targets from {recipe.distill.teacher} (alpha {recipe.distill.alpha:g}, "
        f"temperature {recipe.distill.temperature:g})",
        np.round(weights, 2).tolist(),
    )
    trainer = _weighted_bce_trainer()(
        model=model,
        args=training_arguments(recipe.train, settings, out_dir / CHECKPOINT_DIR, has_eval=eval_rows is not None),
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        data_collator=make_collator(tokenizer),
        processing_class=tokenizer,
        pos_weight=torch.tensor(weights, dtype=torch.float32),
        distill=recipe.distill,
        compute_metrics=validation_metrics if eval_rows is not None else None,
        callbacks=[*training_callbacks(recipe.train, has_eval=eval_rows is not None), *(callbacks or [])],
    )
    summary = {
        "model_dir": str(out_dir / MODEL_DIR),
        "train_rows": len(train_rows),
        "eval_rows": len(eval_rows or []),
        "pos_weight": {label: round(float(w), 4) for label, w in zip(label_set(recipe).names, weights)},
        "lora": recipe.classifier.use_lora,
    }
    summary = train_and_save(trainer, tokenizer, out_dir, MODEL_DIR, summary, started)
    # split_mean_pooling rewrites the saved folder in place (reads model.safetensors, writes it back as two files):
    # one process does it while the others wait at the barrier, as train_and_save does for its own files.
    if recipe.classifier.pooling == "mean" and trainer.accelerator.is_main_process:
        split_mean_pooling(out_dir / MODEL_DIR, model.config)
    trainer.accelerator.wait_for_everyone()
    del trainer, model
    log.info("classifier training done: %s", {k: v for k, v in summary.items() if k != "pos_weight"})
    return summary


def load_trained(model_dir: Path, recipe: Recipe) -> tuple[Any, Any]:
    """A trained classifier and its tokenizer from ``model_dir``, in eval mode (a LoRA adapter is
    put on the recipe's base model and merged unless the base is 4-bit)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file() and not (model_dir / "adapter_config.json").is_file():
        raise GenEmotionError(f"{model_dir}: not a trained classifier folder (no config.json or adapter_config.json)")
    tokenizer = load_tokenizer(str(model_dir), recipe.model, padding_side="right")
    if (model_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        base = load_base_classifier(resolve_any_model(recipe.model.name), recipe, tokenizer)
        model = PeftModel.from_pretrained(base, str(model_dir))
        if not recipe.model.load_in_4bit:
            model = model.merge_and_unload()
    elif (model_dir / MEAN_POOLING_HEAD).is_file():
        model = _load_mean_pooling(model_dir, recipe)
    else:
        from transformers import AutoModelForSequenceClassification

        on_cuda = cuda_available()
        with remote_code_errors(recipe.model):
            model, info = AutoModelForSequenceClassification.from_pretrained(
                str(model_dir),
                dtype=_weights_dtype(recipe.model, recipe.classifier, on_cuda),
                trust_remote_code=recipe.model.trust_remote_code,
                output_loading_info=True,
            )
        _require_every_weight(info, model_dir)
        if on_cuda:
            model = model.to("cuda")
    if cuda_available() and not recipe.model.load_in_4bit and next(model.parameters()).device.type != "cuda":
        model = model.to("cuda")
    return model.eval(), tokenizer


def _require_every_weight(loading_info: dict[str, Any], model_dir: Path) -> None:
    """A trained folder has every weight: refuse one that transformers would start at random."""
    missing = sorted(loading_info.get("missing_keys") or [])
    if missing:
        raise GenEmotionError(f"{model_dir}: its weights lack {missing[0]}; train it again")


def split_mean_pooling(model_dir: Path, config: Any) -> None:
    """Rewrite the state dict the Trainer saved for a ``mean_pooling_classifier`` (gathered from every process)
    as the encoder's own checkpoint plus ``MEAN_POOLING_HEAD``, with the encoder's ``config.json``."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(model_dir / "model.safetensors"))
    parts = {
        prefix: {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        for prefix in ("encoder.", "classifier.")
    }
    save_file(parts["encoder."], str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    save_file(parts["classifier."], str(model_dir / MEAN_POOLING_HEAD), metadata={"format": "pt"})
    config.save_pretrained(str(model_dir))


def _load_mean_pooling(model_dir: Path, recipe: Recipe) -> Any:
    """The ``mean_pooling_classifier`` saved in ``model_dir``, every weight read from it (none left random)."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    with remote_code_errors(recipe.model):
        encoder, info = AutoModel.from_pretrained(
            str(model_dir),
            dtype=_weights_dtype(recipe.model, recipe.classifier, cuda_available()),
            trust_remote_code=recipe.model.trust_remote_code,
            output_loading_info=True,
        )
    _require_every_weight(info, model_dir)
    model = mean_pooling_classifier(encoder)
    try:
        model.classifier.load_state_dict(load_file(str(model_dir / MEAN_POOLING_HEAD)), strict=True)
    except RuntimeError as error:
        raise GenEmotionError(
            f"{model_dir / MEAN_POOLING_HEAD}: not this model's head ({str(error).splitlines()[0]})"
        ) from None
    return model


def _batches(ids: list[list[int]], size: int) -> list[np.ndarray]:
    order = np.argsort([len(row) for row in ids], kind="stable")
    return [order[start : start + size] for start in range(0, len(order), size)]


def length_batches(tokenizer: Any, texts: list[str], recipe: Recipe) -> list[np.ndarray]:
    """The batches ``predict_with`` predicts ``texts`` in: row indices by token count (a stable sort),
    ``classifier.predict_batch_size`` at a time. A row's probabilities depend on the rows padded with it, so the
    rows of whole batches predicted together, in this order, get the numbers that all the texts at once get."""
    return _batches(encode(tokenizer, texts, recipe.classifier), recipe.classifier.predict_batch_size)


def predict_with(model: Any, tokenizer: Any, texts: list[str], recipe: Recipe) -> np.ndarray:
    """Sigmoid probabilities ``(n, 11)`` for ``texts``, in their order (batched by length: ``length_batches``)."""
    import torch

    device = next(model.parameters()).device
    ids = encode(tokenizer, texts, recipe.classifier)
    collate = make_collator(tokenizer)
    probs = np.zeros((len(texts), len(label_set(recipe))), dtype=np.float64)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_autocast(recipe.train.bf16))
    with torch.inference_mode(), autocast:
        for chunk in _batches(ids, recipe.classifier.predict_batch_size):
            batch = {k: v.to(device) for k, v in collate([{"input_ids": ids[i]} for i in chunk]).items()}
            logits = model(**batch).logits.float()
            probs[chunk] = torch.sigmoid(logits).cpu().numpy()
    return probs


def classifier_probabilities(model_dir: Path, recipe: Recipe, data: EmotionData) -> np.ndarray:
    """Per-label probabilities ``(len(data), 11)`` from the classifier trained in ``model_dir``."""
    model, tokenizer = load_trained(model_dir, recipe)
    return predict_with(model, tokenizer, data.texts, recipe)
