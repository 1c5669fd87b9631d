"""Encoders side by side: the embedded MiniLM-L6 and MPNet-base recipes on the same held-out fold, the same overrides.

    python bench/encoders.py --data ../shared/data --set train.epochs=1 --out runs/bench-encoders
    python bench/encoders.py --smoke                       # the shipped sample, 2 steps: proves it runs

Each recipe (``minilm-l6-cpu``, ``mpnet-base-cpu``, or ``--recipes``) is run with ``gen-emotion run``'s own code
(``run_recipe``: held-out fold ``data.fold`` of ``data.folds``, 0 of 10 by default: 6,951 training and 773 held-out
rows of the Kaggle data) with the ``--set`` overrides, one after another in this process. Prints, for each: the
held-out macro-F1 at 0.5 and with thresholds cross-validated on the held-out rows, seconds a training step, training
and prediction time; then a paired bootstrap of each recipe against the first with thresholds cross-validated on the
same splits, and one JSON line. Run folders live under ``--out`` and a later run reuses them; run it alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gen_emotion.config.recipes import data_source, load_recipe
from gen_emotion.data.dataset import sample_data_dir
from gen_emotion.data.sources import read_splits
from gen_emotion.runs.pipeline import run_recipe
from gen_emotion.scoring.metrics import macro_f1, paired_bootstrap
from gen_emotion.scoring.prediction_files import read_probabilities, reindex
from gen_emotion.scoring.thresholds import cross_validated_predictions

RECIPES = ["minilm-l6-cpu", "mpnet-base-cpu"]
SMOKE = ["train.max_steps=2", "train.batch_size=8", "classifier.max_length=48"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the Kaggle data folder (default: the shipped sample)")
    parser.add_argument("--recipes", nargs="+", default=RECIPES)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every recipe")
    parser.add_argument("--smoke", action="store_true", help="the shipped sample, 2 training steps")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-encoders"))
    args = parser.parse_args()
    overrides = [*SMOKE, *args.set] if args.smoke else args.set
    data = args.data or sample_data_dir()
    train = read_splits(data_source(load_recipe(args.recipes[0], overrides), data, None, None)).train
    rows, first_ids = {}, None
    for name in args.recipes:
        recipe = load_recipe(name, overrides)
        run_dir = args.out / name
        metrics = run_recipe(recipe, data, run_dir)
        ids, probs = read_probabilities(run_dir / "val_probs.csv", train.label_names)
        first_ids = first_ids or ids
        assert ids == first_ids, f"{name} held out other rows"
        labels = reindex(train.labels, train.ids, ids)
        training = metrics.training
        rows[name] = {
            "at_0_5": macro_f1(labels, (probs >= 0.5).astype(int)),
            "predictions": cross_validated_predictions(labels, probs, seed=recipe.data.seed),
            "s_per_step": round(training["train_runtime_s"] / max(training["steps"], 1), 3),
            "train_s": metrics.timings["train_s"],
            "predict_s": metrics.timings["predict_s"],
            "steps": training["steps"],
        }
        rows[name]["thresholds_cv"] = macro_f1(labels, rows[name]["predictions"])
    first = args.recipes[0]
    print(f"held-out rows: {len(first_ids)}; overrides: {overrides or 'none'}")
    for name, row in rows.items():
        print(
            f"  {name:<16} macro-F1 {row['at_0_5']:.4f} at 0.5, {row['thresholds_cv']:.4f} with thresholds; "
            f"{row['steps']} steps at {row['s_per_step']:.2f} s, train {row['train_s']:.0f} s, predict "
            f"{row['predict_s']:.0f} s"
        )
    pairs = {}
    for name in args.recipes[1:]:
        pairs[f"{name} minus {first}"] = paired_bootstrap(labels, rows[name]["predictions"], rows[first]["predictions"])
        low, high = pairs[f"{name} minus {first}"]["ci95"]
        print(f"  {name} minus {first}: {pairs[f'{name} minus {first}']['diff']:+.4f} (95%: {low:+.4f} to {high:+.4f})")
    ratio = rows[args.recipes[-1]]["s_per_step"] / max(rows[first]["s_per_step"], 1e-9)
    print(f"  a training step of {args.recipes[-1]} takes {ratio:.1f}x {first}'s")
    summary = {name: {k: v for k, v in row.items() if k != "predictions"} for name, row in rows.items()}
    print(
        json.dumps({"bench": "encoders", "overrides": overrides, "runs": summary, "pairs": pairs, "step_ratio": ratio})
    )


if __name__ == "__main__":
    main()
