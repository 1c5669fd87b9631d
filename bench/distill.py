"""Distillation: does one MiniLM trained on an ensemble's out-of-fold probabilities reach the ensemble?

    python bench/distill.py --data ../shared/data --folds 3 --set train.epochs=2 --out runs/bench-distill
    python bench/distill.py --smoke                      # the shipped sample, 1 epoch on 120 rows: proves it runs

The teacher: a cv of ``tfidf-logreg`` and a cv of ``minilm-l6-cpu`` (with the ``--set`` overrides), averaged and
weighted by their out-of-fold macro-F1 (``gen-emotion ensemble --weighted``); ``--teacher-seeds 7`` adds a MiniLM
cv per seed (``train.seed``, the same folds: the documented best ensemble is two seeds and TF-IDF). The student:
``minilm-l6-cpu`` with the same overrides, folds and seed, distilled from that ensemble (``gen-emotion distill``,
``--alpha``, ``--temperature``); ``with-student`` is the teacher's members and the student averaged the same way.
The plain MiniLM cv is the student without soft targets, so the two pairs say what a choice rests on: student minus
teacher (did it reach the ensemble?) and student minus plain MiniLM (did the soft targets help?), each a paired
bootstrap of macro-F1 with thresholds cross-validated on the same splits. Then the prediction
cost of the ensemble and of the student through ``EmotionModel`` (the test texts in one call, after loading; the
ensemble runs every member's fold models, the student its own), wall times, and one JSON line. Every folder lives
under ``--out`` and is reused (resumed) by a later run; run it alone.

The out-of-fold comparison flatters the student: a teacher's out-of-fold probability of a training row comes from a
fold model that saw the student's held-out rows. ``--holdout FRACTION`` measures without that: a multilabel-stratified
share of the training rows (``sweep --holdout``'s split, the same seed) is kept out of everything; the teacher is
built on the rest as above, then the student (``--student-set``: the shipped length by default) and the same recipe
without soft targets are each trained on all of the rest (``run --val``) and scored once on the held-out rows, beside
the teacher's own prediction of them (the ensemble folder through ``EmotionModel``). ``--plain RUN_DIR`` reuses a run
of the plain recipe on the same rows (``bench/sweep.py``'s ``shipped/holdout-run``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gen_emotion.config.recipes import load_recipe
from gen_emotion.data.dataset import sample_data_dir
from gen_emotion.data.formats import read_label_file, read_test
from gen_emotion.evaluation.cv import run_cv
from gen_emotion.evaluation.distill import run_distill
from gen_emotion.evaluation.ensemble import run_ensemble
from gen_emotion.runs.folder import load_member
from gen_emotion.scoring.metrics import macro_f1, paired_bootstrap, per_label
from gen_emotion.scoring.thresholds import cross_validated_predictions
from gen_emotion.serving.notebook import EmotionModel

SMOKE = ["train.epochs=1", "train.batch_size=16", "classifier.max_length=48"]


def timed(what: str, seconds: dict, work):
    started = time.perf_counter()
    result = work()
    seconds[what] = round(time.perf_counter() - started, 1)
    print(f"{what}: {seconds[what]:.0f} s", flush=True)
    return result


def honest(folders: dict[str, Path], seed: int) -> tuple[np.ndarray, dict, dict]:
    """Each folder's pooled 0/1 predictions under cross-validated thresholds (the same splits for all), and their
    macro-F1 and per-label F1."""
    members = {name: load_member(folder) for name, folder in folders.items()}
    first = next(iter(members.values()))
    y = first.labels
    predictions = {}
    for name, member in members.items():
        assert member.ids == first.ids, f"{name} covers other rows"
        predictions[name] = cross_validated_predictions(y, member.oof_probs, seed=seed)
    figures = {
        name: {
            "honest_macro_f1": macro_f1(y, p),
            "per_label_f1": {k: v["f1"] for k, v in per_label(y, p, first.label_names).items()},
        }
        for name, p in predictions.items()
    }
    return y, predictions, figures


def prediction_cost(folder: Path, texts: list[str]) -> dict:
    """Seconds to load a folder and to predict ``texts`` in one call, through the notebook API."""
    started = time.perf_counter()
    with EmotionModel.load(folder) as model:
        model.predict(texts[:2])  # loads every fold model
        loaded = time.perf_counter()
        model.predict(texts)
        done = time.perf_counter()
    return {"load_s": round(loaded - started, 1), "predict_s": round(done - loaded, 1), "texts": len(texts)}


def holdout_check(args: argparse.Namespace, minilm_set: list[str]) -> dict:
    """The teacher, the student and the plain recipe scored once on rows none of them saw (module docstring)."""
    from gen_emotion.scoring.prediction_files import read_probabilities
    from gen_emotion.sweeps.holdout import HOLDOUT_FILE, HOLDOUT_RUN, score_holdout, split_holdout

    root, seconds = args.out / "holdout", {}
    student = load_recipe("minilm-l6-cpu", args.student_set)
    data = split_holdout(student, args.data, args.holdout, root)
    timed("holdout: tfidf cv", seconds, lambda: run_cv(load_recipe("tfidf-logreg"), data, root / "tfidf", args.folds))
    minilm = load_recipe("minilm-l6-cpu", minilm_set)
    timed("holdout: minilm cv", seconds, lambda: run_cv(minilm, data, root / "minilm", args.folds))
    teacher = root / "ensemble"
    run_ensemble([root / "minilm", root / "tfidf"], teacher, weighted=True)
    distilled = load_recipe(
        "minilm-l6-cpu", [*args.student_set, f"distill.teacher={(teacher / 'oof_probs.csv').resolve()}"]
    )
    timed("holdout: distilled run", seconds, lambda: score_holdout(distilled, data, root / "distilled"))
    if args.plain is None:
        timed("holdout: plain run", seconds, lambda: score_holdout(student, data, root / "plain"))
    held = read_label_file(data / HOLDOUT_FILE)
    with EmotionModel.load(teacher) as model:
        probs = {"ensemble (teacher)": model.predict_proba(held.texts)}
    runs = {"distilled": root / "distilled" / HOLDOUT_RUN, "plain": args.plain or root / "plain" / HOLDOUT_RUN}
    for name, folder in runs.items():
        ids, probs[name] = read_probabilities(folder / "val_probs.csv", held.label_names)
        assert ids == held.ids, f"{folder} scored other rows"
    predictions = {n: cross_validated_predictions(held.labels, p, seed=student.data.seed) for n, p in probs.items()}
    figures = {n: macro_f1(held.labels, p) for n, p in predictions.items()}
    at_half = {n: macro_f1(held.labels, (p >= 0.5).astype(int)) for n, p in probs.items()}
    pairs = {
        f"distilled minus {other}": paired_bootstrap(held.labels, predictions["distilled"], predictions[other])
        for other in ("ensemble (teacher)", "plain")
    }
    print(f"holdout: {len(held.ids)} rows none of them saw; macro-F1 with thresholds cross-validated / at 0.5:")
    for name in figures:
        print(f"  {name:<20} {figures[name]:.4f} / {at_half[name]:.4f}")
    for name, pair in pairs.items():
        print(f"  {name}: {pair['diff']:+.4f} (paired bootstrap 95%: {pair['ci95'][0]:+.4f} to {pair['ci95'][1]:+.4f})")
    return {"rows": len(held.ids), "honest": figures, "at_0_5": at_half, "pairs": pairs, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the Kaggle data folder (default: the shipped sample)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="MiniLM overrides (both)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument(
        "--teacher-seeds",
        type=lambda v: [int(s) for s in v.split(",")],
        default=[],
        help="more MiniLM cvs in the teacher, one per seed: 7 or 7,11",
    )
    parser.add_argument("--alpha", type=float, default=None)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--smoke", action="store_true", help="the sample, 2 folds, 1 epoch on 120 rows")
    parser.add_argument("--holdout", type=float, default=None, help="the holdout check instead (module docstring)")
    parser.add_argument("--student-set", action="append", default=[], metavar="KEY=VALUE", help="--holdout's student")
    parser.add_argument("--plain", type=Path, default=None, help="--holdout: a plain run's holdout-run folder to reuse")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-distill"))
    args = parser.parse_args()
    if args.smoke:
        args.set, args.folds, args.rows = [*SMOKE, *args.set], 2, 120
    if args.holdout is not None:
        print(json.dumps(holdout_check(args, args.set), default=float))
        return
    out, seconds = args.out, {}
    minilm = load_recipe("minilm-l6-cpu", args.set)
    cv = {"folds": args.folds, "rows": args.rows}
    timed("tfidf cv", seconds, lambda: run_cv(load_recipe("tfidf-logreg"), args.data, out / "tfidf", **cv))
    timed("minilm cv", seconds, lambda: run_cv(minilm, args.data, out / "minilm", **cv))
    members = ["minilm"]
    for seed in args.teacher_seeds:
        seeded = load_recipe("minilm-l6-cpu", [*args.set, f"train.seed={seed}"])
        members.append(f"minilm-seed{seed}")
        timed(f"{members[-1]} cv", seconds, lambda r=seeded, m=members[-1]: run_cv(r, args.data, out / m, **cv))
    members.append("tfidf")
    teacher = [out / name for name in members]
    timed("ensemble", seconds, lambda: run_ensemble(teacher, out / "ensemble", weighted=True))
    timed(
        "distilled cv",
        seconds,
        lambda: run_distill(
            out / "ensemble",
            "minilm-l6-cpu",
            args.set,
            out / "distilled",
            data=args.data,
            alpha=args.alpha,
            temperature=args.temperature,
            **cv,
        ),
    )
    timed(
        "ensemble with the student",
        seconds,
        lambda: run_ensemble([out / "distilled", *teacher], out / "with-student", weighted=True),
    )
    folders = {name: out / name for name in ("distilled", "ensemble", "with-student", *members)}
    y, predictions, figures = honest(folders, minilm.data.seed)
    pairs = {
        f"distilled minus {other}": paired_bootstrap(y, predictions["distilled"], predictions[other])
        for other in ("ensemble", "minilm")
    }
    texts = read_test(Path(args.data or sample_data_dir()) / "test.csv").texts
    cost = {name: prediction_cost(folders[name], texts) for name in ("ensemble", "distilled")}
    print(f"{len(y)} rows, {args.folds} folds, MiniLM overrides {args.set or 'none'}; honest macro-F1:")
    for name, figure in figures.items():
        print(f"  {name:<10} {figure['honest_macro_f1']:.4f}  ({seconds.get(name + ' cv', 0):.0f} s)")
    for name, pair in pairs.items():
        low, high = pair["ci95"]
        print(f"  {name}: {pair['diff']:+.4f} (paired bootstrap 95%: {low:+.4f} to {high:+.4f})")
    for name, c in cost.items():
        print(f"  predict {c['texts']} texts with the {name}: load {c['load_s']} s, predict {c['predict_s']} s")
    ratio = cost["ensemble"]["predict_s"] / max(cost["distilled"]["predict_s"], 1e-9)
    print(f"  the ensemble's prediction takes {ratio:.1f}x the student's")
    labels = load_member(out / "distilled").label_names
    print("per-label F1 (distilled / ensemble / minilm):")
    for label in labels:
        row = [figures[n]["per_label_f1"][label] for n in ("distilled", "ensemble", "minilm")]
        print(f"  {label:<13} " + "  ".join(f"{v:.3f}" for v in row))
    summary = {"rows": len(y), "folds": args.folds, "overrides": args.set, "seconds": seconds, "pairs": pairs}
    summary |= {"honest": {n: f["honest_macro_f1"] for n, f in figures.items()}, "predict": cost}
    summary["predict_ratio"] = round(ratio, 2)
    print(json.dumps(summary, default=lambda v: float(v) if isinstance(v, np.floating) else str(v)))


if __name__ == "__main__":
    main()
