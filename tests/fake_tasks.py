"""A generation task with a fake trainer and a fake generator, for fast tests of the orchestration (``steps``,
``pipeline``, ``cv``): the real ``GenerateTask`` with its two model-bound seams replaced, so that resume,
shards, process isolation, thresholds and the files written run for real, in seconds.

The step processes import this module by its file's folder (``steps._child_env``). Each step appends a line to
``OUT/steps.jsonl``: the step, its process id and whether the fake trainer module was loaded in that process.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
from pathlib import Path
from typing import Any

from gen_emotion.config.recipes import Recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import write_json
from gen_emotion.core.labels import LABELS
from gen_emotion.data.dataset import EmotionData
from gen_emotion.generation.branches import Step
from gen_emotion.models.loading import ADAPTER_DIR
from gen_emotion.tasks.generate import GenerateTask
from gen_emotion.training.trainers import TRAINING_SUMMARY

KEYWORDS = {"happy": "joy", "love": "love", "angry": "anger", "hate": "disgust", "scared": "fear", "sad": "sadness"}


def record(out_dir: Path, step: str) -> None:
    with (out_dir / "steps.jsonl").open("a", encoding="utf-8") as handle:
        line = {"step": step, "pid": os.getpid(), "trainer_loaded": "fake_trainer" in sys.modules}
        handle.write(json.dumps(line) + "\n")


class ByteEncoder:
    """Prompt ids are the tweet's UTF-8 bytes (the fake generator reads them back)."""

    stop_ids = [0]

    def prompt_ids(self, text: str) -> list[int]:
        return list(text.encode("utf-8")) or [32]


class KeywordGenerator:
    """Greedy: the labels whose keyword the tweet holds, in label order; sampled: each label of the greedy answer
    kept with probability 0.7, plus a random one with probability 0.2 (seeded); greedy steps: each label chosen
    at 0.7 against a random one."""

    def __init__(self, out_dir: Path) -> None:
        record(out_dir, "generator loaded")

    @staticmethod
    def answer(ids: list[int]) -> list[str]:
        text = bytes(ids).decode("utf-8", errors="replace").lower()
        found = {label for word, label in KEYWORDS.items() if word in text}
        return [label for label in LABELS if label in found]

    def generate(self, prompts: list[list[int]], *, desc: str | None = None) -> list[str]:
        return [", ".join(self.answer(ids)) or "none" for ids in prompts]

    def sample(self, prompts: list[list[int]], n: int, *, seed: int, desc: str | None = None) -> list[list[str]]:
        rng = random.Random(seed)
        result = []
        for ids in prompts:
            outs = []
            for _ in range(n):
                chosen = {label for label in self.answer(ids) if rng.random() < 0.7}
                if rng.random() < 0.2:
                    chosen.add(rng.choice(LABELS))
                outs.append(", ".join(label for label in LABELS if label in chosen) or "none")
            result.append(outs)
        return result

    def generate_steps(
        self, prompts: list[list[int]], top_k: int, *, desc: str | None = None
    ) -> list[tuple[str, list[Step]]]:
        """The greedy answer, each label chosen at 0.7 against one other label at 0.3 (seeded by the prompt)."""
        result = []
        for ids in prompts:
            rng = random.Random(sum(ids))
            answer = self.answer(ids)
            steps = [Step("none", [("none", math.log(0.7)), (rng.choice(LABELS), math.log(0.3))])] if not answer else []
            for index, label in enumerate(answer):
                sep = ", " if index else ""
                steps.append(
                    Step(sep + label, [(sep + label, math.log(0.7)), (sep + rng.choice(LABELS), math.log(0.3))])
                )
            result.append((", ".join(answer) or "none", [*steps, Step("", [("", 0.0)])]))
        return result

    def close(self) -> None:
        pass


class FakeGenerateTask(GenerateTask):
    """``GenerateTask`` with the trainer and the model replaced; everything else is the real task."""

    def fit(self, recipe: Recipe, rows: EmotionData, out_dir: Path) -> dict[str, Any]:
        import fake_trainer  # noqa: F401 - stands for trl: loaded by training only

        record(out_dir, "fit")
        if recipe.description == "fail to train":
            raise GenEmotionError("fake trainer: refused to train, as asked")
        (out_dir / ADAPTER_DIR).mkdir(parents=True, exist_ok=True)
        write_json(out_dir / ADAPTER_DIR / "adapter_config.json", {"fake": True})
        summary = {"train_rows": len(rows), "steps": 1, "train_loss": 0.5, "seconds": 0.1}
        write_json(out_dir / TRAINING_SUMMARY, summary)
        return summary

    def encoder(self, recipe: Recipe, out_dir: Path) -> Any:
        return ByteEncoder()

    def make_generator(self, recipe: Recipe, out_dir: Path, backend: str | None, stop_ids: list[int]) -> Any:
        record(out_dir, "predict")
        return KeywordGenerator(out_dir)
