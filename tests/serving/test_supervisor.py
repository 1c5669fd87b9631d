"""The served model's life (serving/supervisor.py), in this process over the TF-IDF run: the model thread stopped
(what can die in a TF-IDF or MiniLM server), the watchdog sees it, says why, and restarts it once per
--restart-window. A generation run's killed worker process, over HTTP: test_server.py's generation test."""

from __future__ import annotations

import asyncio
import logging
import time

from gen_emotion.serving.server import ServeOptions
from gen_emotion.serving.supervisor import WATCH_SECONDS, ServerState


async def until(check, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_stopped_model_thread_is_seen_and_restarted_once_per_window(tfidf_run, caplog):
    caplog.set_level(logging.INFO, logger="gen_emotion.serving.supervisor")
    state = ServerState([tfidf_run], ServeOptions(restart_window=30))

    async def life() -> list[str]:
        state.start()
        await until(lambda: state.status == "ok")
        first = await state.batcher.submit(["What a day!"])
        statuses = []
        state.thread.stop()  # the thread ends: the model calls have nowhere to run
        await until(lambda: state.restarts == 1, 5 * WATCH_SECONDS + 10)  # seen, and restarted at once
        await until(lambda: state.status == "ok")
        again = await state.batcher.submit(["What a day!"])
        assert again.labels.tolist() == first.labels.tolist()
        state.thread.stop()  # again, within the window: stays dead
        await until(lambda: state.status == "dead", 5 * WATCH_SECONDS + 5)
        await asyncio.sleep(3 * WATCH_SECONDS)
        statuses.append(state.status)
        await state.close()
        return statuses

    statuses = asyncio.run(life())
    assert statuses == ["dead"]
    assert state.restarts == 1 and state.dead == "the model thread has stopped"
    text = caplog.text
    assert text.count("the model worker died: the model thread has stopped") == 2
    assert "restarting the model worker (restart 1; at most one per 30 s)" in text
    assert "not restarting it: the last restart was " in text and "s ago (--restart-window 30)" in text
