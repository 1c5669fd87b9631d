"""``GET /metrics`` of ``gen-emotion serve`` (serving/metrics.py): a real server over a TF-IDF run answers known
requests, then its exposition is parsed with prometheus_client's own parser and each count checked."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_requests_errors_batches_texts_and_the_load(tfidf_run, serve):
    server = serve(tfidf_run, "--request-unit", "4")
    with httpx.Client(timeout=30) as client:
        server.wait_ready(client)
        before = samples(client.get(f"{server.url}/metrics").text)
        ok = [
            client.post(f"{server.url}/predict", json={"texts": ["one", "two", "three"][: 1 + i % 3]}) for i in range(6)
        ]
        big = client.post(f"{server.url}/predict", json={"texts": [f"text {i}" for i in range(10)]})  # 4 + 4 + 2
        bad = client.post(f"{server.url}/predict", json={"texts": []})
        missing = client.get(f"{server.url}/nowhere/{'x' * 20}")
        answer = client.get(f"{server.url}/metrics")
    assert [a.status_code for a in [*ok, big]] == [200] * 7 and bad.status_code == 422 and missing.status_code == 404
    assert answer.headers["content-type"].startswith("text/plain; version=")
    found = samples(answer.text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return found.get(key, 0.0) - before.get(key, 0.0)

    assert grew("gen_emotion_requests_total", route="/predict", method="POST", status="200") == 7
    assert grew("gen_emotion_requests_total", route="/predict", method="POST", status="422") == 1
    assert grew("gen_emotion_requests_total", route="other", method="GET", status="404") == 1  # no path label
    assert grew("gen_emotion_errors_total", route="/predict", status="422") == 1
    assert grew("gen_emotion_errors_total", route="other", status="404") == 1
    assert grew("gen_emotion_request_seconds_count", route="/predict") == 8
    texts = 1 + 2 + 3 + 1 + 2 + 3 + 10
    assert grew("gen_emotion_texts_total", folder=tfidf_run.name) == texts
    assert grew("gen_emotion_batch_texts_sum") == texts  # one request at a time: each call its request's texts
    assert grew("gen_emotion_batch_texts_count") == 6 + 3  # the 10-text request in 3 calls (--request-unit 4)
    assert grew("gen_emotion_batch_texts_bucket", le="4.0") == 9
    assert grew("gen_emotion_model_call_seconds_count") == 9
    assert found[("gen_emotion_queue_texts", ())] == 0
    assert 0 < found[("gen_emotion_model_load_seconds", ())] < 120
    assert found[("gen_emotion_model_restarts_total", ())] == 0
    assert not any(name.endswith("_created") for name, _ in found)
