"""How the output grammar grows with the label set: regex size and xgrammar compile time, 11 labels (SemEval
E-c) against 28 (GoEmotions' 27 emotions + neutral as the none label), with the real tokenizers.

    python bench/label_grammar.py [--repeats 5]

The regex is one alternative per first label with the later labels as optional groups, so its size grows with
the square of the label count, not with the number of subsets (2^27 for GoEmotions). Compile time is the median
of ``--repeats`` compilations of the regex by xgrammar's ``GrammarCompiler`` (what the transformers backend
does once per generator; vLLM's structured outputs use xgrammar too), for each tokenizer found: SmolLM2 (embedded)
and, where scripts/fetch_tokenizers.sh cached them, Llama-3.2 and Qwen2.5. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from gen_emotion.core.labels import SEMEVAL, LabelSet

GOEMOTIONS = [
    "admiration",
    "amusement",
    "anger",
    "annoyance",
    "approval",
    "caring",
    "confusion",
    "curiosity",
    "desire",
    "disappointment",
    "disapproval",
    "disgust",
    "embarrassment",
    "excitement",
    "fear",
    "gratitude",
    "grief",
    "joy",
    "love",
    "nervousness",
    "optimism",
    "pride",
    "realization",
    "relief",
    "remorse",
    "sadness",
    "surprise",
    "neutral",
]


def tokenizers() -> dict[str, object]:
    from transformers import AutoTokenizer

    from gen_emotion.models.loading import cache_dir, resolve_model

    found = {"smollm2": AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))}
    for name in ("llama-3.2-instruct", "qwen2.5-instruct"):
        folder = cache_dir() / "tokenizers" / name
        if (folder / "tokenizer.json").is_file():
            found[name] = AutoTokenizer.from_pretrained(folder)
    return found


def compile_seconds(tokenizer: object, regex: str, repeats: int) -> float:
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tokenizer)
    times = []
    for _ in range(repeats):
        compiler = xgr.GrammarCompiler(info, cache_enabled=False)
        started = time.perf_counter()
        compiler.compile_regex(regex)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sets = {"semeval-11": SEMEVAL, "goemotions-28": LabelSet(tuple(GOEMOTIONS), none_label="neutral")}
    found = tokenizers()
    results = {}
    for name, labels in sets.items():
        regex = labels.output_regex()
        row = {"labels": len(labels), "regex_chars": len(regex), "max_new_tokens": labels.max_new_tokens()}
        for tokenizer_name, tokenizer in found.items():
            row[f"compile_s_{tokenizer_name}"] = round(compile_seconds(tokenizer, regex, args.repeats), 4)
        results[name] = row
        print(name, row, flush=True)
    ratio = results["goemotions-28"]["regex_chars"] / results["semeval-11"]["regex_chars"]
    print(f"28 labels: {ratio:.1f}x the regex characters of 11 (the square of the counts: {(27 / 11) ** 2:.1f}x)")
    print(json.dumps({"bench": "label_grammar", "results": results, "regex_ratio": ratio}))


if __name__ == "__main__":
    main()
