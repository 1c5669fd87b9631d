"""``gen-emotion serve``: a real server (the command, in its own process, on a free loopback port: tests/servers.py)
over a TF-IDF run folder trained on the shipped sample, called with a real HTTP client (httpx). The hardening
cases are in test_security.py, the queue's in test_batching.py, a dead worker's in test_supervisor.py."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import REPO_ROOT, SAMPLE_DIR
from servers import START_SECONDS, Server, start_server

from gen_emotion.cli.parser import main
from gen_emotion.data.formats import read_test

JSON_TYPE = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return read_test(SAMPLE_DIR / "test.csv").texts


@pytest.fixture(scope="module")
def shared(tfidf_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The module's one server over the TF-IDF run, ready, with small limits for the bad-input cases."""
    flags = ["--max-texts", "3", "--max-text-chars", "500", "--max-body-bytes", "2000"]
    server = start_server(tfidf_run, tmp_path_factory.mktemp("shared"), *flags)
    with httpx.Client(timeout=30) as client:
        server.wait_ready(client)
    yield server
    server.stop()


def test_health_is_503_while_loading_then_200(tfidf_run, serve):
    """The server answers before the model is loaded: loading imports the model stack (over a second) in the
    model thread, so the first /health right after start is 503, and /predict is refused meanwhile."""
    server = serve(tfidf_run)
    with httpx.Client(timeout=30) as client:
        first = client.get(f"{server.url}/health")
        refused = client.post(f"{server.url}/predict", json={"texts": ["hello"]})
        seen = server.wait_ready(client)
        health = client.get(f"{server.url}/health").json()
    assert first.status_code == 503 and first.json()["status"] == "loading"
    if seen[0] == 503:  # still loading when /predict was called
        assert refused.status_code == 503 and "loading" in refused.json()["error"]
    assert seen == sorted(seen, reverse=True)  # 503 until 200, never back
    assert health["status"] == "ok" and health["kind"] == "run" and health["has_probabilities"] is True
    assert len(health["labels"]) == 11 and health["generates"] is False


def test_concurrent_requests_are_answered_as_emotion_model_does(tfidf_run, shared, texts):
    from gen_emotion import EmotionModel

    server = shared
    requests = [texts[i % len(texts) : i % len(texts) + 1 + i % 3] for i in range(200)]  # 1 to 3 texts each
    with httpx.Client(timeout=30) as client:
        calls_before = client.get(f"{server.url}/health").json()["model_calls"]

    def post(batch: list[str]) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            return client.post(f"{server.url}/predict", json={"texts": batch})

    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, requests))
    assert time.monotonic() - started < 120
    assert [a.status_code for a in answers] == [200] * len(requests)
    with httpx.Client(timeout=30) as client:
        calls = client.get(f"{server.url}/health").json()["model_calls"]
    assert calls - calls_before < len(requests)  # requests that came together shared model calls

    model = EmotionModel.load(tfidf_run)
    flat = [text for batch in requests for text in batch]
    expected = model.predict(flat)
    got = [row for answer in answers for row in answer.json()["predictions"]]
    assert len(got) == len(flat)
    assert [row["labels"] for row in got] == expected.label_names
    probs = np.array([[row["probabilities"][name] for name in expected.columns] for row in got])
    assert np.allclose(probs, expected.probs, rtol=0, atol=1e-12)
    assert all(row["output"] is None for row in got)


def raw_post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(timeout=30) as client:
        return client.post(url, content=body, headers=headers)


def test_bad_input_is_a_4xx_naming_the_problem_and_the_server_stays_up(shared):
    server = shared
    predict, json_type = f"{server.url}/predict", {"content-type": "application/json"}
    with httpx.Client(timeout=30) as client:
        cases = [
            (client.post(predict, content=b'{"texts": ["a"', headers=json_type), 422, "not valid JSON"),
            (client.post(predict, json={"texts": "one text"}), 422, "texts: Input should be a valid list"),
            (client.post(predict, json={"texts": ["ok", 3]}), 422, "texts[1]: Input should be a valid string"),
            (client.post(predict, json={"texts": []}), 422, "texts: List should have at least 1 item"),
            (client.post(predict, json={"text": ["a"]}), 422, "texts: Field required"),
            (client.post(predict, json=["a"]), 422, 'a JSON object {"texts": [...]}'),
            (client.post(predict, json={"texts": ["a"] * 4}), 422, "texts: 4 texts; at most 3 (--max-texts)"),
            (client.post(predict, json={"texts": ["a", "b" * 501]}), 422, "texts[1]: 501 characters; at most 500"),
            (client.post(predict, json={"texts": ["a" * 45] * 50}), 413, "over 2000 bytes (--max-body-bytes)"),
            (client.get(predict), 405, "Method Not Allowed"),
            (client.get(f"{server.url}/nowhere"), 404, "Not Found"),
        ]

        def chunks():  # no Content-Length: the limit is counted as the body streams in
            yield b'{"texts": ["'
            for _ in range(30):
                yield b"x" * 100
            yield b'"]}'

        cases.append((client.post(predict, content=chunks(), headers=json_type), 413, "over 2000 bytes"))
        for response, status, words in cases:
            assert response.status_code == status, (response.status_code, response.text)
            assert words in response.json()["error"], (words, response.json())
        still = client.post(predict, json={"texts": ["still here", "and well"]})
        assert still.status_code == 200 and len(still.json()["predictions"]) == 2
        assert client.get(f"{server.url}/health").status_code == 200
    assert server.process.poll() is None


def test_sigterm_lets_a_request_in_flight_finish_cuts_a_stalled_one_with_a_json_503_and_exits_0(
    tfidf_run, serve, texts
):
    """A request whose body is still arriving when SIGTERM comes is answered; one whose client never finishes it is
    answered a JSON 503 when --shutdown-timeout ends, with one log line and no traceback; the process exits 0."""
    server = serve(tfidf_run, "--shutdown-timeout", "1")
    with httpx.Client(timeout=30) as client:
        server.wait_ready(client)
        expected = client.post(f"{server.url}/predict", json={"texts": texts[:2]}).json()
    body = json.dumps({"texts": texts[:2]}).encode()
    head = "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    in_flight = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    stalled = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    in_flight.sendall(head.encode() + body[:10])
    stalled.sendall(head.encode() + body[:10])
    time.sleep(0.5)  # both requests' headers are in: they are in flight
    server.process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    time.sleep(0.5)
    in_flight.sendall(body[10:])
    answers = [read_answer(in_flight), read_answer(stalled)]
    code = server.process.wait(timeout=15)
    gone = time.monotonic() - sent
    in_flight.close()
    stalled.close()
    assert answers[0][0] == b"HTTP/1.1 200 OK" and json.loads(answers[0][1]) == expected
    assert answers[1][0] == b"HTTP/1.1 503 Service Unavailable", answers[1]
    assert "send it again" in json.loads(answers[1][1])["error"]
    assert gone < 10, gone
    assert code == 0
    logs = server.logs()
    assert "Shutting down" in logs and "POST /predict: cut off by the shutdown" in logs
    assert "Traceback" not in logs and "CancelledError" not in logs


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """An HTTP/1.1 answer with a JSON body read off ``sock``: its status line and body."""
    answer = b""
    while not answer.endswith(b"}") and (chunk := sock.recv(65536)):
        answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return status_line, rest.split(b"\r\n\r\n", 1)[-1]


def test_a_killed_server_leaves_its_folder_as_it_was_and_a_restart_answers_the_same(tfidf_run, serve, texts):
    """SIGKILL with requests in flight (#24): a server writes nothing in the folder it serves, so there is nothing
    to resume; the next server on that folder gives the answers the killed one gave."""
    before = {p: p.read_bytes() for p in sorted(tfidf_run.rglob("*")) if p.is_file()}
    first = serve(tfidf_run)
    with httpx.Client(timeout=30) as client:
        first.wait_ready(client)
        expected = client.post(f"{first.url}/predict", json={"texts": texts[:8]}).json()
    with ThreadPoolExecutor(4) as pool:
        in_flight = [
            pool.submit(httpx.post, f"{first.url}/predict", json={"texts": texts}, timeout=30) for _ in range(8)
        ]
        time.sleep(0.05)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        for future in in_flight:
            with contextlib.suppress(httpx.TransportError):  # cut off by the kill, or answered before it
                assert future.result().status_code == 200
    assert {p: p.read_bytes() for p in sorted(tfidf_run.rglob("*")) if p.is_file()} == before
    second = serve(tfidf_run)
    with httpx.Client(timeout=30) as client:
        second.wait_ready(client)
        assert client.post(f"{second.url}/predict", json={"texts": texts[:8]}).json() == expected


def test_a_folder_that_cannot_load_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gen_emotion", "serve", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"gen-emotion: error: {tmp_path}: not a trained folder; give a gen-emotion run, cv or ensemble folder "
        "(or an export-model of one)"
    )


def test_a_port_in_use_is_one_line(tfidf_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gen_emotion", "serve", str(tfidf_run), "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=60,
        )
    assert result.returncode == 2
    in_use = f"--host 127.0.0.1 --port {port}: cannot listen there (Address already in use)"
    assert result.stderr == f"gen-emotion: error: {in_use}\n"


@pytest.mark.slow
def test_a_classifier_is_503_while_it_loads_then_answers_as_emotion_model(tmp_path, serve, texts):
    """MiniLM takes seconds to load (torch, the weights): /health is 503 meanwhile, whatever the machine's speed."""
    from gen_emotion import EmotionModel

    run_dir = tmp_path / "minilm"
    tiny = ["train.max_steps=2", "train.batch_size=8", "classifier.max_length=48"]
    assert main(["run", "minilm-l6-cpu", *tiny, "--out", str(run_dir)]) == 0
    server = serve(run_dir)
    with httpx.Client(timeout=120) as client:
        seen = server.wait_ready(client)
    assert seen[0] == 503 and seen[-1] == 200 and len(seen) > 10  # polled every 20 ms: seconds of loading

    requests = [texts[i : i + 1 + i % 2] for i in range(40)]
    surrogate = json.dumps({"texts": ["fine", "\ud800 hi"]}).encode()  # json.dumps escapes it: \\ud800

    def post(batch: list[str] | None) -> httpx.Response:
        with httpx.Client(timeout=300) as client:
            if batch is None:  # a lone surrogate among the others: refused alone, before the shared model call
                return client.post(f"{server.url}/predict", content=surrogate, headers=JSON_TYPE)
            return client.post(f"{server.url}/predict", json={"texts": batch})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, [*requests[:20], None, *requests[20:]]))
    refused = answers.pop(20)
    assert refused.status_code == 422 and refused.json()["error"].startswith("texts[1]: not valid Unicode: a lone")
    assert [a.status_code for a in answers] == [200] * len(requests)
    assert "Traceback" not in server.logs()
    got = [row for answer in answers for row in answer.json()["predictions"]]
    with EmotionModel.load(run_dir) as model:
        expected = model.predict([text for batch in requests for text in batch])
    probs = np.array([[row["probabilities"][name] for name in expected.columns] for row in got])
    # bf16 autocast: another batch shape (other requests gathered with it) moves a probability by ~1e-3 at most
    assert np.allclose(probs, expected.probs, rtol=0, atol=0.02)
    cut = np.full(len(expected.columns), 0.5)  # the run's decision: 0.5, or its thresholds where they won
    if json.loads((run_dir / "metrics.json").read_text())["decision"] == "thresholds":
        cut = np.array([json.loads((run_dir / "thresholds.json").read_text())[n] for n in expected.columns])
    clear = np.abs(expected.probs - cut) > 0.02
    labels = np.array([[int(n in row["labels"]) for n in expected.columns] for row in got])
    assert np.array_equal(labels[clear], expected.labels[clear])


def generated(server: Server, client: httpx.Client, requests: list[list[str]]) -> None:
    """Each request answered with grammar outputs and the labels they name (a random model: any labels)."""
    from gen_emotion.core.labels import is_canonical
    from gen_emotion.generation.parsing import parse

    names = client.get(f"{server.url}/health").json()["labels"]
    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(lambda texts: client.post(f"{server.url}/predict", json={"texts": texts}), requests))
    for texts, answer in zip(requests, answers):
        assert answer.status_code == 200, answer.text
        rows = answer.json()["predictions"]
        assert len(rows) == len(texts) and all(is_canonical(row["output"]) for row in rows)
        assert [row["labels"] for row in rows] == [
            [n for n, on in zip(names, parse(row["output"]).tolist()) if on] for row in rows
        ]


def health_until(server: Server, client: httpx.Client, done: Callable[[httpx.Response], bool]) -> list[dict]:
    """Poll /health (every 50 ms, at most START_SECONDS) until ``done``; the bodies seen."""
    seen, deadline = [], time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        answer = client.get(f"{server.url}/health")
        seen.append({"code": answer.status_code, **answer.json()})
        if done(answer):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"/health never got there: {seen[-3:]}; {server.logs()[-2000:]}")


@pytest.mark.slow
def test_a_generation_run_is_served_a_dead_worker_is_a_503_and_restarted_once_per_window(generation_run, serve, texts):
    """Item 4: the worker process killed, /health is 503 with the reason and the server starts a new one; killed
    again within --restart-window, it stays dead (503, the reason, a log line) instead of restarting in a loop."""
    import psutil

    server = serve(generation_run, "--restart-window", "600")
    with httpx.Client(timeout=300) as client:
        server.wait_ready(client)
        assert client.get(f"{server.url}/health").json()["generates"] is True
        generated(server, client, [texts[i : i + 2] for i in range(0, 12, 2)])
        workers = psutil.Process(server.process.pid).children()
        assert len(workers) == 1  # the model's own process (steps.WorkerSession)
        workers[0].kill()
        seen = health_until(server, client, lambda answer: answer.status_code == 200 and answer.json()["restarts"])
        down = [body for body in seen if body["code"] == 503]
        assert down and all("prediction process ended" in body["error"] for body in down), seen
        assert {body["status"] for body in down} <= {"dead", "restarting"}
        generated(server, client, [texts[:3], texts[3:4]])  # the new worker answers
        (worker,) = psutil.Process(server.process.pid).children()
        assert worker.pid != workers[0].pid
        worker.kill()
        health_until(server, client, lambda answer: answer.json()["status"] == "dead")
        time.sleep(1.0)  # two watchdog rounds: still dead, not restarted within the window
        still = client.get(f"{server.url}/health")
        refused = client.post(f"{server.url}/predict", json={"texts": ["still there?"]})
    assert still.status_code == 503 and still.json()["status"] == "dead" and still.json()["restarts"] == 1
    assert refused.status_code == 503 and "the model worker is down" in refused.json()["error"]
    assert server.process.poll() is None
    logs = server.logs()
    assert logs.count("the model worker died: the prediction process ended") == 2
    assert "restarting the model worker (restart 1; at most one per 600 s)" in logs
    assert "not restarting it: the last restart was" in logs


@pytest.mark.slow
def test_a_generation_run_is_served_by_vllm(generation_run, serve, texts):
    """``--backend vllm --engine gathered``: concurrent requests gathered into calls that vLLM schedules with the
    grammar (the async engine, the default, is tests/serving/test_engine.py's)."""
    server = serve(generation_run, "--backend", "vllm", "--engine", "gathered")
    with httpx.Client(timeout=600) as client:
        server.wait_ready(client)
        generated(server, client, [texts[i : i + 1 + i % 3] for i in range(12)])
        assert client.get(f"{server.url}/health").json()["model_calls"] < 12
