"""The generation task (``task: generate``): LoRA SFT of a causal LM to write the labels, and its prediction
engine: the adapter's prompt encoder and generator loaded on first use (``GeneratorModel``, ``LazyGenerator``),
generations saved in shards as they are made, and probabilities from sampled outputs or the greedy pass's branches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import Recipe, label_set
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import SEMEVAL, LabelSet
from gen_emotion.data.dataset import EmotionData
from gen_emotion.generation.branches import branch_probabilities
from gen_emotion.generation.parsing import parse_many
from gen_emotion.tasks.base import LoadedModel, Prediction, PredictionsNotSaved, Task, release_gpu_memory

SHARD_DIR = "shards"


class LazyGenerator:
    """Loads the generator on first use, so a prediction whose shards are all saved loads no model."""

    def __init__(self, factory: Callable[[], Any], allow_load: bool = True):
        self.factory = factory
        self.allow_load = allow_load
        self.generator: Any = None
        self.load_seconds = 0.0

    def get(self) -> Any:
        if self.generator is None:
            if not self.allow_load:
                raise PredictionsNotSaved("internal error: the predict step left generations unsaved")
            started = time.perf_counter()
            self.generator = self.factory()
            self.load_seconds = round(time.perf_counter() - started, 2)
        return self.generator

    def close(self) -> None:
        if self.generator is not None:
            self.generator.close()
            self.generator = None
            release_gpu_memory()


def sample_probabilities(samples: list[list[str]], labels: LabelSet = SEMEVAL) -> np.ndarray:
    """Per-label probability of each row: the share of its sampled outputs that name the label."""
    if not samples:
        return np.zeros((0, len(labels)))
    return np.stack([parse_many(outs, labels).mean(axis=0) for outs in samples])


class GenerateTask(Task):
    """LoRA SFT of a causal LM to write the labels, and generation under the output grammar (``generate``).

    Training and generation each run in a process of their own. Generations are saved in shards
    (``shards/SPLIT/greedy``, ``shards/SPLIT/samples``) as they are made, so an interrupted prediction
    resumes, and a process that finds every shard saved reads them back without loading a model.
    """

    name = "generate"
    base_decision = "greedy"
    model_files = ("adapter", SHARD_DIR, "merged-*")
    export_files = ("adapter", "training.json")
    pod_command = "run"
    multi_gpu = True

    def isolated(self, recipe: Recipe) -> bool:
        return True

    def probability_method(self, recipe: Recipe) -> str:
        g = recipe.generate
        if g.probability_source == "branches":
            return f"each label's probability at its place in the greedy output (top {g.branch_top_k} tokens a step)"
        return f"share of {g.num_samples} grammar-constrained samples (temperature {g.temperature}) naming each label"

    def is_fitted(self, out_dir: Path) -> bool:
        from gen_emotion.models.loading import ADAPTER_DIR
        from gen_emotion.training.trainers import is_trained

        return is_trained(out_dir, ADAPTER_DIR, "adapter_config.json")

    def fit(self, recipe: Recipe, rows: EmotionData, out_dir: Path) -> dict[str, Any]:
        from gen_emotion.training.sft import train

        return train(recipe, rows, out_dir)

    def make_generator(self, recipe: Recipe, out_dir: Path, backend: str | None, stop_ids: list[int]) -> Any:
        """The loaded generator of ``backend`` (default: ``generate.backend``) for the adapter in ``out_dir``,
        stopping on ``stop_ids`` (the seam a test can replace)."""
        from gen_emotion.models.loading import ADAPTER_DIR, resolve_model

        args = (resolve_model(recipe.model.name), out_dir / ADAPTER_DIR, recipe, stop_ids)
        backend = backend or recipe.generate.backend
        if backend == "transformers":
            from gen_emotion.generation.generate import TransformersGenerator

            return TransformersGenerator(*args)
        if backend == "vllm":
            from gen_emotion.generation.vllm_backend import VLLMGenerator

            return VLLMGenerator(*args)
        raise GenEmotionError(f"unknown generation backend {backend!r}; use transformers or vllm")

    def encoder(self, recipe: Recipe, out_dir: Path) -> Any:
        """The prompt encoder over the adapter's tokenizer (``prompts.Encoder``): the ids training saw."""
        from gen_emotion.generation.prompts import make_encoder
        from gen_emotion.models.loading import ADAPTER_DIR, load_tokenizer

        return make_encoder(load_tokenizer(str(out_dir / ADAPTER_DIR), recipe.model), recipe.prompt, recipe.data)

    def load(self, recipe: Recipe, out_dir: Path, *, backend: str | None = None, **options: Any) -> LoadedModel:
        model = GeneratorModel(self, recipe, out_dir, backend)
        model.lazy.get()
        return model

    def predict(
        self,
        recipe: Recipe,
        out_dir: Path,
        splits: dict[str, EmotionData],
        *,
        shard_root: Path | None = None,
        backend: str | None = None,
        with_probs: bool | None = None,
        allow_load: bool = True,
        **options: Any,
    ) -> dict[str, Prediction]:
        shard_root = shard_root or out_dir / SHARD_DIR
        with GeneratorModel(self, recipe, out_dir, backend, allow_load) as model:
            result = {
                name: model.predict(data, with_probs, shard_dir=shard_root / name, name=name)
                for name, data in splits.items()
            }
            load_seconds = model.lazy.load_seconds
        if load_seconds:
            next(iter(result.values())).seconds["load_generator_s"] = load_seconds
        return result


class GeneratorModel(LoadedModel):
    """A generation run's adapter with its prompt encoder and generator, both loaded on first use."""

    def __init__(
        self, task: GenerateTask, recipe: Recipe, out_dir: Path, backend: str | None, allow_load: bool = True
    ) -> None:
        self.recipe = recipe
        self.encoders: list[Any] = []  # loaded when a shard has to be generated
        self.make_encoder = lambda: task.encoder(recipe, out_dir)
        self.lazy = LazyGenerator(
            lambda: task.make_generator(recipe, out_dir, backend, self.encoder().stop_ids), allow_load
        )

    def encoder(self) -> Any:
        if not self.encoders:
            self.encoders.append(self.make_encoder())
        return self.encoders[0]

    def prompts(self, texts: list[str]) -> list[list[int]]:
        return [self.encoder().prompt_ids(text) for text in texts]

    def close(self) -> None:
        self.lazy.close()

    def predict(
        self,
        data: EmotionData,
        with_probs: bool | None = None,
        first_shard: int = 0,
        shard_dir: Path | None = None,
        name: str = "predict",
    ) -> Prediction:
        """Greedy outputs (and, with ``with_probs``, probabilities) for every row, in shards of
        ``generate.shard_size`` rows (saved in ``shard_dir`` as they are made, when given), the first of them
        numbered ``first_shard``."""
        from gen_emotion.generation.generate import run_in_shards

        recipe, lazy, prompts = self.recipe, self.lazy, self.prompts
        settings = recipe.generate
        with_probs = settings.probabilities if with_probs is None else with_probs
        started = time.perf_counter()

        def greedy(start: int, stop: int, index: int) -> list[str]:
            return lazy.get().generate(prompts(data.texts[start:stop]), desc=None)

        # No progress bar when reading saved shards back, nor for a loaded model's calls (its caller shows one).
        quiet = not lazy.allow_load or shard_dir is None

        def in_shards(fn: Callable[[int, int, int], list[Any]], kind: str, what: str) -> list[Any]:
            desc = None if quiet else f"{name} ({what})"
            saved = shard_dir / kind if shard_dir is not None else None
            return run_in_shards(fn, data.ids, saved, shard_size=settings.shard_size, desc=desc)

        labels = label_set(recipe)
        branches = with_probs and settings.probability_source == "branches"
        if branches:

            def greedy_branches(start: int, stop: int, index: int) -> list[list[Any]]:
                rows = lazy.get().generate_steps(prompts(data.texts[start:stop]), settings.branch_top_k, desc=None)
                return [[text, branch_probabilities(steps, labels).round(6).tolist()] for text, steps in rows]

            pairs = in_shards(greedy_branches, "greedy-branches", "greedy and branches")
            outputs = [text for text, _ in pairs]
        else:
            outputs = in_shards(greedy, "greedy", "greedy")
        result = Prediction(ids=list(data.ids), labels=parse_many(outputs, labels), outputs=outputs)
        result.seconds["greedy_s"] = round(time.perf_counter() - started, 2)
        if branches:
            result.probs = np.array([probs for _, probs in pairs], dtype=float).reshape(len(pairs), len(labels))
        elif with_probs:
            started = time.perf_counter()

            def sampled(start: int, stop: int, index: int) -> list[list[str]]:
                texts = data.texts[start:stop]
                return lazy.get().sample(
                    prompts(texts), settings.num_samples, seed=recipe.train.seed + first_shard + index, desc=None
                )

            samples = in_shards(sampled, "samples", f"{settings.num_samples} samples")
            result.probs = sample_probabilities(samples, labels)
            result.seconds["samples_s"] = round(time.perf_counter() - started, 2)
        return result
