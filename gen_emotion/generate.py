"""Batch generation of label text under the output grammar.

Each backend is a small class with one method, ``generate(prompts) -> list[str]``, that keeps
the input order. The transformers backend merges the LoRA adapter into the base model, sorts
prompts by length, left-pads batches and decodes greedily under an xgrammar logits processor
built from ``labels.output_regex``, so every output is a string of the grammar.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gen_emotion.errors import GenEmotionError
from gen_emotion.labels import LABELS, output_regex, render
from gen_emotion.recipes import Recipe
from gen_emotion.train import load_tokenizer, torch_dtype

log = logging.getLogger(__name__)
T = TypeVar("T")


class Generator(Protocol):
    """What every backend offers: greedy outputs, and ``n`` sampled outputs per prompt, in input order."""

    def generate(self, prompts: list[str], *, desc: str | None = "generate") -> list[str]: ...

    def sample(self, prompts: list[str], n: int, *, seed: int, desc: str | None = "sample") -> list[list[str]]: ...

    def close(self) -> None: ...


def grammar_max_new_tokens(target_format: str) -> int:
    """Enough new tokens for any string of the output grammar, however it is tokenised.

    A constrained decoder may spell a label in more tokens than the tokenizer would (one token
    per character at worst), so the bound is the longest string's length in characters plus the
    end-of-turn token. Greedy batches stop when every row has ended, so the bound costs nothing.
    """
    return len(render([1] * len(LABELS), target_format)) + 2


MERGED_DIR = "merged"


def merged_model_dir(model_path: str, adapter_dir: Path, recipe: Recipe) -> Path:
    """Merge the LoRA adapter into the base model once; saved beside the adapter in ``generate.dtype``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    target = adapter_dir.parent / f"{MERGED_DIR}-{recipe.generate.dtype}"
    if (target / "config.json").is_file():
        return target
    log.info("merging the adapter into the base model at %s (once)", target)
    base = AutoModelForCausalLM.from_pretrained(
        model_path,
        revision=recipe.model.revision,
        trust_remote_code=recipe.model.trust_remote_code,
        dtype=torch_dtype("auto", for_cuda=torch.cuda.is_available()),  # fp32 on CPU: merge without rounding
    )
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tmp = target.with_name(f".{target.name}.tmp")
    merged.to(getattr(torch, recipe.generate.dtype)).save_pretrained(str(tmp))
    load_tokenizer(str(adapter_dir), recipe).save_pretrained(str(tmp))
    os.replace(tmp, target)
    return target


class TransformersGenerator:
    """Greedy batched generation with ``model.generate`` (CPU or one GPU)."""

    def __init__(self, model_path: str, adapter_dir: Path | None, recipe: Recipe) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.recipe = recipe
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer_source = str(adapter_dir) if adapter_dir is not None else model_path
        self.tokenizer = load_tokenizer(tokenizer_source, recipe)
        self.tokenizer.padding_side = "left"
        # A merged copy loaded from disk: generate() on a model merged in memory by peft ran 2-3x
        # slower here (same forward, same weights), so both backends serve the saved merge.
        serve_path = str(merged_model_dir(model_path, adapter_dir, recipe)) if adapter_dir is not None else model_path
        model = AutoModelForCausalLM.from_pretrained(
            serve_path,
            revision=None if adapter_dir is not None else recipe.model.revision,
            trust_remote_code=recipe.model.trust_remote_code,
            dtype=getattr(torch, recipe.generate.dtype),
        )
        self.model = model.to(self.device).eval()
        settings = recipe.generate
        self.max_new_tokens = settings.max_new_tokens or grammar_max_new_tokens(recipe.prompt.target_format)
        self.compiled_grammar = None
        if settings.constrained:
            import xgrammar as xgr

            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.model.config.vocab_size)
            self.compiled_grammar = xgr.GrammarCompiler(info).compile_regex(
                output_regex(target_format=recipe.prompt.target_format)
            )

    def _logits_processors(self) -> list[Any]:
        if self.compiled_grammar is None:
            return []
        import xgrammar as xgr

        return [xgr.contrib.hf.LogitsProcessor(self.compiled_grammar)]  # one per generate() call

    def _run(self, prompts: list[str], n: int, sampling: dict[str, Any], desc: str | None) -> list[list[str]]:
        import torch
        from tqdm.auto import tqdm

        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # less padding per batch
        outputs: list[list[str]] = [[] for _ in prompts]
        size = max(1, self.recipe.generate.batch_size // n)
        with tqdm(total=len(prompts), desc=desc, unit="tweet", disable=desc is None) as bar:
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                enc = self.tokenizer(
                    [prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(self.device)
                with torch.inference_mode():
                    out = self.model.generate(
                        **enc,
                        **sampling,
                        num_return_sequences=n,
                        max_new_tokens=self.max_new_tokens,
                        logits_processor=self._logits_processors(),
                        pad_token_id=self.tokenizer.pad_token_id,
                        eos_token_id=self.tokenizer.eos_token_id,
                    )
                texts = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                for k, i in enumerate(batch):
                    outputs[i] = [text.strip() for text in texts[k * n : (k + 1) * n]]
                bar.update(len(batch))
        return outputs

    def generate(self, prompts: list[str], *, desc: str | None = "generate") -> list[str]:
        return [outs[0] for outs in self._run(prompts, 1, {"do_sample": False}, desc)]

    def sample(self, prompts: list[str], n: int, *, seed: int, desc: str | None = "sample") -> list[list[str]]:
        import torch

        torch.manual_seed(seed)
        settings = {"do_sample": True, "temperature": self.recipe.generate.temperature, "top_k": 0, "top_p": 1.0}
        return self._run(prompts, n, settings, desc)

    def close(self) -> None:
        del self.model


def run_in_shards(
    fn: Callable[[list[str], int], list[T]],
    prompts: list[str],
    ids: list[str],
    shard_dir: Path,
    *,
    shard_size: int = 256,
    desc: str = "generate",
) -> list[T]:
    """Call ``fn(prompt_slice, shard_index)`` shard by shard, saving each shard's results as it goes.

    Shards already in ``shard_dir`` (from an interrupted run) are read back instead of recomputed,
    after checking that they hold the same IDs, so a resumed run returns what an uninterrupted
    one would. Returns one result per prompt, in input order.
    """
    from tqdm.auto import tqdm

    if len(prompts) != len(ids):
        raise ValueError("prompts and ids must have the same length")
    shard_dir.mkdir(parents=True, exist_ok=True)
    results: list[T] = []
    with tqdm(total=len(prompts), desc=desc, unit="tweet") as bar:
        for index, start in enumerate(range(0, len(prompts), shard_size)):
            shard_ids = ids[start : start + shard_size]
            path = shard_dir / f"shard-{index:05d}.json"
            if path.is_file():
                saved = json.loads(path.read_text(encoding="utf-8"))
                if saved.get("ids") != shard_ids:
                    raise GenEmotionError(f"{path}: holds other rows than this input; delete {shard_dir} to start over")
                outputs = saved["outputs"]
            else:
                outputs = fn(prompts[start : start + shard_size], index)
                if len(outputs) != len(shard_ids):
                    raise GenEmotionError(f"generation returned {len(outputs)} outputs for {len(shard_ids)} prompts")
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"ids": shard_ids, "outputs": outputs}), encoding="utf-8")
                os.replace(tmp, path)
            results.extend(outputs)
            bar.update(len(shard_ids))
    return results


def load_generator(model_path: str, adapter_dir: Path | None, recipe: Recipe, backend: str | None = None) -> Generator:
    """A loaded generator for ``backend`` (default: the recipe's ``generate.backend``)."""
    backend = backend or recipe.generate.backend
    if backend == "transformers":
        return TransformersGenerator(model_path, adapter_dir, recipe)
    if backend == "vllm":
        from gen_emotion.vllm_backend import VLLMGenerator

        return VLLMGenerator(model_path, adapter_dir, recipe)
    raise GenEmotionError(f"unknown generation backend {backend!r}; use transformers or vllm")
