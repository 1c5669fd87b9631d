"""The SFT step's speed levers: padding-free batches keep examples apart and the loss unchanged. Under QLoRA
the adapter trains in fp32 over the bf16 base.

The trainer tests load the real embedded SmolLM2 (marked ``slow``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gen_emotion.config.recipes import load_recipe
from gen_emotion.core.labels import LABELS
from gen_emotion.data.formats import read_train
from gen_emotion.models.loading import load_causal_lm, load_tokenizer
from gen_emotion.training.sft import build_dataset, lora_config, sft_config, use_liger

RECIPE = "recipes/smollm2-135m-cpu.yaml"


def test_sft_config_maps_the_speed_levers(tmp_path: Path) -> None:
    grouped = sft_config(load_recipe(RECIPE, ["train.padding_free=false"]).train, tmp_path, has_eval=False)
    assert grouped.train_sampling_strategy == "group_by_length" and not grouped.padding_free
    free = sft_config(load_recipe(RECIPE, ["train.padding_free=true"]).train, tmp_path, has_eval=False)
    assert free.padding_free and free.train_sampling_strategy == "random"
    plain = sft_config(
        load_recipe(RECIPE, ["train.padding_free=false", "train.group_by_length=false"]).train, tmp_path, has_eval=False
    )
    assert plain.train_sampling_strategy == "random"
    assert plain.completion_only_loss


def test_liger_is_ignored_without_cuda() -> None:
    assert use_liger(load_recipe(RECIPE, ["train.liger_kernel=true"]).train) is False


def first_batch_loss(overrides: list[str], sample_dir: Path, tmp_path: Path, drop_positions: bool = False) -> tuple:
    """The loss of one batch of the first 4 sample tweets, through our trainer, and the batch."""
    import torch

    from gen_emotion.generation.prompts import make_encoder
    from gen_emotion.models.loading import resolve_model
    from gen_emotion.training.sft import _completion_loss_trainer

    recipe = load_recipe(RECIPE, ["train.batch_size=4", "train.bf16=false", *overrides])
    path = resolve_model(recipe.model.name)
    tokenizer = load_tokenizer(path, recipe.model)
    data = read_train(sample_dir / "train.csv").subset(list(range(4)))
    trainer = _completion_loss_trainer()(
        model=load_causal_lm(path, recipe.model),
        args=sft_config(recipe.train, tmp_path / "out", has_eval=False),
        completion_positions_only=recipe.train.completion_positions_only,
        train_dataset=build_dataset(data, make_encoder(tokenizer, recipe.prompt, recipe.data), recipe),
        processing_class=tokenizer,
        peft_config=lora_config(recipe.lora),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    if drop_positions:
        batch = {k: v for k, v in batch.items() if k != "position_ids"}
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    return float(loss), batch


@pytest.mark.slow
@pytest.mark.parametrize("positions_only", ["true", "false"])
def test_padding_free_batch_has_the_padded_batchs_loss(positions_only: str, sample_dir: Path, tmp_path: Path) -> None:
    lever = f"train.completion_positions_only={positions_only}"
    padded, padded_batch = first_batch_loss([lever, "train.padding_free=false"], sample_dir, tmp_path / "a")
    free, free_batch = first_batch_loss([lever, "train.padding_free=true"], sample_dir, tmp_path / "b")
    # One row, no padding, positions restarting at each of the 4 examples; the same target tokens.
    assert free_batch["input_ids"].shape[0] == 1 and "attention_mask" not in free_batch
    assert int((free_batch["position_ids"][0] == 0).sum()) == 4
    assert free_batch["input_ids"].numel() == int(padded_batch["attention_mask"].sum())
    assert int((free_batch["labels"] != -100).sum()) == int((padded_batch["labels"] != -100).sum())
    assert free == pytest.approx(padded, rel=1e-4)


@pytest.mark.slow
def test_padding_free_without_positions_would_leak_across_examples(sample_dir: Path, tmp_path: Path) -> None:
    """The check above can fail: one causal row without restarting positions gives another loss."""
    padded, _ = first_batch_loss(["train.padding_free=false"], sample_dir, tmp_path / "a")
    leaked, _ = first_batch_loss(["train.padding_free=true"], sample_dir, tmp_path / "b", drop_positions=True)
    assert abs(leaked - padded) > 1e-3


def test_loss_is_exactly_on_the_answer_and_its_end_of_turn(family, sample_dir: Path, tmp_path: Path) -> None:
    """What TRL's SFTTrainer trains on, read back from the trainer itself, for every family's real template."""
    from gen_emotion.generation.prompts import make_encoder
    from gen_emotion.training.sft import _completion_loss_trainer, build_dataset

    name, path, template = family
    recipe = load_recipe(RECIPE, [f"model.name={path}", f"prompt.template={template}", "train.bf16=false"])
    tokenizer = load_tokenizer(path, recipe.model)
    encoder = make_encoder(tokenizer, recipe.prompt, recipe.data)
    data = read_train(sample_dir / "train.csv").subset(list(range(4)))
    trainer = _completion_loss_trainer()(
        model=load_causal_lm(path, recipe.model),
        args=sft_config(recipe.train, tmp_path / "out", has_eval=False),
        train_dataset=build_dataset(data, encoder, recipe),
        processing_class=tokenizer,
        peft_config=lora_config(recipe.lora),
    )
    end = {"llama-3.2-instruct": "<|eot_id|>", "qwen2.5-base": "<|endoftext|>"}.get(name, "<|im_end|>")
    for i, row in enumerate(trainer.train_dataset):
        labelled = [token for token in row["labels"] if token != -100]
        prompt_length = row["labels"].index(labelled[0])
        assert (
            tokenizer.decode(labelled)
            == f"{', '.join(lab for lab, on in zip(LABELS, data.labels[i]) if on) or 'none'}{end}"
        )
        assert row["input_ids"][prompt_length:] == labelled  # the labelled tokens are the sequence's end
        assert row["input_ids"][:prompt_length] == encoder.prompt_ids(data.texts[i])  # the inference prompt


def qlora_like_trainer(path: Path, sample_dir: Path, tmp_path: Path, ours: bool):
    """A trainer as QLoRA builds it, on CPU: the tiny model's bf16 weights flagged as 4-bit, as bitsandbytes' loader
    flags them (bitsandbytes itself needs CUDA), which is what TRL keys its bf16 cast of the adapter on. ``ours``:
    through ``sft_trainer``; else TRL's trainer as it comes."""
    from gen_emotion.generation.prompts import make_encoder
    from gen_emotion.training.sft import _completion_loss_trainer, sft_trainer

    overrides = [f"model.name={path}", "model.dtype=bfloat16", "train.bf16=false", "train.batch_size=4"]
    recipe = load_recipe(RECIPE, [*overrides, "train.max_steps=2", "train.learning_rate=1e-2", "data.eval_rows=0"])
    tokenizer = load_tokenizer(str(path), recipe.model)
    data = read_train(sample_dir / "train.csv").subset(list(range(8)))
    rows = build_dataset(data, make_encoder(tokenizer, recipe.prompt, recipe.data), recipe)
    model = load_causal_lm(str(path), recipe.model)
    model.is_loaded_in_4bit = True
    args = sft_config(recipe.train, tmp_path / "out", has_eval=False)
    if ours:
        return sft_trainer(recipe.lora, recipe.train, args, model, tokenizer, rows, None)
    return _completion_loss_trainer()(
        model=model, args=args, train_dataset=rows, processing_class=tokenizer, peft_config=lora_config(recipe.lora)
    )


def test_qlora_adapter_trains_in_float32_over_the_bf16_base(qwen_instruct_dir: Path, sample_dir: Path, tmp_path: Path):
    """TRL casts a 4-bit model's adapter to bf16, where AdamW's small updates round away (bench/adapter_dtype.py);
    ours keeps it in fp32, through training and into the saved adapter, while the base stays bf16."""
    import torch
    from safetensors import safe_open

    theirs = qlora_like_trainer(qwen_instruct_dir, sample_dir, tmp_path / "trl", ours=False)
    trained = {name: p for name, p in theirs.model.named_parameters() if p.requires_grad}
    assert trained and {p.dtype for p in trained.values()} == {torch.bfloat16}  # TRL's cast: the case we undo
    trainer = qlora_like_trainer(qwen_instruct_dir, sample_dir, tmp_path / "ours", ours=True)
    adapter = {name: p for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert adapter.keys() == trained.keys() and {p.dtype for p in adapter.values()} == {torch.float32}
    base = {p.dtype for p in trainer.model.parameters() if not p.requires_grad}
    assert base == {torch.bfloat16}
    before = {name: p.detach().clone() for name, p in adapter.items()}
    trainer.model.get_base_model().is_loaded_in_4bit = False  # the flag's work is done: no bitsandbytes from here
    trainer.train()
    assert {p.dtype for p in adapter.values()} == {torch.float32}
    assert all(state["exp_avg"].dtype == torch.float32 for state in trainer.optimizer.state.values())
    assert any(not torch.equal(before[name], p) for name, p in adapter.items() if "lora_B" in name)
    trainer.save_model(str(tmp_path / "adapter"))
    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as saved:
        assert {saved.get_slice(key).get_dtype() for key in saved.keys()}  # noqa: SIM118 (a safetensors file is no dict) == {"F32"}
