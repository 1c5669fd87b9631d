"""The process of one isolated step: ``python -m gen_emotion.worker fit|predict ...`` (``steps.run_isolated``
starts it; under ``accelerate launch`` for training on several GPUs, one per GPU).

It reads the run's ``recipe.yaml``, rebuilds the fold's rows from the data folder, runs the step, and exits.
A ``GenEmotionError`` is written, as one line, to ``--error-file`` for the parent to report.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from gen_emotion.errors import GenEmotionError

log = logging.getLogger("gen_emotion.worker")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gen_emotion.worker", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("fit", "predict"))
    parser.add_argument("--task", required=True, help="module:Class of the task")
    parser.add_argument("--run-dir", type=Path, required=True, help="the run folder with recipe.yaml and run.log")
    parser.add_argument("--out", type=Path, required=True, help="the fold's folder")
    parser.add_argument("--error-file", type=Path, default=None)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--folds", type=int, required=True)
    parser.add_argument("--fold", type=int, required=True)
    return parser.parse_args(argv)


def is_main_process() -> bool:
    """Rank 0 of an ``accelerate launch`` (or the only process)."""
    return os.environ.get("RANK", "0") == "0"


def run_step(args: argparse.Namespace) -> None:
    from gen_emotion.recipes import columns
    from gen_emotion.runs import load_run_recipe, setup_logging
    from gen_emotion.steps import Fold, import_task

    main = is_main_process()
    setup_logging(args.run_dir if main else None, verbose=main)
    recipe = load_run_recipe(args.run_dir)
    task = import_task(args.task)
    fold = Fold.load(args.data, args.rows, args.folds, args.fold, recipe.data.seed, columns=columns(recipe))
    log.info(
        "%s step of fold %d/%d in process %d (parent %d)", args.step, args.fold, args.folds, os.getpid(), os.getppid()
    )
    if args.step == "fit":
        task.fit(recipe, fold.train, args.out)
        return
    loaded = [name for name in ("trl", "gen_emotion.train") if name in sys.modules]
    log.info("predict step: trainer modules loaded in this process: %s", ", ".join(loaded) or "none")
    task.predict(recipe, args.out, fold.splits())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run_step(args)
    except GenEmotionError as err:
        if args.error_file is not None and is_main_process():
            args.error_file.write_text(str(err), encoding="utf-8")
        else:
            print(f"gen-emotion: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
