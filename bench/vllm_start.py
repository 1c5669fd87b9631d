"""vLLM's engine start with and without ``torch.compile`` (``generate.vllm_compile``), side by side.

Each case runs our vLLM backend (``VLLMGenerator``) in a fresh process on the same model and the sample's tweets:
  compiled-cold   generate.vllm_compile: true, an empty compile cache (VLLM_CACHE_ROOT in a new folder)
  compiled-warm   the same again on the cache the first case filled
  eager           generate.vllm_compile: false (enforce_eager: no torch.compile, no CUDA graphs)

    python bench/vllm_start.py                       # the embedded SmolLM2-135M-Instruct
    python bench/vllm_start.py --model PATH --rows 64

Prints each case's start and generation seconds, the ratios to eager, and ends with one JSON line. Run it alone:
two cores shared with another process change every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "gen_emotion" / "sample_data" / "test.csv"


def one_case(model: str, compiled: bool, rows: int) -> dict[str, float]:
    """In this process: start the engine, greedy-generate ``rows`` tweets; the seconds of each."""
    from gen_emotion.config.recipes import recipe_from_dict
    from gen_emotion.data.formats import read_test
    from gen_emotion.generation.prompts import make_encoder
    from gen_emotion.generation.vllm_backend import VLLMGenerator
    from gen_emotion.models.loading import load_tokenizer, resolve_model

    path = resolve_model(model)
    settings = {"backend": "vllm", "dtype": "float32", "vllm_compile": compiled}
    recipe = recipe_from_dict({"model": {"name": path}, "generate": settings})
    encoder = make_encoder(load_tokenizer(path, recipe.model), recipe.prompt, recipe.data)
    prompts = [encoder.prompt_ids(text) for text in read_test(SAMPLE).texts[:rows]]
    started = time.perf_counter()
    generator = VLLMGenerator(path, None, recipe, encoder.stop_ids)
    loaded = time.perf_counter()
    generator.generate(prompts, desc=None)
    done = time.perf_counter()
    generator.close()
    return {"start_s": round(loaded - started, 1), "generate_s": round(done - loaded, 2)}


def run_case(model: str, compiled: bool, rows: int, cache: Path) -> dict[str, float]:
    """``one_case`` in a child process with ``cache`` as vLLM's cache folder."""
    env = {**os.environ, "VLLM_CACHE_ROOT": str(cache)}
    command = [sys.executable, __file__, "--model", model, "--rows", str(rows), "--child", str(int(compiled))]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"vllm_start: the {'compiled' if compiled else 'eager'} case failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a model folder or an embedded name")
    parser.add_argument("--rows", type=int, default=32, help="tweets generated after the start (default 32)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(one_case(args.model, args.child == "1", args.rows)))
        return
    with tempfile.TemporaryDirectory(prefix="vllm-cache-") as cache:
        cases = {
            "compiled-cold": run_case(args.model, True, args.rows, Path(cache)),
            "compiled-warm": run_case(args.model, True, args.rows, Path(cache)),
            "eager": run_case(args.model, False, args.rows, Path(cache)),
        }
    eager = cases["eager"]
    for name, case in cases.items():
        ratio = case["start_s"] / eager["start_s"]
        start, generate = case["start_s"], case["generate_s"]
        print(f"{name:14s} start {start:6.1f} s ({ratio:.1f}x eager)   {args.rows} tweets {generate:.2f} s")
    print(json.dumps({"model": args.model, "rows": args.rows, **cases}))


if __name__ == "__main__":
    main()
