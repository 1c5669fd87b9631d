"""Which checkpoint a classifier should keep: the one with the lowest validation loss, or the one with the highest
validation macro-F1 (``train.best_model_metric``), with or without early stopping (``train.early_stopping_patience``).

    python bench/checkpoint_choice.py --data ../shared/data                  # MiniLM, held-out fold 0
    python bench/checkpoint_choice.py --data ../shared/data --rows 300 --eval-rows 40 train.max_steps=6 \\
        train.batch_size=8 --eval-steps 2                                    # a smoke run: proves it works

Trains the recipe (``minilm-l6-cpu``) once, on the training rows of held-out fold 0 of 10 less ``--eval-rows`` kept
aside for validation, validating every ``--eval-steps`` steps (loss, and macro-F1 at 0.5). At each validation the
model as it stands also predicts the held-out fold, so every choice is read off that one trajectory: the lowest
validation loss, the highest validation macro-F1, the last validation, and early stopping on either figure with
each ``--patience``. For each it prints the step and the held-out fold's macro-F1 at 0.5 and with per-label
thresholds (the honest figure: tuned on 4/5 of the held-out rows, scored on the other 1/5, as ``run`` decides), a
paired bootstrap of macro-F1 minus loss at 0.5, and one JSON line. The shipped recipe trains on every row (its
``data.eval_rows`` is 0) and keeps the last step: ``last`` here is that, less the validation rows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from gen_emotion.config.recipes import data_source, load_recipe
from gen_emotion.data.dataset import sample_data_dir
from gen_emotion.runs.steps import Fold
from gen_emotion.scoring.metrics import macro_f1, paired_bootstrap
from gen_emotion.scoring.thresholds import cross_validated_macro_f1


def trajectory_callback(held_out: Any, recipe: Any, points: list[dict[str, Any]]) -> Any:
    """A ``TrainerCallback`` that, at each validation, predicts ``held_out`` with the model as it stands and keeps
    the validation figures and those probabilities in ``points``."""
    from transformers import TrainerCallback

    from gen_emotion.training.classify import predict_with

    class HeldOutTrajectory(TrainerCallback):
        def on_evaluate(self, args, state, control, model=None, metrics=None, processing_class=None, **kwargs):
            model.eval()
            probs = predict_with(model, processing_class, held_out.texts, recipe)
            model.train()
            points.append(
                {
                    "step": int(state.global_step),
                    "eval_loss": float(metrics["eval_loss"]),
                    "eval_macro_f1": float(metrics["eval_macro_f1"]),
                    "probs": probs,
                }
            )
            print(
                f"step {state.global_step:>5}: validation loss {metrics['eval_loss']:.4f}, macro-F1 "
                f"{metrics['eval_macro_f1']:.4f}; held-out macro-F1 at 0.5 "
                f"{macro_f1(held_out.labels, (probs >= 0.5).astype(int)):.4f}",
                flush=True,
            )

    return HeldOutTrajectory()


def best_index(points: list[dict[str, Any]], key: str, patience: int | None = None) -> int:
    """The validation a choice keeps (transformers' rule: better is strictly lower loss or higher macro-F1), with
    early stopping after ``patience`` validations without a better one."""
    sign = -1.0 if key == "eval_loss" else 1.0
    best, waited = 0, 0
    for i in range(1, len(points)):
        if sign * points[i][key] > sign * points[best][key]:
            best, waited = i, 0
        else:
            waited += 1
            if patience is not None and waited >= patience:
                break
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with the Kaggle train.csv and test.csv")
    parser.add_argument("--recipe", default="minilm-l6-cpu", help="a classify recipe")
    parser.add_argument("--rows", type=int, default=None, help="only the first rows of train.csv (a smoke run)")
    parser.add_argument("--eval-rows", type=int, default=200, help="training rows kept aside for validation")
    parser.add_argument("--eval-steps", type=int, default=50, help="steps between validations")
    parser.add_argument("--patience", default="3,5", help="early-stopping patiences to read, comma-separated")
    parser.add_argument("overrides", nargs="*", help="recipe overrides (train.epochs=2 ...)")
    args = parser.parse_args()

    settings = [f"data.eval_rows={args.eval_rows}", f"train.eval_steps={args.eval_steps}"]
    settings += [f"train.save_steps={args.eval_steps}", "train.save_total_limit=1", "train.best_model_metric=loss"]
    recipe = load_recipe(args.recipe, [*settings, *args.overrides])
    from gen_emotion.training.classify import train_classifier
    from gen_emotion.training.trainers import split_train_eval

    source = data_source(recipe, args.data or sample_data_dir(), rows=args.rows)
    fold = Fold.load(source, recipe.data.folds, recipe.data.fold, recipe.data.seed)
    rows, held_out = fold.train, fold.held_out
    train_idx, eval_idx = split_train_eval(len(rows), recipe.data, recipe.train.seed)
    print(
        f"{recipe.name}: {len(train_idx)} training rows, {len(eval_idx)} validation rows, held-out fold "
        f"{fold.index} of {fold.folds}: {len(held_out)} rows",
        flush=True,
    )
    points: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="checkpoint-choice-") as out:
        callback = trajectory_callback(held_out, recipe, points)
        train_classifier(recipe, rows.subset(train_idx), rows.subset(eval_idx), Path(out), callbacks=[callback])
    seconds = time.perf_counter() - started
    if not points:
        raise SystemExit("no validation happened: lower --eval-steps or train longer")

    y = held_out.labels
    choices = {"loss": best_index(points, "eval_loss"), "macro_f1": best_index(points, "eval_macro_f1")}
    choices["last"] = len(points) - 1
    for patience in (int(p) for p in args.patience.split(",") if p):
        choices[f"loss_patience_{patience}"] = best_index(points, "eval_loss", patience)
        choices[f"macro_f1_patience_{patience}"] = best_index(points, "eval_macro_f1", patience)
    results = {}
    for name, index in choices.items():
        point = points[index]
        at_half = macro_f1(y, (point["probs"] >= 0.5).astype(int))
        honest = cross_validated_macro_f1(y, point["probs"], seed=recipe.data.seed)
        results[name] = {
            "step": point["step"],
            "eval_loss": point["eval_loss"],
            "eval_macro_f1": point["eval_macro_f1"],
            "held_out_macro_f1_at_0_5": at_half,
            "held_out_macro_f1_thresholds_cv": honest,
        }
        print(
            f"{name:<22} step {point['step']:>5}: held-out macro-F1 {at_half:.4f} at 0.5, {honest:.4f} with "
            f"thresholds (cross-validated)",
            flush=True,
        )
    by_f1, by_loss = (points[choices[k]]["probs"] >= 0.5 for k in ("macro_f1", "loss"))
    bootstrap = paired_bootstrap(y, by_f1.astype(int), by_loss.astype(int))
    print(
        f"macro_f1 minus loss at 0.5: {bootstrap['diff']:+.4f} (95% {bootstrap['ci95'][0]:+.4f} .. "
        f"{bootstrap['ci95'][1]:+.4f}); {len(points)} validations, {seconds / 60:.1f} min",
        flush=True,
    )
    summary = {
        "recipe": recipe.name,
        "held_out_rows": len(held_out),
        "eval_rows": len(eval_idx),
        "train_rows": len(train_idx),
        "validations": len(points),
        "seconds": round(seconds, 1),
        "choices": results,
        "macro_f1_minus_loss_at_0_5": bootstrap,
        "trajectory": [{k: v for k, v in p.items() if k != "probs"} for p in points],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
