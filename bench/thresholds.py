"""Greedy decisions vs per-label probabilities + tuned thresholds, on the same held-out rows.

Probabilities are the share of N grammar-constrained samples that name each label (vLLM: one
request per tweet with n=N, the prompt prefilled once). Thresholds are tuned per label for F1; the
honest figure is cross-validated inside the held-out rows (tune on 4/5, score the other 1/5).

    python bench/thresholds.py --run runs/smollm2-cpu --data ../shared/data --samples 8

Prints both macro-F1 figures, the gain, the extra inference time, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gen_emotion.data import read_train, split_fold
from gen_emotion.decode import parse_many
from gen_emotion.metrics import macro_f1
from gen_emotion.runs import load_run_recipe
from gen_emotion.tasks import GenerateTask, sample_probabilities
from gen_emotion.thresholds import choose_thresholds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run folder with a trained adapter")
    parser.add_argument("--data", type=Path, required=True, help="folder with train.csv (the run's held-out fold)")
    parser.add_argument("--samples", type=int, nargs="+", default=[8], help="samples per tweet (one or more)")
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
    greedy = parse_many(generator.generate(prompts, desc=None))
    greedy_s = time.perf_counter() - started
    greedy_f1 = macro_f1(held_out.labels, greedy)
    print(f"held-out rows {len(prompts)}; greedy macro-F1 {greedy_f1:.4f} in {greedy_s:.1f} s", flush=True)

    results = []
    for n in args.samples:
        started = time.perf_counter()
        probs = sample_probabilities(generator.sample(prompts, n, seed=recipe.train.seed, desc=None))
        samples_s = time.perf_counter() - started
        choice = choose_thresholds(held_out.labels, probs, greedy_f1, seed=recipe.data.seed)
        cv, in_sample = choice.cross_validated, choice.in_sample
        row = {
            "samples": n,
            "thresholded_macro_f1_cv": cv,
            "thresholded_macro_f1_in_sample": in_sample,
            "gain_cv": cv - greedy_f1,
            "samples_s": samples_s,
            "time_ratio_to_greedy": samples_s / greedy_s,
        }
        results.append(row)
        print(
            f"n={n:<3} thresholded macro-F1 {cv:.4f} (cross-validated; {in_sample:.4f} in-sample), "
            f"gain {cv - greedy_f1:+.4f}, sampling {samples_s:.1f} s = {samples_s / greedy_s:.2f}x greedy",
            flush=True,
        )
    generator.close()
    print(
        json.dumps(
            {
                "bench": "thresholds",
                "backend": args.backend,
                "rows": len(prompts),
                "greedy_macro_f1": greedy_f1,
                "greedy_s": greedy_s,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
