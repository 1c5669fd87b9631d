"""Try it: texts through a folder's model, loaded by ``serving.predictor.load_predictor`` (what ``serve`` loads)
and answered as ``serve`` answers (``serving.server.to_predictions``). Models load only here, when a text is
sent, never to show a page; at most ``MAX_LOADED`` are kept, the least recently used closed first. One model
call at a time (a ``Predictor`` is not thread-safe)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.serving.batching import to_predictions
from gen_emotion.serving.predictor import Predictor, load_predictor

log = logging.getLogger(__name__)

MAX_LOADED = 2
MAX_TEXTS = 32
MAX_TEXT_CHARS = 2000


class Models:
    """The loaded models, by folder."""

    def __init__(self, max_loaded: int = MAX_LOADED) -> None:
        self.max_loaded = max_loaded
        self.loaded: OrderedDict[Path, Predictor] = OrderedDict()
        self.lock = threading.Lock()
        self.loads = 0
        """How many times a model was loaded (the bench checks that showing pages loads none)."""

    def predictor(self, folder: Path) -> Predictor:
        if folder in self.loaded:
            self.loaded.move_to_end(folder)
            return self.loaded[folder]
        while len(self.loaded) >= self.max_loaded:
            _, oldest = self.loaded.popitem(last=False)
            oldest.close()
        log.info("loading %s for try it", folder)
        predictor = load_predictor(folder)
        self.loads += 1
        self.loaded[folder] = predictor
        return predictor

    def predict(self, folder: Path, texts: list[str]) -> list[dict[str, Any]]:
        """``serve``'s answer for ``texts``: each one's labels, probabilities and output."""
        texts = [text for text in (t.strip() for t in texts) if text]
        if not texts:
            raise GenEmotionError("type one or more texts, one a line")
        if len(texts) > MAX_TEXTS:
            raise GenEmotionError(f"{len(texts)} texts; at most {MAX_TEXTS} at a time")
        if any(len(text) > MAX_TEXT_CHARS for text in texts):
            raise GenEmotionError(f"a text is over {MAX_TEXT_CHARS} characters")
        with self.lock:
            found = self.predictor(folder).predict(texts)
        names = list(found.columns)
        return [{"text": text, "names": names, **row} for text, row in zip(texts, to_predictions(found))]

    def close(self) -> None:
        with self.lock:
            while self.loaded:
                self.loaded.popitem()[1].close()
