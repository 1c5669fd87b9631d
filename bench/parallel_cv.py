"""cv wall time, folds one after another vs ``--parallel-folds N`` on a local Ray of this machine.

For each recipe (TF-IDF; MiniLM with ``--minilm``), ``gen-emotion cv`` runs twice in a process of its own, into
fresh folders: sequentially, then with ``--parallel-folds N``. The wall time is the whole command's (Ray's start
and stop included), as a user waits for it; the two folders' out-of-fold macro-F1 are printed side by side (equal
for TF-IDF; for MiniLM each fold trains on fewer threads side by side, so its numbers may differ in the last
digits). On a machine of C cores, N folds side by side each get C/N of them: a CPU recipe gains only what one
fold leaves idle (tokenizing, Python) and pays Ray's start (seconds); see docs/cluster.md for the arithmetic.

    python bench/parallel_cv.py --data ../shared/data --folds 5 --parallel 2 [--minilm --rows 1000]
    python bench/parallel_cv.py --smoke            # the shipped sample, TF-IDF, 2 folds: that it runs

Prints one line per run and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MINILM_STEPS = ["train.epochs=1"]
"""MiniLM's recipe as shipped but for one epoch (the figure is a ratio of two runs of the same work)."""


def run_cv(recipe: str, overrides: list[str], args: argparse.Namespace, out: Path, parallel: int | None) -> dict:
    """One ``gen-emotion cv`` in a process of its own; its wall time and out-of-fold macro-F1."""
    command = [sys.executable, "-m", "gen_emotion", "cv", recipe, *overrides, "--folds", str(args.folds)]
    command += ["--out", str(out)]
    if args.data:
        command += ["--data", str(args.data)]
    if args.rows:
        command += ["--rows", str(args.rows)]
    if parallel:
        command += ["--parallel-folds", str(parallel)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    metrics = json.loads((out / "oof_metrics.json").read_text())
    return {
        "recipe": recipe,
        "parallel_folds": parallel or 1,
        "wall_s": round(wall, 1),
        "folds_s": metrics["wall_s"],
        "macro_f1": round(metrics["macro_f1"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="folder with train.csv, test.csv (default: sample)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=2, help="folds side by side (default 2)")
    parser.add_argument("--rows", type=int, default=None, help="only the first N rows of train.csv and test.csv")
    parser.add_argument("--minilm", action="store_true", help="also minilm-l6-cpu (one epoch; minutes a fold)")
    parser.add_argument("--smoke", action="store_true", help="the shipped sample, TF-IDF, 2 folds")
    args = parser.parse_args()
    if args.smoke:
        args.data, args.folds, args.rows, args.minilm = None, 2, None, False
    recipes = [("tfidf-logreg", [])] + ([("minilm-l6-cpu", MINILM_STEPS)] if args.minilm else [])

    results = []
    root = Path(tempfile.mkdtemp(prefix="bench-parallel-cv-"))
    try:
        for recipe, overrides in recipes:
            pair = []
            for parallel in (None, args.parallel):
                out = root / f"{recipe}-{parallel or 1}"
                found = run_cv(recipe, overrides, args, out, parallel)
                pair.append(found)
                print(
                    f"{recipe:<14} folds side by side {found['parallel_folds']}: {found['wall_s']:7.1f} s wall "
                    f"({found['folds_s']:.1f} s of folds), out-of-fold macro-F1 {found['macro_f1']:.4f}",
                    flush=True,
                )
            speedup = pair[0]["wall_s"] / pair[1]["wall_s"]
            print(
                f"{recipe:<14} --parallel-folds {args.parallel}: speed-up {speedup:.2f}x (sequential wall / its wall)"
            )
            results.append({"recipe": recipe, "runs": pair, "speedup": round(speedup, 2)})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = {"folds": args.folds, "rows": args.rows, "parallel": args.parallel, "cpus": os.cpu_count()}
    print(json.dumps({"bench": "parallel_cv", **summary, "results": results}))


if __name__ == "__main__":
    main()
