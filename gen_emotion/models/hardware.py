"""What a recipe needs from GPUs, checked before anything is rented or trained.

A model's shape (layers, widths, heads, vocabulary) comes from its ``config.json`` where the model is local,
else from ``KNOWN_SHAPES`` (the hub models the shipped recipes name), else from the size in its name. From
the shape and the recipe (batch, length, LoRA rank and targets, precision, checkpointing) ``estimate_memory``
adds up the GPU memory training and generation need, with a margin; ``pods`` uses it to pick a card.
``check_gpu_plan`` refuses what would fail after the money is spent: a tensor-parallel size that does not
divide the model's heads, QLoRA sharded with FSDP or ZeRO-3, several GPUs for a task that trains in one
process, and a LoRA rank vLLM cannot serve. ``check_optional_packages`` refuses a tracker (``train.report_to``)
or a flash attention that the place of training (this Python, the pod image) lacks.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import re
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gen_emotion.config.fields import read_yaml
from gen_emotion.config.recipes import LoraArgs, Recipe
from gen_emotion.config.shipped import shipped_folders
from gen_emotion.config.task_kinds import task_kind
from gen_emotion.core.errors import GenEmotionError

GB = 1e9


@dataclass(frozen=True)
class ModelShape:
    """The figures of a transformer that set its memory (``params_b``: billions of parameters)."""

    params_b: float
    hidden: int = 0
    layers: int = 0
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    intermediate: int = 0
    vocab: int = 0
    tied_embeddings: bool = True
    source: str = "table"

    @property
    def detailed(self) -> bool:
        """Whether the layer widths are known (else only the parameter count is)."""
        return self.layers > 0 and self.hidden > 0


# From each model's config.json on the hub (the models the shipped recipes name).
KNOWN_SHAPES: dict[str, ModelShape] = {
    "llama-3.2-3b-instruct": ModelShape(3.21, 3072, 28, 24, 8, 128, 8192, 128256, True),
    "llama-3.2-3b": ModelShape(3.21, 3072, 28, 24, 8, 128, 8192, 128256, True),
    "llama-3.2-1b": ModelShape(1.24, 2048, 16, 32, 8, 64, 8192, 128256, True),
    "llama-3.2-1b-instruct": ModelShape(1.24, 2048, 16, 32, 8, 64, 8192, 128256, True),
    "qwen2.5-14b-instruct": ModelShape(14.77, 5120, 48, 40, 8, 128, 13824, 152064, False),
    "qwen2.5-coder-14b-instruct": ModelShape(14.77, 5120, 48, 40, 8, 128, 13824, 152064, False),
    "qwen2.5-1.5b": ModelShape(1.54, 1536, 28, 12, 2, 128, 8960, 151936, True),
    "qwen2.5-1.5b-instruct": ModelShape(1.54, 1536, 28, 12, 2, 128, 8960, 151936, True),
    "gemma-2-2b": ModelShape(2.61, 2304, 26, 8, 4, 256, 9216, 256000, True),
    "stella_en_1.5b_v5": ModelShape(1.54, 1536, 28, 12, 2, 128, 8960, 151646, True),
    "smollm2-135m-instruct": ModelShape(0.135, 576, 30, 9, 3, 64, 1536, 49152, True),
    "roberta-base": ModelShape(0.125),
    "distilbert-base-uncased": ModelShape(0.066),
    "distilroberta-base": ModelShape(0.082),
    "all-minilm-l6-v2": ModelShape(0.023),
    "all-mpnet-base-v2": ModelShape(0.110),
}

# A size in a name: 14B, 1.5B, 135M, 8x7B, delimited by anything but a letter, a digit or a dot (so
# ``stella_en_1.5B_v5`` reads 1.5B, while ``Qwen2.5`` and ``SmolLM2`` read nothing).
_SIZE = re.compile(r"(?<![a-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])(?![a-z0-9])", re.IGNORECASE)

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ``max_lora_rank`` values vLLM accepts (``vllm.config.lora``)."""
CUDA_OVERHEAD_GB = 1.5
NF4_BYTES = 0.5625
"""Bytes per parameter of a 4-bit nf4 linear layer: half a byte and an fp32 scale per 64 weights (at most: double
quantisation packs the scales to 8 bits in transformers, vLLM unpacks them as it loads)."""
"""CUDA context, cuBLAS workspaces and what the caching allocator holds back."""
MARGIN = 1.2
"""Training estimates are multiplied by this before a card is chosen."""
KV_SEQUENCES = 16
"""Sequences of KV cache counted for generation."""
ACTIVATION_WIDTHS = (7, 3, 4)
"""Bytes kept per token and layer for the backward pass, in bf16, as multiples of (hidden, KV width,
intermediate): the norms' and projections' inputs and outputs of attention and of the gated MLP
(flash/sdpa attention keeps no length-squared scores)."""


def parse_size(text: str) -> float | None:
    """Billions of parameters in a model name or size (``Qwen2.5-14B`` -> 14, ``135m`` -> 0.135, ``8x7B`` -> 56)."""
    sizes = []
    for experts, number, unit in _SIZE.findall(text):
        value = float(number) * (int(experts) if experts else 1)
        sizes.append(value / 1000 if unit.lower() == "m" else value)
    return max(sizes) if sizes else None


def shape_from_config(config: dict) -> ModelShape:
    """A shape from a transformers ``config.json`` (decoder fields; encoders give the parameter count only)."""
    text = config.get("text_config") or config
    hidden = int(text.get("hidden_size") or 0)
    layers = int(text.get("num_hidden_layers") or 0)
    heads = int(text.get("num_attention_heads") or 0)
    kv = int(text.get("num_key_value_heads") or heads)
    head_dim = int(text.get("head_dim") or (hidden // heads if heads else 0))
    inter = int(text.get("intermediate_size") or 0)
    vocab = int(text.get("vocab_size") or 0)
    tied = bool(config.get("tie_word_embeddings", True))
    per_layer = hidden * (heads * head_dim) * 2 + hidden * (kv * head_dim) * 2 + 3 * hidden * inter
    params = layers * per_layer + vocab * hidden * (1 if tied else 2)
    return ModelShape(params / 1e9, hidden, layers, heads, kv, head_dim, inter, vocab, tied, "config.json")


def model_shape(model_name: str, model_size: str | None = None) -> ModelShape:
    """The shape of the recipe's model: its local ``config.json``, ``KNOWN_SHAPES``, or ``--model-size``/its name."""
    if model_size:
        size = parse_size(model_size)
        if size is None:
            raise GenEmotionError(f"--model-size {model_size!r}: write it like 14B, 1.5B or 135M")
        return ModelShape(size, source="--model-size")
    local = Path(model_name).expanduser() / "config.json"
    if local.is_file():
        try:
            return shape_from_config(json.loads(local.read_text(encoding="utf-8")))
        except (ValueError, TypeError, AttributeError, ZeroDivisionError) as err:  # AttributeError: not a mapping
            raise GenEmotionError(f"{local}: cannot read the model's shape ({err})") from None
    known = KNOWN_SHAPES.get(model_name.rstrip("/").rsplit("/", 1)[-1].lower())
    if known is not None:
        return known
    size = parse_size(model_name)
    if size is None:
        raise GenEmotionError(
            f"cannot tell the size of model {model_name!r} from its name: pass --model-size (e.g. --model-size 3.8B)"
        )
    return ModelShape(size, source="name")


@dataclass
class MemoryEstimate:
    """GPU memory (GB) per GPU, by part; ``need_gb`` is the larger of training and generation, with the margin."""

    weights_gb: float
    adapter_gb: float
    activations_gb: float
    logits_gb: float
    train_gb: float
    generate_gb: float

    @property
    def need_gb(self) -> float:
        """Training with the margin, or generation (whose margin is vLLM's ``gpu_memory_utilization``)."""
        return max(self.train_gb * MARGIN, self.generate_gb)

    def describe(self) -> str:
        return (
            f"training {self.train_gb:.1f} GB (weights {self.weights_gb:.1f}, adapter and optimizer "
            f"{self.adapter_gb:.1f}, activations {self.activations_gb:.1f}, logits {self.logits_gb:.1f}; "
            f"x{MARGIN} margin: {self.train_gb * MARGIN:.1f}), generation {self.generate_gb:.1f} GB"
        )


def _lora_params(shape: ModelShape, lora: LoraArgs) -> float:
    """Trainable LoRA parameters: rank x (in + out) of each targeted projection in every layer."""
    h, q, kv, inter = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.intermediate
    sizes = {
        "q_proj": h + q,
        "k_proj": h + kv,
        "v_proj": h + kv,
        "o_proj": q + h,
        "gate_proj": h + inter,
        "up_proj": h + inter,
        "down_proj": inter + h,
    }
    per_layer = sum(sizes.get(name, 2 * h) for name in lora.target_modules)
    return lora.r * per_layer * shape.layers


def _full_finetune(recipe: Recipe) -> bool:
    return task_kind(recipe.task).full_finetune(recipe)


def estimate_memory(recipe: Recipe, shape: ModelShape, gpus: int = 1, sharded: bool = False) -> MemoryEstimate:
    """GPU memory per GPU to train the recipe (at its batch and full ``max_length``) and to generate."""
    p = shape.params_b * 1e9
    kind = task_kind(recipe.task)
    tokens = recipe.train.batch_size * kind.max_length(recipe)
    shards = gpus if sharded else 1
    if _full_finetune(recipe) or not shape.detailed:
        # fp32 weights, gradients and Adam's two moments; activations ~ weights' size at these batches
        per_param = 16 if _full_finetune(recipe) else (0.6 if recipe.model.load_in_4bit else 2)
        weights = p * per_param / shards / GB
        rest = p * 2 / GB if not _full_finetune(recipe) else p * 4 / GB
        train = weights + rest + CUDA_OVERHEAD_GB
        served = 0.6 if serves_4bit(recipe) else 2  # bytes per parameter of the served weights
        generate = (served + 0.5) * p / GB / max(recipe.generate.tensor_parallel_size, 1) + 2
        return MemoryEstimate(weights, 0.0, rest, 0.0, train, generate if kind.generates_text else 0.0)
    embeddings = shape.vocab * shape.hidden * (1 if shape.tied_embeddings else 2)
    linear = max(p - embeddings, 0.0)
    weight_bytes = linear * NF4_BYTES + embeddings * 2 if recipe.model.load_in_4bit else p * 2
    weights = weight_bytes / shards / GB
    adapter = _lora_params(shape, recipe.lora) * 16 / shards / GB  # fp32 weights, gradients, Adam moments
    per_token_layer = 2 * (
        ACTIVATION_WIDTHS[0] * shape.hidden
        + ACTIVATION_WIDTHS[1] * shape.kv_heads * shape.head_dim
        + ACTIVATION_WIDTHS[2] * shape.intermediate
    )
    if recipe.train.gradient_checkpointing:  # layer inputs kept, one layer recomputed at a time
        activations = tokens * (2 * shape.hidden * shape.layers + per_token_layer) / GB
    else:
        activations = tokens * per_token_layer * shape.layers / GB
    head = shape.vocab if kind.generates_text else 0  # an LM head's logits
    fused = recipe.train.liger_kernel
    logits = tokens * head * (0.5 if fused else 10) / GB  # bf16 logits, fp32 copy and gradient, unless fused
    train = weights + adapter + activations + logits + CUDA_OVERHEAD_GB
    generate = 0.0
    if kind.generates_text:
        tp = max(recipe.generate.tensor_parallel_size, 1)
        # the merged (or base, with LoRARequest) model in bf16, or the 4-bit base QLoRA trained against
        serve = (linear * NF4_BYTES + embeddings * 2 if serves_4bit(recipe) else p * 2) / tp / GB
        # room for KV_SEQUENCES whole sequences: vLLM runs with less, it only batches fewer at a time
        kv_cache = (
            KV_SEQUENCES * (recipe.train.max_length + 64) * 2 * shape.layers * shape.kv_heads * shape.head_dim * 2
        )
        generate = (serve + kv_cache / tp / GB + CUDA_OVERHEAD_GB) / recipe.generate.gpu_memory_utilization
    return MemoryEstimate(weights, adapter, activations, logits, train, generate)


def serving_memory(recipes: list[Recipe], shape: ModelShape) -> float:
    """GPU memory (GB) for one vLLM engine serving runs trained on one base (``gen-emotion serve A B ...``): the base
    once (the generation estimate, at the longest run's length), plus, where they are several, one LoRA slot per run
    in bf16 at the largest rank the engine is given (``max_lora_rank``), where N merged copies would need N bases."""
    longest = max(recipes, key=lambda recipe: recipe.train.max_length)
    base = estimate_memory(longest, shape).generate_gb
    if len(recipes) == 1:
        return base
    rank = max(vllm_lora_rank(recipe.lora.r) for recipe in recipes)
    slot = max(_lora_params(shape, replace(recipe.lora, r=rank)) for recipe in recipes) * 2 / GB
    tp = max(longest.generate.tensor_parallel_size, 1)
    return base + len(recipes) * slot / tp / longest.generate.gpu_memory_utilization


def serves_4bit(recipe: Recipe) -> bool:
    """Whether generation serves the 4-bit base (``generate.quantized_base``) rather than bf16 weights."""
    return task_kind(recipe.task).generates_text and recipe.model.load_in_4bit and recipe.generate.quantized_base


def vllm_lora_rank(r: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds rank ``r``."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= r:
            return allowed
    raise GenEmotionError(
        f"lora.r={r}: vLLM serves LoRA adapters up to rank {VLLM_LORA_RANKS[-1]}; lower lora.r or set "
        "generate.vllm_lora=false (serve a merged copy)"
    )


def check_tensor_parallel(shape: ModelShape, tp: int, model_name: str) -> None:
    """vLLM splits attention heads over GPUs: ``tp`` must divide the heads, and the KV heads (or be a multiple)."""
    if tp <= 1 or not shape.heads:
        return
    kv = shape.kv_heads or shape.heads
    if shape.heads % tp or (kv % tp and tp % kv):
        fits = [n for n in range(1, 9) if shape.heads % n == 0 and (kv % n == 0 or n % kv == 0)]
        raise GenEmotionError(
            f"generate.tensor_parallel_size={tp}: {model_name} has {shape.heads} attention heads and {kv} KV heads, "
            f"which {tp} GPUs cannot share; use {', '.join(map(str, fits))} GPUs"
        )


def check_gpu_plan(recipe: Recipe, task_multi_gpu: bool, gpus: int, strategy: str | None, shape: ModelShape) -> None:
    """Refuse, before renting or training, what would fail once the money is spent."""
    if recipe.generate.backend == "vllm" and task_kind(recipe.task).generates_text:  # transformers generates on one GPU
        if recipe.generate.vllm_lora:
            vllm_lora_rank(recipe.lora.r)
        check_tensor_parallel(shape, recipe.generate.tensor_parallel_size, recipe.model.name)
    if gpus <= 1:
        return
    if not task_multi_gpu:
        raise GenEmotionError(
            f"recipe {recipe.name!r} (task: {recipe.task}) trains in one process on one GPU; use one GPU "
            "(several one-GPU pods scale better)"
        )
    if recipe.model.load_in_4bit and strategy in ("fsdp", "zero3"):
        raise GenEmotionError(
            f"QLoRA (model.load_in_4bit) cannot be sharded with {strategy}: use the ddp accelerate config "
            "(a 4-bit replica per GPU) or train LoRA in bf16 (model.load_in_4bit=false)"
        )


def volume_gb(shape: ModelShape, merged_copies: int = 1) -> int:
    """Disk for the hub download (2P GB of bf16), the merged bf16 copies generation serves, the run and slack."""
    return max(50, int(math.ceil((2 * shape.params_b * (1 + merged_copies) + 20) / 10) * 10))


def accelerate_config_path(name: str) -> Path:
    """An accelerate config: a path, or the name of one shipped in ``recipes/accelerate/`` (``ddp``, ``fsdp``,
    ``zero3``)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    for folder in shipped_folders():
        candidate = folder / "accelerate" / f"{path.name.removesuffix('.yaml')}.yaml"
        if candidate.is_file():
            return candidate
    raise GenEmotionError(f"accelerate config {name!r}: no such file (shipped: ddp, fsdp, zero3)")


def accelerate_sharding(config: Path) -> str:
    """How an accelerate config trains: ``fsdp``, ``zero3`` (DeepSpeed) or ``ddp`` (replicas)."""
    values = read_yaml(config) or {}
    kind = str(values.get("distributed_type", "")).upper() if isinstance(values, dict) else ""
    return {"FSDP": "fsdp", "DEEPSPEED": "zero3"}.get(kind, "ddp")


# --- Optional packages a recipe names ---------------------------------------------------------------------------

TRACKER_MODULES: dict[str, tuple[tuple[str, ...], ...]] = {
    "tensorboard": (("tensorboard",),),
    "wandb": (("wandb",),),
    "mlflow": (("mlflow",),),
}
"""The trackers ``train.report_to`` may name (``choices.TRACKERS`` but ``none``) and the modules each needs: every
module of one of its tuples. The ``track`` extra brings them all (``pip install "gen-emotion[track]"``)."""
TRACK_EXTRA = 'pip install "gen-emotion[track]"'
ATTENTION_MODULES: dict[str, tuple[tuple[str, ...], ...]] = {
    "flash_attention_2": (("flash_attn",), ("kernels",)),
    "flash_attention_3": (("flash_attn_interface",), ("kernels",)),
}
"""What a flash ``model.attn_implementation`` needs: the flash-attn build, or ``kernels``, with which transformers
fetches a prebuilt kernel from the hub."""
POD_IMAGE_MODULES: frozenset[str] = frozenset({"tensorboard", "wandb", "mlflow"})
"""The modules above that the pod image has: runpod/Dockerfile installs the gpu, pod and track extras, and the track
extra brings every tracker (no flash attention). Change it with the extras the image installs
(tests/test_packaging.py checks this list against pyproject.toml)."""


def module_importable(name: str) -> bool:
    """Whether this Python can import ``name`` (found, not imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a dotted name whose parent package is missing
        return False


def _available(needs: tuple[tuple[str, ...], ...], importable: Callable[[str], bool]) -> bool:
    return any(all(importable(module) for module in modules) for modules in needs)


def missing_trackers(report_to: list[str], importable: Callable[[str], bool] = module_importable) -> list[str]:
    """The trackers in ``train.report_to`` that cannot report where the recipe runs: ``importable`` says which
    modules that place has (``none`` needs nothing; the recipe's choices refused any other name)."""
    return [name for name in report_to if name in TRACKER_MODULES and not _available(TRACKER_MODULES[name], importable)]


def check_optional_packages(recipe: Recipe, importable: Callable[[str], bool], where: str) -> None:
    """Refuse a tracker or a flash attention the recipe names that ``where`` (this Python, the pod image) lacks:
    the run would fail there after the data, the model and the GPU were paid for. Every task reports to its
    trackers (TF-IDF too: its held-out figures); only a transformers model has an attention."""
    for name in missing_trackers(recipe.train.report_to, importable):
        modules = " or ".join(" and ".join(m) for m in TRACKER_MODULES[name])
        raise GenEmotionError(
            f"train.report_to names {name}, but {where} has no {modules}: install the trackers there "
            f"({TRACK_EXTRA}), or set train.report_to=none"
        )
    if not task_kind(recipe.task).transformers_model:
        return
    attention = recipe.model.attn_implementation or ""
    if attention in ATTENTION_MODULES and not _available(ATTENTION_MODULES[attention], importable):
        modules = " or ".join(" and ".join(m) for m in ATTENTION_MODULES[attention])
        raise GenEmotionError(
            f"model.attn_implementation={attention}, but {where} has no {modules} (the pinned GPU stack has "
            "neither): use model.attn_implementation=sdpa, PyTorch's fused attention"
        )


def check_local_packages(recipe: Recipe) -> None:
    """``check_optional_packages`` for training here."""
    check_optional_packages(recipe, module_importable, "this Python")


def check_pod_packages(recipe: Recipe) -> None:
    """``check_optional_packages`` for training on a pod, before it is rented."""
    check_optional_packages(recipe, POD_IMAGE_MODULES.__contains__, "the pod image (runpod/Dockerfile)")


# --- What a run used --------------------------------------------------------------------------------------------


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process and its finished children (MiB) and, where CUDA was used in this
    process, its peak GPU memory (MiB): allocated by tensors, and reserved by PyTorch's caching allocator (what
    the GPU must hold)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak = {"peak_rss_mib": round(max(own, children) / 1024, 1)}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        peak["peak_cuda_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return peak


def compute_threads() -> dict[str, int]:
    """The threads this process computes with on CPU: the most any loaded BLAS library and any loaded OpenMP runtime
    (PyTorch's, scikit-learn's) would use (``threadpoolctl``). A sum over many numbers depends on how it is split
    over threads, so the same fold gives the same numbers only with the same threads: a cv fold records them."""
    from threadpoolctl import threadpool_info

    counts: dict[str, int] = {}
    for pool in threadpool_info():
        counts[pool["user_api"]] = max(counts.get(pool["user_api"], 0), int(pool["num_threads"]))
    return dict(sorted(counts.items()))


def machine() -> dict[str, Any]:
    """Where a run ran: Python, platform and CPU count."""
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
