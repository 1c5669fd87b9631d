"""Training throughput: the original study's SFT setup against our recipe's defaults, side by side.

On SmolLM2-135M-Instruct and the same training rows, each configuration trains in its own process
(so peak memory is its own) for the same number of examples:
  original  TRL SFTTrainer defaults as the study used them: fp32, gradient checkpointing (TRL's
            default), padding to the longest in the batch, completion-only loss through TRL's LM
            head, LoRA r=128/alpha=256/dropout 0.01, the study's prompt, batch 16
  ours      the CPU recipe's defaults: bf16 autocast, loss head on target positions only, no LoRA
            dropout, no checkpointing, the short prompt, batch 16
and each lever of ours switched back on its own (fewer steps).

    python bench/train_speed.py --data ../shared/data --rows 512

Prints examples/s, tokens/s, s/step, peak memory and final training loss of each, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

RECIPE = "recipes/smollm2-135m-cpu.yaml"
COMMON = [
    "data.eval_rows=0",
    "train.batch_size=16",
    "train.grad_accum=1",
    "train.logging_steps=1",
    "train.warmup_steps=0",
    "train.lr_scheduler=constant",
    "train.save_steps=100000",
]
ORIGINAL = [
    "train.bf16=false",
    "train.gradient_checkpointing=true",
    "train.completion_positions_only=false",
    "lora.r=128",
    "lora.alpha=256",
    "lora.dropout=0.01",
    "prompt.template=original",
    "prompt.target_format=python_list",
    "train.learning_rate=5e-5",
]
OURS: list[str] = []
LEVERS = {
    "ours, fp32 (bf16 autocast off)": ["train.bf16=false"],
    "ours, TRL full-vocabulary loss head": ["train.completion_positions_only=false"],
    "ours, LoRA dropout 0.05": ["lora.dropout=0.05"],
    "ours, gradient checkpointing on": ["train.gradient_checkpointing=true"],
    "ours, long system prompt": ["prompt.template=long"],
}


def child(overrides: list[str], rows: int, data: Path) -> None:
    """Train one configuration and print its figures as JSON (runs in its own process)."""
    from gen_emotion.data import read_train, split_fold
    from gen_emotion.recipes import load_recipe
    from gen_emotion.train import train

    recipe = load_recipe(RECIPE, [*COMMON, f"data.max_train_rows={rows}", *overrides])
    train_rows, _ = split_fold(read_train(data / "train.csv"), 0)
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(recipe, train_rows, Path(tmp))
        history = json.loads((Path(tmp) / "train_log.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    steps = summary["steps"]
    print(
        "RESULT "
        + json.dumps(
            {
                "examples": steps * recipe.train.batch_size,
                "steps": steps,
                "seconds": summary["train_runtime_s"],
                "tokens": summary["train_tokens"],
                "examples_per_s": steps * recipe.train.batch_size / summary["train_runtime_s"],
                "tokens_per_s": summary["train_tokens"] / summary["train_runtime_s"],
                "s_per_step": summary["train_runtime_s"] / steps,
                "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                "final_loss": sum(losses[-4:]) / len(losses[-4:]),
                "train_loss": summary["train_loss"],
            }
        )
    )


def measure(name: str, overrides: list[str], rows: int, data: Path, max_steps: int | None) -> dict:
    extra = [f"train.max_steps={max_steps}"] if max_steps else []
    cmd = [
        sys.executable,
        __file__,
        "--child",
        json.dumps([*overrides, *extra]),
        "--rows",
        str(rows),
        "--data",
        str(data),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    print(
        f"{name:<40} {result['examples_per_s']:6.2f} ex/s {result['tokens_per_s']:7.0f} tok/s "
        f"{result['s_per_step']:6.2f} s/step  peak {result['peak_rss_gb']:5.2f} GB  "
        f"loss {result['final_loss']:.3f} (mean of the last 4 steps)",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--lever-steps", type=int, default=6, help="steps for each single-lever run (0: skip)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(json.loads(args.child), args.rows, args.data)
        return

    results = {
        "original": measure("original study's setup", ORIGINAL, args.rows, args.data, None),
        "ours": measure("our recipe's defaults", OURS, args.rows, args.data, None),
    }
    if args.lever_steps:
        results["ours (short run)"] = measure("ours, short run", OURS, args.rows, args.data, args.lever_steps)
        for name, overrides in LEVERS.items():
            results[name] = measure(name, overrides, args.rows, args.data, args.lever_steps)
    ratio_examples = results["ours"]["examples_per_s"] / results["original"]["examples_per_s"]
    ratio_tokens = results["ours"]["tokens_per_s"] / results["original"]["tokens_per_s"]
    print(
        f"\nours vs original on {args.rows} rows: {ratio_examples:.2f}x examples/s, {ratio_tokens:.2f}x tokens/s "
        f"(ours has fewer tokens per example: short prompt)"
    )
    print(
        json.dumps(
            {
                "bench": "train_speed",
                "rows": args.rows,
                "results": results,
                "ratio_examples_per_s": ratio_examples,
                "ratio_tokens_per_s": ratio_tokens,
            }
        )
    )


if __name__ == "__main__":
    main()
