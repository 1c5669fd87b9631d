"""Quality on a CPU machine: K-fold cross-validation of the CPU recipes within a time budget, the best
ensemble of them, a leaderboard and a report.

    python bench/quality.py --data ../shared/data --budget-minutes 60 --folds 5
    python bench/quality.py --data ../shared/data --smoke      # 2 folds, 200 rows, 3 steps: proves it works

Runs ``gen-emotion cv`` for tfidf-logreg, minilm-l6-cpu (twice: a second training seed) and
smollm2-135m-cls-cpu one after another, each in its own process (so its peak memory is its own), skipping a
recipe whose estimated time does not fit in what is left of the budget and stopping one that runs past it
(rerun with the same ``--out`` to resume it fold by fold; finished runs are reused). Then tries every
ensemble of two or more finished runs (plain average, weighted by out-of-fold macro-F1, and stacked), keeps
the best, prints the leaderboard (out-of-fold macro-F1 with tuned thresholds, its honest cross-validated
figure, micro-F1, Jaccard, wall time, peak memory), writes ``OUT/report/``, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RECIPES = ("tfidf-logreg", "minilm-l6-cpu", "minilm-l6-cpu-seed7", "smollm2-135m-cls-cpu")
VARIANTS = {"minilm-l6-cpu-seed7": ("minilm-l6-cpu", ["train.seed=7"])}
"""Runs of a shipped recipe with overrides: a second MiniLM training seed, for the ensembles."""
ESTIMATE_MIN = {"tfidf-logreg": 1.0, "minilm-l6-cpu": 25.0, "minilm-l6-cpu-seed7": 25.0, "smollm2-135m-cls-cpu": 14.0}
"""Minutes for 5-fold CV on the Kaggle data (7,724 rows, 3,259 test rows) on 2 cores, measured on 2026-11-27
(0.3, 12.5 and, for MiniLM, 19.0, 29.9 and 21.2 minutes: the machine's speed varies from run to run), about
their mean, rounded up. Scaled linearly with folds and rows."""
FULL_ROWS = 7724
SMOKE = {"folds": 2, "rows": 200, "overrides": ["train.max_steps=3", "train.batch_size=8", "classifier.max_length=48"]}


def estimate_minutes(recipe: str, folds: int, rows: int) -> float:
    """The estimated minutes of one recipe's cross-validation at this size."""
    return ESTIMATE_MIN[recipe] * folds / 5 * min(rows, FULL_ROWS) / FULL_ROWS


def count_rows(data: Path) -> int:
    from gen_emotion.data.formats import read_train

    return len(read_train(data / "train.csv"))


def run_cv(recipe: str, args: argparse.Namespace, out: Path, seconds_left: float) -> tuple[str, float]:
    """``gen-emotion cv`` for one recipe in its own process; returns ``(status, seconds)``."""
    recipe, variant = VARIANTS.get(recipe, (recipe, []))
    command = [sys.executable, "-m", "gen_emotion.cli.parser", "cv", recipe, *variant, *args.overrides]
    command += ["--data", str(args.data), "--folds", str(args.folds), "--out", str(out)]
    if args.rows:
        command += ["--rows", str(args.rows)]
    log = out.parent / "logs" / f"{out.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("a", encoding="utf-8") as handle:
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            code = child.wait(timeout=max(seconds_left, 1))
        except subprocess.TimeoutExpired:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            return "stopped at the budget (rerun with the same --out to resume)", time.perf_counter() - started
    seconds = time.perf_counter() - started
    return ("done" if code == 0 else f"failed (exit {code}, see {log})"), seconds


def leaderboard(rows: list[dict]) -> str:
    header = (
        f"{'run':<58}{'macro-F1':>9}{'honest':>8}{'micro-F1':>9}{'Jaccard':>8}{'fold std':>9}{'wall':>9}{'peak MiB':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in sorted(rows, key=lambda r: -r["macro_f1"]):
        std = r.get("per_fold_macro_f1_std")
        honest = r.get("macro_f1_thresholds_cv")
        lines.append(
            f"{r['name'][:57]:<58}{r['macro_f1']:>9.4f}{honest if honest is not None else float('nan'):>8.4f}"
            f"{r['micro_f1']:>9.4f}{r['jaccard']:>8.4f}{std if std is not None else float('nan'):>9.4f}"
            f"{r['wall_s'] / 60:>8.1f}m{r.get('peak_rss_mib') or 0:>9.0f}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with train.csv and test.csv")
    parser.add_argument("--budget-minutes", type=float, default=60.0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="default: runs/quality (runs/quality-smoke)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--smoke", action="store_true", help="2 folds, the first 200 rows, 3 training steps")
    args = parser.parse_args()
    args.overrides, args.rows = [], None
    if args.smoke:
        args.folds, args.rows, args.overrides = SMOKE["folds"], SMOKE["rows"], SMOKE["overrides"]
    out = (args.out or REPO / "runs" / ("quality-smoke" if args.smoke else "quality")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    args.data = args.data.resolve()
    rows = min(args.rows or FULL_ROWS, count_rows(args.data))

    started, budget = time.perf_counter(), args.budget_minutes * 60
    finished, statuses = [], {}
    for recipe in args.recipes:
        run_dir = out / f"cv-{recipe}"
        if (run_dir / "oof_metrics.json").is_file():
            print(f"{recipe}: finished earlier in {run_dir}, reused")
            finished.append(run_dir)
            statuses[recipe] = "reused"
            continue
        left = budget - (time.perf_counter() - started)
        needed = 60.0 if args.smoke else estimate_minutes(recipe, args.folds, rows) * 60
        if needed > left:
            statuses[recipe] = f"skipped: needs ~{needed / 60:.0f} min, {left / 60:.0f} min of the budget left"
            print(f"{recipe}: {statuses[recipe]}")
            continue
        print(
            f"{recipe}: {args.folds}-fold CV on {rows} rows (estimate ~{needed / 60:.1f} min) -> {run_dir}", flush=True
        )
        status, seconds = run_cv(recipe, args, run_dir, left)
        statuses[recipe] = status
        print(f"{recipe}: {status} in {seconds / 60:.1f} min", flush=True)
        if status == "done":
            finished.append(run_dir)

    from gen_emotion.evaluation.ensemble import search_ensembles
    from gen_emotion.evaluation.report import write_report

    results = [
        {**json.loads((d / "oof_metrics.json").read_text()), "name": d.name.removeprefix("cv-")} for d in finished
    ]
    ensemble = None
    if len(finished) >= 2:
        ensemble = search_ensembles(finished, out / "ensemble-best")
        results.append(ensemble.to_dict())
    print()
    if results:
        print(leaderboard(results))
        report = write_report(finished + ([out / "ensemble-best"] if ensemble else []), out / "report")
        print(f"\nreport: {report['index.html']}")
    else:
        print("no run finished within the budget")
    if ensemble:
        print(
            f"best ensemble: {ensemble.name} (chosen on the same out-of-fold rows: optimistic; honest "
            f"{ensemble.macro_f1_thresholds_cv:.4f})"
        )
    summary = {
        "bench": "quality",
        "smoke": args.smoke,
        "folds": args.folds,
        "rows": rows,
        "budget_minutes": args.budget_minutes,
        "used_minutes": round((time.perf_counter() - started) / 60, 2),
        "runs": {
            r["name"]: {
                k: (round(r[k], 4) if isinstance(r.get(k), float) else r.get(k))
                for k in ("macro_f1", "macro_f1_thresholds_cv", "micro_f1", "jaccard", "wall_s", "peak_rss_mib")
            }
            for r in results
        },
        "status": statuses,
        "best": max(results, key=lambda r: r["macro_f1"])["name"] if results else None,
        "out": str(out),
    }
    print(json.dumps(summary))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
