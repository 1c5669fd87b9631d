"""The ``gen-emotion`` command."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from gen_emotion.errors import GenEmotionError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def cmd_run(args: argparse.Namespace) -> int:
    from gen_emotion.pipeline import default_run_dir, run_recipe
    from gen_emotion.recipes import load_recipe

    overrides = list(args.overrides)
    if args.backend:
        overrides.append(f"generate.backend={args.backend}")
    recipe = load_recipe(args.recipe, overrides)
    if args.data is not None and not (args.data / "train.csv").is_file():
        raise GenEmotionError(f"{args.data}: no train.csv in this folder")
    run_dir = args.out or default_run_dir(recipe)
    if recipe.task == "generate":
        metrics = run_recipe(recipe, args.data, run_dir)
    else:
        from gen_emotion.cv import run_holdout

        if args.backend:
            raise GenEmotionError(f"--backend is for generative recipes; {args.recipe} has task {recipe.task!r}")
        metrics = run_holdout(recipe, args.data, run_dir)
    held = metrics["held_out"]
    print(f"run folder: {run_dir}")
    print(f"held-out macro-F1 {held['macro_f1']:.4f}  micro-F1 {held['micro_f1']:.4f}  jaccard {held['jaccard']:.4f}")
    if metrics.get("decision") == "thresholds":
        tuned = metrics["probabilities"]
        honest = tuned.get("thresholded_macro_f1_cv")
        print(f"with per-label thresholds (used for the submission): macro-F1 {honest:.4f} cross-validated")
    print(f"submission: {run_dir / 'submission.csv'} ({metrics['test_rows']} rows)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from gen_emotion.pipeline import predict_file

    result = predict_file(
        args.run_dir, args.input, args.out, backend=args.backend, with_probs=args.probs, overrides=args.overrides
    )
    extra = f" and {args.out.stem}_probs.csv (the run's thresholds applied)" if result["thresholds"] else ""
    print(f"wrote {args.out}: {result['rows']} rows{extra}")
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    from gen_emotion.decode import parse
    from gen_emotion.labels import LABELS

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(LABELS)
    for line in sys.stdin:
        writer.writerow(parse(line.rstrip("\n")).tolist())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from gen_emotion.data import label_counts, read_emotion_file

    data = read_emotion_file(args.path)
    print(f"{args.path}: {len(data)} rows, {'labelled' if data.labels is not None else 'unlabelled'}")
    if data.labels is not None:
        counts = label_counts(data.labels)
        width = max(map(len, counts))
        for label, count in counts.items():
            print(f"  {label:<{width}}  {count:>6}  ({count / len(data):.1%})")
        print(f"  {'(none)':<{width}}  {int((data.labels.sum(axis=1) == 0).sum()):>6}")
    empty = sum(1 for text in data.texts if not text.strip())
    if empty:
        print(f"  note: {empty} row(s) with an empty tweet (kept)")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from gen_emotion.data import read_label_file
    from gen_emotion.export import align
    from gen_emotion.metrics import format_table, score

    gold = read_label_file(args.gold)
    predictions = read_label_file(args.pred)
    scores = score(gold.labels, align(gold.ids, predictions, what="gold"))
    print(json.dumps(scores, indent=2) if args.json else format_table(scores))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from gen_emotion.export import export_submission

    rows = export_submission(args.pred, args.test, args.out)
    print(f"wrote {args.out}: {rows} rows in {args.test} order")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gen-emotion", description="Instruction-tune language models to detect emotions in tweets."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="train on all but one fold, predict it and the test file, score, export")
    p.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.max_steps=20")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder with train.csv and test.csv (default: the shipped illustrative sample)",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="run folder (default: runs/RECIPE-TIME); an existing one resumes"
    )
    p.add_argument("--backend", choices=("transformers", "vllm"), default=None, help="generation backend")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("predict", help="predict any file with a trained run folder")
    p.add_argument("run_dir", type=Path, help="a run folder written by gen-emotion run")
    p.add_argument("overrides", nargs="*", help="generate.* overrides, e.g. generate.batch_size=16")
    p.add_argument(
        "--input", type=Path, required=True, help="CSV/TSV with ID and Tweet, or .txt with one text per line"
    )
    p.add_argument("--out", type=Path, required=True, help="predictions CSV to write (ID + 11 labels + output)")
    p.add_argument("--backend", choices=("transformers", "vllm"), default=None, help="generation backend")
    p.add_argument(
        "--probs", action="store_true", help="also write per-label probabilities and apply the run's thresholds"
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("parse", help="read one generation per line on stdin, write 0/1 label rows as CSV")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("check", help="validate a train/test file and print its label counts")
    p.add_argument("path", type=Path)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("score", help="score predictions against gold labels, matched by ID")
    p.add_argument("pred", type=Path, help="predictions CSV (ID + 11 label columns)")
    p.add_argument("gold", type=Path, help="gold CSV (train format, or ID + 11 label columns)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("export", help="write a Kaggle submission in the test file's order")
    p.add_argument("pred", type=Path, help="predictions CSV (ID + 11 label columns)")
    p.add_argument("--test", type=Path, required=True, help="the test CSV whose IDs and order the submission follows")
    p.add_argument("--out", type=Path, required=True, help="submission CSV to write")
    p.set_defaults(func=cmd_export)

    from gen_emotion.evaluate_cli import add_commands as add_evaluation_commands
    from gen_emotion.launch import add_commands as add_launch_commands

    add_evaluation_commands(sub)
    add_launch_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GenEmotionError as err:
        print(f"gen-emotion: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            "gen-emotion: interrupted; run again with --out pointing at the same run folder to resume", file=sys.stderr
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
