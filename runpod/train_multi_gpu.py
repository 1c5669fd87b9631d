"""The training half of a multi-GPU ``gen-emotion run``, started by ``accelerate launch`` (one process per GPU).

``runpod/entry.sh`` runs it as

    accelerate launch --config_file recipes/accelerate/X.yaml --num_processes N runpod/train_multi_gpu.py \\
        RECIPE [OVERRIDES] --data DIR --out RUN_DIR

and then ``gen-emotion run`` with the same recipe, overrides and run folder in ONE process: that run finds the
adapter, skips training and generates (vLLM over all GPUs with ``generate.tensor_parallel_size=N``). Running
the whole ``run`` under accelerate would make every process generate and write the same prediction files.
This script trains the same rows as ``gen-emotion run`` (the training folds of ``data.fold``) and leaves the
training figures in ``metrics.json``, where ``run`` picks them up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gen_emotion.errors import GenEmotionError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def train_adapter(recipe_name: str, overrides: list[str], data_dir: Path | None, run_dir: Path) -> None:
    """Train the recipe's adapter into ``run_dir/adapter`` on every process of the accelerate launch."""
    from accelerate import PartialState

    from gen_emotion.data import read_train, split_fold
    from gen_emotion.pipeline import prepare_run_dir, sample_data_dir, setup_logging
    from gen_emotion.recipes import load_recipe
    from gen_emotion.train import ADAPTER_DIR, CHECKPOINT_DIR, sft_config, train

    # Join the process group before the model loads: FSDP's rank-0-only loading (cpu_ram_efficient_loading)
    # needs it, and main_process_first needs it to let rank 0 write recipe.yaml before the others read it.
    state = PartialState()
    recipe = load_recipe(recipe_name, overrides)
    with state.main_process_first():
        prepare_run_dir(recipe, run_dir)
    setup_logging(run_dir if state.is_main_process else None, verbose=state.is_main_process)
    if (run_dir / ADAPTER_DIR / "adapter_config.json").is_file():
        print(f"adapter found in {run_dir / ADAPTER_DIR}: nothing to train", file=sys.stderr)
        return
    data_dir = data_dir or sample_data_dir()
    full = read_train(data_dir / "train.csv")
    train_rows, _ = split_fold(full, recipe.data.fold, recipe.data.folds, recipe.data.seed)
    # ZeRO-3 builds the model already partitioned only if training arguments exist when it loads; train() makes
    # its own after loading the model, so make one first and keep it alive while training.
    early_args = None
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        early_args = sft_config(recipe, run_dir / CHECKPOINT_DIR, has_eval=recipe.data.eval_rows > 0)
    summary = train(recipe, train_rows, run_dir)
    del early_args
    state.wait_for_everyone()
    if state.is_main_process:
        metrics = run_dir / "metrics.json"
        previous = json.loads(metrics.read_text()) if metrics.is_file() else {}
        timings = {**previous.get("timings", {}), "train_s": summary.get("seconds", 0.0)}
        metrics.write_text(json.dumps({**previous, "training": summary, "timings": timings}, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        train_adapter(args.recipe, args.overrides, args.data, args.out)
    except GenEmotionError as err:
        print(f"gen-emotion: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
