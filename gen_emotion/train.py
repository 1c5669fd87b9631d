"""LoRA (or QLoRA) supervised fine-tuning with TRL's ``SFTTrainer``.

Tweets become conversational prompt-completion examples, so the loss is on the assistant turn
only; a slice of the training rows is kept aside for validation loss, which picks the
checkpoint that is saved. The adapter and tokenizer land in ``RUN_DIR/adapter``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.data import EmotionData
from gen_emotion.errors import GenEmotionError
from gen_emotion.models import resolve_model
from gen_emotion.prompts import build_example, load_templates, truncate_text
from gen_emotion.recipes import Recipe

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoints"
TRAINING_SUMMARY = "training.json"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def torch_dtype(name: str, *, for_cuda: bool) -> Any:
    """The torch dtype for a recipe dtype name; ``auto`` is bf16 on CUDA and fp32 on CPU."""
    import torch

    if name == "auto":
        return torch.bfloat16 if for_cuda else torch.float32
    return getattr(torch, name)


def load_tokenizer(model_path: str, recipe: Recipe) -> Any:
    """The model's tokenizer, with a pad token and right padding for training."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        model_path, revision=recipe.model.revision, trust_remote_code=recipe.model.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(recipe: Recipe) -> Any:
    """bitsandbytes 4-bit nf4 with double quantisation, or ``None`` when the recipe does not ask for it."""
    if not recipe.model.load_in_4bit:
        return None
    if not cuda_available():
        raise GenEmotionError(
            f"recipe {recipe.name!r} sets model.load_in_4bit (QLoRA), which needs a CUDA GPU and bitsandbytes; "
            "this machine has no CUDA: run it on a GPU pod or override model.load_in_4bit=false"
        )
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load_model(model_path: str, recipe: Recipe) -> Any:
    """The base causal LM, quantised to 4 bits when the recipe asks (CUDA only)."""
    from transformers import AutoModelForCausalLM

    quant = quantization_config(recipe)
    on_cuda = cuda_available()
    kwargs: dict[str, Any] = {
        "revision": recipe.model.revision,
        "trust_remote_code": recipe.model.trust_remote_code,
        "dtype": torch_dtype(recipe.model.dtype, for_cuda=on_cuda),
    }
    if recipe.model.attn_implementation:
        kwargs["attn_implementation"] = recipe.model.attn_implementation
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": 0}
    return AutoModelForCausalLM.from_pretrained(model_path, **kwargs)


def split_train_eval(n_rows: int, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """Seeded indices of the rows to train on and the rows kept for validation loss."""
    order = np.random.default_rng(recipe.train.seed).permutation(n_rows)
    n_eval = min(recipe.data.eval_rows, max(n_rows - 1, 0))
    eval_idx, train_idx = order[:n_eval], order[n_eval:]
    if recipe.data.max_train_rows is not None:
        train_idx = train_idx[: recipe.data.max_train_rows]
    if len(train_idx) == 0:
        raise GenEmotionError("no training rows left after setting aside data.eval_rows")
    return np.sort(train_idx), np.sort(eval_idx)


def build_dataset(data: EmotionData, tokenizer: Any, recipe: Recipe) -> Any:
    """A ``datasets.Dataset`` of conversational prompt-completion examples."""
    from datasets import Dataset

    if data.labels is None:
        raise GenEmotionError(f"{data.source}: training needs labels")
    templates = load_templates(recipe.prompt.template)
    rows = [
        build_example(
            truncate_text(tokenizer, text, recipe.prompt.max_text_tokens),
            vector,
            templates,
            recipe.prompt.target_format,
        )
        for text, vector in zip(data.texts, data.labels)
    ]
    return Dataset.from_list(rows)


def check_example_lengths(dataset: Any, tokenizer: Any, recipe: Recipe) -> int:
    """The longest example's tokens (training or validation); an error when it exceeds
    ``train.max_length``, which TRL would cut (dropping the target, or the whole example, without a word)."""
    longest = 0
    for example in dataset:
        if isinstance(example["prompt"], list):
            messages = example["prompt"] + example["completion"]
            text = tokenizer.apply_chat_template(messages, tokenize=False)
        else:
            text = example["prompt"] + example["completion"]
        longest = max(longest, len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    limit = recipe.train.max_length
    if limit is not None and not recipe.train.padding_free and longest > limit:
        raise GenEmotionError(
            f"recipe {recipe.name!r}: the longest training example is {longest} tokens (prompt template "
            f"{recipe.prompt.template!r}, tweets cut at prompt.max_text_tokens={recipe.prompt.max_text_tokens}, "
            f"target), over train.max_length={limit}, which would cut its target: raise train.max_length"
        )
    return longest


def lora_config(recipe: Recipe, task_type: str = "CAUSAL_LM") -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.lora.r,
        lora_alpha=recipe.lora.alpha,
        lora_dropout=recipe.lora.dropout,
        target_modules=recipe.lora.target_modules,
        task_type=task_type,
    )


def trainer_arguments(recipe: Recipe, output_dir: Path, has_eval: bool) -> dict[str, Any]:
    """The ``TrainingArguments`` keywords that the recipe's ``train`` section sets, shared by the SFT
    and classification-head trainers; with validation, the best checkpoint by loss is kept."""
    t = recipe.train
    if has_eval and t.save_steps % t.eval_steps != 0:
        raise GenEmotionError(
            f"recipe {recipe.name!r}: train.save_steps ({t.save_steps}) must be a multiple of "
            f"train.eval_steps ({t.eval_steps}) to keep the checkpoint with the best validation loss"
        )
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler,
        "warmup_steps": t.warmup_steps,
        "weight_decay": t.weight_decay,
        "optim": t.optim,
        "bf16": t.bf16,
        "use_cpu": not cuda_available(),
        "gradient_checkpointing": t.gradient_checkpointing,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": t.eval_steps,
        "save_strategy": "steps",
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "load_best_model_at_end": has_eval,
        "metric_for_best_model": "eval_loss" if has_eval else None,
        "greater_is_better": False if has_eval else None,
        "logging_steps": t.logging_steps,
        "report_to": t.report_to,
        "seed": t.seed,
        "data_seed": t.seed,
        "dataloader_num_workers": 0,
    }


def use_liger(recipe: Recipe) -> bool:
    """Whether Liger kernels apply: asked for, on CUDA, and ``liger-kernel`` installed."""
    if not recipe.train.liger_kernel or not cuda_available():
        return False
    import importlib.util

    if importlib.util.find_spec("liger_kernel") is None:
        raise GenEmotionError(
            "train.liger_kernel is set but liger-kernel is not installed: pip install liger-kernel "
            "(or override train.liger_kernel=false)"
        )
    return True


def sft_config(recipe: Recipe, output_dir: Path, has_eval: bool) -> Any:
    """TRL's ``SFTConfig`` from the recipe's ``train`` section (loss on the completion only).

    Speed levers (each measured in ``bench/train_speed.py``): ``padding_free`` flattens a batch into one
    row (TRL's collator; transformers builds the block-diagonal mask from ``position_ids``, sdpa or flash
    attention alike), else ``group_by_length`` draws batches of similar length; ``liger_kernel`` on CUDA.
    """
    from trl import SFTConfig

    t = recipe.train
    return SFTConfig(
        **trainer_arguments(recipe, output_dir, has_eval),
        # Padding-free rows are not cut (TRL refuses a max_length there); the tweet is, before templating.
        max_length=None if t.padding_free else t.max_length,
        completion_only_loss=True,
        padding_free=t.padding_free,
        train_sampling_strategy="group_by_length" if t.group_by_length and not t.padding_free else "random",
        use_liger_kernel=use_liger(recipe),
    )


def _completion_loss_trainer() -> type:
    """``SFTTrainer`` whose CPU loss projects only the completion positions through the LM head.

    TRL's fused LM head scores only labelled positions on Triton devices (CUDA) but every position
    elsewhere: on CPU that is a full-vocabulary pass (49k x hidden) over every prompt token, for a
    loss on the few target tokens. Here, on CPU, the backbone runs once and only the positions whose
    next token is labelled go through the head. Elsewhere TRL's own loss is used unchanged.
    """
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    class CompletionLossTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not self.args.completion_loss_only_positions or next(model.parameters()).device.type != "cpu":
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if model.training else "eval"
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            labels = inputs["labels"][:, 1:]
            backbone_inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
            mask = labels != -100
            # The backbone is called directly, past the forward that accelerate wrapped in autocast.
            with self.accelerator.autocast():
                hidden = base.base_model(**backbone_inputs, use_cache=False).last_hidden_state[:, :-1]
            # The head runs in fp32 on the few target positions: cheap, and bf16 logits add loss noise.
            head = base.get_output_embeddings()
            logits = F.linear(hidden[mask].float(), head.weight.float())
            targets = labels[mask]
            denominator = num_items_in_batch if num_items_in_batch is not None else mask.sum().clamp(min=1)
            loss = F.cross_entropy(logits, targets, reduction="sum") / denominator
            with torch.no_grad():
                accuracy = (logits.argmax(-1) == targets).float().mean().item() if len(targets) else 0.0
            self._metrics[mode]["mean_token_accuracy"].append(accuracy)
            if mode == "train":  # real tokens: the attention mask's ones, or the flattened row (padding-free)
                attention = inputs.get("attention_mask")
                real = int(attention.sum()) if attention is not None else inputs["input_ids"].numel()
                self._total_train_tokens += real
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return (loss, None) if return_outputs else loss

    return CompletionLossTrainer


def train(recipe: Recipe, data: EmotionData, run_dir: Path) -> dict[str, Any]:
    """Fine-tune the recipe's model on ``data``; save the adapter and tokenizer in ``run_dir/adapter``.

    Resumes from the last checkpoint in ``run_dir/checkpoints`` if an earlier run was interrupted.
    Returns training figures (steps, losses, seconds).
    """
    started = time.perf_counter()
    model_path = resolve_model(recipe.model.name)
    tokenizer = load_tokenizer(model_path, recipe)
    train_idx, eval_idx = split_train_eval(len(data), recipe)
    train_set = build_dataset(data.subset(train_idx), tokenizer, recipe)
    eval_set = build_dataset(data.subset(eval_idx), tokenizer, recipe) if len(eval_idx) else None
    for dataset in (train_set, eval_set) if eval_set is not None else (train_set,):
        check_example_lengths(dataset, tokenizer, recipe)
    log.info("training on %d rows, validation loss on %d rows", len(train_idx), len(eval_idx))

    checkpoints = run_dir / CHECKPOINT_DIR
    args = sft_config(recipe, checkpoints, has_eval=eval_set is not None)
    args.completion_loss_only_positions = recipe.train.completion_positions_only
    trainer = _completion_loss_trainer()(
        model=load_model(model_path, recipe),
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=lora_config(recipe),
    )
    resume = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    if resume:
        log.info("resuming training from the last checkpoint in %s", checkpoints)
    result = trainer.train(resume_from_checkpoint=True if resume else None)

    adapter_dir = run_dir / ADAPTER_DIR
    trainer.save_model(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    history = trainer.state.log_history
    (run_dir / "train_log.json").write_text(json.dumps(history, indent=1))
    eval_losses = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
    summary = {
        "train_rows": int(len(train_idx)),
        "eval_rows": int(len(eval_idx)),
        "steps": int(trainer.state.global_step),
        "train_loss": float(result.training_loss),
        "best_eval_loss": float(min(eval_losses)) if eval_losses else None,
        "best_checkpoint": Path(trainer.state.best_model_checkpoint).name
        if trainer.state.best_model_checkpoint
        else None,
        "train_tokens": int(getattr(trainer, "_total_train_tokens", 0)),
        "train_runtime_s": round(float(result.metrics.get("train_runtime", 0.0)), 2),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (run_dir / TRAINING_SUMMARY).write_text(json.dumps(summary, indent=2))
    shutil.rmtree(checkpoints, ignore_errors=True)  # the adapter holds the chosen weights
    log.info("training done: %s", summary)
    return summary
