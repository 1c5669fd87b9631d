"""The model calls of ``gen-emotion serve``: the one thread that makes them (``Predictor`` is not thread-safe) and
the queue that gathers the texts of requests arriving while a call runs into the next call (``Batcher``)."""

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gen_emotion.core.errors import GenEmotionError

log = logging.getLogger(__name__)


class ModelThread:
    """The one thread that makes every model call. A daemon: a call still running at exit does not hold the
    process past its shutdown."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="gen-emotion-model", daemon=True).start()

    def _loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            call, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as err:  # handed to the awaiting request, which answers 500
                    future.set_exception(err)

    def submit(self, call: Callable[[], Any]) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.jobs.put((call, future))
        return future

    async def run(self, call: Callable[[], Any]) -> Any:
        return await asyncio.wrap_future(self.submit(call))

    def stop(self) -> None:
        self.jobs.put(None)


class Batcher:
    """Requests wait here; each model call takes every waiting request, up to ``max_batch`` texts (a larger
    request goes alone), and hands each its rows of the result."""

    def __init__(self, thread: ModelThread, max_batch: int) -> None:
        self.thread, self.max_batch = thread, max_batch
        self.predict: Callable[[list[str]], Any] | None = None
        self.waiting: deque[tuple[list[str], asyncio.Future]] = deque()
        self.wake = asyncio.Event()
        self.calls = 0

    async def submit(self, texts: list[str]) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((texts, future))
        self.wake.set()
        return await future

    def _take(self) -> list[tuple[list[str], asyncio.Future]]:
        batch: list[tuple[list[str], asyncio.Future]] = []
        size = 0
        while self.waiting and (not batch or size + len(self.waiting[0][0]) <= self.max_batch):
            texts, future = self.waiting.popleft()
            if not future.done():  # a cancelled request (its client left) costs nothing
                batch.append((texts, future))
                size += len(texts)
        if not self.waiting:
            self.wake.clear()
        return batch

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            batch = self._take()
            try:
                await self._call(batch) if batch else None
            except Exception as err:  # a bug here must fail these requests, not stop the queue for good
                log.error("model call failed", exc_info=err)
                _fail([future for _, future in batch], err)

    async def _call(self, batch: list[tuple[list[str], asyncio.Future]]) -> None:
        texts = [text for part, _ in batch for text in part]
        predict = self.predict
        assert predict is not None, "requests are refused until the model is loaded"
        self.calls += 1
        try:
            result = await self.thread.run(lambda: predict(texts))
        except Exception as err:
            if len(batch) == 1:
                return _fail([batch[0][1]], err)
            for part in batch:  # one request's bad text must not fail the others gathered with it
                await self._call([part])
            return
        start = 0
        for part, future in batch:
            if not future.done():
                future.set_result(_rows(result, start, start + len(part)))
            start += len(part)

    def fail_waiting(self, message: str) -> None:
        _fail([future for _, future in self.waiting], GenEmotionError(message))
        self.waiting.clear()


def _fail(futures: list[asyncio.Future], error: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)


def _rows(found: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a ``TextPredictions``."""
    return replace(
        found,
        texts=found.texts[start:stop],
        labels=found.labels[start:stop],
        outputs=None if found.outputs is None else found.outputs[start:stop],
        probs=None if found.probs is None else found.probs[start:stop],
    )


def to_predictions(found: Any) -> list[dict[str, Any]]:
    names = list(found.columns)
    rows = []
    for i, row in enumerate(found.labels.tolist()):
        probs = None if found.probs is None else dict(zip(names, found.probs[i].tolist()))
        output = None if found.outputs is None else found.outputs[i]
        rows.append({"labels": [n for n, on in zip(names, row) if on], "probabilities": probs, "output": output})
    return rows
