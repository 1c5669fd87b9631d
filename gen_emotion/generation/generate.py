"""Batch generation of label text under the output grammar.

Both backends take the same prompt token ids (``prompts.Encoder``, the ids the model was trained on up to
its answer: one BOS, nothing added), stop on the same end-of-turn token, constrain outputs with the same
regular expression (``labels.output_regex``), and decode with the same explicit settings (``NO_PENALTY``, ``NO_CUTS``):
greedy, or sampling at ``generate.temperature`` with no top-k, top-p or min-p cut and no repetition
penalty. Nothing is inherited from a model's ``generation_config.json`` (Qwen2.5-Instruct's ships a
repetition penalty of 1.05 and sampling defaults, which would otherwise apply to the transformers backend
only). Each backend keeps the input order.

The transformers backend (here) loads a merged copy of the model (or, with ``generate.quantized_base``, the
4-bit base QLoRA trained against with the adapter unmerged), sorts prompts by length, left-pads
batches and decodes under an xgrammar logits processor; the vLLM backend is ``vllm_backend``; the task
that generates (``tasks.generate.GenerateTask``) picks one by ``generate.backend``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gen_emotion.config.recipes import Recipe, label_set
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import read_json, write_text
from gen_emotion.generation.branches import Step
from gen_emotion.models.loading import (
    free_gpu_memory,
    generation_dtype,
    hub_revision,
    load_adapted_lm,
    load_tokenizer,
    merged_model_dir,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

NO_PENALTY = {"repetition_penalty": 1.0}
"""Set explicitly for greedy and sampled decoding alike, on both backends."""
NO_CUTS = {"top_k": 0, "top_p": 1.0, "min_p": 0.0}
"""Sampling takes the whole (grammar-masked) distribution: each value switches its cut off."""


class Generator(Protocol):
    """What every backend offers: greedy outputs (alone, or with each step's ``top_k`` likeliest tokens), and
    ``n`` sampled outputs per prompt, in input order."""

    def generate(self, prompts: list[list[int]], *, desc: str | None = "generate") -> list[str]: ...

    def generate_steps(
        self, prompts: list[list[int]], top_k: int, *, desc: str | None = "generate"
    ) -> list[tuple[str, list[Step]]]: ...

    def sample(
        self, prompts: list[list[int]], n: int, *, seed: int, desc: str | None = "sample"
    ) -> list[list[str]]: ...

    def close(self) -> None: ...


def max_new_tokens(recipe: Recipe) -> int:
    """The recipe's cap on new tokens, or just enough for the longest string of the output grammar."""
    return recipe.generate.max_new_tokens or label_set(recipe).max_new_tokens(recipe.prompt.target_format)


def decode_steps(tokenizer: Any, token_ids: list[int], tops: list[list[tuple[int, float]]]) -> list[Step]:
    """Greedy steps as text: each chosen token and each of its step's top tokens decoded after the token chosen
    before it (so a SentencePiece word keeps its leading space); special tokens are empty."""
    pieces, contexts = [], []
    tops = [[(token, logprob) for token, logprob in top if logprob > -math.inf] for top in tops]  # masked: none
    for step, (chosen, top) in enumerate(zip(token_ids, tops)):
        context = token_ids[step - 1 : step]
        contexts.append(context)
        pieces.extend(context + [token] for token in (chosen, *(token for token, _ in top)))
    texts = iter(tokenizer.batch_decode(pieces, skip_special_tokens=True))
    bases = tokenizer.batch_decode(contexts, skip_special_tokens=True)
    steps = []
    for base, top in zip(bases, tops):
        after = [_after(base, next(texts)) for _ in range(len(top) + 1)]
        steps.append(Step(after[0], [(text, logprob) for text, (_, logprob) in zip(after[1:], top)]))
    return steps


def _step_top(logits: Any, chosen: Any, top_k: int) -> list[list[tuple[int, float]]]:
    """Per row of a batch: the ``top_k`` likeliest tokens of one step with their log-probabilities, and the
    chosen token's when it is not among them."""
    logprobs = logits.float().log_softmax(-1)
    values, indices = logprobs.topk(top_k, dim=-1)
    chosen_logprobs = logprobs.gather(-1, chosen[:, None])[:, 0].tolist()
    rows = []
    for token, tokens, row_values, chosen_logprob in zip(
        chosen.tolist(), indices.tolist(), values.tolist(), chosen_logprobs
    ):
        top = list(zip(tokens, row_values))
        if token not in tokens:
            top.append((token, chosen_logprob))
        rows.append(top)
    return rows


def _after(base: str, text: str) -> str:
    return text[len(base) :] if text.startswith(base) else text


def batch_inputs(tokenizer: Any, prompts: list[list[int]]) -> Any:
    """A batch of prompt ids as ``model.generate`` gets it: left-padded, with the attention mask."""
    return tokenizer.pad({"input_ids": prompts}, padding=True, padding_side="left", return_tensors="pt")


class TransformersGenerator:
    """Batched ``model.generate`` (CPU or one GPU) under the output grammar."""

    def __init__(self, model_path: str, adapter_dir: Path | None, recipe: Recipe, stop_ids: list[int]) -> None:
        import torch
        from transformers import GenerationConfig

        self.recipe = recipe
        self.stop_ids = list(stop_ids)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = load_tokenizer(
            str(adapter_dir) if adapter_dir is not None else model_path, recipe.model, "left"
        )
        free_gpu_memory("transformers backend starting")
        model = self._load(model_path, adapter_dir, recipe)
        # Global defaults only: the model's generation_config.json (penalties, sampling) is not inherited. A peft
        # model generates with its base model's.
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        base.generation_config = GenerationConfig(pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.stop_ids)
        self.model = model.eval()
        self.max_new_tokens = max_new_tokens(recipe)
        self.compiled_grammar = None
        if recipe.generate.constrained:
            import xgrammar as xgr

            info = xgr.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=self.model.config.vocab_size, stop_token_ids=self.stop_ids
            )
            self.compiled_grammar = xgr.GrammarCompiler(info).compile_regex(
                label_set(recipe).output_regex(recipe.prompt.target_format)
            )

    def _load(self, model_path: str, adapter_dir: Path | None, recipe: Recipe) -> Any:
        """The merged copy (or the base alone) in ``generate.dtype`` on this device; with ``generate.quantized_base``
        the 4-bit base with the adapter unmerged, placed on the GPU as it loads."""
        import torch
        from transformers import AutoModelForCausalLM

        if adapter_dir is not None and recipe.generate.quantized_base:
            return load_adapted_lm(model_path, adapter_dir, recipe.model)
        serve_path, dtype = model_path, generation_dtype(recipe.generate.dtype)
        if adapter_dir is not None:
            serve_path = str(merged_model_dir(model_path, adapter_dir, recipe.model, dtype))
        model = AutoModelForCausalLM.from_pretrained(
            serve_path,
            revision=hub_revision(serve_path, recipe.model),
            trust_remote_code=recipe.model.trust_remote_code,
            dtype=getattr(torch, dtype),
        )
        return model.to(self.device)

    def _logits_processors(self) -> list[Any]:
        if self.compiled_grammar is None:
            return []
        import xgrammar as xgr

        return [xgr.contrib.hf.LogitsProcessor(self.compiled_grammar)]  # one per generate() call

    def decoding(self, sample: bool) -> Any:
        """The explicit decoding settings: greedy, or sampling at ``generate.temperature`` with no cuts; no
        penalty either way."""
        from transformers import GenerationConfig

        sampling = {"temperature": self.recipe.generate.temperature, **NO_CUTS} if sample else {}
        return GenerationConfig(
            do_sample=sample,
            num_beams=1,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            **NO_PENALTY,
            **sampling,
        )

    def _batches(self, prompts: list[list[int]], size: int, desc: str | None) -> Iterator[tuple[list[int], Any]]:
        """Length-sorted batches of ``size`` prompts (less padding), as indices and the padded inputs."""
        from tqdm.auto import tqdm

        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        with tqdm(total=len(prompts), desc=desc, unit="tweet", disable=desc is None) as bar:
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                yield batch, batch_inputs(self.tokenizer, [prompts[i] for i in batch]).to(self.device)
                bar.update(len(batch))

    def _generate(self, enc: Any, config: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.model.generate(**enc, generation_config=config, logits_processor=self._logits_processors())

    def _run(self, prompts: list[list[int]], n: int, sample: bool, desc: str | None) -> list[list[str]]:
        outputs: list[list[str]] = [[] for _ in prompts]
        config = self.decoding(sample)
        config.num_return_sequences = n
        for batch, enc in self._batches(prompts, max(1, self.recipe.generate.batch_size // n), desc):
            out = self._generate(enc, config)
            texts = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for k, i in enumerate(batch):
                outputs[i] = [text.strip() for text in texts[k * n : (k + 1) * n]]
        return outputs

    def generate(self, prompts: list[list[int]], *, desc: str | None = "generate") -> list[str]:
        return [outs[0] for outs in self._run(prompts, 1, False, desc)]

    def generate_steps(
        self, prompts: list[list[int]], top_k: int, *, desc: str | None = "generate"
    ) -> list[tuple[str, list[Step]]]:
        """Greedy outputs and, per step, the ``top_k`` likeliest tokens of the distribution greedy chose from (the
        model's, under the grammar's mask) and the chosen one, from the same pass."""
        results: list[tuple[str, list[Step]]] = [("", [])] * len(prompts)
        config = self.decoding(False)
        config.output_scores, config.return_dict_in_generate = True, True
        for batch, enc in self._batches(prompts, max(1, self.recipe.generate.batch_size), desc):
            out = self._generate(enc, config)
            new = out.sequences[:, enc["input_ids"].shape[1] :]
            tops = [_step_top(scores, new[:, k], top_k) for k, scores in enumerate(out.scores)]
            for row, i in enumerate(batch):
                ids = new[row].tolist()
                length = next((k + 1 for k, token in enumerate(ids) if token in self.stop_ids), len(ids))
                steps = decode_steps(self.tokenizer, ids[:length], [tops[k][row] for k in range(length)])
                results[i] = (self.tokenizer.decode(ids[:length], skip_special_tokens=True).strip(), steps)
        return results

    def sample(self, prompts: list[list[int]], n: int, *, seed: int, desc: str | None = "sample") -> list[list[str]]:
        import torch

        torch.manual_seed(seed)
        return self._run(prompts, n, True, desc)

    def close(self) -> None:
        del self.model


def shard_path(shard_dir: Path, index: int) -> Path:
    """Where shard ``index`` of saved generations is kept in ``shard_dir``."""
    return shard_dir / f"shard-{index:05d}.json"


def read_shard(path: Path, ids: list[str], shard_dir: Path) -> list[Any] | None:
    """A saved shard's results, checked to be for these ``ids``; ``None`` when it is not saved yet."""
    if not path.is_file():
        return None
    saved = read_json(path, "a shard of saved predictions ({ids, outputs})")
    if saved.get("ids") != ids or len(saved.get("outputs") or []) != len(ids):
        raise GenEmotionError(f"{path}: holds other rows than this input; delete {shard_dir} to start over")
    return saved["outputs"]


def write_shard(path: Path, ids: list[str], outputs: list[Any]) -> None:
    """Save a shard's results for ``ids`` (whole or not at all: ``files.write_text``)."""
    write_text(path, json.dumps({"ids": ids, "outputs": outputs}))


def run_in_shards(
    fn: Callable[[int, int, int], list[T]],
    ids: list[str],
    shard_dir: Path | None,
    *,
    shard_size: int = 256,
    desc: str | None = "generate",
) -> list[T]:
    """Call ``fn(start, stop, shard_index)`` for the rows ``start:stop`` of each shard in turn, saving each
    shard's results as it goes (nothing is saved without a ``shard_dir``: the shards then only keep the
    batches the same as a saved prediction's).

    Shards already in ``shard_dir`` (from an interrupted run) are read back instead of recomputed,
    after checking that they hold the same IDs, so a resumed run returns what an uninterrupted
    one would. Returns one result per row, in input order.
    """
    from tqdm.auto import tqdm

    if shard_dir is not None:
        shard_dir.mkdir(parents=True, exist_ok=True)
    results: list[T] = []
    with tqdm(total=len(ids), desc=desc, unit="tweet", disable=desc is None) as bar:
        for index, start in enumerate(range(0, len(ids), shard_size)):
            stop = min(start + shard_size, len(ids))
            shard_ids = ids[start:stop]
            path = shard_path(shard_dir, index) if shard_dir is not None else None
            outputs = read_shard(path, shard_ids, shard_dir) if path is not None else None
            if outputs is None:
                outputs = fn(start, stop, index)
                if len(outputs) != len(shard_ids):
                    raise GenEmotionError(f"generation returned {len(outputs)} outputs for {len(shard_ids)} prompts")
                if path is not None:
                    write_shard(path, shard_ids, outputs)
            results.extend(outputs)
            bar.update(len(shard_ids))
    return results
