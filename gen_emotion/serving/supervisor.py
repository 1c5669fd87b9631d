"""The served model's life in ``gen-emotion serve``: loaded in the background, watched (a generation folder's
worker process, ``steps.WorkerSession``, or the model thread may die), restarted once per ``--restart-window``
seconds when it dies, and closed at shutdown. ``/health`` reads its state."""

import asyncio
import concurrent.futures
import logging
import time
from pathlib import Path
from typing import Any

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.redaction import redact
from gen_emotion.serving.batching import Batcher, ModelThread

log = logging.getLogger(__name__)

CLOSE_SECONDS = 2.0
"""How long the shutdown (or a restart) waits for the model to close (a generation model's process to end)."""
WATCH_SECONDS = 0.5
"""How often the watchdog looks at the model worker."""


class ServerState:
    """What the handlers share: the options, the loaded predictor (None while loading or restarting), the batcher,
    why the worker is dead (``dead``), the metrics."""

    def __init__(self, folders: list[Path], options: Any, metrics: Any = None, engine: bool = False) -> None:
        self.folders, self.options, self.metrics = folders, options, metrics
        self.folder = folders[0]
        self.engine = engine  # vLLM's async engine (serving.engine) rather than the gathered batches
        self.predictor: Any = None
        self.corpse: Any = None  # a predictor whose worker died, closed at its restart
        self.error: str | None = None  # the model could not load: the server exits
        self.dead: str | None = None  # the worker died: restarting, or waiting for the restart window
        self.restarting = False
        self.restarts = 0
        self.last_restart: float | None = None
        self.thread: ModelThread | None = None
        self.batcher: Batcher | None = None
        self.server: Any = None  # the uvicorn server, told to exit when loading fails
        self.tasks: list[asyncio.Task] = []
        self.created = time.time()  # when the server started (the OpenAI routes' model "created")

    @property
    def status(self) -> str:
        if self.predictor is not None:
            return "ok"
        if self.error is not None:
            return "failed"
        if self.dead is not None:
            return "restarting" if self.restarting else "dead"
        return "loading"

    def start(self) -> None:
        """The model thread, the batcher and the watchdog; the model starts loading."""
        self.thread = ModelThread()
        self.batcher = Batcher(self.thread, self.options.max_batch, self.options.request_unit)
        if self.metrics is not None:
            self.batcher.observe = self._observe
            self.metrics.watch_queue(self.depth)
        self.tasks = [
            asyncio.create_task(self.wait_for_model(self.thread.submit(self.load))),
            asyncio.create_task(self.batcher.run()),
            asyncio.create_task(self.watch()),
        ]

    def depth(self) -> int:
        """Texts waiting for a model call (the async engine: texts in the engine)."""
        if self.engine:
            return getattr(self.predictor, "in_flight", 0)
        return self.batcher.depth() if self.batcher is not None else 0

    def _observe(self, texts: int, seconds: float) -> None:
        self.metrics.batch.observe(texts)
        self.metrics.model_seconds.observe(seconds)

    def load(self) -> Any:
        from gen_emotion.serving.predictor import PredictSettings, load_predictor

        started = time.perf_counter()
        shown = ", ".join(map(str, self.folders))
        log.info("loading %s", shown)
        if self.engine:
            from gen_emotion.serving.engine import AsyncEngine

            predictor: Any = AsyncEngine(self.folders, self.options.backend)
        else:
            predictor = load_predictor(self.folder, PredictSettings(backend=self.options.backend))
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.load_seconds.set(seconds)
        how = "vLLM's async engine" if self.engine else f"{predictor.kind} folder"
        log.info("loaded %s (%s) in %.1f s", shown, how, seconds)
        return predictor

    async def wait_for_model(self, loading: concurrent.futures.Future) -> None:
        """The loaded model serves; a model that cannot load ends the server (at a restart: stays dead, and the
        next restart window tries again)."""
        try:
            predictor = await asyncio.wrap_future(loading)
        except Exception as err:
            message = redact(str(err)) if isinstance(err, GenEmotionError) else f"cannot load {self.folder}: {err!r}"
            log.error("%s", message, exc_info=not isinstance(err, GenEmotionError))
            if self.restarting:
                self.dead, self.restarting = f"{self.dead}; the restart failed: {message}", False
            else:
                self.error = message
                if self.server is not None:
                    self.server.should_exit = True
            return
        assert self.batcher is not None
        self.batcher.predict = None if self.engine else predictor.predict
        self.predictor, self.dead, self.restarting = predictor, None, False
        log.info("ready: POST /predict")

    def served(self, run: str | None) -> str:
        """The model id of the run a request names (``None``: the only one); a ``LookupError`` naming those served."""
        if self.engine and self.predictor is not None:
            return self.predictor.run(run).name
        names = [folder.name for folder in self.folders]
        if run is None and len(names) == 1 or run in names:
            return run or names[0]
        served = ", ".join(map(repr, names))
        raise LookupError(f"{run!r}: not served here; served: {served}" if run else f"name one of {served}")

    async def predict_texts(self, texts: list[str], run: str | None = None) -> Any:
        """The model's ``TextPredictions`` for ``texts`` (of the served run ``run``) through the shared queue or the
        async engine, or an HTTP error: 503 while the model loads or its worker is down, 500 (logged) when the model
        call fails."""
        from starlette.exceptions import HTTPException

        if self.predictor is None:
            if self.dead is not None:
                raise HTTPException(503, f"the model worker is down ({self.dead}); GET /health says when it is back")
            raise HTTPException(
                503, "the model is still loading; GET /health says when it is ready", {"Retry-After": "2"}
            )
        assert self.batcher is not None
        try:
            found = await (self.predictor.predict(texts, run) if self.engine else self.batcher.submit(texts))
        except Exception as err:
            raise self.failed(err, len(texts)) from None
        if self.metrics is not None:
            self.metrics.served(run or self.folder.name, len(texts))
        return found

    @staticmethod
    def failed(err: Exception, count: int) -> Any:
        """The 500 for a model call on ``count`` texts that raised ``err``, logged in one line (a toolkit error's
        redacted message, else only the exception's type: a library's message may hold a text or a path)."""
        from starlette.exceptions import HTTPException

        message = redact(str(err)) if isinstance(err, GenEmotionError) else f"{type(err).__name__}"
        log.error("prediction of %d text(s) failed: %s", count, message)
        return HTTPException(500, f"prediction failed: {message}")

    def why_dead(self) -> str | None:
        """Why the model worker can answer no more, or None while it can."""
        if self.thread is not None and not self.thread.alive():
            return "the model thread has stopped"
        return self.predictor.dead() if self.predictor is not None else None

    async def watch(self) -> None:
        """Every ``WATCH_SECONDS``: a dead worker is restarted, at most once per ``--restart-window`` seconds."""
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            reason = self.why_dead() if self.predictor is not None else None
            if reason is not None:  # requests are refused with the reason meanwhile
                self.corpse, self.predictor, self.dead = self.predictor, None, reason
                log.error("the model worker died: %s", reason)
            if self.dead is None or self.restarting or self.error is not None:
                continue
            since = None if self.last_restart is None else time.monotonic() - self.last_restart
            if since is not None and since < self.options.restart_window:
                if reason is not None:
                    log.error(
                        "not restarting it: the last restart was %.0f s ago (--restart-window %g); retrying in %.0f s",
                        since,
                        self.options.restart_window,
                        self.options.restart_window - since,
                    )
                continue
            await self.restart()

    async def restart(self) -> None:
        assert self.batcher is not None and self.thread is not None
        self.restarting, self.last_restart = True, time.monotonic()
        self.restarts += 1
        if self.metrics is not None:
            self.metrics.restarts.inc()
        log.warning(
            "restarting the model worker (restart %d; at most one per %g s)", self.restarts, self.options.restart_window
        )
        if not self.thread.alive():
            self.thread = self.batcher.thread = ModelThread()
        if self.corpse is not None:
            corpse, self.corpse = self.corpse, None
            try:
                await asyncio.wait_for(self.thread.run(corpse.close), CLOSE_SECONDS)
            except Exception as err:
                log.warning("closing the dead model: %r", err)
        await self.wait_for_model(self.thread.submit(self.load))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        assert self.thread is not None and self.batcher is not None
        self.batcher.fail_waiting("the server is shutting down")
        if self.predictor is not None:
            try:
                await asyncio.wait_for(self.thread.run(self.predictor.close), CLOSE_SECONDS)
            except Exception as err:  # the process exits anyway; a model that will not close is only logged
                log.warning("closing the model: %r", err)
        self.thread.stop()
