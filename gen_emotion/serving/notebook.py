"""The notebook API: a trained folder as a model that predicts any texts.

    from gen_emotion import EmotionModel
    with EmotionModel.load("runs/cv-minilm") as model:   # a run, cv or ensemble folder (or an export of one)
        result = model.predict(["I can't wait for the weekend!"])
    result.label_names        # [['anticipation', 'joy']]
    result.labels             # (n, 11) array of 0/1: the folder's own decision (greedy or its thresholds)

The first call loads the model (``predictor.load_predictor``) and later calls reuse it; ``close()`` (or the end of
the ``with`` block) frees it. A generation model lives in a process of its own, so this is safe in a notebook and
in a script without an ``if __name__ == "__main__":`` guard (vLLM starts worker processes that would otherwise
import the script again).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.runs.folder import THRESHOLDS
from gen_emotion.serving.predictor import Predictor, PredictSettings, TextPredictions, folder_kind, load_predictor

__all__ = ["EmotionModel", "TextPredictions"]


class EmotionModel:
    """A trained folder (``gen-emotion run``, ``cv`` or ``ensemble``), loaded for prediction on first use."""

    def __init__(self, folder: Path, backend: str | None = None) -> None:
        self.folder = Path(folder)
        self.kind = folder_kind(self.folder)  # a wrong folder fails here, before any model loads
        self.backend = backend
        self._predictor: Predictor | None = None

    @classmethod
    def load(cls, folder: str | Path, backend: str | None = None) -> EmotionModel:
        """The folder ``folder``; ``backend`` (``transformers`` or ``vllm``) overrides a generation task's. The
        model itself loads on the first ``predict``."""
        return cls(Path(folder), backend)

    @property
    def predictor(self) -> Predictor:
        """The loaded folder (loading it now if no call has yet)."""
        if self._predictor is None:
            # a generation run with probabilities gives them too (its labels stay its decision)
            with_probs = True if self.kind == "run" and (self.folder / THRESHOLDS).is_file() else None
            self._predictor = load_predictor(self.folder, PredictSettings(backend=self.backend, with_probs=with_probs))
        return self._predictor

    def predict(self, texts: Sequence[str]) -> TextPredictions:
        """The labels of ``texts`` as the folder decided (``metrics.json``'s ``decision`` for a run, the tuned
        thresholds of a cv or ensemble), with the probabilities where it has them."""
        if isinstance(texts, str):
            raise GenEmotionError("predict takes a list of texts; wrap one text in a list: predict([text])")
        return self.predictor.predict(list(texts))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Per-label probabilities of ``texts``: a classifier's, a cv's or ensemble's averaged ones, or those of a
        generation run trained with ``generate.probabilities: true``."""
        if not self.predictor.has_probs:
            raise GenEmotionError(
                f"{self.folder}: this folder has no probabilities (a generation model trained without "
                "generate.probabilities=true, or an ensemble that votes)"
            )
        result = self.predict(texts)
        assert result.probs is not None
        return result.probs

    def close(self) -> None:
        """Free the model (a generation model's process ends); a later call loads it again."""
        if self._predictor is not None:
            self._predictor.close()
            self._predictor = None

    def __enter__(self) -> EmotionModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
