"""A sweep against the shipped recipe it starts from: what the search finds, and what the best of N trials' figure is
worth on rows no trial saw.

    python bench/sweep.py --data ../shared/data --trials 30 --folds 5 --holdout 0.2 --out runs/bench-sweep
    python bench/sweep.py --data ../shared/data --recipe minilm-l6-cpu --space recipes/sweeps/minilm-space.yaml \
        --trials 12 --folds 3 --holdout 0.2 --set train.epochs=1 --full train.epochs=4 --no-shipped-cv \
        --out runs/bench-sweep-minilm

Runs ``gen-emotion sweep RECIPE --space SPACE`` (every trial a cv of ``--folds`` folds on the rows left after the
holdout, pruned by the median pruner; ``--set`` overrides shorten every trial), then the shipped recipe itself the
same two ways: a cv on the same rows (its honest out-of-fold macro-F1; ``--no-shipped-cv`` skips it where it costs
hours) and a run scored once on the same holdout. With ``--full``, ``best_recipe.yaml`` with those overrides (its
full length) is also trained on the rest and scored on the holdout. Prints the figures side by side, the wall times,
and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gen_emotion.config.recipes import load_recipe
from gen_emotion.evaluation.cv import run_cv
from gen_emotion.sweeps.holdout import HOLDOUT_FILE
from gen_emotion.sweeps.sweep import run_sweep, sweep_options

REPO = Path(__file__).resolve().parents[1]
RECIPE = "tfidf-logreg"
SPACE = REPO / "recipes" / "sweeps" / "tfidf-space.yaml"


def at_half(best_dir: Path, shipped_dir: Path, data: Path) -> dict:
    """The holdout's macro-F1 of both recipes at the plain 0.5 decision, and a paired bootstrap of the difference."""
    from gen_emotion.data.formats import read_label_file
    from gen_emotion.scoring.metrics import paired_bootstrap
    from gen_emotion.scoring.prediction_files import read_probabilities

    gold = read_label_file(data / HOLDOUT_FILE)
    best_ids, best = read_probabilities(best_dir / "holdout-run" / "val_probs.csv", gold.label_names)
    ship_ids, ship = read_probabilities(shipped_dir / "holdout-run" / "val_probs.csv", gold.label_names)
    assert best_ids == ship_ids == gold.ids
    return paired_bootstrap(gold.labels, (best >= 0.5).astype(int), (ship >= 0.5).astype(int))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the Kaggle data folder (train.csv, test.csv)")
    parser.add_argument("--recipe", default=RECIPE, help="the shipped recipe the sweep starts from")
    parser.add_argument("--space", type=Path, default=SPACE, help="the sweep's space file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every trial")
    parser.add_argument("--full", action="append", default=[], metavar="KEY=VALUE", help="best_recipe.yaml at length")
    parser.add_argument("--no-shipped-cv", action="store_true", help="skip the shipped recipe's cv (hours for MiniLM)")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-sweep"))
    args = parser.parse_args()

    started = time.perf_counter()
    options = sweep_options(
        {
            "space": str(args.space),
            "trials": args.trials,
            "folds": args.folds,
            "holdout": args.holdout,
            "data": args.data,
            "out": str(args.out / "sweep"),
        }
    )
    result = run_sweep(args.recipe, args.set, options)
    sweep_s = time.perf_counter() - started
    data = args.out / "sweep" / "data"  # the rows every trial saw, and the holdout none did

    from gen_emotion.sweeps.holdout import score_holdout

    shipped = load_recipe(args.recipe)
    started = time.perf_counter()
    shipped_cv = None
    if not args.no_shipped_cv:
        shipped_cv = run_cv(shipped, data, args.out / "shipped-cv", folds=args.folds).honest_macro_f1
    shipped_held = score_holdout(shipped, data, args.out / "shipped")["macro_f1"]
    shipped_s = time.perf_counter() - started

    best, held = result["best"], result["holdout"]
    full = None
    full_s = 0.0
    if args.full:
        started = time.perf_counter()
        full_recipe = load_recipe(args.out / "sweep" / "best_recipe.yaml", args.full)
        full = score_holdout(full_recipe, data, args.out / "best-full")["macro_f1"]
        full_s = time.perf_counter() - started
    half = at_half(args.out / ("best-full" if args.full else "sweep"), args.out / "shipped", data)
    counts = result["counts"]
    name = Path(args.recipe).stem
    print(
        f"sweep: {sum(counts.values())} trials ({', '.join(f'{n} {s}' for s, n in counts.items())}) in {sweep_s:.0f} s"
    )
    print(f"best trial {best['number']}: {', '.join(f'{k}={v}' for k, v in best['params'].items())}")
    print(f"{'':<28}{'out-of-fold (honest)':>22}{'holdout (' + str(held['rows']) + ' rows)':>22}")
    print(f"{'shipped ' + name:<28}{'not run' if shipped_cv is None else f'{shipped_cv:.4f}':>22}{shipped_held:>22.4f}")
    print(f"{'best of the sweep':<28}{best['objective']:>22.4f}{held['macro_f1']:>22.4f}")
    if full is not None:
        print(f"{'best at ' + ' '.join(args.full):<28}{'not run':>22}{full:>22.4f}")
    low, high = half["ci95"]
    which = "best at full length" if args.full else "best"
    interval = f"paired bootstrap 95%: {low:+.4f} to {high:+.4f}"
    print(f"holdout at 0.5, {which} minus shipped: {half['diff']:+.4f} ({interval})")
    took = f"the shipped recipe took {shipped_s:.0f} s, the full-length best {full_s:.0f} s"
    print(f"holdout file: {data / HOLDOUT_FILE}; {took}")
    print(
        json.dumps(
            {
                "bench": "sweep",
                "recipe": name,
                "trials": args.trials,
                "folds": args.folds,
                "holdout": args.holdout,
                "trial_overrides": args.set,
                "holdout_rows": held["rows"],
                "counts": counts,
                "best_params": best["params"],
                "best_oof_honest": best["objective"],
                "best_holdout": held["macro_f1"],
                "best_full_overrides": args.full,
                "best_full_holdout": full,
                "shipped_oof_honest": shipped_cv,
                "shipped_holdout": shipped_held,
                "holdout_at_0_5_best_minus_shipped": half,
                "sweep_wall_s": round(sweep_s, 1),
                "shipped_wall_s": round(shipped_s, 1),
                "best_full_wall_s": round(full_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
