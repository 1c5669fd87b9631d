"""QLoRA's adapter dtype: how many LoRA updates a bf16 adapter loses against an fp32 one, and what it does to the loss.

TRL casts the adapter of a 4-bit model to bf16, so AdamW keeps no fp32 copy of it: an update smaller than half a
bf16 step of its weight (2^-9 of the weight) is rounded away. gen-emotion keeps the adapter in fp32
(``sft.keep_adapter_in_float32``, always applied after TRL builds its trainer). Here SmolLM2-135M-Instruct
(embedded; fp32 base weights, fast on a CPU) trains a LoRA adapter with the 14B QLoRA recipe's settings (rank,
alpha, targets, learning rate, weight decay, AdamW), once with the adapter in bf16 (TRL's cast) and once in fp32,
from the same initial adapter, on the same batches of the shipped sample, on CPU. After each step it counts, per
``lora_A``/``lora_B`` element, the updates the optimizer made (a non-zero first moment, or weight decay on a
non-zero weight) that left the weight unchanged.

    python bench/adapter_dtype.py [--steps 30] [--batch 8] [--warmup 0]

``--warmup`` ramps the learning rate up linearly as the recipe's ``train.warmup_steps`` does (0: the peak rate
from the first step, the case most favourable to bf16). Prints the loss curves and the shares lost, then one JSON
line.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

RECIPE = "recipes/qwen2.5-14b-instruct-qlora.yaml"


def batches(recipe: Any, rows: int, batch: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Right-padded training batches of the sample's first ``rows`` tweets (labels only on the answer), and the
    held-out rest, as tensors."""
    import torch

    from gen_emotion.data.dataset import sample_data_dir
    from gen_emotion.data.formats import read_train
    from gen_emotion.generation.prompts import make_encoder
    from gen_emotion.models.loading import load_tokenizer, resolve_model
    from gen_emotion.training.sft import encode_rows

    tokenizer = load_tokenizer(resolve_model(recipe.model.name), recipe.model)
    encoded = encode_rows(
        read_train(sample_data_dir() / "train.csv"), make_encoder(tokenizer, recipe.prompt, recipe.data)
    )

    def collate(chunk: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(row["input_ids"]) for row in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        labels = torch.full((len(chunk), width), -100)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, row in enumerate(chunk):
            n = len(row["input_ids"])
            ids[i, :n], mask[i, :n] = torch.tensor(row["input_ids"]), 1
            labels[i, :n] = torch.tensor([t if m else -100 for t, m in zip(row["input_ids"], row["completion_mask"])])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    train, held = encoded[:rows], encoded[rows:]
    return [collate(train[i : i + batch]) for i in range(0, len(train), batch)], [
        collate(held[i : i + batch]) for i in range(0, len(held), batch)
    ]


def adapted_model(recipe: Any, adapter_dtype: str) -> Any:
    """SmolLM2 in bf16 with the recipe's LoRA adapter (seeded), in ``adapter_dtype``: bf16 as TRL casts it under
    QLoRA, or fp32 as ``keep_adapter_in_float32`` keeps it."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from gen_emotion.models.loading import resolve_model
    from gen_emotion.training.sft import keep_adapter_in_float32, lora_config

    # fp32 base weights: on a CPU without bf16 matmuls they are the fast ones, and what an update to the adapter
    # keeps depends on the adapter's dtype alone
    base = AutoModelForCausalLM.from_pretrained(resolve_model(recipe.model.name), dtype=torch.float32)
    torch.manual_seed(recipe.train.seed)
    model = get_peft_model(base, lora_config(recipe.lora))
    if adapter_dtype == "bfloat16":
        for param in model.parameters():
            if param.requires_grad:  # what TRL's SFTTrainer does to a 4-bit model's adapter
                param.data = param.data.to(torch.bfloat16)
    else:
        keep_adapter_in_float32(model)
    return model


def answer_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Cross-entropy on the answer tokens, only their positions through the LM head (as the CPU trainer does)."""
    import torch.nn.functional as F

    base = model.get_base_model()
    hidden = base.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    logits = F.linear(hidden[:, :-1][mask], base.get_output_embeddings().weight)
    return F.cross_entropy(logits.float(), labels[mask])


def held_out_loss(model: Any, held: list[dict[str, Any]]) -> float:
    import torch

    model.eval()
    with torch.inference_mode():
        losses = [answer_loss(model, batch).item() for batch in held]
    model.train()
    return sum(losses) / len(losses)


def train(recipe: Any, adapter_dtype: str, train_batches: list, held: list, steps: int, warmup: int) -> dict:
    """``steps`` AdamW steps; the loss of each and the share of updates each kind of LoRA weight lost."""
    import torch

    model = adapted_model(recipe, adapter_dtype)
    lora = {name: p for name, p in model.named_parameters() if p.requires_grad}
    t = recipe.train
    optimizer = torch.optim.AdamW(lora.values(), lr=t.learning_rate, weight_decay=t.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1)))
    losses, lost = [], {"lora_A": [0, 0], "lora_B": [0, 0]}  # [lost, made] element updates
    started = time.perf_counter()
    first_held = held_out_loss(model, held)
    for step in range(steps):
        batch = train_batches[step % len(train_batches)]
        loss = answer_loss(model, batch)
        loss.backward()
        before = {name: p.detach().clone() for name, p in lora.items()}
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(round(loss.item(), 4))
        for name, p in lora.items():
            made = optimizer.state[p]["exp_avg"] != 0
            if t.weight_decay:
                made |= before[name] != 0
            unchanged = p.detach() == before[name]
            kind = "lora_A" if "lora_A" in name else "lora_B"
            lost[kind][0] += int((made & unchanged).sum())
            lost[kind][1] += int(made.sum())
    return {
        "adapter_dtype": adapter_dtype,
        "train_losses": losses,
        "held_out_loss": [round(first_held, 4), round(held_out_loss(model, held), 4)],
        "lost_share": {kind: round(n / max(made, 1), 4) for kind, (n, made) in lost.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="AdamW steps per adapter dtype")
    parser.add_argument("--batch", type=int, default=8, help="tweets per step")
    parser.add_argument("--rows", type=int, default=268, help="sample rows to train on (the rest: held-out loss)")
    parser.add_argument("--warmup", type=int, default=0, help="linear warm-up steps (the recipe has its own)")
    args = parser.parse_args()
    import torch

    from gen_emotion.config.recipes import load_recipe

    # The 14B recipe's adapter and optimizer on the embedded model, its bf16 weights standing for the 4-bit base
    recipe = load_recipe(RECIPE, ["model.name=smollm2-135m-instruct", "model.load_in_4bit=false"])
    train_batches, held = batches(recipe, args.rows, args.batch)
    results = []
    for dtype in ("bfloat16", "float32"):
        result = train(recipe, dtype, train_batches, held, args.steps, args.warmup)
        results.append(result)
        print(
            f"adapter {dtype}: updates lost lora_A {result['lost_share']['lora_A']:.1%}, "
            f"lora_B {result['lost_share']['lora_B']:.1%}; held-out loss {result['held_out_loss'][0]:.4f} -> "
            f"{result['held_out_loss'][1]:.4f}; {result['seconds']} s"
        )
        print(f"  train losses: {result['train_losses']}")
    settings = {
        "model": recipe.model.name,
        "lora_r": recipe.lora.r,
        "lora_alpha": recipe.lora.alpha,
        "learning_rate": recipe.train.learning_rate,
        "weight_decay": recipe.train.weight_decay,
        "steps": args.steps,
        "batch": args.batch,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps({"bench": "adapter_dtype", "settings": settings, "results": results}))


if __name__ == "__main__":
    main()
