"""The hardening of ``gen-emotion serve`` (issue #35 item 7), each case reproduced against one real server over
loopback (tests/servers.py): a TF-IDF run behind a non-ASCII key and short limits. Loops are bounded in count and
time; the waits are the server's own timeouts (1 s here). The shutdown case is in test_server.py."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import Server, start_server

KEY = "clé-ü-🔑-s3cret"
"""Non-ASCII: the client sends its UTF-8 bytes, which the server receives decoded as Latin-1."""
AUTH = {"Authorization": b"Bearer " + KEY.encode("utf-8")}
JSON_TYPE = {"content-type": "application/json"}
LIMITS = ["--header-timeout", "1", "--keep-alive-timeout", "1", "--body-timeout", "1", "--max-header-bytes", "4096"]
LIMITS += ["--max-connections", "6", "--max-body-bytes", "2000"]


@pytest.fixture(scope="module")
def server(tfidf_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tfidf_run, tmp_path_factory.mktemp("secured"), *LIMITS, env={"GEN_EMOTION_API_KEY": KEY})
    with httpx.Client(timeout=30) as client:
        server.wait_ready(client)  # the bare /health needs no key
    yield server
    assert server.stop() == 0  # a clean SIGTERM exits 0
    assert KEY not in server.logs() and "Traceback" not in server.logs()


def connect(server: Server, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes ``sock`` (whatever it answered first is read and dropped)."""
    started = time.monotonic()
    while sock.recv(65536):
        pass
    return time.monotonic() - started


def test_a_non_ascii_key_matches_the_bytes_the_client_sends_and_nothing_else(server):
    predict, body = f"{server.url}/predict", {"texts": ["hello there"]}
    with httpx.Client(timeout=30) as client:
        right = client.post(predict, json=body, headers=AUTH)
        latin = client.post(
            predict, json=body, headers={"Authorization": b"Bearer " + KEY.encode("latin-1", "replace")}
        )
        refused = [
            client.post(predict, json=body),
            client.post(predict, json=body, headers={"Authorization": b"Bearer " + KEY.encode() + b"x"}),
            client.post(predict, json=body, headers={"Authorization": b"Basic " + KEY.encode()}),
            latin,
        ]
    assert right.status_code == 200 and len(right.json()["predictions"]) == 1
    for answer in refused:
        assert answer.status_code == 401 and "bearer token" in answer.json()["error"]
        assert answer.headers["www-authenticate"] == "Bearer"


def test_with_a_key_the_docs_and_metrics_need_it_and_health_without_it_is_bare(server):
    with httpx.Client(timeout=30) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/metrics"):
            assert client.get(f"{server.url}{path}").status_code == 401, path
            assert client.get(f"{server.url}{path}", headers=AUTH).status_code == 200, path
        bare = client.get(f"{server.url}/health")
        full = client.get(f"{server.url}/health", headers=AUTH)
        schema = client.get(f"{server.url}/openapi.json", headers=AUTH).json()
    assert bare.status_code == 200 and bare.json() == {"status": "ok"}  # no folder path
    assert full.json()["folder"] == str(server_folder(server)) and full.json()["kind"] == "run"
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def server_folder(server: Server) -> Path:
    return Path(server.out.read_text().split("\n", 1)[0].split(" ")[1])


def test_the_key_is_checked_before_the_body_is_read(server):
    """Without the key, a broken or oversized body is a 401, not a 422 or 413 describing it."""
    predict = f"{server.url}/predict"
    with httpx.Client(timeout=30) as client:
        broken = client.post(predict, content=b'{"texts": [', headers=JSON_TYPE)
        huge = client.post(predict, content=b"x" * 100_000, headers=JSON_TYPE)
        keyed = client.post(predict, content=b'{"texts": [', headers={**JSON_TYPE, **AUTH})
    assert broken.status_code == 401 and huge.status_code == 401
    assert keyed.status_code == 422 and "not valid JSON" in keyed.json()["error"]


def test_a_lone_surrogate_is_a_422_naming_the_text(server):
    """``json.loads`` takes ``"\\ud800"``; no tokenizer does: refused by the request schema, before batching (a
    MiniLM server among concurrent requests: test_server.py's classifier test)."""
    body = json.dumps({"texts": ["fine", "\ud800 hi"]}).encode()
    with httpx.Client(timeout=30) as client:
        answer = client.post(f"{server.url}/predict", content=body, headers={**JSON_TYPE, **AUTH})
        after = client.post(f"{server.url}/predict", json={"texts": ["fine"]}, headers=AUTH)
    assert answer.status_code == 422
    assert answer.json()["error"] == (
        "texts[1]: not valid Unicode: a lone surrogate U+D800 at character 0; send the text as UTF-8"
    )
    assert after.status_code == 200


def test_only_the_hosts_it_serves_are_answered(server):
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends ``Host: evil.example``."""
    with httpx.Client(timeout=30) as client:
        codes = {
            host: client.get(f"{server.url}/health", headers={"Host": host}).status_code
            for host in ("evil.example", f"evil.example:{server.port}", "localhost", f"127.0.0.1:{server.port}")
        }
    assert codes == {"evil.example": 400, f"evil.example:{server.port}": 400, "localhost": 200} | {
        f"127.0.0.1:{server.port}": 200
    }


def test_silent_slow_and_idle_connections_are_closed_by_their_timeouts(server):
    """A connection that sends nothing, one whose request head trickles in a byte every 0.2 s, and one idle after
    an answer are closed after about a second (--header-timeout, --keep-alive-timeout 1); a body that stops half
    way is a JSON 408 (--body-timeout 1)."""
    started = time.monotonic()
    silent = connect(server)
    trickle = connect(server)
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    for byte in head:
        try:
            trickle.send(bytes([byte]))
        except OSError:  # closed by the server
            break
        if time.monotonic() - started > 5:
            break
        time.sleep(0.2)
    trickled = time.monotonic() - started
    closed_after(silent)
    silence = time.monotonic() - started
    assert 0.5 < trickled < 3 and 0.5 < silence < 4, (trickled, silence)
    idle = connect(server, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert 0.5 < closed_after(idle) < 4
    body = b'{"texts": ["half a bo'
    half = connect(server, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
    half.sendall(b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n" + body)
    answer = b""
    while not answer.endswith(b"}") and (chunk := half.recv(65536)):  # the head and the body may come apart
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"--body-timeout" in answer
    for sock in (silent, trickle, idle, half):
        sock.close()


def test_a_huge_request_head_is_refused_without_being_read_whole(server):
    """A 4 MB header against --max-header-bytes 4096: refused at once, the connection closed; the server is fine."""
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    with pytest.raises(OSError):  # the server answers 400 and closes while the header is still being sent
        for _ in range(4096):
            sock.sendall(b"a" * 1024)
    try:
        answer = sock.recv(65536)
    except OSError:  # reset: the unread rest of the header was dropped
        answer = b""
    assert time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 400 ") or answer == b"", answer[:200]
    sock.close()
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{server.url}/health").status_code == 200


def test_connections_over_the_cap_get_a_503_until_the_others_close(server):
    held = [connect(server) for _ in range(6)]  # --max-connections 6: silent ones, closed after the header timeout
    time.sleep(0.2)
    with httpx.Client(timeout=30) as client:
        over = client.get(f"{server.url}/health")
        time.sleep(1.5)
        after = client.get(f"{server.url}/health")
    for sock in held:
        sock.close()
    assert over.status_code == 503
    assert after.status_code == 200
