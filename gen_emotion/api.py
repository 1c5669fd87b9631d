"""The notebook API: a finished run as a model that predicts any texts.

    from gen_emotion import EmotionModel
    model = EmotionModel.load("runs/llama-3b")
    result = model.predict(["I can't wait for the weekend!"])
    result.label_names        # [['anticipation', 'joy']]
    result.labels             # (n, 11) array of 0/1, the run's own decision (greedy or its thresholds)

It goes through ``gen-emotion predict`` (``pipeline.predict_file``). A generation run's prediction runs in a
process of its own, so it is safe to call from a notebook, or from a script without an ``if __name__ ==
"__main__":`` guard (vLLM starts worker processes that would otherwise import the script again).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.data import Columns, read_label_file
from gen_emotion.errors import GenEmotionError
from gen_emotion.export import read_probabilities, write_table
from gen_emotion.labels import LABELS
from gen_emotion.recipes import label_set
from gen_emotion.runs import load_run_recipe
from gen_emotion.tasks import get_task


@dataclass
class TextPredictions:
    """Predictions for a list of texts, in their order."""

    texts: list[str]
    labels: np.ndarray
    """``(n, len(columns))`` 0/1, one column per label of ``columns``."""
    outputs: list[str] | None = None
    """The generated text, for a generation run."""
    probs: np.ndarray | None = None
    """``(n, len(columns))`` probabilities, where the run has them and they were asked for."""
    columns: tuple[str, ...] = LABELS
    """The run's labels, in column order."""

    @property
    def label_names(self) -> list[list[str]]:
        return [[label for label, on in zip(self.columns, row) if on] for row in self.labels]

    def to_frame(self) -> Any:
        """A pandas DataFrame: the text, one 0/1 column per label, the output (pandas must be installed)."""
        import pandas as pd

        frame = pd.DataFrame(self.labels, columns=list(self.columns))
        frame.insert(0, "text", self.texts)
        if self.outputs is not None:
            frame["output"] = self.outputs
        return frame


class EmotionModel:
    """A finished run folder (``gen-emotion run``), loaded for prediction."""

    def __init__(self, run_dir: Path, backend: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.recipe = load_run_recipe(self.run_dir)
        self.task = get_task(self.recipe.task)
        if not self.task.is_fitted(self.run_dir):
            raise GenEmotionError(f"{self.run_dir}: the run has no finished training; run it to the end first")
        if backend is not None and self.task.base_decision != "greedy":
            raise GenEmotionError(f"{self.run_dir}: a classifier run takes no backend")
        self.backend = backend

    @classmethod
    def load(cls, run_dir: str | Path, backend: str | None = None) -> EmotionModel:
        """The run in ``run_dir``; ``backend`` (``transformers`` or ``vllm``) overrides a generation run's."""
        return cls(Path(run_dir), backend)

    def predict(self, texts: Sequence[str]) -> TextPredictions:
        """The labels of ``texts`` as the run decided (``metrics.json``'s ``decision``): a generation run's greedy
        outputs, or its probabilities (branches or samples) cut at its tuned thresholds; a classifier's
        probabilities cut at 0.5 or at its thresholds."""
        decided = self.task.base_decision == "greedy" and self._decision() == "thresholds"
        return self._predict(texts, with_probs=decided)

    def _decision(self) -> str | None:
        from gen_emotion.files import read_json

        path = self.run_dir / "metrics.json"
        return read_json(path, "the run's metrics").get("decision") if path.is_file() else None

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Per-label probabilities of ``texts``: a classifier's, or those of a generation run trained with
        ``generate.probabilities: true`` (``generate.probability_source``: sampled shares or greedy branches)."""
        if self.task.base_decision == "greedy" and not (self.run_dir / "thresholds.json").is_file():
            raise GenEmotionError(
                f"{self.run_dir}: this generation run has no probabilities; train it with generate.probabilities=true"
            )
        result = self._predict(texts, with_probs=self.task.base_decision == "greedy")
        assert result.probs is not None
        return result.probs

    def _predict(self, texts: Sequence[str], with_probs: bool) -> TextPredictions:
        texts = [str(text) for text in texts]
        names = label_set(self.recipe).names
        if not texts:
            return TextPredictions([], np.zeros((0, len(names)), dtype=np.int64), columns=names)
        with tempfile.TemporaryDirectory(prefix="gen-emotion-predict-") as tmp:
            source, out = Path(tmp) / "texts.csv", Path(tmp) / "predictions.csv"
            header = [self.recipe.data.id_column, self.recipe.data.text_column]
            write_table(source, header, ([str(i), text] for i, text in enumerate(texts, start=1)))
            if self.task.isolated(self.recipe):
                self._predict_in_a_process(source, out, with_probs)
            else:
                from gen_emotion.pipeline import predict_file

                predict_file(self.run_dir, source, out)
            predicted = read_label_file(out, Columns(labels=names))
            outputs = _outputs(out) if self.task.base_decision == "greedy" else None
            probs_path = out.with_name(f"{out.stem}_probs.csv")
            probs = read_probabilities(probs_path, names)[1] if probs_path.is_file() else None
        return TextPredictions(texts, predicted.labels, outputs, probs, names)

    def _predict_in_a_process(self, source: Path, out: Path, with_probs: bool) -> None:
        command = [sys.executable, "-m", "gen_emotion.cli", "predict", str(self.run_dir), "--input", str(source)]
        command += ["--out", str(out), *(["--probs"] if with_probs else [])]
        command += ["--backend", self.backend] if self.backend else []
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.startswith("gen-emotion: error: ")]
            message = lines[-1].removeprefix("gen-emotion: error: ") if lines else result.stderr.strip()[-500:]
            raise GenEmotionError(message or f"prediction failed (exit status {result.returncode})")


def _outputs(path: Path) -> list[str]:
    import csv

    with path.open(newline="", encoding="utf-8") as handle:
        return [row.get("output", "") for row in csv.DictReader(handle)]
