"""The GPU types RunPod rents, and the one a recipe needs.

The choice is the cheapest type whose memory holds the recipe's estimate (``hardware.estimate_memory``); with
several GPUs, one that holds a replica per GPU (DDP), else one that holds a shard (FSDP, ZeRO-3): which of them,
``multi_gpu.choose_strategy`` decides, as it does for ``run --gpus N``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gen_emotion.core.errors import GenEmotionError

ACCELERATE_CONFIGS = ("ddp", "fsdp", "zero3")
"""Files in ``recipes/accelerate/``: DDP replicas, FSDP2 sharding, DeepSpeed ZeRO-3 sharding."""
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


def find_gpu(name: str) -> GpuType:
    """The GPU type with this id or short name (case-insensitive); an unknown one lists the known ids."""
    wanted = name.strip().lower()
    for gpu in GPU_TYPES:
        if wanted in (gpu.id.lower(), gpu.name.lower()):
            return gpu
    known = ", ".join(f"{gpu.id} ({gpu.memory_gb} GB)" for gpu in GPU_TYPES)
    raise GenEmotionError(f"unknown GPU type {name!r}; known types: {known}")


def pick_gpu(need_gb: float) -> GpuType:
    """The first GPU type (cheapest first) whose memory holds ``need_gb``."""
    for gpu in GPU_TYPES:
        if gpu.memory_gb >= need_gb:
            return gpu
    raise GenEmotionError(
        f"no GPU type has the {need_gb:.0f} GB this recipe needs per GPU: shard it over several GPUs "
        "(--gpus N --accelerate-config fsdp), or set train.gradient_checkpointing=true or a smaller train.batch_size"
    )


def check_fits(need_gb: float, gpu: GpuType) -> None:
    """Refuse a GPU type too small for the recipe's estimate (per GPU)."""
    if gpu.memory_gb >= need_gb:
        return
    bigger = [g.id for g in GPU_TYPES if g.memory_gb >= need_gb][:3]
    hint = f"use {' or '.join(repr(g) for g in bigger)}" if bigger else "use --gpus N with a sharded config"
    raise GenEmotionError(
        f"this recipe needs about {need_gb:.0f} GB per GPU and {gpu.id} ({gpu.memory_gb} GB) is too small: {hint}"
    )
