"""LoRA (or QLoRA) supervised fine-tuning with TRL's ``SFTTrainer``.

Tweets become token ids once (``prompts.Encoder``): the prompt as the chat template renders it up to the
assistant's answer, then the target and its end-of-turn token, which alone carry the loss. TRL takes the
ids as they are, so the model trains on exactly the ids it is given at inference. A slice of the training
rows is kept aside for validation loss, which picks the checkpoint that is saved. The adapter's weights are
fp32, under QLoRA too (``keep_adapter_in_float32``). The adapter and the prepared tokenizer (its template's date
pinned) land in ``RUN_DIR/adapter``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from gen_emotion.config.recipes import LoraArgs, Recipe, TrainArgs
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.dataset import EmotionData
from gen_emotion.generation.prompts import Encoder, make_encoder
from gen_emotion.models.loading import ADAPTER_DIR, cuda_available, load_causal_lm, load_tokenizer, resolve_model
from gen_emotion.training.trainers import (
    CHECKPOINT_DIR,
    split_train_eval,
    train_and_save,
    trainer_arguments,
    training_callbacks,
)

log = logging.getLogger(__name__)

__all__ = ["ADAPTER_DIR", "train"]


def encode_rows(data: EmotionData, encoder: Encoder) -> list[dict[str, list[int]]]:
    """Training examples as token ids: the prompt (no loss) then the target and its end of turn (the loss)."""
    if data.labels is None:
        raise GenEmotionError(f"{data.source}: training needs labels")
    # completion_mask marks the tokens that carry the loss (TRL labels the zeros -100: ``completion_only_loss``).
    # The prompt is given at inference, never written, and its tokens outnumber the target's many times over: a
    # loss on them would mostly train the model to predict tweets and template text, and would blur the
    # validation loss that picks the checkpoint.
    rows = []
    for text, vector in zip(data.texts, data.labels):
        prompt, completion = encoder.prompt_ids(text), encoder.completion_ids(vector)
        rows.append({"input_ids": prompt + completion, "completion_mask": [0] * len(prompt) + [1] * len(completion)})
    return rows


def build_dataset(data: EmotionData, encoder: Encoder, recipe: Recipe) -> Any:
    """A pre-tokenized ``datasets.Dataset`` (``input_ids``, ``completion_mask``): TRL uses the ids as they are."""
    from datasets import Dataset

    rows = encode_rows(data, encoder)
    check_example_lengths(rows, recipe)
    return Dataset.from_list(rows)


def check_example_lengths(rows: list[dict[str, list[int]]], recipe: Recipe) -> int:
    """The longest example's tokens (training or validation); an error when it exceeds
    ``train.max_length``, which TRL would cut (dropping the target, or the whole example, without a word)."""
    longest = max((len(row["input_ids"]) for row in rows), default=0)
    limit = recipe.train.max_length
    if limit is not None and not recipe.train.padding_free and longest > limit:
        raise GenEmotionError(
            f"recipe {recipe.name!r}: the longest training example is {longest} tokens (prompt template "
            f"{recipe.prompt.template!r}, tweets cut at prompt.max_text_tokens={recipe.prompt.max_text_tokens}, "
            f"target), over train.max_length={limit}, which would cut its target: raise train.max_length"
        )
    return longest


def lora_config(lora: LoraArgs, task_type: str = "CAUSAL_LM") -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=task_type,
    )


def use_liger(train: TrainArgs) -> bool:
    """Whether Liger kernels apply: asked for, on CUDA, and ``liger-kernel`` installed."""
    if not train.liger_kernel or not cuda_available():
        return False
    import importlib.util

    if importlib.util.find_spec("liger_kernel") is None:
        raise GenEmotionError(
            "train.liger_kernel is set but liger-kernel is not installed: pip install liger-kernel "
            "(or override train.liger_kernel=false)"
        )
    return True


def sft_config(t: TrainArgs, output_dir: Path, has_eval: bool) -> Any:
    """TRL's ``SFTConfig`` from the recipe's ``train`` section (loss on the completion only).

    Speed levers (each measured in ``bench/train_speed.py``): ``padding_free`` flattens a batch into one
    row (TRL's collator; transformers builds the block-diagonal mask from ``position_ids``, sdpa or flash
    attention alike), else ``group_by_length`` draws batches of similar length; ``liger_kernel`` on CUDA.
    """
    from trl import SFTConfig

    return SFTConfig(
        **trainer_arguments(t, output_dir, has_eval),
        # Padding-free rows are not cut (TRL refuses a max_length there); the tweet is, before templating.
        max_length=None if t.padding_free else t.max_length,
        completion_only_loss=True,
        padding_free=t.padding_free,
        train_sampling_strategy="group_by_length" if t.group_by_length and not t.padding_free else "random",
        use_liger_kernel=use_liger(t),
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
        def __init__(self, *args: Any, completion_positions_only: bool = True, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.completion_positions_only = completion_positions_only

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # The CPU shortcut calls the backbone itself, past DDP's forward: with several processes it would skip
            # the gradients' all-reduce, so there TRL's own loss runs (as on CUDA).
            on_cpu = next(model.parameters()).device.type == "cpu"
            if not self.completion_positions_only or not on_cpu or self.accelerator.num_processes > 1:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if model.training else "eval"
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            # Position t predicts token t + 1, so the positions that count are those whose next token is labelled
            # (TRL set -100 on the prompt and on the padding). Padding-free, a batch is one row of examples back
            # to back: an example's last position faces the next one's first token, which TRL labels -100
            # too (its position_ids restart at 0), so no loss crosses examples.
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


def keep_adapter_in_float32(model: Any) -> int:
    """Upcast the trainable (LoRA) weights that are 16-bit to fp32; returns how many tensors were upcast.

    TRL casts the adapter of a 4-bit model to bf16 (``SFTTrainer.__init__``): AdamW then keeps no fp32 copy, and an
    update under half a bf16 step of its weight is rounded away (``bench/adapter_dtype.py`` counts them). The QLoRA
    paper trains the adapter in fp32 over the 4-bit base, as peft does for every other base; the matmuls still run
    in bf16 under autocast. A no-op where the adapter is fp32 already (LoRA, CPU).
    """
    import torch

    upcast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()
            upcast += 1
    return upcast


def sft_trainer(
    lora: LoraArgs, train: TrainArgs, args: Any, model: Any, tokenizer: Any, train_set: Any, eval_set: Any
) -> Any:
    """TRL's trainer (``_completion_loss_trainer``) over ``model`` with the recipe's LoRA adapter, kept in fp32."""
    trainer = _completion_loss_trainer()(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=lora_config(lora),
        completion_positions_only=train.completion_positions_only,
        callbacks=training_callbacks(train, has_eval=eval_set is not None),
    )
    upcast = keep_adapter_in_float32(trainer.model)
    if upcast:
        log.info("LoRA adapter kept in fp32: %d weight tensors upcast from 16 bits", upcast)
    return trainer


def train(recipe: Recipe, data: EmotionData, run_dir: Path) -> dict[str, Any]:
    """Fine-tune the recipe's model on ``data``; save the adapter and tokenizer in ``run_dir/adapter``.

    Resumes from the last checkpoint in ``run_dir/checkpoints`` if an earlier run was interrupted.
    Returns training figures (steps, losses, seconds).
    """
    started = time.perf_counter()
    model_path = resolve_model(recipe.model.name)
    tokenizer = load_tokenizer(model_path, recipe.model)
    encoder = make_encoder(tokenizer, recipe.prompt, recipe.data)
    train_idx, eval_idx = split_train_eval(len(data), recipe.data, recipe.train.seed)
    train_set = build_dataset(data.subset(train_idx), encoder, recipe)
    eval_set = build_dataset(data.subset(eval_idx), encoder, recipe) if len(eval_idx) else None
    log.info("training on %d rows, validation loss on %d rows", len(train_idx), len(eval_idx))

    # The training arguments come before the model: they join the process group under accelerate launch
    # (FSDP's rank-0 loading needs it) and let ZeRO-3 build the model already partitioned.
    args = sft_config(recipe.train, run_dir / CHECKPOINT_DIR, has_eval=eval_set is not None)
    model = load_causal_lm(model_path, recipe.model)
    trainer = sft_trainer(recipe.lora, recipe.train, args, model, tokenizer, train_set, eval_set)
    summary = {"train_rows": int(len(train_idx)), "eval_rows": int(len(eval_idx))}
    summary = train_and_save(trainer, tokenizer, run_dir, ADAPTER_DIR, summary, started)
    log.info("training done: %s", summary)
    return summary
