"""The queue of ``gen-emotion serve`` (serving/batching.py) on a real server over a TF-IDF run: a large request is
cut into --request-unit pieces, so one-text requests sent after it are answered before it, and its answer is
still every text in order."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from conftest import SAMPLE_DIR

from gen_emotion.data.formats import read_test

BIG = 2048


def test_one_text_requests_are_not_held_behind_a_large_one(tfidf_run, serve):
    from gen_emotion import EmotionModel

    texts = read_test(SAMPLE_DIR / "test.csv").texts
    big = [texts[i % len(texts)] + f" #{i}" for i in range(BIG)]
    server = serve(tfidf_run, "--max-texts", str(BIG), "--request-unit", "8", "--max-body-bytes", "4000000")
    finished: dict[str, float] = {}
    with httpx.Client(timeout=60) as client:
        server.wait_ready(client)
        calls_before = client.get(f"{server.url}/health").json()["model_calls"]
    sent = threading.Event()

    def post_big() -> httpx.Response:
        with httpx.Client(timeout=120) as client:
            sent.set()
            answer = client.post(f"{server.url}/predict", json={"texts": big})
            finished["big"] = time.monotonic()
            return answer

    def post_small(i: int) -> httpx.Response:
        with httpx.Client(timeout=120) as client:
            answer = client.post(f"{server.url}/predict", json={"texts": [texts[i]]})
            finished[f"small-{i}"] = time.monotonic()
            return answer

    with ThreadPoolExecutor(4) as pool:
        big_answer = pool.submit(post_big)
        sent.wait()
        time.sleep(0.1)  # the large request is in the queue, its pieces going through the model one call at a time
        smalls = [pool.submit(post_small, i) for i in range(3)]
        answers = [big_answer.result(), *(f.result() for f in smalls)]
    assert [a.status_code for a in answers] == [200] * 4
    assert all(finished[f"small-{i}"] < finished["big"] for i in range(3)), finished
    with httpx.Client(timeout=60) as client:
        calls = client.get(f"{server.url}/health").json()["model_calls"] - calls_before
    assert calls >= BIG // 8  # the large request's pieces, the small ones joining some of those calls

    expected = EmotionModel.load(tfidf_run).predict(big)
    rows = answers[0].json()["predictions"]
    assert [row["labels"] for row in rows] == expected.label_names  # the pieces joined back in order
    probs = np.array([[row["probabilities"][name] for name in expected.columns] for row in rows])
    assert np.allclose(probs, expected.probs, rtol=0, atol=1e-12)
