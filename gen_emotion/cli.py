"""The ``gen-emotion`` command: every subcommand, and the one place that turns errors into one line."""

from __future__ import annotations

import argparse
import csv
import errno
import json
import os
import re
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from gen_emotion.errors import EXIT_INTERRUPTED, GenEmotionError

EXIT_ERROR = 2
EXIT_BROKEN_PIPE = 141


def _launcher(args: argparse.Namespace, recipe) -> object:
    """The step launcher for ``--gpus``/``--accelerate-config``, checked against the recipe and this machine."""
    from gen_emotion.hardware import (
        ModelShape,
        accelerate_config_path,
        accelerate_sharding,
        check_gpu_plan,
        check_local_packages,
        model_shape,
    )
    from gen_emotion.steps import Launcher
    from gen_emotion.tasks import get_task

    check_local_packages(recipe)
    task = get_task(recipe.task)
    if args.gpus < 1:
        raise GenEmotionError(f"--gpus must be at least 1, got {args.gpus}")
    config = accelerate_config_path(args.accelerate_config)  # a name or a file: refused at once if neither
    if args.gpus > 1:
        import torch

        visible = torch.cuda.device_count()
        if visible < args.gpus:
            raise GenEmotionError(f"--gpus {args.gpus}: this machine has {visible} CUDA GPU(s)")
        try:
            shape = model_shape(recipe.model.name)
        except GenEmotionError:  # a hub model whose size its name does not say: the heads are checked by vLLM
            shape = ModelShape(0.0)
        check_gpu_plan(recipe, task.multi_gpu, args.gpus, accelerate_sharding(config), shape)
    return Launcher(gpus=args.gpus, accelerate_config=str(config))


def _check_data(data: str | None) -> None:
    """``--data`` names a data folder or a dataset id (``sources.source_kind``); refused at once otherwise."""
    from gen_emotion.sources import source_kind

    if data is not None:
        source_kind(data)


def _ids_note(recipe) -> str:
    """What the summary adds where the data has no ID column."""
    return "; no ID column: IDs are row numbers, from 0" if recipe.data.id_column is None else ""


def cmd_run(args: argparse.Namespace) -> int:
    from gen_emotion.pipeline import run_recipe
    from gen_emotion.recipes import load_recipe
    from gen_emotion.runs import SUBMISSION, default_run_dir
    from gen_emotion.task_kinds import task_kind

    overrides = list(args.overrides)
    recipe = load_recipe(args.recipe, overrides)
    if args.backend:
        if not task_kind(recipe.task).generates_text:
            raise GenEmotionError(f"--backend is for generative recipes; {args.recipe} has task {recipe.task!r}")
        recipe = load_recipe(args.recipe, [*overrides, f"generate.backend={args.backend}"])
    _check_data(args.data)
    launcher = _launcher(args, recipe)
    run_dir = args.out or default_run_dir(recipe)
    if args.val is not None and not args.val.exists():
        raise GenEmotionError(f"--val {args.val}: no such file")
    metrics = run_recipe(recipe, args.data, run_dir, launcher=launcher, restart=args.restart, val=args.val)
    held = metrics.held_out
    print(f"run folder: {run_dir}")
    print(f"held-out macro-F1 {held['macro_f1']:.4f}  micro-F1 {held['micro_f1']:.4f}  jaccard {held['jaccard']:.4f}")
    if metrics.decision == "thresholds" and metrics.probabilities is not None:
        honest = metrics.probabilities["thresholded_macro_f1_cv"]
        print(f"with per-label thresholds (used for the submission): macro-F1 {honest:.4f} cross-validated")
    print(f"submission: {run_dir / SUBMISSION} ({metrics.test_rows} rows{_ids_note(recipe)})")
    return 0


def cmd_cv(args: argparse.Namespace) -> int:
    from gen_emotion.cv import default_cv_dir, run_cv
    from gen_emotion.recipes import load_recipe
    from gen_emotion.runs import SUBMISSION

    recipe = load_recipe(args.recipe, list(args.overrides))
    _check_data(args.data)
    if args.folds < 2:
        raise GenEmotionError(f"--folds must be at least 2, got {args.folds}")
    launcher = _launcher(args, recipe)
    run_dir = args.out or default_cv_dir(recipe)
    metrics = run_cv(
        recipe,
        args.data,
        run_dir,
        folds=args.folds,
        rows=args.rows,
        keep_models=not args.drop_models,
        launcher=launcher,
        restart=args.restart,
    )
    print(f"cv folder: {run_dir}")
    print(
        f"out-of-fold macro-F1 {metrics.macro_f1:.4f} (per fold {metrics.per_fold_macro_f1_mean:.4f} "
        f"± {metrics.per_fold_macro_f1_std:.4f})  micro-F1 {metrics.micro_f1:.4f}  "
        f"jaccard {metrics.jaccard:.4f}  {metrics.wall_s:.0f} s"
    )
    how = "the fold models' mean probabilities" if metrics.has_probabilities else "the fold models' majority vote"
    print(f"submission: {run_dir / SUBMISSION} ({metrics.test_rows} rows, {how}{_ids_note(recipe)})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from gen_emotion.catalog import describe_recipe
    from gen_emotion.recipes import find_recipe, load_recipe

    recipe = load_recipe(args.recipe, list(args.overrides))
    overrides = f", overrides: {' '.join(args.overrides)}" if args.overrides else ""
    print(f"# recipe {find_recipe(args.recipe)}{overrides}: resolved and checked")
    print(describe_recipe(recipe), end="")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from gen_emotion.data import sample_data_dir
    from gen_emotion.inspection import run_inspect
    from gen_emotion.recipes import load_recipe

    recipe = load_recipe(args.recipe, list(args.overrides))
    _check_data(args.data)
    text, consistent = run_inspect(recipe, args.data or sample_data_dir(), args.rows, args.json)
    print(text)
    return 0 if consistent else 1


def _predict_settings(args: argparse.Namespace) -> Any:
    from gen_emotion.predictor import PredictSettings

    return PredictSettings(backend=args.backend, with_probs=args.probs or None, overrides=tuple(args.overrides))


def cmd_predict(args: argparse.Namespace) -> int:
    from gen_emotion.predictor import folder_recipe, predict_file

    if sum(x is not None for x in (args.input, args.text)) != 1:
        raise GenEmotionError("predict takes one of --input FILE (- for standard input) or --text TEXT")
    if args.text is not None or args.input == Path("-"):
        return predict_texts(args)
    if args.out is None:
        raise GenEmotionError("predict --input FILE needs --out PRED.csv")
    result = predict_file(args.run_dir, args.input, args.out, _predict_settings(args))
    extra = f" and {args.out.stem}_probs.csv" if result["probs"] else ""
    note = _ids_note(folder_recipe(args.run_dir)) if args.input.suffix.lower() != ".txt" else ""
    print(f"wrote {args.out}: {result['rows']} rows{extra} (the {result['kind']} folder's decision{note})")
    return 0


def predict_texts(args: argparse.Namespace) -> int:
    """``predict --text TEXT`` (repeatable) or ``--input -`` (one text a line on standard input): the labels on
    standard output, one line per text (``anger, joy`` or ``none``), or a CSV with ``--out``."""
    import tempfile

    from gen_emotion.predictor import folder_recipe, load_predictor, predict_file
    from gen_emotion.recipes import label_set

    texts = args.text if args.text is not None else read_standard_input()
    if args.out is not None:
        with tempfile.TemporaryDirectory(prefix="gen-emotion-texts-") as tmp:
            source = Path(tmp) / "texts.txt"
            source.write_text("".join(f"{text}\n" for text in texts), encoding="utf-8")
            predict_file(args.run_dir, source, args.out, _predict_settings(args))
        return 0
    labels = label_set(folder_recipe(args.run_dir))
    with load_predictor(args.run_dir, _predict_settings(args)) as predictor:
        for row in predictor.predict(texts).labels:
            print(labels.render(row))
    return 0


def read_standard_input() -> list[str]:
    texts = []
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            texts.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError as err:
            raise GenEmotionError(
                f"standard input: line {number}: not valid UTF-8 (byte {raw[err.start]:#04x}); give UTF-8 text"
            ) from None
    if not texts:
        raise GenEmotionError("standard input: no text to predict")
    return texts


def cmd_export_model(args: argparse.Namespace) -> int:
    from gen_emotion.model_export import export_model, push_to_hub

    if args.private and not args.push_to_hub:
        raise GenEmotionError("--private goes with --push-to-hub")
    if args.push_to_hub and not os.environ.get("HF_TOKEN", "").strip():
        raise GenEmotionError("--push-to-hub needs a write token in HF_TOKEN; nothing was written or uploaded")
    description = export_model(args.run_dir, args.out, merged=args.merged)
    print(f"wrote {args.out}: {description['title']}, its gen_emotion.json and model card")
    if args.push_to_hub:
        print(f"pushed to {push_to_hub(args.out, args.push_to_hub, args.private)}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from gen_emotion.catalog import copy_recipe, shipped_recipes

    if args.action == "cp":
        if len(args.names) != 2:
            raise GenEmotionError("recipes cp takes a recipe name and a destination: recipes cp NAME DEST")
        print(f"wrote {copy_recipe(args.names[0], Path(args.names[1]))}")
        return 0
    if args.names:
        raise GenEmotionError("recipes lists the shipped recipes; recipes cp NAME DEST copies one")
    rows = shipped_recipes()
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  {row['task']:<8}  {row['where']:<9}  {row['description']}")
        print(f"{'':<{width}}  time: {row['time']}")
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    from gen_emotion.labels import LABELS
    from gen_emotion.parsing import parse

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(LABELS)
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise GenEmotionError(
                f"standard input: line {number}: not valid UTF-8 (byte {raw[err.start]:#04x}); give UTF-8 text"
            ) from None
        writer.writerow(parse(line.rstrip("\r\n")).tolist())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from gen_emotion.data import label_counts, read_emotion_file

    data = read_emotion_file(args.path, columns=recipe_columns(args.recipe))
    print(f"{args.path}: {len(data)} rows, {'labelled' if data.labels is not None else 'unlabelled'}")
    if data.labels is not None:
        counts = label_counts(data.labels, data.label_names)
        width = max(map(len, counts))
        for label, count in counts.items():
            print(f"  {label:<{width}}  {count:>6}  ({count / len(data):.1%})")
        print(f"  {'(none)':<{width}}  {int((data.labels.sum(axis=1) == 0).sum()):>6}")
    empty = sum(1 for text in data.texts if not text.strip())
    if empty:
        print(f"  note: {empty} row(s) with an empty tweet (kept)")
    return 0


def recipe_columns(recipe: str | None) -> Any:
    """The columns of a recipe's data (``--recipe``), else the Kaggle/SemEval ones."""
    from gen_emotion.data import SEMEVAL_COLUMNS
    from gen_emotion.recipes import columns, load_recipe

    return columns(load_recipe(recipe)) if recipe else SEMEVAL_COLUMNS


def cmd_score(args: argparse.Namespace) -> int:
    from gen_emotion.data import ID_COLUMN, DataError, read_label_file
    from gen_emotion.metrics import format_table, score
    from gen_emotion.prediction_files import align

    columns = recipe_columns(args.recipe)
    gold = read_label_file(args.gold, columns)
    own = replace(columns, labels=gold.label_names, label_column=None)  # a predictions file: one 0/1 column a label
    try:  # the toolkit's own prediction files name their ID column ID, whatever the data's is
        predictions = read_label_file(args.pred, replace(own, id=ID_COLUMN))
    except DataError:
        predictions = read_label_file(args.pred, own)
    scores = score(gold.labels, align(gold.ids, predictions, what="gold"), gold.label_names)
    print(json.dumps(scores, indent=2) if args.json else format_table(scores))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from gen_emotion.prediction_files import export_submission

    rows = export_submission(args.pred, args.test, args.out, recipe_columns(args.recipe))
    print(f"wrote {args.out}: {rows} rows in {args.test} order")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from gen_emotion.ensemble import run_ensemble
    from gen_emotion.runs import SUBMISSION

    metrics = run_ensemble(args.run_dirs, args.out, weighted=args.weighted, stacked=args.stack)
    for member in metrics.members:
        print(f"  {member['name']:<40} macro-F1 {member['macro_f1']:.4f}  weight {member['weight']:.3f}")
    print(
        f"ensemble ({metrics.mode}): out-of-fold macro-F1 {metrics.macro_f1:.4f} "
        f"(honest {metrics.macro_f1_thresholds_cv:.4f}), micro-F1 {metrics.micro_f1:.4f}, "
        f"jaccard {metrics.jaccard:.4f}"
    )
    print(f"submission: {args.out / SUBMISSION}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from gen_emotion.report import write_report

    paths = write_report(args.run_dirs, args.out)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from gen_emotion.logs import setup_logging
    from gen_emotion.serve import API_KEY_ENV, ServeOptions, serve

    options = ServeOptions(**{item.name: getattr(args, item.name) for item in fields(ServeOptions)})
    if options.api_key is None:
        options.api_key = os.environ.get(API_KEY_ENV, "").strip() or None
    setup_logging()
    serve(args.folder, options)
    return 0


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
        default="ddp",
        help="with --gpus N: ddp, fsdp, zero3 (recipes/accelerate/) or a config file (default: ddp)",
    )


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
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("cv", help="K-fold cross-validation: out-of-fold probabilities, thresholds, test averaged")
    _recipe_arguments(p, "cv")
    p.add_argument("--folds", type=int, default=5, help="number of multilabel-stratified folds (default 5)")
    p.add_argument("--rows", type=int, default=None, help="use only the first N rows of each split")
    p.add_argument(
        "--drop-models", action="store_true", help="delete each fold's model once its probabilities are saved"
    )
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
    p.set_defaults(func=cmd_predict)


def add_file_commands(sub: argparse._SubParsersAction) -> None:
    """``show``, ``parse``, ``check``, ``score`` and ``export``."""
    p = sub.add_parser("show", help="print a recipe resolved and checked, with each field's help")
    p.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
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


def add_serve_command(sub: argparse._SubParsersAction) -> None:
    """``serve``: its flags are ``serve.ServeOptions``' fields, with their help."""
    from dataclasses import fields

    from gen_emotion.serve import ServeOptions

    p = sub.add_parser(
        "serve",
        help="serve a trained folder over HTTP: POST /predict, GET /health, docs at /docs",
        description="Serve a run, cv or ensemble folder over HTTP. It listens on 127.0.0.1 (this machine only) "
        "unless --host says otherwise: --host 0.0.0.0 lets every machine that can reach this one use the model, "
        "so give it --api-key (or GEN_EMOTION_API_KEY) and a TLS proxy in front.",
    )
    p.add_argument("folder", type=Path, help="a run, cv or ensemble folder (or an export-model of one)")
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


class Parser(argparse.ArgumentParser):
    """argparse with the toolkit's one-line errors (its subcommands' parsers are of this class too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise GenEmotionError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from gen_emotion import __version__
    from gen_emotion.pods.commands import add_commands as add_pod_commands

    parser = Parser(prog="gen-emotion", description="Instruction-tune language models to detect emotions in tweets.")
    parser.add_argument("--version", action="version", version=f"gen-emotion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_commands(sub)
    add_file_commands(sub)
    add_comparison_commands(sub)
    add_model_commands(sub)
    add_serve_command(sub)
    add_pod_commands(sub)
    return parser


INTERRUPTED = {
    "run": "run the same command again (the same --out) to resume",
    "cv": "run the same command again (the same --out) to resume, fold by fold",
    "predict": "run the same predict again to resume from its saved shards",
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
        from gen_emotion.redaction import redact

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
