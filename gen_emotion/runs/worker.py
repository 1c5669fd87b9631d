"""The process of one isolated step: ``python -m gen_emotion.runs.worker fit|predict ...`` (``steps.run_isolated``
starts it; under ``accelerate launch`` for training on several GPUs, one per GPU).

It reads the run's ``recipe.yaml``, rebuilds the fold's rows from the data source, runs the step, and exits.
A ``GenEmotionError`` is written, as one line, to ``--error-file`` for the parent to report.

``session`` keeps fitted models loaded for a parent that predicts texts again and again (``steps.WorkerSession``,
under ``predictor``): it loads every ``--model-dir``, says so, then answers one JSON request a line until its
standard input closes. Replies go to the standard output it was started with; everything else the libraries
print (vLLM writes to standard output) is sent to standard error, so the replies stay one JSON object a line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TextIO

from gen_emotion.core.errors import GenEmotionError

log = logging.getLogger("gen_emotion.runs.worker")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gen_emotion.runs.worker", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("fit", "predict", "session"))
    parser.add_argument("--task", required=True, help="module:Class of the task")
    parser.add_argument("--run-dir", type=Path, required=True, help="the run folder with recipe.yaml and run.log")
    parser.add_argument("--out", type=Path, default=None, help="fit, predict: the fold's folder")
    parser.add_argument("--error-file", type=Path, default=None)
    parser.add_argument("--data", default=None, help="fit, predict: the data folder or dataset id")
    parser.add_argument("--val", type=Path, default=None, help="fit, predict: the validation file")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--folds", type=int, default=None, help="fit, predict: the number of folds")
    parser.add_argument("--fold", type=int, default=None, help="fit, predict: the fold")
    parser.add_argument(
        "--given-validation", action="store_true", help="fit, predict: the validation split is held out"
    )
    parser.add_argument("--model-dir", type=Path, action="append", default=[], help="session: a fitted folder")
    args = parser.parse_args(argv)
    if args.step != "session" and None in (args.out, args.data, args.folds, args.fold):
        parser.error(f"{args.step} needs --out, --data, --folds and --fold")
    return args


def is_main_process() -> bool:
    """Rank 0 of an ``accelerate launch`` (or the only process)."""
    return os.environ.get("RANK", "0") == "0"


def training_device() -> str:
    """Which GPU this process trains on, named as the machine numbers it (``CUDA_VISIBLE_DEVICES`` maps it)."""
    from gen_emotion.models.loading import cuda_available, local_rank

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    shown = f"CUDA_VISIBLE_DEVICES={visible}" if visible is not None else "CUDA_VISIBLE_DEVICES not set"
    if not cuda_available():
        return f"no CUDA GPU visible ({shown}): training on the CPU"
    import torch

    index = local_rank()
    devices = [d.strip() for d in visible.split(",")] if visible else []
    number = devices[index] if index < len(devices) else str(index)
    name = torch.cuda.get_device_name(index)
    return f"training on GPU {number} ({name}), cuda:{index} of the {torch.cuda.device_count()} visible ({shown})"


def run_step(args: argparse.Namespace) -> None:
    from gen_emotion.config.recipes import data_source
    from gen_emotion.core.logs import setup_logging
    from gen_emotion.runs.folder import load_run_recipe
    from gen_emotion.runs.steps import Fold, import_task

    # Under accelerate launch this runs once per GPU: rank 0 alone logs, to the terminal and run.log, so the log
    # reads as one process's rather than every line N times over.
    main = is_main_process()
    setup_logging(args.run_dir if main else None, verbose=main)
    recipe = load_run_recipe(args.run_dir)
    task = import_task(args.task)
    source = data_source(recipe, args.data, args.val, args.rows)
    fold = Fold.load(source, args.folds, args.fold, recipe.data.seed, given=args.given_validation)
    log.info(
        "%s step of %s in process %d (parent %d)",
        args.step,
        "the given validation split" if fold.given else f"fold {args.fold}/{args.folds}",
        os.getpid(),
        os.getppid(),
    )
    if args.step == "fit":
        log.info("fit step: %s", training_device())
        task.fit(recipe, fold.train, args.out)
        return
    loaded = [name for name in ("trl", "gen_emotion.training.sft") if name in sys.modules]
    log.info("predict step: trainer modules loaded in this process: %s", ", ".join(loaded) or "none")
    task.predict(recipe, args.out, fold.splits())


def run_session(args: argparse.Namespace, replies: TextIO) -> None:
    """Load every ``--model-dir`` with the run's recipe, then answer requests until standard input closes: a
    request ``{"texts": [...], "with_probs": bool|null, "first_shard": int}`` gets ``{"predictions": [...]}``, one
    per model (its ``labels``, ``probs`` and ``outputs``); a ``GenEmotionError`` gets ``{"error": "..."}`` and the
    session goes on."""
    import numpy as np

    from gen_emotion.config.recipes import label_set
    from gen_emotion.core.logs import setup_logging
    from gen_emotion.data.dataset import EmotionData
    from gen_emotion.runs.folder import load_run_recipe
    from gen_emotion.runs.steps import import_task

    def reply(value: dict) -> None:
        replies.write(json.dumps(value) + "\n")
        replies.flush()

    setup_logging(None)
    recipe = load_run_recipe(args.run_dir)
    names = label_set(recipe).names
    task = import_task(args.task)
    models = []
    try:
        for model_dir in args.model_dir:
            models.append(task.load(recipe, model_dir))
        reply({"ready": True, "pid": os.getpid()})
        for line in sys.stdin:
            try:
                request = json.loads(line)
                data = EmotionData(
                    ids=[str(i) for i in range(len(request["texts"]))],
                    texts=[str(text) for text in request["texts"]],
                    labels=None,
                    label_names=names,
                )
                shard = int(request.get("first_shard", 0))
                found = [model.predict(data, request.get("with_probs"), shard) for model in models]
            except GenEmotionError as err:
                reply({"error": str(err)})
                continue
            reply(
                {
                    "predictions": [
                        {
                            "labels": p.labels.tolist(),
                            "probs": None if p.probs is None else np.asarray(p.probs).tolist(),
                            "outputs": p.outputs,
                        }
                        for p in found
                    ]
                }
            )
    finally:
        for model in models:
            model.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step == "session":
        replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library prints go to standard error
        try:
            run_session(args, replies)
        except GenEmotionError as err:
            replies.write(json.dumps({"error": str(err)}) + "\n")
            replies.flush()
            return 2
        except KeyboardInterrupt:
            return 130
        return 0
    try:
        run_step(args)
    except GenEmotionError as err:
        # Rank 0 alone writes the file the parent shows (one writer, one message); another rank's error goes to
        # standard error, above the parent's "step failed" line.
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
