"""The model calls of ``gen-emotion serve``: the one thread that makes them (``Predictor`` is not thread-safe) and
the queue that gathers the texts of requests arriving while a call runs into the next call (``Batcher``)."""

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
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
        self.thread = threading.Thread(target=self._loop, name="gen-emotion-model", daemon=True)
        self.thread.start()

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

    def alive(self) -> bool:
        return self.thread.is_alive()


class Pending:
    """One request in the queue: its texts, the next one not yet given to a model call, the rows found so far."""

    def __init__(self, texts: list[str], future: asyncio.Future) -> None:
        self.texts, self.future, self.next = texts, future, 0
        self.found: dict[int, Any] = {}  # a piece's first text -> its rows


class Batcher:
    """Requests wait here; each model call takes up to ``unit`` texts from each waiting request in turn, up to
    ``max_batch`` texts in all, and hands each its rows. A large request is so cut into pieces of ``unit`` texts
    that go into successive calls, and a one-text request arriving meanwhile joins the next call rather than
    waiting behind the whole of it."""

    def __init__(self, thread: ModelThread, max_batch: int, unit: int | None = None) -> None:
        self.thread, self.max_batch, self.unit = thread, max_batch, min(unit or max_batch, max_batch)
        self.predict: Callable[[list[str]], Any] | None = None
        self.waiting: deque[Pending] = deque()
        self.wake = asyncio.Event()
        self.calls = 0
        self.observe: Callable[[int, float], None] | None = None  # each call's texts and seconds (the metrics)

    async def submit(self, texts: list[str]) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(Pending(texts, future))
        self.wake.set()
        return await future

    def depth(self) -> int:
        """Texts waiting for a model call."""
        return sum(len(p.texts) - p.next for p in self.waiting)

    def _take(self) -> list[tuple[Pending, int, int]]:
        """The next call's pieces: (request, start, stop), a unit at most of each waiting request in turn."""
        batch: list[tuple[Pending, int, int]] = []
        size = 0
        for pending in list(self.waiting):
            if pending.future.done():  # a cancelled request (its client left) or a failed one costs nothing more
                self.waiting.remove(pending)
                continue
            if size >= self.max_batch:
                break
            stop = min(pending.next + self.unit, len(pending.texts), pending.next + self.max_batch - size)
            batch.append((pending, pending.next, stop))
            size += stop - pending.next
            pending.next = stop
            if stop == len(pending.texts):
                self.waiting.remove(pending)
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
                _fail([pending.future for pending, _, _ in batch], err)

    async def _call(self, batch: list[tuple[Pending, int, int]]) -> None:
        texts = [text for pending, start, stop in batch for text in pending.texts[start:stop]]
        predict = self.predict
        assert predict is not None, "requests are refused until the model is loaded"
        self.calls += 1
        started = time.perf_counter()
        try:
            result = await self.thread.run(lambda: predict(texts))
        except Exception as err:
            if len(batch) == 1:
                return _fail([batch[0][0].future], err)
            for piece in batch:  # one request's bad text must not fail the others gathered with it
                await self._call([piece])
            return
        if self.observe is not None:
            self.observe(len(texts), time.perf_counter() - started)
        at = 0
        for pending, start, stop in batch:
            pending.found[start] = _rows(result, at, at + stop - start)
            at += stop - start
            if not pending.future.done() and sum(len(r.texts) for r in pending.found.values()) == len(pending.texts):
                pending.future.set_result(_join([pending.found[k] for k in sorted(pending.found)]))

    def fail_waiting(self, message: str) -> None:
        _fail([pending.future for pending in self.waiting], GenEmotionError(message))
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


def _join(parts: list[Any]) -> Any:
    """One ``TextPredictions`` of ``parts`` in order (a large request's pieces)."""
    if len(parts) == 1:
        return parts[0]
    import numpy as np

    outputs = None if parts[0].outputs is None else [o for part in parts for o in part.outputs]
    probs = None if parts[0].probs is None else np.concatenate([part.probs for part in parts])
    return replace(
        parts[0],
        texts=[t for part in parts for t in part.texts],
        labels=np.concatenate([part.labels for part in parts]),
        outputs=outputs,
        probs=probs,
    )


def to_predictions(found: Any) -> list[dict[str, Any]]:
    names = list(found.columns)
    rows = []
    for i, row in enumerate(found.labels.tolist()):
        probs = None if found.probs is None else dict(zip(names, found.probs[i].tolist()))
        output = None if found.outputs is None else found.outputs[i]
        rows.append({"labels": [n for n, on in zip(names, row) if on], "probabilities": probs, "output": output})
    return rows
