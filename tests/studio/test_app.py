"""The studio's safety: nothing outside RUNS_DIR is read (``..``, encoded slashes, absolute paths, links out), bad
query parameters are a 4xx page and never a traceback, and with a key every route asks for it."""

from __future__ import annotations

import http.client
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .studio_harness import Studio

SECRET = "not for the browser"


def raw_get(url: str, path: str, headers: dict[str, str | bytes] | None = None) -> tuple[int, str, dict[str, str]]:
    """GET ``path`` exactly as written (no client normalizes it)."""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    connection.putrequest("GET", path, skip_accept_encoding=True)
    for key, value in (headers or {}).items():
        connection.putheader(key, value)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read().decode("utf-8", errors="replace")
    connection.close()
    return response.status, body, dict(response.getheaders())


@pytest.fixture(scope="module")
def outside(runs_dir: Path) -> Path:
    """A file beside RUNS_DIR, and a link inside RUNS_DIR that leads to its folder."""
    folder = runs_dir.parent / "outside"
    folder.mkdir(exist_ok=True)
    (folder / "metrics.json").write_text(SECRET, encoding="utf-8")
    link = runs_dir / "link-out"
    if not link.exists():
        os.symlink(folder, link)
    return folder


@pytest.mark.parametrize(
    "path",
    [
        "/run/..%2Foutside",
        "/run/%2e%2e/outside",
        "/run/..%2f..%2f..%2fetc",
        "/errors/%2Ftmp",
        "/run//etc",
        "/run/link-out",
        "/errors/link-out",
        "/errors.csv/..%2Foutside",
        "/try/%2e%2e%2Foutside",
        "/static/..%2F..%2Fstudio%2Fapp.py",
        "/static/%2e%2e/app.py",
        "/run/cv-a%00",
        "/run/cv-a%5C..%5C..",
    ],
)
def test_no_path_outside_the_runs_folder_is_read(studio, outside, path):
    status, body, _ = raw_get(studio.url, path)
    assert status in (400, 404), (path, status)
    assert SECRET not in body and "root:" not in body and "Traceback" not in body


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/errors/cv-a?page=abc", "page"),
        ("/errors/cv-a?page=0", "page"),
        ("/errors/cv-a?per=7", "per="),
        ("/errors/cv-a?label=nope", "label="),
        ("/errors/cv-a?kind=everything", "kind="),
        ("/errors/cv-a?page=999", "page="),
        ("/?sort=nope", "sort="),
        ("/?desc=5", "desc"),
        ("/compare?f=cv-a", "two or more"),
        ("/job/not-a-job", "job"),
    ],
)
def test_bad_query_parameters_are_a_4xx_page(studio, path, says):
    status, body, headers = raw_get(studio.url, path)
    assert 400 <= status < 500, (path, status)
    assert says in body and "Traceback" not in body
    assert "script-src 'self'" in headers["content-security-policy"]


def test_with_a_key_every_route_asks_for_it(runs_dir, browser, tmp_path):
    from .studio_harness import Page

    key = "k3y-of-the-stüdio"  # not ASCII: the client sends its UTF-8 bytes, which the header check compares
    server = Studio(runs_dir, "--api-key", key)
    try:
        for path in (
            "/",
            "/run/cv-a",
            "/errors/cv-a",
            "/static/studio.js",
            "/static/vendor/vega/vega.min.js",
            "/api/job/20260101-000000-abcdef",
            "/launch",
        ):
            status, body, _ = raw_get(server.url, path)
            assert status in (303, 401), (path, status)
            assert "macro-F1" not in body
        status, _, _ = raw_get(server.url, "/", {"Authorization": f"Bearer {key}".encode()})
        assert status == 200
        status, _, _ = raw_get(server.url, "/", {"Authorization": f"Bearer {key}".encode("latin-1")})
        assert status in (303, 401)
        tab = Page(browser, tmp_path / "screenshots")
        tab.open(server.url + "/run/cv-a")
        assert "/login" in tab.page.url
        tab.page.fill("input[name=key]", "wrong")
        tab.page.click("text=Open")
        assert "not the key" in tab.page.inner_text("body")
        tab.page.fill("input[name=key]", key)
        tab.page.click("text=Open")
        tab.page.wait_for_selector("#chart-f1 svg")
        assert tab.page.url.endswith("/run/cv-a")
        tab.shot("key")
        tab.no_errors(expected=("401",))
        tab.context.close()
    finally:
        server.stop()


def test_binding_elsewhere_without_a_key_warns(runs_dir):
    from gen_emotion.serving.server import is_loopback
    from gen_emotion.studio.app import StudioOptions

    assert StudioOptions().host == "127.0.0.1" and is_loopback(StudioOptions().host)
    server = Studio(runs_dir, "--host", "0.0.0.0")
    err = server.stop()
    assert server.url.startswith("http://0.0.0.0:")
    assert "without --api-key" in err


def test_a_runs_folder_that_is_not_there_is_one_line(tmp_path):
    import subprocess
    import sys

    from .studio_harness import REPO

    done = subprocess.run(
        [sys.executable, "-m", "gen_emotion", "studio", str(tmp_path / "nowhere"), "--port", "0"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"gen-emotion: error: {tmp_path / 'nowhere'}: no such folder (give the folder that holds your run folders)"
    ]
