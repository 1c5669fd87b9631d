"""Batch generation of label text under the output grammar.

Each backend is a small class with one method, ``generate(prompts) -> list[str]``, that keeps
the input order. The transformers backend merges the LoRA adapter into the base model, sorts
prompts by length, left-pads batches and decodes greedily under an xgrammar logits processor
built from ``labels.output_regex``, so every output is a string of the grammar.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

from gen_emotion.errors import GenEmotionError
from gen_emotion.labels import LABELS, output_regex, render
from gen_emotion.recipes import Recipe
from gen_emotion.train import load_tokenizer, torch_dtype

log = logging.getLogger(__name__)


class Generator(Protocol):
    """What every backend offers."""

    def generate(self, prompts: list[str], *, desc: str = "generate") -> list[str]: ...

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

    target = adapter_dir.parent / MERGED_DIR
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
    tmp = target.with_name(f".{MERGED_DIR}.tmp")
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

    def generate(self, prompts: list[str], *, desc: str = "generate") -> list[str]:
        import torch
        from tqdm.auto import tqdm

        lengths = [len(p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        outputs: list[str | None] = [None] * len(prompts)
        size = self.recipe.generate.batch_size
        with tqdm(total=len(prompts), desc=desc, unit="tweet") as bar:
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                enc = self.tokenizer(
                    [prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(self.device)
                with torch.inference_mode():
                    out = self.model.generate(
                        **enc,
                        do_sample=False,
                        max_new_tokens=self.max_new_tokens,
                        logits_processor=self._logits_processors(),
                        pad_token_id=self.tokenizer.pad_token_id,
                        eos_token_id=self.tokenizer.eos_token_id,
                    )
                texts = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                for i, text in zip(batch, texts):
                    outputs[i] = text.strip()
                bar.update(len(batch))
        return [o if o is not None else "" for o in outputs]

    def close(self) -> None:
        del self.model


def load_generator(model_path: str, adapter_dir: Path | None, recipe: Recipe, backend: str | None = None) -> Generator:
    """A loaded generator for ``backend`` (default: the recipe's ``generate.backend``)."""
    backend = backend or recipe.generate.backend
    if backend == "transformers":
        return TransformersGenerator(model_path, adapter_dir, recipe)
    if backend == "vllm":
        from gen_emotion.vllm_backend import VLLMGenerator

        return VLLMGenerator(model_path, adapter_dir, recipe)
    raise GenEmotionError(f"unknown generation backend {backend!r}; use transformers or vllm")
