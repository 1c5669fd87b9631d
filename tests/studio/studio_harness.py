"""What the studio's browser tests use: a running ``gen-emotion studio`` (the real command, on a loopback port),
a browser tab that records console errors and saves screenshots, the real CLI, and sample data holding markup."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gen_emotion.data.dataset import sample_data_dir

CHROMIUM = Path(os.environ.get("GEN_EMOTION_CHROMIUM", "/usr/bin/chromium"))
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> so angry'
"""A tweet holding markup: the errors page must show it as text, and run none of it."""
XSS_ROW = "sample-0007"
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m gen_emotion ARGS`` (this checkout's package), checked."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "gen_emotion", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def sample_with_markup(folder: Path) -> Path:
    """The shipped sample data, one training row's text holding ``XSS``."""
    folder.mkdir(parents=True)
    for name in ("train.csv", "test.csv"):
        shutil.copy(sample_data_dir() / name, folder / name)
    with (folder / "train.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    for row in rows:
        if row[0] == XSS_ROW:
            row[1] = XSS
    with (folder / "train.csv").open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return folder


class Studio:
    """A running ``gen-emotion studio`` and its address."""

    def __init__(self, runs: Path, *flags: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "GEN_EMOTION_API_KEY": ""}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gen_emotion", "studio", str(runs), "--port", "0", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self.process.stdout.readline()
        found = re.search(r" on (http://\S+)", line)
        assert found, f"no address in {line!r}: {self.process.stderr.read()[-2000:] if not line else ''}"
        self.url = found.group(1)

    def stop(self) -> str:
        self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return err


class Page:
    """A browser tab that records console errors and failed page scripts, and saves screenshots."""

    def __init__(self, browser: object, shots: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.shots = shots

    def open(self, url: str, status: int = 200) -> object:
        response = self.page.goto(url)
        assert response is not None and response.status == status, (url, response and response.status)
        self.page.wait_for_load_state("networkidle")
        return response

    def shot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        extra = os.environ.get("GEN_EMOTION_SCREENSHOTS")
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(extra) / path.name)
        return path

    def no_errors(self, expected: tuple[str, ...] = ()) -> None:
        unexpected = [e for e in self.errors if not any(x in e for x in expected)]
        assert not unexpected, unexpected


def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
