"""The OpenAI-compatible routes of ``gen-emotion serve`` (serving/openai_api.py), called with the official
``openai`` client against real servers on loopback: a TF-IDF run (listed, completions refused naming /predict)
and, slow, a generation run of the tiny random Qwen whose every answer is in the run's grammar (served by the
gathered batches: the async engine's routes are tests/serving/test_engine.py's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from conftest import SAMPLE_DIR
from servers import Server, start_server

from gen_emotion.data.formats import read_test


@pytest.fixture(scope="module")
def tfidf_server(tfidf_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tfidf_run, tmp_path_factory.mktemp("openai"))
    with httpx.Client(timeout=30) as client:
        server.wait_ready(client)
    yield server
    server.stop()


def client_of(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)


def test_a_classifier_folder_is_listed_and_refuses_completions_naming_predict(tfidf_run, tfidf_server):
    client = client_of(tfidf_server)
    (listed,) = client.models.list().data
    assert listed.id == tfidf_run.name and listed.owned_by == "gen-emotion"
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model=tfidf_run.name, messages=[{"role": "user", "content": "What a day!"}])
    with pytest.raises(openai.BadRequestError) as completion:
        client.completions.create(model=tfidf_run.name, prompt="What a day!")
    for refused in (chat, completion):
        message = refused.value.body["message"]
        assert message.startswith(f"{tfidf_run.name} is a run folder that labels texts") and "POST /predict" in message


def test_bad_bodies_on_the_new_routes_are_a_4xx_json_and_the_server_stays_up(tfidf_run, tfidf_server):
    client = client_of(tfidf_server)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.completions.create(model="gpt-4o", prompt="hi")
    assert "GET /v1/models lists" in unknown.value.body["message"]
    url = f"{tfidf_server.url}/v1"
    with httpx.Client(timeout=30) as http:
        cases = [
            http.post(f"{url}/chat/completions", json={}),
            http.post(f"{url}/chat/completions", json={"model": tfidf_run.name, "messages": []}),
            http.post(f"{url}/completions", json={"model": tfidf_run.name, "prompt": 3}),
            http.post(f"{url}/completions", content=b'{"model": ', headers={"content-type": "application/json"}),
            http.get(f"{url}/completions"),
        ]
        assert http.get(f"{tfidf_server.url}/health").status_code == 200
    assert [answer.status_code for answer in cases] == [422, 422, 422, 422, 405]
    for answer in cases:
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], answer.text
    assert tfidf_server.process.poll() is None


@pytest.mark.slow
def test_a_generation_run_answers_the_openai_client_in_its_grammar(generation_run, serve):
    from gen_emotion.core.labels import is_canonical

    texts = read_test(SAMPLE_DIR / "test.csv").texts[:3]
    server = serve(generation_run)
    with httpx.Client(timeout=300) as http:
        server.wait_ready(http)
        expected = [http.post(f"{server.url}/predict", json={"texts": [t]}).json()["predictions"][0] for t in texts]
    client = client_of(server)
    assert [m.id for m in client.models.list().data] == [generation_run.name]
    chats = [
        client.chat.completions.create(
            model=generation_run.name,
            messages=[{"role": "system", "content": "ignored: the run's own"}, {"role": "user", "content": text}],
        )
        for text in texts
    ]
    completions = [client.completions.create(model=generation_run.name, prompt=text) for text in texts]
    several = client.completions.create(model=generation_run.name, prompt=texts)
    stream = client.chat.completions.create(
        model=generation_run.name, messages=[{"role": "user", "content": texts[0]}], stream=True
    )
    pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices[0].delta.content]
    with pytest.raises(openai.BadRequestError) as logprobs:  # only under vLLM's async engine
        client.completions.create(model=generation_run.name, prompt=texts[0], logprobs=2)
    assert "async engine" in logprobs.value.body["message"]
    outputs = [row["output"] for row in expected]
    assert all(is_canonical(output) for output in outputs)
    assert [c.choices[0].message.content for c in chats] == outputs  # one text a call, greedy: as /predict
    assert [c.choices[0].text for c in completions] == outputs
    assert pieces == outputs[:1]  # the gathered batches stream the whole answer as one event
    assert [c.index for c in several.choices] == [0, 1, 2]
    assert all(is_canonical(c.text) for c in several.choices)
