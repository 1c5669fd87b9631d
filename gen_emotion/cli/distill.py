"""``gen-emotion distill``: its arguments and its handler (``evaluation.distill`` does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gen_emotion.core.errors import GenEmotionError


def add_distill_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill",
        help="train one classifier on an ensemble's out-of-fold probabilities (soft targets) as a cv",
        description="Cross-validate a classify RECIPE whose folds train on the gold labels and, as soft targets, the "
        "out-of-fold probabilities of TEACHER (an ensemble or cv folder of the same data): the ensemble's quality at "
        "one model's serving cost. The result is a cv folder, with distill.json beside the teacher's figures; for "
        "a single model to serve, run the recipe with distill.teacher=OUT/teacher_probs.csv (gen-emotion run).",
    )
    p.add_argument("teacher", type=Path, help="a finished ensemble (or cv) folder with out-of-fold probabilities")
    p.add_argument("recipe", help="a classify recipe YAML file, or the name of a shipped one (the student)")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides of the student's recipe")
    p.add_argument("--alpha", type=float, default=None, help="the soft targets' share of the loss (recipe: 0.5)")
    p.add_argument(
        "--temperature", type=float, default=None, help="the teacher's and student's logits divided by T (recipe: 1)"
    )
    p.add_argument("--data", default=None, help="the data the teacher was cross-validated on (default: the sample)")
    p.add_argument("--folds", type=int, default=5, help="number of multilabel-stratified folds (default 5)")
    p.add_argument("--rows", type=int, default=None, help="use only the first N rows of each split")
    p.add_argument("--out", type=Path, required=True, help="the student's cv folder; an existing one resumes")
    p.add_argument("--restart", action="store_true", help="start an existing --out over")
    p.add_argument("--drop-models", action="store_true", help="delete each fold's model once predicted")
    p.set_defaults(func=cmd_distill)


def cmd_distill(args: argparse.Namespace) -> int:
    from gen_emotion.cli.commands import check_data
    from gen_emotion.evaluation.distill import run_distill
    from gen_emotion.runs.folder import DISTILL_FILE, SUBMISSION

    if args.folds < 2:
        raise GenEmotionError(f"--folds must be at least 2, got {args.folds}")
    check_data(args.data)
    metrics, summary = run_distill(
        args.teacher,
        args.recipe,
        list(args.overrides),
        args.out,
        data=args.data,
        folds=args.folds,
        rows=args.rows,
        alpha=args.alpha,
        temperature=args.temperature,
        restart=args.restart,
        keep_models=not args.drop_models,
    )
    gap = summary["student_minus_teacher"]
    print(f"cv folder: {args.out} (alpha {summary['alpha']:g}, temperature {summary['temperature']:g})")
    print(
        f"honest macro-F1 on {summary['rows']} rows: student {summary['student_honest_macro_f1']:.4f}, teacher "
        f"{summary['teacher_honest_macro_f1']:.4f}; student minus teacher {gap['diff']:+.4f} "
        f"(paired bootstrap 95%: {gap['ci95'][0]:+.4f} to {gap['ci95'][1]:+.4f})"
    )
    print(f"out-of-fold macro-F1 {metrics.macro_f1:.4f}  {metrics.wall_s:.0f} s; {args.out / DISTILL_FILE}")
    print(f"submission: {args.out / SUBMISSION} ({metrics.test_rows} rows, the fold models' mean probabilities)")
    return 0
