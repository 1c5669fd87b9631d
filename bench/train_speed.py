"""Training throughput: the original study's SFT setup against our recipe's defaults, side by side.

On SmolLM2-135M-Instruct and the same 512 training rows (a seeded subset of the training folds of
fold 0), each configuration trains in its own process (so peak memory is its own):
  original      TRL SFTTrainer defaults as the study used them: fp32, gradient checkpointing (TRL's
                default), padding to the longest in the batch, random batches, TRL's loss head,
                LoRA r=128/alpha=256/dropout 0.01, lr 5e-5, the study's prompt and Python-list target
  ours          the CPU recipe's defaults (recipes/smollm2-135m-cpu.yaml), batch 16 like the original
  ours, original prompt   ours with the study's prompt and target: the same tokens as the original,
                so tokens/s and loss compare like for like
  slow          ours with every speed lever switched off (the quality control for "fast = as good")
and each lever of ours switched on its own (``--lever-steps`` steps).

    python bench/train_speed.py --data ../shared/data --rows 512

With ``--heldout N`` (default: the whole held-out fold, 773 rows) the full runs also predict fold 0's
held-out rows (transformers backend, greedy, constrained) and report macro-F1, with a paired bootstrap
of the difference between fast and slow. Prints tokens/s, examples/s, s/step, peak memory (after
training) and training loss of each configuration, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RECIPE = "recipes/smollm2-135m-cpu.yaml"
COMMON = [
    "data.eval_rows=0",
    "train.batch_size=16",
    "train.grad_accum=1",
    "train.logging_steps=1",
    "train.save_steps=100000",
]
ORIGINAL_PROMPT = ["prompt.template=original", "prompt.target_format=python_list"]
ORIGINAL = [
    "train.bf16=false",
    "train.gradient_checkpointing=true",
    "train.completion_positions_only=false",
    "train.padding_free=false",
    "train.group_by_length=false",
    "lora.r=128",
    "lora.alpha=256",
    "lora.dropout=0.01",
    "train.learning_rate=5e-5",
    *ORIGINAL_PROMPT,
]
SLOW = [
    "train.bf16=false",
    "train.gradient_checkpointing=true",
    "train.completion_positions_only=false",
    "train.padding_free=false",
    "train.group_by_length=false",
    "lora.dropout=0.05",
]
LEVERS = {
    "fp32 (bf16 autocast off)": ["train.bf16=false"],
    "TRL full-vocabulary loss head": ["train.completion_positions_only=false"],
    "LoRA dropout 0.05": ["lora.dropout=0.05"],
    "gradient checkpointing on": ["train.gradient_checkpointing=true"],
    "random batches (no length grouping)": ["train.group_by_length=false", "train.padding_free=false"],
    "padding-free batches": ["train.padding_free=true"],
    "long system prompt": ["prompt.template=long", "train.max_length=384"],
}

FULL = {"original": ORIGINAL, "ours": [], "ours, original prompt": ORIGINAL_PROMPT, "slow": SLOW}
"""The configurations trained on every row (and scored on held-out rows)."""
LEVER_RUNS = {"ours (short run)": [], **{f"ours, {name}": overrides for name, overrides in LEVERS.items()}}
"""Short runs: ours, and ours with each lever switched."""


def child(overrides: list[str], rows: int, data: Path, heldout: int) -> None:
    """Train one configuration (and predict the held-out rows); print its figures as JSON."""
    from gen_emotion.config.recipes import load_recipe
    from gen_emotion.data.folds import split_fold
    from gen_emotion.data.formats import read_train
    from gen_emotion.scoring.metrics import macro_f1
    from gen_emotion.tasks.generate import GenerateTask
    from gen_emotion.training.sft import train

    recipe = load_recipe(RECIPE, [*COMMON, f"data.max_train_rows={rows}", *overrides])
    train_rows, held_out = split_fold(read_train(data / "train.csv"), 0)
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        summary = train(recipe, train_rows, run_dir)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        history = json.loads((run_dir / "train_log.json").read_text())
        if heldout:
            held_out = held_out.subset(list(range(min(heldout, len(held_out)))))
            pred = GenerateTask().predict(recipe, run_dir, {"val": held_out}, backend="transformers", with_probs=False)
            labels = pred["val"].labels
            result["heldout_macro_f1"] = macro_f1(held_out.labels, labels)
            result["heldout_pred"] = labels.astype(int).tolist()
            result["heldout_true"] = held_out.labels.astype(int).tolist()
    losses = [h["loss"] for h in history if "loss" in h]
    steps, seconds = summary["steps"], summary["train_runtime_s"]
    examples = steps * recipe.train.batch_size
    result.update(
        examples=examples,
        steps=steps,
        seconds=seconds,
        tokens=summary["train_tokens"],
        examples_per_s=examples / seconds,
        tokens_per_s=summary["train_tokens"] / seconds,
        s_per_step=seconds / steps,
        peak_rss_gb=peak,
        final_loss=float(np.mean(losses[-4:])),
        train_loss=summary["train_loss"],
    )
    print("RESULT " + json.dumps(result))


def measure(name: str, overrides: list[str], args: argparse.Namespace, max_steps: int | None, heldout: int) -> dict:
    extra = [f"train.max_steps={max_steps}"] if max_steps else []
    cmd = [sys.executable, __file__, "--child", json.dumps([*overrides, *extra]), "--rows", str(args.rows)]
    cmd += ["--data", str(args.data), "--heldout", str(heldout)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    f1 = f"  held-out macro-F1 {result['heldout_macro_f1']:.4f}" if "heldout_macro_f1" in result else ""
    print(
        f"{name:<44}{result['tokens_per_s']:7.0f} tok/s {result['examples_per_s']:6.2f} ex/s "
        f"{result['s_per_step']:6.2f} s/step  peak {result['peak_rss_gb']:5.2f} GB  "
        f"loss {result['final_loss']:.3f} (last 4 steps) {result['train_loss']:.3f} (mean){f1}",
        flush=True,
    )
    return result


def paired_bootstrap(a: dict, b: dict, n: int = 2000, seed: int = 0) -> dict:
    """Macro-F1 of ``a`` minus ``b`` on the same held-out rows, with a 95% paired bootstrap interval."""
    from gen_emotion.scoring.metrics import paired_bootstrap as bootstrap

    return bootstrap(a["heldout_true"], a["heldout_pred"], b["heldout_pred"], n, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--lever-steps", type=int, default=8, help="steps for each single-lever run (0: skip)")
    parser.add_argument("--heldout", type=int, default=10_000, help="held-out rows to score (0: none)")
    parser.add_argument(
        "--configs", nargs="+", default=None, choices=[*FULL, *LEVER_RUNS], help="run only these (default: all)"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(json.loads(args.child), args.rows, args.data, args.heldout)
        return

    print(f"{args.rows} training rows, batch 16; one process per configuration\n", flush=True)
    wanted = set(args.configs or [*FULL, *LEVER_RUNS])
    results = {n: measure(n, o, args, None, args.heldout) for n, o in FULL.items() if n in wanted}
    if args.lever_steps:
        print(f"\neach lever alone, {args.lever_steps} steps:")
        for name, overrides in LEVER_RUNS.items():
            if name in wanted:
                results[name] = measure(name, overrides, args, args.lever_steps, 0)
    if not set(FULL) <= set(results):
        for r in results.values():
            r.pop("heldout_pred", None)
            r.pop("heldout_true", None)
        print(json.dumps({"bench": "train_speed", "rows": args.rows, "results": results}))
        return

    ours, original, same = results["ours"], results["original"], results["ours, original prompt"]
    summary = {
        "bench": "train_speed",
        "rows": args.rows,
        "ratio_tokens_per_s_same_prompt": same["tokens_per_s"] / original["tokens_per_s"],
        "ratio_examples_per_s_same_prompt": same["examples_per_s"] / original["examples_per_s"],
        "ratio_examples_per_s": ours["examples_per_s"] / original["examples_per_s"],
        "ratio_tokens_per_s": ours["tokens_per_s"] / original["tokens_per_s"],
        "ratio_examples_per_s_vs_slow": ours["examples_per_s"] / results["slow"]["examples_per_s"],
        "loss_same_prompt_vs_original": [same["final_loss"], original["final_loss"]],
    }
    if args.heldout:
        summary["heldout_fast_minus_slow"] = paired_bootstrap(ours, results["slow"])
        summary["heldout_fast_minus_original"] = paired_bootstrap(ours, original)
        for r in results.values():
            r.pop("heldout_pred", None)
            r.pop("heldout_true", None)
    print(
        f"\nsame prompt as the original: {summary['ratio_tokens_per_s_same_prompt']:.2f}x tokens/s, loss "
        f"{same['final_loss']:.3f} vs {original['final_loss']:.3f}; ours as shipped (short prompt): "
        f"{summary['ratio_examples_per_s']:.2f}x examples/s, {summary['ratio_tokens_per_s']:.2f}x tokens/s"
    )
    if args.heldout:
        d = summary["heldout_fast_minus_slow"]
        print(f"held-out macro-F1, fast minus slow: {d['diff']:+.4f} (95% CI {d['ci95'][0]:+.4f}..{d['ci95'][1]:+.4f})")
    print(json.dumps({**summary, "results": results}))


if __name__ == "__main__":
    main()
