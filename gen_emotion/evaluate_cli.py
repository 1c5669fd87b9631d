"""The evaluation commands: ``cv`` (K-fold cross-validation of a recipe), ``ensemble`` and ``report``.

``gen_emotion.cli`` registers them with ``add_commands``; ``python -m gen_emotion.evaluate_cli`` runs
them on their own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_cv(args: argparse.Namespace) -> int:
    from gen_emotion.cv import default_cv_dir, run_cv
    from gen_emotion.errors import GenEmotionError
    from gen_emotion.recipes import load_recipe

    recipe = load_recipe(args.recipe, list(args.overrides))
    if args.data is not None and not (args.data / "train.csv").is_file():
        raise GenEmotionError(f"{args.data}: no train.csv in this folder")
    run_dir = args.out or default_cv_dir(recipe)
    metrics = run_cv(recipe, args.data, run_dir, folds=args.folds, rows=args.rows, keep_models=not args.drop_models)
    print(f"cv folder: {run_dir}")
    print(
        f"out-of-fold macro-F1 {metrics['macro_f1']:.4f} (per fold {metrics['per_fold_macro_f1_mean']:.4f} "
        f"± {metrics['per_fold_macro_f1_std']:.4f})  micro-F1 {metrics['micro_f1']:.4f}  "
        f"jaccard {metrics['jaccard']:.4f}  {metrics['wall_s']:.0f} s"
    )
    how = "the fold models' mean probabilities" if metrics["has_probabilities"] else "the fold models' majority vote"
    print(f"submission: {run_dir / 'submission.csv'} ({metrics['test_rows']} rows, {how})")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from gen_emotion.ensemble import run_ensemble

    metrics = run_ensemble(args.run_dirs, args.out, weighted=args.weighted, stacked=args.stack)
    for member in metrics["members"]:
        print(f"  {member['name']:<40} macro-F1 {member['macro_f1']:.4f}  weight {member['weight']:.3f}")
    print(
        f"ensemble ({metrics['mode']}): out-of-fold macro-F1 {metrics['macro_f1']:.4f} "
        f"(honest {metrics['macro_f1_thresholds_cv']:.4f}), micro-F1 {metrics['micro_f1']:.4f}, "
        f"jaccard {metrics['jaccard']:.4f}"
    )
    print(f"submission: {args.out / 'submission.csv'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from gen_emotion.report import write_report

    paths = write_report(args.run_dirs, args.out)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``cv``, ``ensemble`` and ``report`` on the ``gen-emotion`` subparsers."""
    p = sub.add_parser("cv", help="K-fold cross-validation: out-of-fold probabilities, thresholds, test averaged")
    p.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.epochs=1")
    p.add_argument(
        "--data", type=Path, default=None, help="folder with train.csv and test.csv (default: the shipped sample)"
    )
    p.add_argument("--folds", type=int, default=5, help="number of multilabel-stratified folds (default 5)")
    p.add_argument(
        "--out", type=Path, default=None, help="cv folder (default: runs/cv-RECIPE-TIME); an existing one resumes"
    )
    p.add_argument("--rows", type=int, default=None, help="use only the first N rows of train.csv and test.csv")
    p.add_argument(
        "--drop-models", action="store_true", help="delete each fold's model once its probabilities are saved"
    )
    p.set_defaults(func=cmd_cv)

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


def main(argv: list[str] | None = None) -> int:
    """Run one of the evaluation commands on its own (the same exit codes as ``gen-emotion``)."""
    from gen_emotion.errors import GenEmotionError

    parser = argparse.ArgumentParser(prog="gen-emotion", description="Cross-validation, ensembles and reports.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GenEmotionError as err:
        print(f"gen-emotion: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gen-emotion: interrupted; run again with the same --out to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
