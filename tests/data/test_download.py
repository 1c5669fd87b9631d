"""The pod's data step (``python -m gen_emotion.data.download``, what ``runpod/entry.sh`` runs): a folder, an
archive, a ``file://`` or an ``http(s)://`` URL made a folder holding train.csv and test.csv (or one file to
predict), downloaded once, with the URL's credentials masked in everything it prints."""

from __future__ import annotations

import base64
import http.server
import io
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import REPO_ROOT, SAMPLE_DIR

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.download import main, prepare

PASSWORD, SIGNATURE = "hunter2pw", "abc123sig"


class Server(http.server.BaseHTTPRequestHandler):
    """Serves ``body`` to requests with the basic credentials user:PASSWORD; records the paths asked for."""

    body = b""
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.seen.append(self.path)
        if self.headers.get("Authorization", "") != "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode():
            self.send_error(401)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@contextmanager
def serving(body: bytes) -> Iterator[tuple[str, list[str]]]:
    """A server on 127.0.0.1 for the test's length: its base URL (with the credentials) and the paths asked."""
    handler = type("Handler", (Server,), {"body": body, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://user:{PASSWORD}@127.0.0.1:{server.server_port}", handler.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def tar_gz(folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in ("train.csv", "test.csv"):
            tar.add(SAMPLE_DIR / name, arcname=f"{folder}{name}")
    return buffer.getvalue()


def test_a_url_is_downloaded_unpacked_and_reused_after_a_restart(tmp_path):
    dest = tmp_path / "data" / "run"
    with serving(tar_gz()) as (base, seen):
        url = f"{base}/d.tar.gz?sig={SIGNATURE}"
        folder = prepare(url, dest)
        assert folder == dest / "unpacked"
        assert (folder / "train.csv").read_bytes() == (SAMPLE_DIR / "train.csv").read_bytes()
        assert seen == [f"/d.tar.gz?sig={SIGNATURE}"]  # the credentials went as basic auth, not in the path
        assert prepare(url, dest) == folder and len(seen) == 1  # a restarted pod uses what it unpacked


def test_one_file_to_predict_keeps_its_name(tmp_path):
    dest = tmp_path / "inputs" / "run"
    with serving((SAMPLE_DIR / "test.csv").read_bytes()) as (base, seen):
        path = prepare(f"{base}/in/new.csv?sig={SIGNATURE}", dest, "new.csv")
    assert path == (dest / "new.csv").resolve() and path.read_bytes() == (SAMPLE_DIR / "test.csv").read_bytes()
    assert prepare(str(SAMPLE_DIR / "test.csv"), dest, "test.csv") == (SAMPLE_DIR / "test.csv").resolve()


def test_a_data_folder_to_predict_gives_its_test_file(tmp_path):
    """A data folder is predicted by its test file, found as ``run`` finds it."""
    six = SAMPLE_DIR / "six_labels"
    assert prepare(str(six), tmp_path, "six_labels") == (six / "test.csv").resolve()
    assert prepare(six.as_uri(), tmp_path, "six_labels") == (six / "test.csv").resolve()
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenEmotionError, match="empty: a folder without a test file .*; predict takes a file, or a"):
        prepare(str(tmp_path / "empty"), tmp_path / "dest", "empty")


def test_a_zip_with_the_files_one_folder_down_and_a_folder(tmp_path):
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        for name in ("train.csv", "test.csv"):
            opened.write(SAMPLE_DIR / name, f"kaggle/{name}")
    dest = tmp_path / "dest"
    assert prepare(archive.as_uri(), dest) == dest / "unpacked" / "kaggle"
    assert prepare(str(SAMPLE_DIR), dest) == SAMPLE_DIR.resolve()
    (tmp_path / "tgz").mkdir()
    (tmp_path / "tgz" / "d.tar.gz").write_bytes(tar_gz("inner/"))
    assert prepare(str(tmp_path / "tgz" / "d.tar.gz"), dest) == dest / "unpacked" / "inner"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{tmp}/nope", "{tmp}/nope: no such file or folder"),
        ("{tmp}/plain.txt", "{tmp}/plain.txt: not a folder, a .tar(.gz) or a .zip"),
        ("{tmp}/empty.tar.gz", "{tmp}/empty.tar.gz: no train.csv and test.csv (at the top or one folder down)"),
        (f"s3://user:{PASSWORD}@bucket/d.tar.gz?sig={SIGNATURE}", "s3://***@bucket/d.tar.gz?***: use a folder"),
        (f"https://user:{PASSWORD}@127.0.0.1:9/x.tgz?sig={SIGNATURE}", "https://***@127.0.0.1:9/x.tgz?***: download"),
    ],
)
def test_a_problem_is_one_line_with_the_url_masked(tmp_path, capsys, source, message):
    (tmp_path / "plain.txt").write_text("not an archive\n", encoding="utf-8")
    with tarfile.open(tmp_path / "empty.tar.gz", "w:gz"):
        pass
    source, message = source.format(tmp=tmp_path), message.format(tmp=tmp_path)
    assert main([source, str(tmp_path / "dest")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"entry: {message}") and err.count("\n") == 1
    assert PASSWORD not in err and SIGNATURE not in err
    with pytest.raises(GenEmotionError):
        prepare(source, tmp_path / "dest")


def test_a_refused_download_and_a_missing_file_to_predict(tmp_path):
    with serving(b"") as (base, _):
        wrong = base.replace(PASSWORD, "wrong")
        with pytest.raises(GenEmotionError, match=r"^http://\*\*\*@127.0.0.1:\d+/d.tar.gz: download failed: .*401"):
            prepare(f"{wrong}/d.tar.gz", tmp_path / "dest")
    with pytest.raises(GenEmotionError, match="no such file"):
        prepare(str(tmp_path / "missing.csv"), tmp_path / "dest", "missing.csv")


def test_python_dash_m_prints_the_folder(tmp_path):
    """What ``runpod/entry.sh`` runs."""
    result = subprocess.run(
        [sys.executable, "-m", "gen_emotion.data.download", SAMPLE_DIR.as_uri(), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{SAMPLE_DIR.resolve()}\n"
    usage = subprocess.run(
        [sys.executable, "-m", "gen_emotion.data.download"], capture_output=True, text=True, timeout=60
    )
    assert usage.returncode == 2 and "usage:" in usage.stderr
