"""Several GPUs for one training: the one rule that ``run`` and ``cv --gpus N`` (on your machine, or on a pod, where
``runpod/entry.sh`` runs them) and ``launch`` (which sizes the pod by it) apply, so a recipe resolves the same way
wherever it runs.

With ``--gpus N`` (N > 1):

- a recipe that generates text with vLLM gets ``generate.tensor_parallel_size=N``, unless its overrides set one:
  generation splits the model over the GPUs training used (the transformers backend generates on one GPU);
- training runs under ``accelerate launch`` with the accelerate config asked for, else ``choose_strategy``'s: DDP (a
  replica per GPU) for QLoRA and for models under ``SHARD_FROM_B`` whose replica fits the card, else FSDP.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gen_emotion.config.recipes import Recipe, load_recipe
from gen_emotion.config.task_kinds import task_kind
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.models.hardware import ModelShape, estimate_memory, model_shape

SHARD_FROM_B = 10.0
"""With several GPUs, models from this size up (14B+) are sharded with FSDP by default: a replica of a 14B model
takes 28 GB of each GPU before activations. Smaller models train faster as data parallel replicas (DDP)."""
TENSOR_PARALLEL = "generate.tensor_parallel_size"


def splits_generation(recipe: Recipe) -> bool:
    """Whether the recipe's generation can be split over several GPUs: it generates text, with vLLM."""
    return task_kind(recipe.task).generates_text and recipe.generate.backend == "vllm"


def gpu_overrides(recipe: Recipe, overrides: Sequence[str], gpus: int) -> list[str]:
    """``overrides`` plus ``generate.tensor_parallel_size=gpus`` where several GPUs meet a recipe (resolved with
    ``overrides``) that generates with vLLM, and the overrides set no tensor parallel size of their own."""
    given = any(item.split("=", 1)[0].strip() == TENSOR_PARALLEL for item in overrides)
    if gpus > 1 and splits_generation(recipe) and not given:
        return [*overrides, f"{TENSOR_PARALLEL}={gpus}"]
    return list(overrides)


def resolve_for_gpus(recipe: str | Path, overrides: Sequence[str], gpus: int) -> tuple[Recipe, list[str]]:
    """The recipe as it runs on ``gpus`` GPUs, and the overrides that give it (``gpu_overrides``)."""
    resolved = load_recipe(recipe, list(overrides))
    extended = gpu_overrides(resolved, overrides, gpus)
    if len(extended) > len(overrides):
        resolved = load_recipe(recipe, extended)
    return resolved, extended


def choose_strategy(params_b: float, replica_gb: float, card_gb: float | None, gpus: int, qlora: bool) -> str | None:
    """The accelerate config for ``gpus`` GPUs of ``card_gb`` each (``None``: not known, the size alone decides):
    none for one GPU; DDP for QLoRA (a 4-bit replica per GPU) and for models under ``SHARD_FROM_B`` whose replica
    fits the card; else FSDP."""
    if gpus <= 1:
        return None
    if qlora:
        return "ddp"
    fits = card_gb is None or replica_gb <= card_gb
    return "ddp" if params_b < SHARD_FROM_B and fits else "fsdp"


def default_strategy(recipe: Recipe, shape: ModelShape, gpus: int, card_gb: float | None = None) -> str | None:
    """``choose_strategy`` for this recipe: its model's size, and the memory a replica needs (``estimate_memory``)."""
    replica = estimate_memory(recipe, shape).need_gb
    return choose_strategy(shape.params_b, replica, card_gb, gpus, recipe.model.load_in_4bit)


def strategy_for(recipe: Recipe, gpus: int, card_gb: float | None = None) -> str | None:
    """``default_strategy`` for the recipe's model (a hub model whose size its name does not say counts as small)."""
    try:
        shape = model_shape(recipe.model.name)
    except GenEmotionError:
        shape = ModelShape(0.0)
    return default_strategy(recipe, shape, gpus, card_gb)
