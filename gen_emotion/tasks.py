"""The task registry: what a recipe's ``task`` trains and how it predicts.

A task (``generate``, ``classify``, ``tfidf``) is one object that trains on rows and saves itself in a
folder (``fit``), tells whether a folder holds a finished training (``is_fitted``), and predicts rows from
that folder (``predict``: per-label probabilities where the task has them, 0/1 labels, and the generated
text where there is some). It also says which of its steps run in a process of their own (``isolated``):
a generation task trains in one process and generates in another, so the trainer, its optimizer state and
PyTorch's cache never hold GPU memory that the generation engine needs. ``run``, ``cv``, ``predict``, the
pod entry and ``launch`` all go through this registry (``get_task``; ``steps.fit_predict`` runs a fold).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.branches import branch_probabilities
from gen_emotion.data import EmotionData
from gen_emotion.errors import GenEmotionError
from gen_emotion.labels import SEMEVAL, LabelSet
from gen_emotion.parsing import parse_many
from gen_emotion.recipes import Recipe, label_set

log = logging.getLogger(__name__)

SHARD_DIR = "shards"


@dataclass
class Prediction:
    """A task's predictions for the rows of one file, in file order."""

    ids: list[str]
    labels: np.ndarray
    """0/1 labels before any tuned threshold: the greedy outputs parsed, or the probabilities cut at 0.5."""
    probs: np.ndarray | None = None
    """Per-label probabilities, when the task has them."""
    outputs: list[str] | None = None
    """The generated text (generation tasks)."""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def scores(self) -> np.ndarray:
        """The probabilities, or the 0/1 labels as floats where there are none."""
        return self.probs if self.probs is not None else self.labels.astype(np.float64)


def cut_at_half(ids: list[str], probs: np.ndarray, seconds: dict[str, float]) -> Prediction:
    """A prediction from probabilities: labels are ``probs >= 0.5``."""
    return Prediction(ids=list(ids), labels=(probs >= 0.5).astype(np.int64), probs=probs, seconds=seconds)


class Task:
    """What every task offers (see the module docstring); subclasses fill in the four methods."""

    name = ""
    base_decision = "0.5"
    """What ``labels`` of a prediction are: ``greedy`` outputs, or probabilities cut at ``0.5``."""
    model_files: tuple[str, ...] = ()
    """Files and folders (glob patterns) of a fitted folder that ``cv --drop-models`` deletes."""
    export_files: tuple[str, ...] = ()
    """What a fitted folder must keep to predict (``export-model`` of a cv folder copies these)."""
    pod_command: str | None = "cv"
    """What ``launch`` runs on a pod by default; ``None``: the task needs no GPU and is not launched."""
    multi_gpu = False
    """Whether its training can run under ``accelerate launch`` over several GPUs."""

    def isolated(self, recipe: Recipe) -> bool:
        """Whether ``fit`` and ``predict`` each run in a process of their own."""
        return False

    def describe_model(self, recipe: Recipe) -> str:
        return recipe.model.name

    def probability_method(self, recipe: Recipe) -> str:
        """How the task's probabilities are made (for ``metrics.json``)."""
        return "sigmoid outputs of the model"

    def is_fitted(self, out_dir: Path) -> bool:
        raise NotImplementedError

    def training_summary(self, out_dir: Path) -> dict[str, Any]:
        from gen_emotion.trainers import read_summary

        return read_summary(out_dir)

    def fit(self, recipe: Recipe, rows: EmotionData, out_dir: Path) -> dict[str, Any]:
        raise NotImplementedError

    def load(self, recipe: Recipe, out_dir: Path, **options: Any) -> LoadedModel:
        """The fitted model of ``out_dir``, loaded once to predict any rows until it is closed."""
        raise NotImplementedError

    def predict(
        self, recipe: Recipe, out_dir: Path, splits: dict[str, EmotionData], **options: Any
    ) -> dict[str, Prediction]:
        """Predict each split with the model loaded once."""
        with self.load(recipe, out_dir) as model:
            return {name: model.predict(data) for name, data in splits.items()}


class LoadedModel:
    """A fitted folder's model in memory (``Task.load``): ``predict`` rows until ``close``.

    ``first_shard`` is the index of the rows' first shard (``generate.shard_size`` rows) in a longer input that is
    predicted a shard at a time: a generation model samples each shard with the seed ``train.seed`` + its index,
    so such an input predicts as it would in one call. Other models ignore it."""

    def predict(self, data: EmotionData, with_probs: bool | None = None, first_shard: int = 0) -> Prediction:
        raise NotImplementedError

    def close(self) -> None:
        """Free the model (and the GPU memory it holds)."""

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProbabilityModel(LoadedModel):
    """A model whose prediction is per-label probabilities (``probs(texts)``), cut at 0.5."""

    def __init__(self, probs: Callable[[list[str]], np.ndarray], release: Callable[[], None] | None = None):
        self.probs = probs
        self.release = release

    def predict(self, data: EmotionData, with_probs: bool | None = None, first_shard: int = 0) -> Prediction:
        started = time.perf_counter()
        probs = self.probs(data.texts)
        return cut_at_half(data.ids, probs, {"predict_s": round(time.perf_counter() - started, 2)})

    def close(self) -> None:
        if self.release is not None:
            self.release()
            self.release = None


class TfidfTask(Task):
    """TF-IDF features and one logistic regression per label (``baseline``): the floor, on CPU."""

    name = "tfidf"
    model_files = ("tfidf_logreg.pkl",)
    export_files = ("tfidf_logreg.pkl", "training.json")
    pod_command = None

    def describe_model(self, recipe: Recipe) -> str:
        return "tfidf + logistic regression"

    def is_fitted(self, out_dir: Path) -> bool:
        from gen_emotion.tfidf import MODEL_FILE
        from gen_emotion.trainers import TRAINING_SUMMARY

        return (out_dir / MODEL_FILE).is_file() and (out_dir / TRAINING_SUMMARY).is_file()

    def fit(self, recipe: Recipe, rows: EmotionData, out_dir: Path) -> dict[str, Any]:
        from gen_emotion.tfidf import train_tfidf

        return train_tfidf(recipe, rows, out_dir)

    def load(self, recipe: Recipe, out_dir: Path, **options: Any) -> LoadedModel:
        from gen_emotion.tfidf import load_tfidf, predict_probs

        model, names = load_tfidf(out_dir), label_set(recipe).names

        def probs(texts: list[str]) -> np.ndarray:
            rows = EmotionData(ids=[""] * len(texts), texts=texts, labels=None, label_names=names)
            return predict_probs(out_dir, rows, model)

        return ProbabilityModel(probs)


class ClassifyTask(Task):
    """A sequence classifier with 11 sigmoid outputs (``classify``), fine-tuned in full or with LoRA."""

    name = "classify"
    model_files = ("model",)
    export_files = ("model", "training.json")

    def is_fitted(self, out_dir: Path) -> bool:
        from gen_emotion.classify import MODEL_DIR
        from gen_emotion.trainers import TRAINING_SUMMARY

        return (out_dir / MODEL_DIR).is_dir() and (out_dir / TRAINING_SUMMARY).is_file()

    def fit(self, recipe: Recipe, rows: EmotionData, out_dir: Path) -> dict[str, Any]:
        from gen_emotion.classify import train_classifier
        from gen_emotion.trainers import split_train_eval

        train_idx, eval_idx = split_train_eval(len(rows), recipe)
        eval_data = rows.subset(eval_idx) if len(eval_idx) else None
        return train_classifier(recipe, rows.subset(train_idx), eval_data, out_dir)

    def load(self, recipe: Recipe, out_dir: Path, **options: Any) -> LoadedModel:
        from gen_emotion.classify import MODEL_DIR, load_trained, predict_with

        held = list(load_trained(out_dir / MODEL_DIR, recipe))

        def release() -> None:
            held.clear()
            release_gpu_memory()

        return ProbabilityModel(lambda texts: predict_with(*held, texts, recipe), release)


class PredictionsNotSaved(GenEmotionError):
    """A prediction that may not load a model found generations missing from its shards."""


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
        from gen_emotion.models import ADAPTER_DIR
        from gen_emotion.trainers import is_trained

        return is_trained(out_dir, ADAPTER_DIR, "adapter_config.json")

    def fit(self, recipe: Recipe, rows: EmotionData, out_dir: Path) -> dict[str, Any]:
        from gen_emotion.sft import train

        return train(recipe, rows, out_dir)

    def make_generator(self, recipe: Recipe, out_dir: Path, backend: str | None, stop_ids: list[int]) -> Any:
        """The loaded generator of ``backend`` (default: ``generate.backend``) for the adapter in ``out_dir``,
        stopping on ``stop_ids`` (the seam a test can replace)."""
        from gen_emotion.models import ADAPTER_DIR, resolve_model

        args = (resolve_model(recipe.model.name), out_dir / ADAPTER_DIR, recipe, stop_ids)
        backend = backend or recipe.generate.backend
        if backend == "transformers":
            from gen_emotion.generate import TransformersGenerator

            return TransformersGenerator(*args)
        if backend == "vllm":
            from gen_emotion.vllm_backend import VLLMGenerator

            return VLLMGenerator(*args)
        raise GenEmotionError(f"unknown generation backend {backend!r}; use transformers or vllm")

    def encoder(self, recipe: Recipe, out_dir: Path) -> Any:
        """The prompt encoder over the adapter's tokenizer (``prompts.Encoder``): the ids training saw."""
        from gen_emotion.models import ADAPTER_DIR, load_tokenizer
        from gen_emotion.prompts import make_encoder

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
        from gen_emotion.generate import run_in_shards

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


def release_gpu_memory() -> None:
    """Give cached GPU memory back after a model is dropped (nothing to do without CUDA)."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


TASKS: dict[str, type[Task]] = {"generate": GenerateTask, "classify": ClassifyTask, "tfidf": TfidfTask}


def get_task(name: str) -> Task:
    """The task a recipe's ``task`` names."""
    if name not in TASKS:
        raise GenEmotionError(f"unknown task {name!r}; tasks are {', '.join(TASKS)}")
    return TASKS[name]()
