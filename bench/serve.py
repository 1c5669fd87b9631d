"""Serving: ``gen-emotion serve`` for TF-IDF, MiniLM and the Quick start's generative model, side by side with
what a user would write instead for MiniLM.

    python bench/serve.py                                        # trains what it needs on the shipped sample
    python bench/serve.py --tfidf runs/tfidf --minilm runs/minilm --generative runs/smollm2-cpu
    python bench/serve.py --smoke                                # a few steps and requests: proves it works
    python bench/serve.py --only generative                      # the generation run's two engines alone

Each folder is served by ``gen-emotion serve FOLDER --port 0`` in a process of its own (one at a time, so at most
one vLLM engine runs). Clients send one tweet per request (the sample's test tweets, in turn), each its next
request once the last is answered, from 1 and from 20 threads (one httpx client each): requests/s and p50/p99
latency. The generation run is served twice, at 1, 20 and 100 clients: by vLLM's async engine (the default: each
request its own engine request, batched continuously) and by the gathered batches (``--engine gathered``: the texts
of the requests waiting go into one ``generate`` call).
The baseline is what a user would write for MiniLM: a FastAPI endpoint of the same shape on uvicorn,
whose plain ``def`` handler (run in FastAPI's thread pool) calls a transformers ``pipeline("text-classification",
top_k=None, function_to_apply="sigmoid")`` on the MiniLM run's model once per request. The goal: at 20 clients,
``gen-emotion serve`` at least 3x the baseline's requests/s. Then, with every server stopped, ``EmotionModel``'s
latency for one text per call after loading, for each folder.

The MiniLM run is trained with ``classifier.pooling=model classifier.demojize=false`` so that the pipeline loads
the whole trained model (its own head) and reads the same raw text: the two endpoints compute the same thing
(the shipped recipe's mean pooling costs the same; the pipeline cannot load its head). Trained folders go to
``--out`` and are reused by a later run. Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[1]
LEVELS = (1, 20)
GENERATIVE_LEVELS = (1, 20, 100)
ENGINES = ("async", "gathered")
RECIPES = {
    "tfidf": ("tfidf-logreg", []),
    "minilm": ("minilm-l6-cpu", ["classifier.pooling=model", "classifier.demojize=false", "train.max_steps=40"]),
    "generative": ("smollm2-135m-cpu", ["train.max_steps=10"]),
}
SMOKE_STEPS = ["train.max_steps=3", "train.batch_size=8"]
REQUESTS = {"tfidf": 600, "minilm": 600, "minilm_pipeline": 600, "generative": 300}
"""Requests per level (at 1 client a third of these); --smoke sends 100 (fewer do not reach a steady state)."""
START_SECONDS = 900.0
"""The longest a server may take to load (a vLLM engine on a busy CPU takes minutes)."""
GOAL = 3.0


class Texts(BaseModel):
    """The baseline's request body (at module level: FastAPI resolves the handler's annotation here)."""

    texts: list[str]


def train(name: str, out: Path, smoke: bool) -> Path:
    """A run folder for ``name`` in ``out`` (reused when finished), trained on the shipped sample."""
    run_dir = out / name
    if (run_dir / "metrics.json").is_file():
        print(f"{name}: reusing {run_dir}", flush=True)
        return run_dir
    recipe, overrides = RECIPES[name]
    overrides = [o for o in overrides if not (smoke and o.startswith("train.max_steps"))]
    overrides += SMOKE_STEPS if smoke and name != "tfidf" else []
    command = [sys.executable, "-m", "gen_emotion", "run", recipe, *overrides, "--out", str(run_dir)]
    print(f"{name}: training {' '.join(command[3:])}", flush=True)
    log = out / "logs" / f"train-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO).returncode
    if code != 0:
        raise SystemExit(f"{name}: training failed (exit {code}); see {log}")
    return run_dir


class Server:
    """A server process that prints ``serving ... on http://127.0.0.1:PORT ...`` once it listens."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log = log
        self.started = time.perf_counter()
        with log.open("wb") as handle:
            self.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
        self.url = f"http://127.0.0.1:{self._port()}"

    def _port(self) -> int:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith("serving ") and "http://127.0.0.1:" in line:
                    return int(line.split("http://127.0.0.1:")[1].split(" ")[0])
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"the server did not start; see {self.log}")

    def wait_ready(self) -> float:
        """Seconds from the start to /health 200."""
        import httpx

        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/health", timeout=10).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"the server did not become ready; see {self.log}")

    def stop(self) -> None:
        """SIGTERM, then wait for the model's own processes too (a vLLM engine ends after the server exits):
        the next measurement must not run beside them."""
        import psutil

        if self.process.poll() is None:
            children = psutil.Process(self.process.pid).children(recursive=True)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            for child in psutil.wait_procs(children, timeout=180)[1]:
                child.kill()


def load(url: str, texts: list[str], clients: int, requests: int) -> dict[str, float]:
    """``requests`` one-text requests from ``clients`` threads, each waiting for its answer before the next."""
    import httpx

    numbers, latencies, failures = itertools.count(), [], []

    def client() -> None:
        with httpx.Client(timeout=300) as session:
            while (i := next(numbers)) < requests:
                started = time.perf_counter()
                answer = session.post(f"{url}/predict", json={"texts": [texts[i % len(texts)]]})
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200 or len(answer.json()["predictions"]) != 1:
                    failures.append(answer.status_code)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{url}: {len(failures)} of {requests} requests failed (status {failures[0]})")
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return {"requests": requests, "requests_per_s": requests / seconds, "p50_ms": p50, "p99_ms": p99}


def measure(
    name: str, command: list[str], texts: list[str], requests: int, out: Path, levels: tuple[int, ...] = LEVELS
) -> dict[str, object]:
    server = Server(command, out / "logs" / f"serve-{name.replace(' ', '-')}.log")
    try:
        row: dict[str, object] = {"ready_s": round(server.wait_ready(), 1)}
        load(server.url, texts, 4, min(20, requests))  # warm-up: kernels, caches, the grammar
        for clients in levels:
            figures = load(server.url, texts, clients, requests if clients > 1 else max(requests // 3, 10))
            row[str(clients)] = figures
            print(
                f"{name:<16} {clients:>3} client(s)  {figures['requests_per_s']:8.1f} requests/s  "
                f"p50 {figures['p50_ms']:8.1f} ms  p99 {figures['p99_ms']:8.1f} ms",
                flush=True,
            )
    finally:
        server.stop()
    return row


def model_latency(folder: Path, texts: list[str], calls: int) -> float:
    """``EmotionModel``'s median milliseconds to predict one text, after the first call loaded it."""
    from gen_emotion import EmotionModel

    with EmotionModel.load(folder) as model:
        model.predict(texts[:1])
        seconds = []
        for text in texts[1 : calls + 1]:
            started = time.perf_counter()
            model.predict([text])
            seconds.append(time.perf_counter() - started)
    return float(np.median(seconds) * 1000)


def baseline_server(model_dir: Path) -> None:
    """What a user would write: the same endpoint, a transformers pipeline called once per request."""
    import uvicorn
    from fastapi import FastAPI
    from transformers import pipeline

    from gen_emotion.serving.server import listen

    classifier = pipeline("text-classification", model=str(model_dir), top_k=None, function_to_apply="sigmoid")
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: Texts) -> dict[str, list]:
        rows = classifier(body.texts)
        scores = [{s["label"]: s["score"] for s in row} for row in rows]
        return {"predictions": [{"labels": [k for k, p in d.items() if p >= 0.5], "probabilities": d} for d in scores]}

    server = uvicorn.Server(uvicorn.Config(app, log_level="info"))  # as gen-emotion serve: the access log on
    sock = listen("127.0.0.1", 0)
    print(f"serving {model_dir} on http://127.0.0.1:{sock.getsockname()[1]} (baseline)", flush=True)
    server.run(sockets=[sock])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tfidf", type=Path, default=None, help="a TF-IDF run folder (default: train one)")
    parser.add_argument(
        "--minilm", type=Path, default=None, help="a MiniLM run with classifier.pooling=model (default: train one)"
    )
    parser.add_argument("--generative", type=Path, default=None, help="a smollm2-135m-cpu run (default: train one)")
    parser.add_argument("--out", type=Path, default=None, help="trained folders and logs (default: runs/bench-serve)")
    parser.add_argument(
        "--smoke", action="store_true", help="3 training steps, 100 requests a level; no generative model unless given"
    )
    parser.add_argument("--only", choices=list(RECIPES), action="append", help="measure only these (repeatable)")
    parser.add_argument("--baseline-server", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server is not None:
        baseline_server(args.baseline_server)
        return 0

    from gen_emotion.data.dataset import sample_data_dir
    from gen_emotion.data.formats import read_test
    from gen_emotion.models.hardware import machine

    out = (args.out or REPO / "runs" / ("bench-serve-smoke" if args.smoke else "bench-serve")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    texts = read_test(sample_data_dir() / "test.csv").texts
    names = ["tfidf", "minilm"] + (["generative"] if args.generative or not args.smoke else [])
    names = [name for name in names if name in (args.only or names)]
    folders = {name: (getattr(args, name) or train(name, out, args.smoke)).resolve() for name in names}
    count = {name: 100 if args.smoke else n for name, n in REQUESTS.items()}

    results: dict[str, dict[str, object]] = {}
    for name in names:
        command = [sys.executable, "-m", "gen_emotion", "serve", str(folders[name]), "--port", "0"]
        if name == "generative":
            for engine in ENGINES:
                engine_command = [*command, "--backend", "vllm", "--engine", engine]
                row = measure(f"{name} {engine}", engine_command, texts, count[name], out, GENERATIVE_LEVELS)
                results[f"{name}_{engine}"] = row
            results[name] = results[f"{name}_async"]
            continue
        results[name] = measure(name, command, texts, count[name], out)
        if name == "minilm":
            command = [sys.executable, __file__, "--baseline-server", str(folders["minilm"] / "model")]
            results["minilm_pipeline"] = measure("minilm pipeline", command, texts, count["minilm_pipeline"], out)
    for name in names:  # every server has stopped: one vLLM engine at a time
        calls = 5 if args.smoke else (10 if name == "generative" else 50)
        results[name]["emotion_model_ms"] = model_latency(folders[name], texts, calls)
        print(f"{name:<16} EmotionModel: {results[name]['emotion_model_ms']:.1f} ms per call of one text", flush=True)

    ratio = None
    if "minilm" in names:
        ratio = results["minilm"]["20"]["requests_per_s"] / results["minilm_pipeline"]["20"]["requests_per_s"]
        print(
            f"\nMiniLM at 20 clients: gen-emotion serve {ratio:.2f}x the pipeline baseline's requests/s (goal {GOAL}x)"
        )
    if "generative" in names:
        for clients in map(str, GENERATIVE_LEVELS):
            fast, gathered = results["generative_async"][clients], results["generative_gathered"][clients]
            times = fast["requests_per_s"] / gathered["requests_per_s"]
            print(
                f"generative at {clients} client(s): the async engine {times:.2f}x "
                f"the gathered batches' requests/s, p99 {fast['p99_ms']:.0f} against {gathered['p99_ms']:.0f} ms"
            )
    summary = {
        "bench": "serve",
        "smoke": args.smoke,
        "machine": machine(),
        "folders": {name: str(folder) for name, folder in folders.items()},
        "results": results,
        "minilm_ratio_at_20_clients": ratio,
        "goal_met": None if ratio is None else ratio >= GOAL,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
