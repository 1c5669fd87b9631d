"""The ``gen-emotion`` command: every subcommand's arguments, and the one place that turns errors into one line."""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
import threading
from pathlib import Path

from gen_emotion.cli.commands import (
    cmd_check,
    cmd_cv,
    cmd_ensemble,
    cmd_export,
    cmd_export_model,
    cmd_inspect,
    cmd_parse,
    cmd_predict,
    cmd_recipes,
    cmd_report,
    cmd_run,
    cmd_score,
    cmd_serve,
    cmd_show,
    cmd_studio,
    cmd_sweep,
)
from gen_emotion.core.errors import EXIT_INTERRUPTED, GenEmotionError

EXIT_ERROR = 2
EXIT_BROKEN_PIPE = 141


def _recipe_arguments(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.max_steps=20")
    p.add_argument(
        "--data",
        default=None,
        help="a folder with train and test files (CSV, TSV, JSON Lines, Parquet), a datasets folder of splits "
        "(save_to_disk), or a dataset id for datasets.load_dataset (default: the shipped sample)",
    )
    p.add_argument(
        "--out", type=Path, default=None, help=f"{what} folder (default: runs/...-TIME); an existing one resumes"
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help=f"start an existing {what} folder over (its recipe or data changed): what it holds is removed",
    )
    p.add_argument("--gpus", type=int, default=1, help="GPUs to train on (>1: accelerate launch, one process per GPU)")
    p.add_argument(
        "--accelerate-config",
        default=None,
        help="with --gpus N: ddp, fsdp, zero3 (recipes/accelerate/) or a config file (default: ddp for QLoRA and for "
        "models under 10B whose replica fits the GPU, else fsdp; docs/multi-gpu.md)",
    )


def _ray_address_argument(p: argparse.ArgumentParser, flag: str) -> None:
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help=f"with {flag}: the Ray cluster at ADDR (host:6379); default: a local Ray started and stopped here",
    )


def _machines_arguments(p: argparse.ArgumentParser) -> None:
    """One training over several machines: the same ``run`` on each, with its rank (docs/cluster.md)."""
    p.add_argument("--num-machines", type=int, default=None, help="train over N machines (--gpus GPUs each)")
    p.add_argument("--machine-rank", type=int, default=None, help="with --num-machines: this machine's rank (0: main)")
    p.add_argument("--main-process-ip", default=None, help="with --num-machines: the main machine's address")
    p.add_argument("--main-process-port", type=int, default=29500, help="with --num-machines: its port (29500)")


def add_run_commands(sub: argparse._SubParsersAction) -> None:
    """``run``, ``cv`` and ``predict``."""
    p = sub.add_parser("run", help="train on all but one fold, predict it and the test file, score, export")
    _recipe_arguments(p, "run")
    p.add_argument(
        "--val",
        type=Path,
        default=None,
        help="a validation file held out as it is (default: the data's validation split or file, else a fold)",
    )
    p.add_argument("--backend", choices=("transformers", "vllm"), default=None, help="generation backend")
    _machines_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("cv", help="K-fold cross-validation: out-of-fold probabilities, thresholds, test averaged")
    _recipe_arguments(p, "cv")
    p.add_argument("--folds", type=int, default=5, help="number of multilabel-stratified folds (default 5)")
    p.add_argument("--rows", type=int, default=None, help="use only the first N rows of each split")
    p.add_argument(
        "--drop-models", action="store_true", help="delete each fold's model once its probabilities are saved"
    )
    p.add_argument(
        "--parallel-folds",
        type=int,
        default=None,
        metavar="N",
        help="train N folds at a time as Ray tasks, each with --gpus GPUs (GPU recipes) or a share of the CPUs",
    )
    _ray_address_argument(p, "--parallel-folds")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("inspect", help="show a recipe's training examples and inference prompt ids, flag differences")
    p.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--data", default=None, help="a data folder or dataset id, as run's (default: the shipped sample)")
    p.add_argument("--rows", type=int, default=3, help="how many rows of train.csv to show (default 3)")
    p.add_argument("--json", action="store_true", help="one JSON object per row instead of the report")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("predict", help="predict any file with a trained run, cv or ensemble folder")
    p.add_argument("run_dir", type=Path, help="a folder written by gen-emotion run, cv, ensemble or export-model")
    p.add_argument("overrides", nargs="*", help="generate.* overrides, e.g. generate.batch_size=16")
    p.add_argument(
        "--input", type=Path, default=None, help="CSV/TSV with ID and Tweet, .txt with one text a line, or - (stdin)"
    )
    p.add_argument("--text", action="append", default=None, help="a text to predict (repeatable); labels printed")
    p.add_argument("--out", type=Path, default=None, help="predictions CSV to write (ID + 11 labels + output)")
    p.add_argument("--backend", choices=("transformers", "vllm"), default=None, help="generation backend")
    p.add_argument(
        "--probs",
        action="store_true",
        help="a generation run: also make its per-label probabilities (OUT_probs.csv); the labels stay its decision",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="--input FILE in shards over N Ray workers, each loading the model once (same output, in input order)",
    )
    _ray_address_argument(p, "--workers")
    p.set_defaults(func=cmd_predict)


def add_file_commands(sub: argparse._SubParsersAction) -> None:
    """``show``, ``parse``, ``check``, ``score`` and ``export``."""
    p = sub.add_parser("show", help="print a recipe resolved and checked, with each field's help")
    p.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument(
        "--gpus", type=int, default=1, help="resolve it as run and cv --gpus N (and launch --gpus N) would run it"
    )
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("parse", help="read one generation per line on stdin, write 0/1 label rows as CSV")
    p.set_defaults(func=cmd_parse)

    recipe_help = "take the ID, text and label columns from this recipe (default: the Kaggle/SemEval ones)"
    p = sub.add_parser("check", help="validate a train/test file and print its label counts")
    p.add_argument("path", type=Path)
    p.add_argument("--recipe", default=None, help=recipe_help)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("score", help="score predictions against gold labels, matched by ID")
    p.add_argument("pred", type=Path, help="predictions CSV (ID + 11 label columns)")
    p.add_argument("gold", type=Path, help="gold CSV (train format, or ID + 11 label columns)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--recipe", default=None, help=recipe_help)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("export", help="write a Kaggle submission in the test file's order")
    p.add_argument("pred", type=Path, help="predictions CSV (ID + 11 label columns)")
    p.add_argument("--test", type=Path, required=True, help="the test CSV whose IDs and order the submission follows")
    p.add_argument("--out", type=Path, required=True, help="submission CSV to write")
    p.add_argument("--recipe", default=None, help=recipe_help)
    p.set_defaults(func=cmd_export)


def add_model_commands(sub: argparse._SubParsersAction) -> None:
    """``export-model`` and ``recipes``."""
    p = sub.add_parser("export-model", help="write a finished run as a model folder (and push it to the hub)")
    p.add_argument("run_dir", type=Path, help="a finished run folder")
    p.add_argument("--out", type=Path, required=True, help="the model folder to write (new or empty)")
    p.add_argument("--merged", action="store_true", help="merged weights instead of the LoRA adapter")
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="upload the folder (HF_TOKEN)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: a private repository")
    p.set_defaults(func=cmd_export_model)

    p = sub.add_parser("recipes", help="list the shipped recipes, or copy one to edit (recipes cp NAME DEST)")
    p.add_argument("action", nargs="?", choices=("ls", "cp"), default="ls")
    p.add_argument("names", nargs="*", help="with cp: the recipe's name and the destination file or folder")
    p.set_defaults(func=cmd_recipes)


def add_comparison_commands(sub: argparse._SubParsersAction) -> None:
    """``ensemble`` and ``report``."""
    p = sub.add_parser("ensemble", help="combine cv runs: average probabilities (or vote), tune thresholds")
    p.add_argument("run_dirs", nargs="+", type=Path, help="two or more cv (or ensemble) folders")
    p.add_argument("--out", type=Path, required=True, help="ensemble folder to write")
    p.add_argument("--weighted", action="store_true", help="weight each run by its out-of-fold macro-F1")
    p.add_argument(
        "--stack", action="store_true", help="a logistic regression per label over every run's probabilities"
    )
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("report", help="per-label charts and tables comparing cv runs and ensembles")
    p.add_argument("run_dirs", nargs="+", type=Path, help="cv or ensemble folders")
    p.add_argument("--out", type=Path, default=Path("report"), help="report folder (default: report/)")
    p.set_defaults(func=cmd_report)


SWEEP_METAVARS = {
    "space": "SPACE.yaml",
    "timeout": "MIN",
    "out": "DIR",
    "ray_address": "ADDR",
    "storage": "URL",
    "holdout": "FRACTION",
    "ensemble_top": "K",
    "folds": "K",
    "data": "DIR",
}


def add_sweep_command(sub: argparse._SubParsersAction) -> None:
    """``sweep``: its flags are ``sweeps.sweep.SweepOptions``' fields, with their help."""
    import typing
    from dataclasses import fields

    from gen_emotion.sweeps.sweep import SweepOptions

    p = sub.add_parser(
        "sweep", help="search a recipe's settings with Optuna: each trial a cv folder, honest, resumable"
    )
    p.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides of the recipe searched")
    hints = typing.get_type_hints(SweepOptions)
    for item in fields(SweepOptions):
        kind = next(t for t in (int, float, str) if t is hints[item.name] or t in typing.get_args(hints[item.name]))
        shown = "" if item.default in (None, "") else f" (default: {item.default})"
        p.add_argument(
            f"--{item.name.replace('_', '-')}",
            type=kind,
            default=item.default,
            choices=item.metadata.get("choices"),
            metavar=None if item.metadata.get("choices") else SWEEP_METAVARS.get(item.name, "N"),
            help=item.metadata["help"] + shown,
        )
    p.set_defaults(func=cmd_sweep)


def add_serve_command(sub: argparse._SubParsersAction) -> None:
    """``serve``: its flags are ``server.ServeOptions``' fields, with their help."""
    from dataclasses import fields

    from gen_emotion.serving.server import ServeOptions

    p = sub.add_parser(
        "serve",
        help="serve a trained folder over HTTP: POST /predict, GET /health, GET /metrics, docs at /docs",
        description="Serve a run, cv or ensemble folder over HTTP. It listens on 127.0.0.1 (this machine only) "
        "unless --host says otherwise: --host 0.0.0.0 lets every machine that can reach this one use the model, "
        "so give it --api-key (or GEN_EMOTION_API_KEY) and a TLS proxy in front. Several generation runs trained on "
        "one base share one vLLM engine (--backend vllm): the base loads once, each run's adapter through LoRA.",
    )
    p.add_argument(
        "folder",
        type=Path,
        nargs="+",
        help="a run, cv or ensemble folder (or an export-model of one); or several generation runs of one base",
    )
    for item in fields(ServeOptions):
        default, text = item.default, item.metadata["help"]
        p.add_argument(
            f"--{item.name.replace('_', '-')}",
            type=str if default is None else type(default),
            default=default,
            choices=item.metadata.get("choices"),
            help=text if default is None else f"{text} (default: {default})",
        )
    p.set_defaults(func=cmd_serve)


def add_studio_command(sub: argparse._SubParsersAction) -> None:
    """``studio``: its flags are ``studio.app.StudioOptions``' fields, with their help."""
    from dataclasses import fields

    from gen_emotion.studio.app import StudioOptions

    p = sub.add_parser(
        "studio",
        help="a web app over your run folders: runs, a run's curves, errors, compare, try it, launch",
        description="See, compare and fix your runs in a browser (docs/studio.md). It listens on 127.0.0.1 (this "
        "machine only) unless --host says otherwise; elsewhere, give it --api-key (or GEN_EMOTION_API_KEY).",
    )
    p.add_argument("runs_dir", nargs="?", type=Path, default=Path("runs"), help="the folder of run folders (runs/)")
    for item in fields(StudioOptions):
        flag, default, text = f"--{item.name.replace('_', '-')}", item.default, item.metadata["help"]
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", help=text)
        else:
            p.add_argument(
                flag,
                type=str if default is None else type(default),
                default=default,
                help=text if default is None else f"{text} (default: {default})",
            )
    p.set_defaults(func=cmd_studio)


class Parser(argparse.ArgumentParser):
    """argparse with the toolkit's one-line errors (its subcommands' parsers are of this class too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise GenEmotionError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from gen_emotion import __version__
    from gen_emotion.cli.distill import add_distill_command
    from gen_emotion.pods.commands import add_commands as add_pod_commands

    parser = Parser(prog="gen-emotion", description="Instruction-tune language models to detect emotions in tweets.")
    parser.add_argument("--version", action="version", version=f"gen-emotion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_commands(sub)
    add_file_commands(sub)
    add_comparison_commands(sub)
    add_distill_command(sub)
    add_model_commands(sub)
    add_serve_command(sub)
    add_studio_command(sub)
    add_sweep_command(sub)
    add_pod_commands(sub)
    return parser


INTERRUPTED = {
    "run": "run the same command again (the same --out) to resume",
    "cv": "run the same command again (the same --out) to resume, fold by fold",
    "predict": "run the same predict again to resume from its saved shards",
    "sweep": "run the same command again to resume: finished trials are kept, a cut one runs again",
    "launch": "no pod was created unless it printed a pod id; gen-emotion pods lists them",
}
"""What a Ctrl-C leaves, by command (the others have nothing to resume)."""
OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, taking ``section.key=value`` overrides after the flags as well as before them."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or not all(OVERRIDE.match(item) for item in extra):
            parser.parse_args(argv)  # argparse's own one-line usage error for what is left over
        args.overrides = [*args.overrides, *extra]
    return args


def finish_output() -> None:
    """Flush standard output here, so that a full disk or a closed pipe is caught (not at interpreter exit)."""
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    command = "gen-emotion"
    try:
        if threading.current_thread() is threading.main_thread():  # Ctrl-C as KeyboardInterrupt from here on
            signal.signal(signal.SIGINT, signal.default_int_handler)
        args = parse_arguments(build_parser(), argv)
        command = args.command
        status = args.func(args)
        finish_output()
        return status
    except GenEmotionError as err:
        from gen_emotion.core.redaction import redact

        print(f"gen-emotion: error: {redact(str(err))}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `gen-emotion parse | head`: the reader has gone; stop quietly, like a Unix filter
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG):
            raise
        print(f"gen-emotion: error: cannot write to standard output ({err.strerror})", file=sys.stderr)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        hint = INTERRUPTED.get(command)
        print(f"gen-emotion: interrupted{f'; {hint}' if hint else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
