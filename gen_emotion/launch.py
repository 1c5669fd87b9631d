"""Run a recipe on a rented RunPod GPU pod: ``gen-emotion launch``, ``pods``, ``fetch`` and ``stop``.

``launch`` resolves the recipe here (overrides applied and validated before any money is spent), picks a GPU
that fits it (``MEMORY_TABLE``), and asks RunPod for a pod running the image built from ``runpod/Dockerfile``.
Everything the pod needs travels in its environment: the resolved recipe as base64 YAML, the command (by
default ``run`` for a ``task: generate`` recipe, ``cv`` for ``task: classify``), the GPU count and the data URL
(an https URL, e.g. a presigned S3 URL, of a .tar.gz/.zip holding train.csv and test.csv, which
``runpod/entry.sh`` downloads); ``HF_TOKEN`` and ``WANDB_API_KEY`` are copied from the
caller's environment and never printed. The pod writes its run folder to ``/workspace/runs/NAME`` with a
``DONE`` or ``FAILED`` marker; ``fetch`` copies it back with rsync (or scp) over the pod's public SSH port.

A ``task: tfidf`` recipe (the TF-IDF baseline) is refused: scikit-learn on CPU, minutes for 5-fold CV, so it
belongs on this machine (``gen-emotion cv``), not on a rented GPU.

The request is built by pure functions (``plan_launch``, ``mask_request``, ``fetch_command``...); only the
``cmd_*`` handlers talk to RunPod, through the official ``runpod`` SDK, imported when needed.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gen_emotion.errors import GenEmotionError

WORKSPACE = "/workspace"
"""Where the pod's volume is mounted; ``runpod/entry.sh`` writes everything under it."""
API_KEY_ENV = "RUNPOD_API_KEY"
IMAGE_ENV = "GEN_EMOTION_IMAGE"
SECRET_ENV = ("HF_TOKEN", "WANDB_API_KEY")
"""Copied from the caller's environment into the pod's, and masked in every printout."""
MASK = "***"
CONSOLE_URL = "https://www.console.runpod.io/pods"
KEYS_URL = "https://www.console.runpod.io/user/settings"
COMMANDS = ("run", "cv")
DEFAULT_COMMAND = {"generate": "run", "classify": "cv"}
"""What the pod runs when ``--command`` is not given, by the recipe's ``task``: a generation recipe runs the
whole pipeline on one held-out fold; a classification head is evaluated by K-fold cross-validation."""
CV_DEFAULT_FOLDS = 5
"""``gen-emotion cv --folds``'s default, used when ``--folds`` is not given."""
ACCELERATE_CONFIGS = ("ddp", "fsdp", "zero3")
"""Files in ``recipes/accelerate/``: DDP replicas, FSDP2 sharding, DeepSpeed ZeRO-3 sharding."""
CLOUD_TYPES = ("ALL", "SECURE", "COMMUNITY")
CUDA_VERSIONS = ["12.8", "12.9", "13.0"]
"""Host drivers that run the image's CUDA 12.8 build."""
CONTAINER_DISK_GB = 50
"""The container's own disk (caches outside /workspace, pip's temp files); the run lives on the volume."""
MAX_GPUS = 8


@dataclass(frozen=True)
class GpuType:
    """A RunPod GPU type: its id (what the API takes), short name and memory."""

    id: str
    name: str
    memory_gb: int


GPU_TYPES: tuple[GpuType, ...] = (
    # Roughly cheapest first within each memory size: the automatic choice is the first that fits.
    # NVIDIA Ampere or newer only (bf16, bitsandbytes, vLLM); ids from https://docs.runpod.io/references/gpu-types
    GpuType("NVIDIA RTX A4000", "RTX A4000", 16),
    GpuType("NVIDIA RTX 2000 Ada Generation", "RTX 2000 Ada", 16),
    GpuType("NVIDIA GeForce RTX 4080 SUPER", "RTX 4080 SUPER", 16),
    GpuType("NVIDIA RTX A4500", "RTX A4500", 20),
    GpuType("NVIDIA RTX 4000 Ada Generation", "RTX 4000 Ada", 20),
    GpuType("NVIDIA RTX A5000", "RTX A5000", 24),
    GpuType("NVIDIA GeForce RTX 3090", "RTX 3090", 24),
    GpuType("NVIDIA L4", "L4", 24),
    GpuType("NVIDIA GeForce RTX 4090", "RTX 4090", 24),
    GpuType("NVIDIA GeForce RTX 5090", "RTX 5090", 32),
    GpuType("NVIDIA RTX A6000", "RTX A6000", 48),
    GpuType("NVIDIA A40", "A40", 48),
    GpuType("NVIDIA L40", "L40", 48),
    GpuType("NVIDIA L40S", "L40S", 48),
    GpuType("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada", 48),
    GpuType("NVIDIA A100 80GB PCIe", "A100 PCIe", 80),
    GpuType("NVIDIA A100-SXM4-80GB", "A100 SXM", 80),
    GpuType("NVIDIA H100 PCIe", "H100 PCIe", 80),
    GpuType("NVIDIA H100 80GB HBM3", "H100 SXM", 80),
    GpuType("NVIDIA H100 NVL", "H100 NVL", 94),
    GpuType("NVIDIA H200", "H200 SXM", 141),
    GpuType("NVIDIA B200", "B200", 180),
)

# Minimum memory of ONE GPU (GB) to run a recipe end to end: LoRA or QLoRA training at the recipes' batch
# (8 sequences x up to 256 tokens, no gradient checkpointing), then generation with the adapter merged into a
# bf16 model. With P = billions of parameters:
#   LoRA training   ~ 2P   bf16 weights
#                   + 1P   activations kept for the backward pass at 8 x 256 tokens (~0.25 MB/token/layer at 14B)
#                   + 4    CUDA context, fp32 logits over a 128-152k vocabulary, LoRA weights + Adam (<1% of P)
#   QLoRA training  ~ 0.6P nf4 weights with double-quantised scales (embeddings and lm_head stay bf16)
#                   + 1P + 4 as above
#   generation      ~ 2.5P + 2: the merged model is bf16 whatever the training (weights + vLLM's KV cache)
# Each row is the largest of the three at the row's upper size, rounded up to a common card (16, 24, 48, 80,
# 141 GB). Generation is why QLoRA does not shrink the card as much as its training memory suggests: the 14B
# model is merged back to 28 GB of bf16. Longer sequences or bigger batches need more; gradient checkpointing
# (train.gradient_checkpointing) cuts the activation term by ~5x.
MEMORY_TABLE: tuple[tuple[float, int, int], ...] = (
    # (up to P billion parameters, LoRA GB, QLoRA GB)
    (1.0, 16, 16),  # SmolLM2-135M/360M, Qwen2.5-0.5B: 7 / 6 GB, any card
    (2.0, 16, 16),  # SmolLM2-1.7B, Qwen2.5-1.5B: 10 / 7 GB
    (4.5, 24, 16),  # Llama-3.2-3B, Qwen2.5-3B: LoRA 17.5; QLoRA 11, generation 13
    (8.5, 48, 24),  # Llama-3.1-8B, Qwen2.5-7B: LoRA 29.5; QLoRA 17.6, generation 23
    (15.0, 80, 48),  # Qwen2.5-14B: LoRA 49 (no room on a 48 GB card); QLoRA 28, generation 39.5
    (35.0, 141, 141),  # Qwen2.5-32B: LoRA 109; QLoRA 60 but generation 89.5 (or 2 x 80 GB with TP=2)
    (75.0, 230, 190),  # Llama-3.1-70B: LoRA 229, generation 189.5: more than one GPU (FSDP + TP)
)

CARD_SIZES_GB = (16, 24, 48, 80, 141)
"""Common GPU memory sizes: an estimate is rounded up to the next one."""
FULL_FINETUNE_BYTES_PER_PARAM = 16
"""A classifier fine-tuned in full (``classifier.use_lora: false``): fp32 weights (4 bytes), gradients (4) and
Adam's two moments (8); plus ``FULL_FINETUNE_OVERHEAD_GB`` for the CUDA context and the activations at the
recipes' batch (32 x 128 tokens). The encoder recipes (66M-125M parameters) need ~6 GB: any card."""
FULL_FINETUNE_OVERHEAD_GB = 4

KNOWN_SIZES_B: dict[str, float] = {
    # Models whose name does not say their size, by the last part of the id, lower-case (billions of parameters).
    "roberta-base": 0.125,
    "distilbert-base-uncased": 0.066,
    "distilroberta-base": 0.082,
    "all-minilm-l6-v2": 0.023,
}

SHARD_FROM_B = 10.0
"""With several GPUs, models from this size up (14B+) are sharded with FSDP by default: a replica of a 14B model
takes 28 GB of each GPU before activations, so longer sequences or bigger batches run out of memory, and
48 GB cards cannot hold one at all. Smaller models train faster as data parallel replicas (DDP)."""

# A size in a name: 14B, 1.5B, 135M, 8x7B, delimited by anything but a letter, a digit or a dot (so
# ``stella_en_1.5B_v5`` reads 1.5B, while ``Qwen2.5`` and ``SmolLM2`` read nothing).
_SIZE = re.compile(r"(?<![a-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])(?![a-z0-9])", re.IGNORECASE)


@dataclass
class LaunchOptions:
    """What ``gen-emotion launch`` was asked for."""

    recipe: str
    overrides: list[str] = field(default_factory=list)
    command: str | None = None
    """``run`` or ``cv``; ``None`` picks by the recipe's task (``DEFAULT_COMMAND``)."""
    folds: int | None = None
    """``cv`` only: number of folds (``None``: cv's default, 5)."""
    gpu: str | None = None
    """A RunPod GPU id or short name; ``None`` picks the cheapest that fits."""
    gpus: int = 1
    volume_gb: int | None = None
    data_url: str | None = None
    image: str | None = None
    name: str | None = None
    cloud: str = "ALL"
    accelerate_config: str | None = None
    model_size: str | None = None
    """e.g. ``14B`` when the model name does not say."""
    idle_stop_minutes: int = 60
    """The pod stops itself this long after the run ends (0: never)."""


@dataclass
class LaunchPlan:
    """The decisions behind a pod request, and the request itself (``runpod.create_pod(**request)``)."""

    run_name: str
    recipe_yaml: str
    model: str
    params_b: float
    qlora: bool
    need_gb: int
    gpu: GpuType
    gpus: int
    strategy: str | None
    """The accelerate config used for training when ``gpus > 1``."""
    request: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    command: str = "run"
    task: str = "generate"
    method: str = "LoRA"
    """How the model is trained: ``LoRA``, ``QLoRA`` or ``full fine-tune``."""


def parse_size(text: str) -> float | None:
    """Billions of parameters in a model name or size (``Qwen2.5-14B`` -> 14, ``135m`` -> 0.135, ``8x7B`` -> 56)."""
    sizes = []
    for experts, number, unit in _SIZE.findall(text):
        value = float(number) * (int(experts) if experts else 1)
        sizes.append(value / 1000 if unit.lower() == "m" else value)
    return max(sizes) if sizes else None


def model_params_b(model_name: str, model_size: str | None = None) -> float:
    """The model's size in billions of parameters: ``--model-size``, else ``KNOWN_SIZES_B``, else its name."""
    if model_size:
        size = parse_size(model_size)
        if size is None:
            raise GenEmotionError(f"--model-size {model_size!r}: write it like 14B, 1.5B or 135M")
        return size
    known = KNOWN_SIZES_B.get(model_name.rstrip("/").rsplit("/", 1)[-1].lower())
    if known is not None:
        return known
    size = parse_size(model_name)
    if size is None:
        raise GenEmotionError(
            f"cannot tell the size of model {model_name!r} from its name: pass --model-size (e.g. --model-size 3.8B)"
        )
    return size


def memory_needed_gb(params_b: float, qlora: bool, full_finetune: bool = False) -> int:
    """Minimum GPU memory (GB) for a model of ``params_b`` billion parameters: ``MEMORY_TABLE`` for LoRA and
    QLoRA; for a classifier fine-tuned in full, also 16 bytes per parameter (``FULL_FINETUNE_BYTES_PER_PARAM``)."""
    if full_finetune:
        estimate = FULL_FINETUNE_BYTES_PER_PARAM * params_b + FULL_FINETUNE_OVERHEAD_GB
        floor = next((size for size in CARD_SIZES_GB if size >= estimate), None)
        if floor is None:
            raise GenEmotionError(
                f"fine-tuning a {params_b:g}B model in full needs about {estimate:.0f} GB, more than one GPU holds: "
                "use classifier.use_lora=true"
            )
        return max(floor, memory_needed_gb(params_b, qlora))
    for upper, lora_gb, qlora_gb in MEMORY_TABLE:
        if params_b <= upper:
            return qlora_gb if qlora else lora_gb
    raise GenEmotionError(
        f"a {params_b:g}B model is beyond the launcher's memory table (up to {MEMORY_TABLE[-1][0]:g}B)"
    )


def find_gpu(name: str) -> GpuType:
    """The GPU type with this id or short name (case-insensitive); an unknown one lists the known ids."""
    wanted = name.strip().lower()
    for gpu in GPU_TYPES:
        if wanted in (gpu.id.lower(), gpu.name.lower()):
            return gpu
    known = ", ".join(f"{gpu.id} ({gpu.memory_gb} GB)" for gpu in GPU_TYPES)
    raise GenEmotionError(f"unknown GPU type {name!r}; known types: {known}")


def pick_gpu(need_gb: int, gpus: int) -> GpuType:
    """The first GPU type (cheapest first) that holds a whole replica, else the first that holds a shard."""
    for gpu in GPU_TYPES:
        if gpu.memory_gb >= need_gb:
            return gpu
    if gpus > 1:
        for gpu in GPU_TYPES:
            if gpu.memory_gb * gpus >= need_gb:
                return gpu
    raise GenEmotionError(
        f"no single GPU type has the {need_gb} GB this recipe needs: use --gpus N to shard it over N GPUs"
    )


def choose_strategy(
    params_b: float, need_gb: int, gpu: GpuType, gpus: int, qlora: bool, requested: str | None
) -> str | None:
    """The accelerate config for ``gpus`` GPUs: none for one; DDP for small models whose replica fits; else FSDP."""
    if gpus == 1:
        return None
    if qlora:
        raise GenEmotionError(
            "QLoRA (model.load_in_4bit) trains on one GPU: the 4-bit model is placed on cuda:0; "
            "launch with --gpus 1, or train LoRA in bf16 (model.load_in_4bit=false) sharded over several GPUs"
        )
    if requested:
        return requested
    return "ddp" if params_b < SHARD_FROM_B and need_gb <= gpu.memory_gb else "fsdp"


def check_fits(need_gb: int, gpu: GpuType, gpus: int, strategy: str | None) -> None:
    """Refuse a GPU choice that cannot hold the recipe: one replica per GPU, or the shards of all of them."""
    sharded = strategy in ("fsdp", "zero3")
    capacity = gpu.memory_gb * gpus if sharded else gpu.memory_gb
    if capacity >= need_gb:
        return
    where = f"{gpus} x {gpu.id} ({capacity} GB together)" if sharded else f"{gpu.id} ({gpu.memory_gb} GB)"
    bigger = [g.id for g in GPU_TYPES if g.memory_gb >= need_gb][:3]
    hint = f"use {' or '.join(repr(g) for g in bigger)}" if bigger else "use --gpus N with a sharded config"
    raise GenEmotionError(f"this recipe needs about {need_gb} GB per GPU and {where} is too small: {hint}")


def default_volume_gb(params_b: float, merged_copies: int = 1) -> int:
    """Volume for the hub download (2P GB of bf16), the merged bf16 copies generation serves (2P each: one for
    ``run``, one per fold for ``cv`` of a generation recipe), the run folder and slack."""
    return max(50, int(math.ceil((2 * params_b * (1 + merged_copies) + 20) / 10) * 10))


def safe_name(text: str) -> str:
    """A pod or run name: letters, digits, dot, dash and underscore only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


def check_data_url(url: str) -> str:
    """An http(s) URL the pod can download; local paths and s3:// get a one-line explanation."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return url
    if scheme == "s3":
        raise GenEmotionError(
            f"--data-url {mask_url(url)}: the pod has no AWS credentials; pass a presigned https URL "
            "(aws s3 presign s3://BUCKET/data.tar.gz --expires-in 86400)"
        )
    raise GenEmotionError(
        f"--data-url {url!r} is not an http(s) URL: the pod cannot read this machine's files; pack train.csv and "
        "test.csv (tar czf data.tar.gz -C DIR train.csv test.csv), upload it and pass its (presigned) URL"
    )


def mask_url(url: str) -> str:
    """The URL without its query string (a presigned URL's signature is a credential)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=MASK)) if parts.query else url


def pod_env(
    plan_env: Mapping[str, str], environ: Mapping[str, str], secrets: tuple[str, ...] = SECRET_ENV
) -> dict[str, str]:
    """The pod's environment: the plan's settings plus the secrets set in ``environ`` (never RUNPOD_API_KEY)."""
    env = dict(plan_env)
    for name in secrets:
        value = environ.get(name, "")
        if value:
            env[name] = value
    for key, value in env.items():
        # runpod-python writes values into a GraphQL string literal without escaping them.
        if any(char in value for char in '"\\\n\r'):
            raise GenEmotionError(f"{key}: the value has a quote, backslash or newline, which RunPod's API cannot take")
    return env


def mask_request(request: Mapping[str, Any], secrets: tuple[str, ...] = SECRET_ENV) -> dict[str, Any]:
    """A copy of a pod request that is safe to print: secret values are ``***``, a data URL loses its query."""
    masked = copy.deepcopy(dict(request))
    env = masked.get("env") or {}
    for name in secrets:
        if name in env:
            env[name] = MASK
    if env.get("GEN_EMOTION_DATA"):
        env["GEN_EMOTION_DATA"] = mask_url(env["GEN_EMOTION_DATA"])
    return masked


def resolve_image(image: str | None, environ: Mapping[str, str], dry_run: bool) -> str:
    """The pod image: ``--image``, else ``$GEN_EMOTION_IMAGE``; a dry run shows a placeholder when neither is set."""
    image = image or environ.get(IMAGE_ENV, "").strip()
    if image and re.search(r'[\s"\\]', image):
        raise GenEmotionError(f"image {image!r}: a name has no spaces, quotes or backslashes")
    if image:
        return image
    if dry_run:
        return f"<your image: --image or ${IMAGE_ENV}>"
    raise GenEmotionError(
        f"no image: build and push runpod/Dockerfile (see runpod/README.md), then pass --image or set {IMAGE_ENV}"
    )


def plan_launch(options: LaunchOptions, environ: Mapping[str, str], dry_run: bool = False) -> LaunchPlan:
    """Resolve the recipe, pick the GPU and accelerate config, and build the ``runpod.create_pod`` arguments."""
    from gen_emotion.models import EMBEDDED_MODELS
    from gen_emotion.recipes import load_recipe

    if options.command is not None and options.command not in COMMANDS:
        raise GenEmotionError(f"--command must be one of {', '.join(COMMANDS)}, got {options.command!r}")
    if not 1 <= options.gpus <= MAX_GPUS:
        raise GenEmotionError(f"--gpus must be between 1 and {MAX_GPUS}, got {options.gpus}")
    if options.accelerate_config not in (None, *ACCELERATE_CONFIGS):
        raise GenEmotionError(f"--accelerate-config must be one of {', '.join(ACCELERATE_CONFIGS)}")
    if options.cloud not in CLOUD_TYPES:
        raise GenEmotionError(f"--cloud must be one of {', '.join(CLOUD_TYPES)}, got {options.cloud!r}")
    overrides = list(options.overrides)
    if options.gpus > 1 and not any(o.startswith("generate.tensor_parallel_size=") for o in overrides):
        overrides.append(f"generate.tensor_parallel_size={options.gpus}")
    recipe = load_recipe(options.recipe, overrides)
    command = pod_command(recipe, options)
    qlora = recipe.model.load_in_4bit
    full_finetune = recipe.task == "classify" and not recipe.classifier.use_lora
    method = "full fine-tune" if full_finetune else "QLoRA" if qlora else "LoRA"
    params_b = model_params_b(recipe.model.name, options.model_size)
    need_gb = memory_needed_gb(params_b, qlora, full_finetune)
    gpu = find_gpu(options.gpu) if options.gpu else pick_gpu(need_gb, options.gpus)
    strategy = None  # cv trains in one process; its extra GPUs only serve vLLM
    if command == "run":
        strategy = choose_strategy(params_b, need_gb, gpu, options.gpus, qlora, options.accelerate_config)
    check_fits(need_gb, gpu, options.gpus, strategy)
    merged_copies = 1  # room for one merged copy (or a classifier's checkpoints and fold models)
    serves_adapter = recipe.generate.backend == "vllm" and recipe.generate.vllm_lora
    if recipe.task == "generate" and command == "cv" and not serves_adapter:
        merged_copies = options.folds or CV_DEFAULT_FOLDS  # each fold's model is merged for generation

    run_name = safe_name(options.name or f"{recipe.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    recipe_yaml = recipe.to_yaml()
    settings = pod_settings(options, command, run_name, recipe_yaml, strategy)
    request = {
        "name": f"gen-emotion-{run_name}",
        "image_name": resolve_image(options.image, environ, dry_run),
        "gpu_type_id": gpu.id,
        "gpu_count": options.gpus,
        "cloud_type": options.cloud,
        "support_public_ip": True,
        "start_ssh": True,
        "volume_in_gb": options.volume_gb or default_volume_gb(params_b, merged_copies),
        "container_disk_in_gb": CONTAINER_DISK_GB,
        "volume_mount_path": WORKSPACE,
        "ports": "22/tcp",
        "min_vcpu_count": 4 * options.gpus,
        "min_memory_in_gb": max(32, int(math.ceil(3 * params_b))),
        "allowed_cuda_versions": list(CUDA_VERSIONS),
        "env": pod_env(settings, environ),
    }
    return LaunchPlan(
        run_name=run_name,
        recipe_yaml=recipe_yaml,
        model=recipe.model.name,
        params_b=params_b,
        qlora=qlora,
        need_gb=need_gb,
        gpu=gpu,
        gpus=options.gpus,
        strategy=strategy,
        request=request,
        notes=launch_notes(recipe, options, command, environ, EMBEDDED_MODELS),
        command=command,
        task=recipe.task,
        method=method,
    )


def pod_command(recipe: Any, options: LaunchOptions) -> str:
    """The command the pod runs for this recipe (``--command``, else by task); refuses what cannot work."""
    if recipe.task == "tfidf":
        raise GenEmotionError(
            f"recipe {recipe.name!r} is the TF-IDF baseline (task: tfidf): it runs on CPU (minutes for 5-fold CV) "
            f"and needs no GPU pod; run it here: gen-emotion cv {options.recipe} --data DIR --folds 5"
        )
    command = options.command or DEFAULT_COMMAND[recipe.task]
    if command == "run" and recipe.task != "generate":
        raise GenEmotionError(
            f"recipe {recipe.name!r} has task: {recipe.task}; gen-emotion run trains generation recipes only: "
            "use --command cv (the default for this task)"
        )
    if recipe.task == "classify" and options.gpus > 1:
        raise GenEmotionError(
            f"recipe {recipe.name!r} (task: classify) is launched on one GPU: the launcher does not set up multi-GPU "
            "training for classifiers; use --gpus 1 (several one-GPU pods scale better)"
        )
    if options.folds is not None:
        if command != "cv":
            raise GenEmotionError("--folds goes with --command cv")
        if options.folds < 2:
            raise GenEmotionError(f"--folds must be at least 2, got {options.folds}")
    return command


def pod_settings(
    options: LaunchOptions, command: str, run_name: str, recipe_yaml: str, strategy: str | None
) -> dict[str, str]:
    """The variables ``runpod/entry.sh`` reads: command, run name, inline recipe, GPUs, folds, data URL."""
    settings = {
        "GEN_EMOTION_COMMAND": command,
        "GEN_EMOTION_RUN_NAME": run_name,
        "GEN_EMOTION_RECIPE_B64": base64.b64encode(recipe_yaml.encode()).decode(),
        "GEN_EMOTION_GPUS": str(options.gpus),
        "GEN_EMOTION_IDLE_STOP_MIN": str(max(options.idle_stop_minutes, 0)),
    }
    if strategy:
        settings["GEN_EMOTION_ACCELERATE_CONFIG"] = strategy
    if options.folds is not None:
        settings["GEN_EMOTION_FOLDS"] = str(options.folds)
    if options.data_url:
        settings["GEN_EMOTION_DATA"] = check_data_url(options.data_url)
    return settings


def launch_notes(
    recipe: Any, options: LaunchOptions, command: str, environ: Mapping[str, str], embedded: Mapping
) -> list[str]:
    """Warnings worth a line before paying for a pod."""
    notes = []
    name = recipe.model.name
    if name.startswith(("/", ".", "~")):
        notes.append(f"model.name {name!r} is a path: it must exist on the pod, not only here")
    elif name not in embedded and not environ.get("HF_TOKEN"):
        notes.append("HF_TOKEN is not set here: a gated hub model (Llama, Gemma...) will fail to download on the pod")
    if "wandb" in recipe.train.report_to and not environ.get("WANDB_API_KEY"):
        notes.append("train.report_to has wandb but WANDB_API_KEY is not set here")
    if options.gpus > 1 and recipe.generate.backend != "vllm":
        notes.append("generate.backend is transformers: generation uses one GPU (generate.backend=vllm uses them all)")
    if options.gpus > 1 and command != "run":
        notes.append(f"{command} trains on one GPU; the other GPUs only speed up vLLM generation")
    if not options.data_url:
        notes.append("no --data-url: the pod runs on the shipped illustrative sample (scores mean nothing)")
    return notes


def describe_plan(plan: LaunchPlan) -> list[str]:
    """Lines summarising a plan: the model, the GPU choice and how several GPUs are used."""
    what = f"{plan.method} classifier" if plan.task == "classify" else plan.method
    lines = [
        f"recipe: {plan.model} ({plan.params_b:g}B, {what}) needs about {plan.need_gb} GB per GPU; "
        f"the pod runs gen-emotion {plan.command}",
        f"GPU: {plan.gpus} x {plan.gpu.id} ({plan.gpu.memory_gb} GB each), volume "
        f"{plan.request['volume_in_gb']} GB at {WORKSPACE}, run folder {WORKSPACE}/runs/{plan.run_name}",
    ]
    if plan.strategy:
        lines.append(
            f"training: accelerate launch --config_file recipes/accelerate/{plan.strategy}.yaml "
            f"--num_processes {plan.gpus}; generation: one process, generate.tensor_parallel_size={plan.gpus}"
        )
    elif plan.gpus > 1:
        lines.append(f"training: one process; generation: generate.tensor_parallel_size={plan.gpus}")
    return lines


def follow_lines(pod_id: str, plan: LaunchPlan) -> list[str]:
    """How to watch, fetch and stop a launched pod."""
    idle = plan.request["env"]["GEN_EMOTION_IDLE_STOP_MIN"]
    stop_note = f"the pod stops itself {idle} min after the run ends" if idle != "0" else "it runs until stopped"
    return [
        f"pod {pod_id} created: {plan.gpus} x {plan.gpu.id}, run {plan.run_name}",
        "  status, cost and SSH address:  gen-emotion pods",
        f"  container log:                 {CONSOLE_URL}?id={pod_id}  (Logs)",
        f"  follow the run:                ssh root@IP -p PORT tail -f {WORKSPACE}/runs/{plan.run_name}/entry.log",
        f"  bring the run folder back:     gen-emotion fetch {pod_id} --out runs/{plan.run_name}",
        f"  stop paying for the GPU:       gen-emotion stop {pod_id}   ({stop_note})",
    ]


# --- Talking to RunPod -------------------------------------------------------------------------------------------


def api_key(environ: Mapping[str, str] | None = None) -> str:
    """The RunPod API key from ``RUNPOD_API_KEY``; a one-line error when it is missing."""
    environ = os.environ if environ is None else environ
    key = environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise GenEmotionError(f"{API_KEY_ENV} is not set: create an API key at {KEYS_URL} and export {API_KEY_ENV}")
    return key


def runpod_sdk(environ: Mapping[str, str] | None = None) -> Any:
    """The ``runpod`` SDK, its API key set from ``RUNPOD_API_KEY``."""
    key = api_key(environ)
    try:
        import runpod
    except ImportError:
        raise GenEmotionError("the runpod SDK is not installed: pip install 'gen-emotion[pod]'") from None
    runpod.api_key = key
    return runpod


@contextmanager
def api_call(action: str) -> Iterator[None]:
    """Turn an SDK or network failure into a one-line ``GenEmotionError``."""
    try:
        yield
    except GenEmotionError:
        raise
    except Exception as err:  # the SDK raises its own errors, ValueError and requests' errors
        message = " ".join(str(err).split()) or type(err).__name__
        raise GenEmotionError(f"RunPod API: {action} failed: {message}") from None


def get_pod(sdk: Any, pod_id: str) -> dict[str, Any]:
    with api_call(f"looking up pod {pod_id}"):
        pod = sdk.get_pod(pod_id)
    if not pod:
        raise GenEmotionError(f"no pod {pod_id!r} in this account (gen-emotion pods lists them)")
    return pod


def pod_env_value(pod: Mapping[str, Any], key: str) -> str | None:
    """A variable of the pod's environment as the API reports it (``KEY=value`` strings or key/value maps)."""
    for item in pod.get("env") or []:
        if isinstance(item, Mapping) and item.get("key") == key:
            return item.get("value")
        if isinstance(item, str) and item.startswith(f"{key}="):
            return item.split("=", 1)[1]
    return None


def ssh_endpoint(pod: Mapping[str, Any]) -> tuple[str, int]:
    """The public IP and port that reach the pod's SSH server (port 22), from the SDK's pod info."""
    runtime = pod.get("runtime")
    if not runtime:
        status = pod.get("desiredStatus", "unknown")
        raise GenEmotionError(
            f"pod {pod.get('id')} is not running (status {status}): start it again in {CONSOLE_URL} "
            "(its /workspace volume is kept) and fetch once it runs"
        )
    for port in runtime.get("ports") or []:
        if port.get("privatePort") == 22 and port.get("isIpPublic") and port.get("type", "tcp") == "tcp":
            return str(port["ip"]), int(port["publicPort"])
    raise GenEmotionError(
        f"pod {pod.get('id')} has no public SSH port yet (it may still be starting); "
        "pods made by gen-emotion launch expose 22/tcp on a public IP"
    )


def ssh_options(identity: Path | None, known_hosts: Path) -> list[str]:
    """ssh options shared by rsync and scp: a per-pod known_hosts file, trusted on first use."""
    options = ["-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}"]
    if identity is not None:
        options += ["-i", str(identity)]
    return options


def fetch_command(
    host: str,
    port: int,
    remote_dir: str,
    out_dir: Path,
    *,
    tool: str = "rsync",
    identity: Path | None = None,
    known_hosts: Path,
    excludes: tuple[str, ...] = (),
) -> list[str]:
    """The command that copies ``remote_dir`` on the pod into ``out_dir`` (which becomes the run folder).

    rsync is incremental (fetching a running pod again only copies what changed) and can skip files;
    scp is the fallback where rsync is not installed.
    """
    remote = f"root@{host}:{remote_dir.rstrip('/')}"
    if tool == "rsync":
        ssh = shlex.join(["ssh", "-p", str(port), *ssh_options(identity, known_hosts)])
        excluded = [f"--exclude={pattern}" for pattern in excludes]
        return ["rsync", "-az", "--partial", "-e", ssh, *excluded, f"{remote}/", f"{out_dir}/"]
    if tool == "scp":
        if excludes:
            raise GenEmotionError("--exclude needs rsync, which is not installed here")
        return ["scp", "-r", "-P", str(port), *ssh_options(identity, known_hosts), f"{remote}/*", f"{out_dir}/"]
    raise GenEmotionError(f"unknown copy tool {tool!r}")


def read_marker(run_dir: Path) -> tuple[str, dict[str, str]] | None:
    """``("DONE"|"FAILED", fields)`` from a run folder's marker, or ``None`` while the run goes on."""
    for name in ("DONE", "FAILED"):
        path = run_dir / name
        if path.is_file():
            fields = {}
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("---"):
                    break
                key, sep, value = line.partition("=")
                if sep:
                    fields[key] = value
            return name, fields
    return None


def format_pods(pods: list[Mapping[str, Any]]) -> list[str]:
    """A table of pods: id, name, status, GPUs, cost per hour, uptime and SSH address."""
    if not pods:
        return ["no pods in this account"]
    rows = [("ID", "NAME", "STATUS", "GPU", "$/HR", "UPTIME", "SSH")]
    running_cost = 0.0
    for pod in pods:
        machine = pod.get("machine") or {}
        gpu = f"{pod.get('gpuCount') or 0} x {machine.get('gpuDisplayName') or '?'}"
        cost = float(pod.get("costPerHr") or 0.0)
        status = str(pod.get("desiredStatus") or "?")
        if status == "RUNNING":
            running_cost += cost
        try:
            host, port = ssh_endpoint(pod)
            ssh = f"root@{host} -p {port}"
        except GenEmotionError:
            ssh = "-"
        seconds = int(pod.get("uptimeSeconds") or (pod.get("runtime") or {}).get("uptimeInSeconds") or 0)
        uptime = f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds else "-"
        rows.append((str(pod.get("id")), str(pod.get("name")), status, gpu, f"{cost:.3f}", uptime, ssh))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.append(f"running pods cost ${running_cost:.3f}/hr together (stopped pods still pay for their volume)")
    return lines


# --- Command handlers -----------------------------------------------------------------------------------------------


def cmd_launch(args: argparse.Namespace) -> int:
    options = LaunchOptions(
        recipe=args.recipe,
        overrides=list(args.overrides),
        command=args.pod_command,
        folds=args.folds,
        gpu=args.gpu,
        gpus=args.gpus,
        volume_gb=args.volume_gb,
        data_url=args.data_url,
        image=args.image,
        name=args.name,
        cloud=args.cloud,
        accelerate_config=args.accelerate_config,
        model_size=args.model_size,
        idle_stop_minutes=args.idle_stop_minutes,
    )
    if not args.dry_run:
        api_key()  # before anything is printed
    plan = plan_launch(options, os.environ, dry_run=args.dry_run)
    for line in describe_plan(plan):
        print(line)
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.dry_run:
        print("dry run: no pod created; runpod.create_pod would get:")
        print(json.dumps(mask_request(plan.request), indent=2))
        return 0
    sdk = runpod_sdk()
    with api_call("creating the pod"):
        pod = sdk.create_pod(**plan.request)
    for line in follow_lines(str(pod.get("id")), plan):
        print(line)
    return 0


def cmd_pods(args: argparse.Namespace) -> int:
    sdk = runpod_sdk()
    with api_call("listing pods"):
        pods = sdk.get_pods() or []
    for line in format_pods(pods):
        print(line)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from gen_emotion.models import cache_dir

    sdk = runpod_sdk()
    pod = get_pod(sdk, args.pod_id)
    run_name = args.run or pod_env_value(pod, "GEN_EMOTION_RUN_NAME")
    if not run_name:
        raise GenEmotionError(f"pod {args.pod_id} was not made by gen-emotion launch: pass --run NAME")
    host, port = ssh_endpoint(pod)
    out_dir = args.out or Path("runs") / run_name
    out_dir.mkdir(parents=True, exist_ok=True)
    known_hosts = cache_dir() / "ssh" / f"known_hosts-{safe_name(args.pod_id)}"
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    tool = "rsync" if shutil.which("rsync") else "scp"
    command = fetch_command(
        host,
        port,
        f"{WORKSPACE}/runs/{run_name}",
        out_dir,
        tool=tool,
        identity=args.identity,
        known_hosts=known_hosts,
        excludes=tuple(args.exclude),
    )
    print("+ " + shlex.join(command), flush=True)
    if shutil.which(command[0]) is None:
        raise GenEmotionError(f"{command[0]} is not installed here: install OpenSSH (and rsync) to fetch runs")
    status = subprocess.run(command, check=False).returncode
    if status != 0:
        raise GenEmotionError(f"{command[0]} exited with status {status} while copying from pod {args.pod_id}")
    marker = read_marker(out_dir)
    if marker is None:
        print(f"fetched {out_dir}: no DONE or FAILED marker yet, the run is still going; fetch again later")
    else:
        name, fields = marker
        print(f"fetched {out_dir}: {name}, exit status {fields.get('exit_status', '?')}")
        print(f"when you are done with the pod: gen-emotion stop {args.pod_id}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    sdk = runpod_sdk()
    if args.terminate:
        with api_call(f"terminating pod {args.pod_id}"):
            sdk.terminate_pod(args.pod_id)
        print(f"terminated pod {args.pod_id}: it and its volume are gone")
        return 0
    with api_call(f"stopping pod {args.pod_id}"):
        sdk.stop_pod(args.pod_id)
    print(
        f"stopped pod {args.pod_id}: the GPU is released; its /workspace volume is kept (and billed) "
        f"until you run: gen-emotion stop {args.pod_id} --terminate"
    )
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``launch``, ``pods``, ``fetch`` and ``stop`` on the ``gen-emotion`` subcommand parser."""
    p = subparsers.add_parser("launch", help="run a recipe on a RunPod GPU pod (needs RUNPOD_API_KEY)")
    p.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, applied and checked here")
    p.add_argument("--gpu", default=None, help="RunPod GPU type, e.g. 'NVIDIA H100 80GB HBM3' (default: cheapest fit)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs in the pod; >1 trains with accelerate, generates with TP")
    p.add_argument("--volume-gb", type=int, default=None, help="size of the /workspace volume (default: from model)")
    p.add_argument(
        "--command",
        dest="pod_command",
        choices=COMMANDS,
        default=None,
        help="what the pod runs (default: run for task: generate recipes, cv for task: classify)",
    )
    p.add_argument("--folds", type=int, default=None, help="with cv: number of folds (default: cv's, 5)")
    p.add_argument("--data-url", default=None, help="https URL (e.g. presigned S3) of a .tar.gz/.zip with train/test")
    p.add_argument("--image", default=None, help=f"image built from runpod/Dockerfile (default: ${IMAGE_ENV})")
    p.add_argument("--name", default=None, help="run name (default: RECIPE-TIME)")
    p.add_argument("--cloud", choices=CLOUD_TYPES, default="ALL", help="RunPod secure or community cloud")
    p.add_argument("--accelerate-config", choices=ACCELERATE_CONFIGS, default=None, help="multi-GPU training")
    p.add_argument("--model-size", default=None, help="model size when its name does not say, e.g. 3.8B")
    p.add_argument("--idle-stop-minutes", type=int, default=60, help="the pod stops itself this long after (0: never)")
    p.add_argument("--dry-run", action="store_true", help="print the pod request (secrets masked); call nothing")
    p.set_defaults(func=cmd_launch)

    p = subparsers.add_parser("pods", help="list your RunPod pods with their cost per hour")
    p.set_defaults(func=cmd_pods)

    p = subparsers.add_parser("fetch", help="copy a pod's run folder back over SSH (rsync, else scp)")
    p.add_argument("pod_id")
    p.add_argument("--out", type=Path, default=None, help="local run folder (default: runs/RUN_NAME)")
    p.add_argument("--run", default=None, help="run name on the pod (default: the one launch gave it)")
    p.add_argument("--identity", type=Path, default=None, help="SSH private key (default: ssh's own choice)")
    p.add_argument("--exclude", action="append", default=[], help="rsync pattern to skip, e.g. 'merged*'")
    p.set_defaults(func=cmd_fetch)

    p = subparsers.add_parser("stop", help="stop a pod (GPU billing ends, the volume stays)")
    p.add_argument("pod_id")
    p.add_argument("--terminate", action="store_true", help="delete the pod and its volume instead")
    p.set_defaults(func=cmd_stop)
