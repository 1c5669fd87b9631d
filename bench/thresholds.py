"""Greedy decisions vs per-label probabilities + tuned thresholds, on the same held-out rows.

Probabilities come two ways (``generate.probability_source``): ``samples``, the share of N
grammar-constrained samples that name each label (vLLM: one request per tweet with n=N), a pass of its own
after greedy; and ``branches``, each label's probability at its place in the greedy output, read from the
top-k log-probabilities of the greedy pass itself (``gen_emotion.generation.branches``). Thresholds are tuned per label
for F1; the honest figure is cross-validated inside the held-out rows (tune on 4/5, score the other 1/5).

    python bench/thresholds.py --run runs/smollm2-cpu --data ../shared/data --samples 4 8

Prints each way's macro-F1 figures, the gain over greedy, the time to have greedy outputs and probabilities
as a multiple of greedy alone (measured side by side on one engine), and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gen_emotion.core.labels import SEMEVAL
from gen_emotion.data.folds import split_fold
from gen_emotion.data.formats import read_train
from gen_emotion.generation.branches import branch_probabilities
from gen_emotion.generation.parsing import parse_many
from gen_emotion.runs.folder import load_run_recipe
from gen_emotion.scoring.metrics import macro_f1
from gen_emotion.scoring.thresholds import choose_thresholds
from gen_emotion.tasks.generate import GenerateTask, sample_probabilities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run folder with a trained adapter")
    parser.add_argument("--data", type=Path, required=True, help="folder with train.csv (the run's held-out fold)")
    parser.add_argument("--samples", type=int, nargs="*", default=[8], help="samples per tweet (none, one or more)")
    parser.add_argument("--top-k", type=int, default=20, help="branches: likeliest tokens kept per greedy step")
    parser.add_argument("--backend", default="vllm", choices=("vllm", "transformers"))
    args = parser.parse_args()

    recipe = load_run_recipe(args.run)
    _, held_out = split_fold(read_train(args.data / "train.csv"), recipe.data.fold, recipe.data.folds, recipe.data.seed)
    task = GenerateTask()
    encoder = task.encoder(recipe, args.run)
    prompts = [encoder.prompt_ids(text) for text in held_out.texts]
    generator = task.make_generator(recipe, args.run, args.backend, encoder.stop_ids)
    generator.generate(prompts[:8], desc=None)  # warm-up

    started = time.perf_counter()
    raw_greedy = generator.generate(prompts, desc=None)
    greedy = parse_many(raw_greedy)
    greedy_s = time.perf_counter() - started
    greedy_f1 = macro_f1(held_out.labels, greedy)
    print(f"held-out rows {len(prompts)}; greedy macro-F1 {greedy_f1:.4f} in {greedy_s:.1f} s", flush=True)

    results = []

    def report(method: str, probs, seconds: float, total_s: float) -> None:
        choice = choose_thresholds(held_out.labels, probs, greedy_f1, seed=recipe.data.seed)
        cv, in_sample = choice.cross_validated, choice.in_sample
        ratio = total_s / greedy_s
        results.append(
            {
                "method": method,
                "thresholded_macro_f1_cv": cv,
                "thresholded_macro_f1_in_sample": in_sample,
                "gain_cv": cv - greedy_f1,
                "seconds": seconds,
                "greedy_and_probabilities_to_greedy": ratio,
            }
        )
        print(
            f"{method:<22} thresholded macro-F1 {cv:.4f} (cross-validated; {in_sample:.4f} in-sample), "
            f"gain {cv - greedy_f1:+.4f}; greedy outputs and probabilities in {total_s:.1f} s = {ratio:.2f}x greedy",
            flush=True,
        )

    started = time.perf_counter()
    scored = generator.generate_steps(prompts, args.top_k, desc=None)
    probs = np.stack([branch_probabilities(steps, SEMEVAL) for _, steps in scored])  # timed: a run does it too
    branches_s = time.perf_counter() - started
    same = sum(text == out for (text, _), out in zip(scored, raw_greedy))
    print(f"branches: {same} of {len(prompts)} greedy outputs identical to the plain greedy pass", flush=True)
    report(f"branches (top {args.top_k})", probs, branches_s, branches_s)
    for n in args.samples:
        started = time.perf_counter()
        probs = sample_probabilities(generator.sample(prompts, n, seed=recipe.train.seed, desc=None))
        samples_s = time.perf_counter() - started
        report(f"samples (n={n})", probs, samples_s, greedy_s + samples_s)
    generator.close()
    print(
        json.dumps(
            {
                "bench": "thresholds",
                "backend": args.backend,
                "rows": len(prompts),
                "greedy_macro_f1": greedy_f1,
                "greedy_s": greedy_s,
                "branches_identical_greedy": same,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
