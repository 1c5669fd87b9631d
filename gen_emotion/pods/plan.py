"""The launch plan: the recipe resolved and checked here, the GPU it needs, what the pod runs, and the
``runpod.create_pod`` request, built by pure functions so that ``launch --dry-run`` shows exactly what would be
asked for (with secrets masked).

Everything the pod needs travels in its environment: the resolved recipe as base64 YAML, the command (by default
the task's ``pod_command``: ``run`` for ``task: generate``, ``cv`` for ``task: classify``), the GPU count and the
data URL (an https URL, e.g. a presigned S3 URL, of a .tar.gz/.zip holding train.csv and test.csv, which
``runpod/entry.sh`` downloads); the secrets of ``redaction.POD_SECRETS`` (``HF_TOKEN``, ``WANDB_API_KEY``) are
copied from the caller's environment and never printed.
"""

from __future__ import annotations

import base64
import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from gen_emotion.config.recipes import Recipe
from gen_emotion.config.task_kinds import task_kind
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.redaction import MASK, POD_SECRETS, mask_url
from gen_emotion.data.sources import DATASET_ID
from gen_emotion.models.hardware import (
    MemoryEstimate,
    ModelShape,
    check_gpu_plan,
    check_pod_packages,
    estimate_memory,
    model_shape,
    volume_gb,
)
from gen_emotion.models.multi_gpu import choose_strategy, resolve_for_gpus
from gen_emotion.pods.client import CONSOLE_URL
from gen_emotion.pods.gpus import ACCELERATE_CONFIGS, GPU_TYPES, MAX_GPUS, GpuType, check_fits, find_gpu, pick_gpu
from gen_emotion.training.tracking import TRACKER_SETTINGS

WORKSPACE = "/workspace"
"""Where the pod's volume is mounted; ``runpod/entry.sh`` writes everything under it."""
IMAGE_ENV = "GEN_EMOTION_IMAGE"
COMMANDS = ("run", "cv")
CV_DEFAULT_FOLDS = 5
"""``gen-emotion cv --folds``'s default, used when ``--folds`` is not given."""
CLOUD_TYPES = ("ALL", "SECURE", "COMMUNITY")
CUDA_VERSIONS = ["12.8", "12.9", "13.0"]
"""Host drivers that run the image's CUDA 12.8 build."""
CONTAINER_DISK_GB = 50
"""The container's own disk (caches outside /workspace, pip's temp files); the run lives on the volume."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,59}")


@dataclass
class LaunchOptions:
    """What ``gen-emotion launch`` was asked for."""

    recipe: str
    overrides: list[str] = field(default_factory=list)
    command: str | None = None
    """``run`` or ``cv``; ``None`` picks by the recipe's task (``Task.pod_command``)."""
    folds: int | None = None
    """``cv`` only: number of folds (``None``: cv's default, 5)."""
    gpu: str | None = None
    """A RunPod GPU id or short name; ``None`` picks the cheapest that fits."""
    gpus: int = 1
    volume_gb: int | None = None
    data_url: str | None = None
    data_id: str | None = None
    """A dataset id the pod loads with ``datasets.load_dataset`` (``--data-id``), instead of ``data_url``."""
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
    model: str
    shape: ModelShape
    qlora: bool
    memory: MemoryEstimate
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
    tensor_parallel: int = 1
    """``generate.tensor_parallel_size`` of the resolved recipe (``multi_gpu.gpu_overrides``)."""

    @property
    def params_b(self) -> float:
        return self.shape.params_b

    @property
    def need_gb(self) -> float:
        return self.memory.need_gb


def run_name(name: str | None, recipe: Recipe) -> str:
    """The run's folder name on the pod: ``--name`` as given (one safe path component), else ``RECIPE-TIME``."""
    if name is None:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{recipe.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}").strip("-.")[:60]
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise GenEmotionError(
            f"--name {name!r}: a run name is one folder name of up to 60 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


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
        f"--data-url {mask_url(url)!r} is not an http(s) URL: the pod cannot read this machine's files; pack "
        "train.csv and test.csv (tar czf data.tar.gz -C DIR train.csv test.csv), upload it and pass its "
        "(presigned) URL"
    )


def check_data_id(data_id: str, data_url: str | None) -> str:
    """A dataset id the pod can load (``sources.DATASET_ID``: ``name`` or ``owner/name``), given without a URL."""
    if data_url:
        raise GenEmotionError("give --data-url (a packed data folder) or --data-id (a dataset on the hub), not both")
    if not DATASET_ID.fullmatch(data_id):
        raise GenEmotionError(
            f"--data-id {data_id!r} is not a dataset id (name or owner/name, as datasets.load_dataset takes it)"
        )
    return data_id


def pod_env(
    plan_env: Mapping[str, str], environ: Mapping[str, str], secrets: tuple[str, ...] = POD_SECRETS
) -> dict[str, str]:
    """The pod's environment: the plan's settings plus the secrets and the trackers' settings
    (``tracking.TRACKER_SETTINGS``) set in ``environ`` (never RUNPOD_API_KEY)."""
    env = dict(plan_env)
    for name in (*secrets, *TRACKER_SETTINGS):
        value = environ.get(name, "")
        if value:
            env[name] = value
    for key, value in env.items():
        # runpod-python writes values into a GraphQL string literal without escaping them.
        if any(char in value for char in '"\\\n\r'):
            raise GenEmotionError(f"{key}: the value has a quote, backslash or newline, which RunPod's API cannot take")
    return env


def mask_request(request: Mapping[str, Any], secrets: tuple[str, ...] = POD_SECRETS) -> dict[str, Any]:
    """A copy of a pod request that is safe to print: secret values are ``***``, a data URL loses its query, and
    URLs their credentials."""
    masked = copy.deepcopy(dict(request))
    env = masked.get("env") or {}
    for name in secrets:
        if name in env:
            env[name] = MASK
    for name in ("GEN_EMOTION_DATA", "MLFLOW_TRACKING_URI"):  # a URL's credentials
        if env.get(name):
            env[name] = mask_url(env[name])
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


def check_options(options: LaunchOptions) -> None:
    """The launch options' own ranges and choices."""
    if options.command is not None and options.command not in COMMANDS:
        raise GenEmotionError(f"--command must be one of {', '.join(COMMANDS)}, got {options.command!r}")
    if not 1 <= options.gpus <= MAX_GPUS:
        raise GenEmotionError(f"--gpus must be between 1 and {MAX_GPUS}, got {options.gpus}")
    if options.accelerate_config not in (None, *ACCELERATE_CONFIGS):
        raise GenEmotionError(f"--accelerate-config must be one of {', '.join(ACCELERATE_CONFIGS)}")
    if options.cloud not in CLOUD_TYPES:
        raise GenEmotionError(f"--cloud must be one of {', '.join(CLOUD_TYPES)}, got {options.cloud!r}")
    if options.volume_gb is not None and options.volume_gb < 10:
        raise GenEmotionError(f"--volume-gb must be at least 10, got {options.volume_gb}")
    if options.idle_stop_minutes < 0:
        raise GenEmotionError(f"--idle-stop-minutes must be 0 (never) or more, got {options.idle_stop_minutes}")


def size_for(recipe: Recipe, shape: ModelShape, options: LaunchOptions) -> tuple[GpuType, str | None, MemoryEstimate]:
    """The GPU type, the accelerate config (several GPUs) and the memory estimate per GPU."""
    named = find_gpu(options.gpu) if options.gpu else None
    replica = estimate_memory(recipe, shape)
    card_gb = (named or GPU_TYPES[-1]).memory_gb  # with none named, some card holds what the largest holds
    strategy = options.accelerate_config or choose_strategy(
        shape.params_b, replica.need_gb, card_gb, options.gpus, recipe.model.load_in_4bit
    )
    if options.gpus == 1:
        strategy = None
    sharded = strategy in ("fsdp", "zero3")
    memory = estimate_memory(recipe, shape, options.gpus, sharded) if sharded else replica
    gpu = named or pick_gpu(memory.need_gb)
    check_fits(memory.need_gb, gpu)
    return gpu, strategy, memory


def plan_launch(options: LaunchOptions, environ: Mapping[str, str], dry_run: bool = False) -> LaunchPlan:
    """Resolve and check the recipe, pick the GPU and accelerate config, and build the ``runpod.create_pod``
    arguments."""
    from gen_emotion.models.loading import EMBEDDED_MODELS
    from gen_emotion.tasks.base import get_task

    check_options(options)
    recipe, _ = resolve_for_gpus(options.recipe, options.overrides, options.gpus)  # as run and cv resolve it
    task = get_task(recipe.task)
    command = pod_command(recipe, task, options)
    shape = model_shape(recipe.model.name, options.model_size)
    gpu, strategy, memory = size_for(recipe, shape, options)
    check_gpu_plan(recipe, task.multi_gpu, options.gpus, strategy, shape)
    check_pod_packages(recipe)
    full_finetune = task_kind(recipe.task).full_finetune(recipe)
    method = "full fine-tune" if full_finetune else "QLoRA" if recipe.model.load_in_4bit else "LoRA"
    merged_copies = 1  # room for one merged copy (or a classifier's checkpoints and fold models)
    serves_adapter = recipe.generate.backend == "vllm" and recipe.generate.vllm_lora
    if task_kind(recipe.task).generates_text and command == "cv" and not serves_adapter:
        merged_copies = options.folds or CV_DEFAULT_FOLDS  # each fold's model is merged for generation

    name = run_name(options.name, recipe)
    settings = pod_settings(options, command, name, recipe.to_yaml(), strategy)
    request = {
        "name": f"gen-emotion-{name}",
        "image_name": resolve_image(options.image, environ, dry_run),
        "gpu_type_id": gpu.id,
        "gpu_count": options.gpus,
        "cloud_type": options.cloud,
        "support_public_ip": True,
        "start_ssh": True,
        "volume_in_gb": options.volume_gb or volume_gb(shape, merged_copies),
        "container_disk_in_gb": CONTAINER_DISK_GB,
        "volume_mount_path": WORKSPACE,
        "ports": "22/tcp",
        "min_vcpu_count": 4 * options.gpus,
        "min_memory_in_gb": max(32, int(math.ceil(3 * shape.params_b))),
        "allowed_cuda_versions": list(CUDA_VERSIONS),
        "env": pod_env(settings, environ),
    }
    return LaunchPlan(
        run_name=name,
        model=recipe.model.name,
        shape=shape,
        qlora=recipe.model.load_in_4bit,
        memory=memory,
        gpu=gpu,
        gpus=options.gpus,
        strategy=strategy,
        request=request,
        notes=launch_notes(recipe, options, command, environ, EMBEDDED_MODELS),
        command=command,
        task=recipe.task,
        method=method,
        tensor_parallel=recipe.generate.tensor_parallel_size,
    )


def pod_command(recipe: Recipe, task: Any, options: LaunchOptions) -> str:
    """The command the pod runs for this recipe (``--command``, else the task's); refuses what cannot work."""
    if task.pod_command is None:
        raise GenEmotionError(
            f"recipe {recipe.name!r} (task: {recipe.task}) runs on CPU in minutes and needs no GPU pod; "
            f"run it here: gen-emotion cv {options.recipe} --data DIR --folds 5"
        )
    command = options.command or task.pod_command
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
    if options.data_id:
        settings["GEN_EMOTION_DATA_ID"] = check_data_id(options.data_id, options.data_url)
    elif options.data_url:
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
    if options.gpus > 1 and command == "cv":
        notes.append("cv trains each fold over all the GPUs (accelerate launch), one fold after the other")
    if not options.data_url and not options.data_id:
        notes.append(
            "no --data-url or --data-id: the pod runs on the shipped illustrative sample (scores mean nothing)"
        )
    return notes


def describe_plan(plan: LaunchPlan) -> list[str]:
    """Lines summarising a plan: the model, the GPU choice and how several GPUs are used."""
    what = plan.method if task_kind(plan.task).generates_text else f"{plan.method} classifier"
    lines = [
        f"recipe: {plan.model} ({plan.params_b:.3g}B, {what}) needs about {plan.need_gb:.0f} GB per GPU; "
        f"the pod runs gen-emotion {plan.command}",
        f"memory estimate ({plan.shape.source}): {plan.memory.describe()}",
        f"GPU: {plan.gpus} x {plan.gpu.id} ({plan.gpu.memory_gb} GB each), volume "
        f"{plan.request['volume_in_gb']} GB at {WORKSPACE}, run folder {WORKSPACE}/runs/{plan.run_name}",
    ]
    if plan.strategy:
        lines.append(
            f"training: accelerate launch --config_file recipes/accelerate/{plan.strategy}.yaml "
            f"--num_processes {plan.gpus} (its own processes); generation: one process"
            + (f", generate.tensor_parallel_size={plan.tensor_parallel}" if plan.tensor_parallel > 1 else "")
        )
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
